"""Load, validate and summarise chat datasets in JSONL (one ``{"messages": [...]}`` per line).

Usage::

    from llmcourse.data.jsonl import load_chat_jsonl, summarize
    rows = load_chat_jsonl("day1/data/faq_train.jsonl")   # raises DataError on bad input
    print(summarize(rows))

Each line is an object with ``messages``: a list of ``{"role", "content"}`` where roles are
``system`` (optional, first only), then ``user`` / ``assistant`` alternating, ending with an
``assistant`` turn. Optional fields: ``id``, ``fact_id``, ``topic``, ``label``, ``key_facts``.

Every problem is reported as ``file:line: field: what is wrong`` (in Chinese, for learners),
all problems of a file at once, and the input file is only ever read.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.errors import CourseError

ROLES = ("system", "user", "assistant")


class DataError(CourseError, ValueError):
    """A dataset file with problems; ``problems`` lists each ``file:line: field: message``."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        shown = problems[:20]
        more = f"\n  ……另有 {len(problems) - 20} 处问题" if len(problems) > 20 else ""
        super().__init__(f"{path} 有 {len(problems)} 处问题：\n  " + "\n  ".join(shown) + more)


@dataclass
class ChatExample:
    messages: list[dict[str, str]]
    line: int
    meta: dict[str, Any]

    @property
    def question(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        """Everything before the final answer: what the model is asked."""
        return self.messages[:-1]

    @property
    def key_facts(self) -> list[str]:
        return list(self.meta.get("key_facts") or [])

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta, "messages": self.messages}


def _check_messages(messages: Any) -> list[tuple[str, str]]:
    """Return (field, message) problems of one ``messages`` value."""
    if not isinstance(messages, list):
        return [("messages", f"必须是列表，现在是 {type(messages).__name__}")]
    if not messages:
        return [("messages", "不能为空列表")]
    problems = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append((where, f"必须是对象 {{\"role\": ..., \"content\": ...}}，现在是 {type(message).__name__}"))
            continue
        role, content = message.get("role"), message.get("content")
        if "role" not in message:
            problems.append((f"{where}.role", "缺少 role 字段"))
        elif role not in ROLES:
            problems.append((f"{where}.role", f"值 {role!r} 不允许；可选：system / user / assistant"))
        elif role == "system" and index != 0:
            problems.append((f"{where}.role", "system 只能出现在第一条"))
        if "content" not in message:
            problems.append((f"{where}.content", "缺少 content 字段"))
        elif not isinstance(content, str):
            problems.append((f"{where}.content", f"必须是字符串，现在是 {type(content).__name__}"))
        elif not content.strip():
            problems.append((f"{where}.content", "内容为空"))
        extra = set(message) - {"role", "content"}
        if extra:
            problems.append((where, f"多余字段 {sorted(extra)}；每条消息只能有 role 和 content"))
    if problems:
        return problems
    turns = [m["role"] for m in messages if m["role"] != "system"]
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    for index, (got, want) in enumerate(zip(turns, expected)):
        if got != want:
            offset = index + (1 if messages[0]["role"] == "system" else 0)
            problems.append((f"messages[{offset}].role", f"应为 {want}（user 与 assistant 需交替，从 user 开始），现在是 {got}"))
            break
    if not problems and (not turns or turns[-1] != "assistant"):
        problems.append(("messages", "最后一条必须是 assistant 的回答"))
    return problems


def _check_meta(row: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    facts = row.get("key_facts")
    if facts is not None:
        if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
            problems.append(("key_facts", "必须是非空字符串组成的列表，例如 [\"7天\"]"))
    for name in ("id", "fact_id", "topic", "label"):
        if name in row and not isinstance(row[name], str):
            problems.append((name, f"必须是字符串，现在是 {type(row[name]).__name__}"))
    return problems


def parse_chat_lines(lines: list[str], path: Path) -> tuple[list[ChatExample], list[str]]:
    """Validate already-decoded lines; return the good examples and the problems found."""
    examples, problems = [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: 不是合法的 JSON（第 {exc.colno} 列：{exc.msg}）")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: 每行必须是一个 JSON 对象，现在是 {type(row).__name__}")
            continue
        if "messages" not in row:
            problems.append(f"{where}: messages: 缺少 messages 字段")
            continue
        row_problems = _check_messages(row["messages"]) + _check_meta(row)
        problems += [f"{where}: {field}: {message}" for field, message in row_problems]
        if not row_problems:
            meta = {key: value for key, value in row.items() if key != "messages"}
            examples.append(ChatExample(messages=row["messages"], line=number, meta=meta))
    return examples, problems


def read_lines(path: str | Path) -> list[str]:
    """Read a text file as UTF-8 lines; a bad byte becomes a DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, [f"{path}: 文件不存在"])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, [f"{path}:{line}: 编码错误：不是 UTF-8（第 {exc.start} 字节）；请用 UTF-8 另存"]) from None
    return text.splitlines()


def load_chat_jsonl(path: str | Path, max_samples: int | None = None) -> list[ChatExample]:
    """Load and validate a chat JSONL file; raise :class:`DataError` listing every problem."""
    path = Path(path)
    examples, problems = parse_chat_lines(read_lines(path), path)
    if problems:
        raise DataError(path, problems)
    if not examples:
        raise DataError(path, [f"{path}: 文件里没有任何样本"])
    return examples[:max_samples] if max_samples else examples


def summarize(examples: list[ChatExample]) -> dict[str, Any]:
    """Counts and lengths (in characters) that a learner should look at before training."""
    question_lengths = [len(e.question) for e in examples]
    answer_lengths = [len(e.answer) for e in examples]
    topics = Counter(e.meta.get("topic") or e.meta.get("label") or "（无）" for e in examples)
    return {
        "examples": len(examples),
        "distinct_questions": len({e.question for e in examples}),
        "facts": len({e.meta.get("fact_id") for e in examples if e.meta.get("fact_id")}),
        "multi_turn": sum(1 for e in examples if sum(m["role"] == "user" for m in e.messages) > 1),
        "question_chars_median": statistics.median(question_lengths),
        "answer_chars_median": statistics.median(answer_lengths),
        "answer_chars_max": max(answer_lengths),
        "topics": dict(topics.most_common()),
    }
