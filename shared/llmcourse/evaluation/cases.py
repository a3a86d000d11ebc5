"""Test cases for comparing models: ``cases.jsonl``, one case per line.

Usage::

    from llmcourse.evaluation.cases import load_cases
    cases = load_cases("data/default_cases.jsonl") + load_cases("my_cases.jsonl")

A case is ``{"case_id", "messages", ...}`` where ``messages`` is the conversation so far and
ends with the user's turn, plus what a good answer must show: ``key_facts`` (strings that must
appear), ``label`` (classification) or ``reference`` (a model answer, scored by ROUGE-L).
``kind`` is free text (faq, out_of_domain, multi_turn, classification, ...).
Problems are reported as ``file:line: field: message``, like :mod:`llmcourse.data.jsonl`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcourse.data.jsonl import DataError, load_chat_jsonl, read_lines


def _problems(case: object) -> list[tuple[str, str]]:
    if not isinstance(case, dict):
        return [("", "每行必须是一个 JSON 对象")]
    problems = []
    if not isinstance(case.get("case_id"), str) or not case.get("case_id"):
        problems.append(("case_id", "缺少 case_id（非空字符串）"))
    messages = case.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append(("messages", "必须是非空的消息列表"))
    else:
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str) or not m["content"].strip():
                problems.append((f"messages[{i}]", "需要 role（system/user/assistant）和非空的 content"))
        if not problems and messages[-1]["role"] != "user":
            problems.append(("messages", "最后一条必须是 user 的提问（模型要回答它）"))
    facts = case.get("key_facts")
    if facts is not None and (not isinstance(facts, list) or not all(isinstance(f, str) and f for f in facts)):
        problems.append(("key_facts", "必须是非空字符串列表"))
    if not (case.get("key_facts") or case.get("label") or case.get("reference")):
        problems.append(("key_facts", "至少给出 key_facts、label 或 reference 之一，否则无法打分"))
    return problems


def load_cases(path: str | Path) -> list[dict]:
    path = Path(path)
    cases, problems, seen = [], [], set()
    for number, text in enumerate(read_lines(path), start=1):
        if not text.strip():
            continue
        try:
            case = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: 不是合法的 JSON（第 {exc.colno} 列：{exc.msg}）")
            continue
        found = _problems(case)
        if isinstance(case, dict) and case.get("case_id") in seen:
            found.append(("case_id", f"重复的 case_id {case['case_id']!r}"))
        problems += [f"{path}:{number}: {field}: {message}" for field, message in found]
        if not found:
            seen.add(case["case_id"])
            cases.append(case)
    if problems:
        raise DataError(path, problems)
    if not cases:
        raise DataError(path, [f"{path}: 文件里没有任何用例"])
    return cases


def question_of(case: dict) -> str:
    return case["messages"][-1]["content"]


def save_cases(path: str | Path, cases: list[dict]) -> Path:
    """Write cases as JSONL (UTF-8, one per line) and check them by loading them back."""
    path = Path(path)
    path.write_text("".join(json.dumps(case, ensure_ascii=False) + "\n" for case in cases), encoding="utf-8")
    load_cases(path)
    print(f"已保存 {len(cases)} 个用例：{path.resolve()}")
    return path


def cases_from_split(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a built split as Day 2 cases (``case_id``, ``kind``, ``messages`` without the answer, ...)."""
    cases = []
    for number, example in enumerate(load_chat_jsonl(path)[:limit], 1):
        case = {"case_id": example.meta.get("id") or f"test-{number}",
                "kind": example.meta.get("topic") or ("intent" if example.meta.get("label") else "faq"),
                "messages": example.prompt_messages, "reference": example.answer}
        if example.key_facts:
            case["key_facts"] = example.key_facts
        if example.meta.get("label"):
            case["label"] = example.meta["label"]
        cases.append(case)
    return cases
