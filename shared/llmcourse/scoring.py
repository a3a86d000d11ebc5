"""Automatic answer scores (0–1) and a human score sheet (1–5) saved as CSV.

Usage::

    from llmcourse.scoring import auto_score, char_f1, rouge_l, make_score_sheet, save_score_sheet
    auto_score(case, "签收后7天内可以退货")   # FAQ: key-fact hit rate; classification: label match
    sheet = make_score_sheet(generations)     # pandas DataFrame with an empty human_score column
    save_score_sheet(sheet, "human_scores.csv")

FAQ cases score the share of key facts present verbatim; classification cases score 1 when the
answer names the expected label; open cases (no key facts, no label) score character-level
ROUGE-L against the reference answer. Chinese has no spaces, so every measure works on characters.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from llmcourse.data import keyfact_hits

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


def auto_score(case: dict, answer: str) -> float:
    """The case's automatic score in [0, 1]; which measure depends on what the case provides."""
    if case.get("key_facts"):
        return round(keyfact_hits(answer, case["key_facts"]) / len(case["key_facts"]), 4)
    if case.get("label"):
        return 1.0 if case["label"] in (answer or "") else 0.0
    return rouge_l(answer, case.get("reference", ""))


def make_score_sheet(rows: list[dict]):
    """One row per (case, model, engine) answer with an empty ``human_score`` (1–5) and ``note``."""
    import pandas as pd

    sheet = pd.DataFrame([{"case_id": r["case_id"], "model": r["model"], "question": r.get("question", ""),
                           "answer": r["text"], "human_score": None, "note": ""} for r in rows])
    return sheet


def save_score_sheet(sheet, path: str | Path) -> Path:
    """Validate 1–5 scores and save as UTF-8 CSV (with BOM, so Excel opens the Chinese correctly)."""
    scores = sheet["human_score"].dropna()
    bad = scores[~scores.isin([1, 2, 3, 4, 5])]
    if len(bad):
        raise ValueError(f"human_score 只能是 1–5 的整数；第 {list(bad.index)} 行不对：{list(bad)}")
    path = Path(path)
    sheet.to_csv(path, index=False, encoding="utf-8-sig")
    return path
