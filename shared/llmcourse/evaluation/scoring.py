"""Automatic answer scores (0–1) and a blind human score sheet (1–5) saved as CSV.

Usage::

    from llmcourse.evaluation.scoring import auto_score, char_f1, rouge_l
    from llmcourse.evaluation.scoring import read_answers, make_score_sheet, show_score_sheet, save_score_sheet, reveal_scores
    auto_score(case, "签收后7天内可以退货")   # FAQ: key-fact hit rate; classification: label match
    sheet = make_score_sheet(read_answers("runs/benchmark"), cases, seed=42)
    show_score_sheet(sheet)                  # question, reference, key facts, "回答 A / 回答 B"
    save_score_sheet(sheet, "human_scores.csv", scores=[5, 2, ...])   # one 1–5 score per row
    reveal_scores("human_scores.csv")        # model names and the per-model mean

FAQ cases score the share of key facts present verbatim; classification cases score 1 when the
answer names the expected label; open cases (no key facts, no label) score character-level
ROUGE-L against the reference answer. Chinese has no spaces, so every measure works on characters.

The score sheet is blind: cases come in a shuffled order (a fixed ``seed``, so a rerun gives the same
sheet), each case's answers are labelled 回答 A, B, … in a shuffled order, and which model gave
which answer is kept out of the table (in ``sheet.attrs["key"]``, by ``answer_id``). The saved CSV
gets its ``model`` / ``engine`` columns only once every row has a score; readers (the checks,
Day 3's report) group ``human_score`` by ``model``.
"""

from __future__ import annotations

import numbers
import re
from collections import Counter
from pathlib import Path

from llmcourse.artifacts import GENERATIONS
from llmcourse.errors import InputError, RunMissing

_NOISE = re.compile(r"[\s\W_]+")


def _chars(text: str) -> list[str]:
    return list(_NOISE.sub("", text or ""))


def char_f1(prediction: str, reference: str) -> float:
    pred, ref = Counter(_chars(prediction)), Counter(_chars(reference))
    overlap = sum((pred & ref).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return round(2 * precision * recall / (precision + recall), 4)


def rouge_l(prediction: str, reference: str) -> float:
    """Character-level ROUGE-L F-measure (longest common subsequence)."""
    a, b = _chars(prediction), _chars(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if char == other else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return round(2 * precision * recall / (precision + recall), 4)


def keyfact_hits(answer: str, key_facts: list[str]) -> int:
    """How many key facts appear verbatim in an answer (spaces ignored)."""
    squeezed = answer.replace(" ", "")
    return sum(1 for fact in key_facts if fact.replace(" ", "") in squeezed)


def all_facts_present(answer: str, key_facts: list[str]) -> bool:
    return bool(key_facts) and keyfact_hits(answer, key_facts) == len(key_facts)



def squeeze(text: str | None) -> str:
    """Text without spaces, punctuation or underscores, lower-cased: what a label match compares."""
    return re.sub(r"[\s\W_]+", "", text or "").lower()


def label_match(label: str, answer: str | None) -> bool:
    """The answer names the label ("退货" in "这是退货问题。"; case, spaces and punctuation ignored)."""
    return bool(squeeze(label)) and squeeze(label) in squeeze(answer)


def auto_score(case: dict, answer: str) -> float:
    """The case's automatic score in [0, 1]; which measure depends on what the case provides."""
    if case.get("key_facts"):
        return round(keyfact_hits(answer, case["key_facts"]) / len(case["key_facts"]), 4)
    if case.get("label"):
        return 1.0 if label_match(case["label"], answer) else 0.0
    return rouge_l(answer, case.get("reference", ""))


def read_answers(out_dir: str | Path) -> list[dict]:
    """The answers a benchmark run saved (``generations.jsonl``: case_id, model, engine, text, ...)."""
    import json

    path = Path(out_dir) / GENERATIONS
    if not path.is_file():
        raise RunMissing(f"找不到 {path}：请先运行并排对比（基准测试）的单元格")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def one_per_kind(cases: list[dict]) -> list[dict]:
    """The first case of each kind (faq, out_of_domain, multi_turn, ...): a small, varied sample."""
    return list({case.get("kind", ""): case for case in reversed(cases)}.values())[::-1]


def _conversation(case: dict) -> str:
    """The question with the turns before it, as a person reading the sheet needs it."""
    turns = [m for m in case.get("messages", []) if m["role"] != "system"]
    names = {"user": "用户", "assistant": "客服"}
    earlier = [f"（上文）{names[m['role']]}：{m['content']}" for m in turns[:-1]]
    return "\n".join(earlier + [turns[-1]["content"] if turns else ""])


SHEET_COLUMNS = ["row", "answer_id", "case_id", "question", "reference", "key_facts", "answer_label", "answer",
                 "human_score", "note"]


def make_score_sheet(answers: list[dict], cases: list[dict] | None = None, seed: int = 42):
    """A blind sheet: one row per answer to each of ``cases`` (default: every answered case), with the
    question, reference answer and key facts, an empty ``human_score`` (1–5) and ``note``.

    Cases are shuffled with ``seed``; within a case the answers are labelled 回答 A, B, … in an order
    that gives each model each letter equally often across the sheet.
    The model (and engine) of each row is only in ``sheet.attrs["key"]`` (``answer_id`` -> names).
    """
    import random

    import pandas as pd

    by_case: dict[str, list[dict]] = {}
    for answer in answers:
        by_case.setdefault(answer["case_id"], []).append(answer)
    if cases is None:
        cases = [{"case_id": case_id, "messages": [{"role": "user", "content": rows[0].get("question", "")}]}
                 for case_id, rows in by_case.items()]
    missing = [case["case_id"] for case in cases if case["case_id"] not in by_case]
    if missing:
        raise InputError(f"这些用例没有保存的回答：{missing}；请先对它们运行并排对比")
    rng = random.Random(seed)
    picked = sorted({case["case_id"]: case for case in cases}.values(), key=lambda case: case["case_id"])
    rng.shuffle(picked)  # sorted first: the order depends on the seed only, not on how cases were passed
    # Each model takes each letter equally often (shuffled which case gets which), so 回答 A gives nothing away.
    shifts = [number % len(by_case[case["case_id"]]) for number, case in enumerate(picked)]
    rng.shuffle(shifts)
    rows, key = [], {}
    for number, (case, shift) in enumerate(zip(picked, shifts), start=1):
        group = sorted(by_case[case["case_id"]], key=lambda a: (a["model"], a.get("engine", "")))
        group = group[shift:] + group[:shift]
        for letter, answer in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", group):
            answer_id = f"{number}{letter}"
            key[answer_id] = {"model": answer["model"], "engine": answer.get("engine", "")}
            rows.append({"row": len(rows) + 1, "answer_id": answer_id, "case_id": case["case_id"],
                         "question": _conversation(case), "reference": case.get("reference", ""),
                         "key_facts": list(case.get("key_facts") or ([case["label"]] if case.get("label") else [])),
                         "answer_label": f"回答 {letter}", "answer": answer.get("text", ""),
                         "human_score": None, "note": ""})
    sheet = pd.DataFrame(rows, columns=SHEET_COLUMNS)
    sheet.attrs["key"] = key
    return sheet


def sheet_html(sheet) -> str:
    """The sheet as an HTML table for a person: one block per question, its answers side by side in rows."""
    from html import escape

    def cell(text, **attrs) -> str:
        extra = "".join(f' {name}="{value}"' for name, value in attrs.items())
        return f"<td{extra} style='text-align:left;vertical-align:top;white-space:pre-wrap'>{escape(str(text))}</td>"

    head = "".join(f"<th style='text-align:left'>{name}</th>"
                   for name in ("行", "问题", "参考答案", "关键事实", "回答", "回答内容", "分数"))
    lines = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for _, group in sheet.groupby("case_id", sort=False):
        first = group.iloc[0]
        facts = "、".join(first["key_facts"]) if isinstance(first["key_facts"], list) else first["key_facts"]
        shared = cell(first["question"], rowspan=len(group)) + cell(first["reference"] or "—", rowspan=len(group)) \
            + cell(facts or "—", rowspan=len(group))
        for i, (_, row) in enumerate(group.iterrows()):
            score = "" if row["human_score"] is None or row["human_score"] != row["human_score"] else row["human_score"]
            lines.append("<tr>" + cell(f"第 {row['row']} 行") + (shared if i == 0 else "")
                         + cell(row["answer_label"]) + cell(row["answer"] or "（空回答）") + cell(score) + "</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def show_score_sheet(sheet):
    """Display :func:`sheet_html` in the notebook (an HTML object; printed outside Jupyter)."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        print(sheet.drop(columns=["human_score", "note"]).to_string(index=False))
        return None
    return display(HTML(sheet_html(sheet)))


def _is_score(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value in (1, 2, 3, 4, 5)


def save_score_sheet(sheet, path: str | Path, scores: list | None = None) -> Path:
    """Put ``scores`` (one 1–5 integer per row, in the sheet's order; None = not scored yet) into
    ``human_score``, validate and save as UTF-8 CSV (with BOM, so Excel opens the Chinese correctly).

    The model names go into the file only when every row has a score: the sheet stays blind until then.
    """
    import pandas as pd

    if scores is not None:
        scores = list(scores)
        if len(scores) != len(sheet):
            raise InputError(f"打分表有 {len(sheet)} 行，你给了 {len(scores)} 个分数：每行一个，顺序同上表")
        sheet["human_score"] = pd.array([None if s is None else s for s in scores], dtype="object")
    given = sheet["human_score"].dropna()
    bad = given[~given.apply(_is_score)]
    if len(bad):
        rows = [int(sheet.loc[i, "row"]) if "row" in sheet else int(i) + 1 for i in bad.index]
        raise InputError(f"human_score 只能是 1–5 的整数；第 {rows} 行不对：{list(bad)}")
    table = sheet.copy()
    table["human_score"] = pd.array([None if s is None or s != s else int(s) for s in sheet["human_score"]],
                                    dtype="Int64")
    if "key_facts" in table:
        table["key_facts"] = ["；".join(f) if isinstance(f, list) else f for f in table["key_facts"]]
    key = sheet.attrs.get("key")
    unscored = int(table["human_score"].isna().sum())
    if key:
        for column in ("model", "engine"):
            names = [key[a][column] if not unscored else "" for a in table["answer_id"]]
            table[column] = names
            if unscored:  # the sheet in memory is revealed too, and blind again while a score is missing
                if column in sheet:
                    del sheet[column]
            else:
                sheet[column] = names
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, encoding="utf-8-sig")
    if key and unscored:
        print(f"已保存 {path}；还有 {unscored} 行没打分，全部打完后才会揭晓每个回答来自哪个模型")
    elif key:
        print(f"已保存 {path}：{len(table)} 行都打完了，模型名已写入（运行“揭晓”单元格查看）")
    return path


def _show(table) -> None:
    try:
        from IPython.display import display
    except ImportError:
        print(table)
    else:
        display(table)


def reveal_scores(path: str | Path):
    """Un-blind a saved, fully scored sheet: each row's model, and the mean human score per model."""
    import pandas as pd

    sheet = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, na_values=[""])
    if sheet["human_score"].isna().any() or "model" not in sheet or sheet["model"].isna().any():
        print(f"还有 {int(sheet['human_score'].isna().sum())} 行没打分：打完全部分数并保存后，再运行这个单元格揭晓模型名")
        return None
    _show(sheet[["row", "case_id", "answer_label", "model", "human_score"]].set_index("row"))
    means = sheet.groupby("model").human_score.agg(["mean", "count"]).round(2)
    return means.rename(columns={"mean": "人工分均值", "count": "打分数"})
