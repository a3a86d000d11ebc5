"""Training rows that carry retrieved passages, so the fine-tuned model also learns to answer from them.

Usage::

    from llmcourse.data.context_rows import add_context_rows
    report = add_context_rows("data/train.jsonl", out="data/train_rag.jsonl")   # point data.train_file at it
    # the same from a shell:  llmcourse data add-context data/train.jsonl --out data/train_rag.jsonl [--every 3] [--k 3] [--add]

Opt-in: the course's own data does not use it yet (see "Measured" below). Why: a model fine-tuned on
bare questions has never seen a prompt with passages, and the retrieval arm's passages pull it off
what it learned. Retrieval-augmented fine-tuning (RAFT) trains on the prompt the retrieval arm will
send. One question in every ``every`` of each fact (the 2nd, 5th, … in file order) gets ``k``
passages in its system message, written exactly as
:func:`llmcourse.inference.retrieval.augment_messages` writes them at answer time; by default that
row is replaced, with ``add=True`` a copy (id ``<id>-ctx``) is appended after the plain rows. Two
choices make a row look like a new question, not a lookup of a known one:

* **the question's round is left out of the index**: for the n-th question of a fact, the index is
  built without the n-th question of every fact, the way ``faq_test.jsonl`` holds out wordings, so
  retrieval misses here as it will on a new wording (Day 1: the own fact is among the 3 passages for
  84 of 90 rows; 82 of 90 held-out questions);
* **the passages are shuffled** (seeded by the row's id): in ranking order the model learns to copy
  passage [1].

Measured on Day 1 (r 32, 80 steps × 8, 2-core AVX2 CPU, 90 held-out paraphrases, fully correct
fine-tuned / fine-tuned + BM25 top-3): plain data 57 / 58 in 346 s; replaced in ranking order 48 / 75
in 626 s (right on 72/72 when the fact ranked 1st, 3/10 when 2nd or 3rd); replaced and shuffled
(this module's default) 60 / 65 in 469 s; added and shuffled 51 / 59 in 539 s.
On a 2-core AVX512-BF16 CPU (bf16): plain data 65 / 56 in 282 s, this module's default 55 / 60 in 410 s:
it trades one arm for the other, which is why the course's data stays plain.

Rows with passages carry ``passages`` (the ids shown, in order). Running it on its own output gives
the same file: the passages are taken out first and the rows rebuilt.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path

from llmcourse.data.jsonl import ChatExample, load_chat_jsonl
from llmcourse.errors import InputError
from llmcourse.inference.retrieval import (
    CONTEXT_HEADER,
    Passage,
    Retriever,
    augment_messages,
    passages_of,
)

CONTEXT_SUFFIX = "-ctx"


def is_context_row(example: ChatExample) -> bool:
    """A row this module gave passages to (it carries the ids of the passages it shows)."""
    return "passages" in example.meta


def plain_rows(examples: list[ChatExample]) -> list[ChatExample]:
    """``examples`` as they were before this module: added copies dropped, passages taken out."""
    plain = []
    for example in examples:
        if not is_context_row(example):
            plain.append(example)
        elif not str(example.meta.get("id", "")).endswith(CONTEXT_SUFFIX):  # a replaced row: restore it
            messages = [dict(m) for m in example.messages]
            messages[0]["content"] = messages[0]["content"].split(f"\n\n{CONTEXT_HEADER}", 1)[0]
            if messages[0]["content"].startswith(CONTEXT_HEADER):  # the system message was ours alone
                messages = messages[1:]
            meta = {key: value for key, value in example.meta.items() if key != "passages"}
            plain.append(ChatExample(messages=messages, line=example.line, meta=meta))
    return plain


def _round_of(plain: list[ChatExample]) -> list[int]:
    """Each row's place among its fact's rows (0 for the first question of a fact, 1 for the second …)."""
    seen: dict[str, int] = defaultdict(int)
    places = []
    for example in plain:  # every row has a fact_id: context_rows checked it
        places.append(seen[example.meta["fact_id"]])
        seen[example.meta["fact_id"]] += 1
    return places


def _index_without(plain: list[ChatExample], places: list[int], left_out: int, k: int) -> Retriever:
    """An index of every fact whose questions of round ``left_out`` are not in it."""
    kept = defaultdict(list)
    for example, place in zip(plain, places):
        if place != left_out:
            kept[example.meta["fact_id"]].append(example.question)
    base = {p.id: p.text for p in passages_of(plain, include_questions=False)}
    return Retriever.build([Passage(id=fact, text=text, questions=tuple(kept[fact]),
                                    search_text="\n".join([text, *kept[fact]])) for fact, text in base.items()], k=k)


def context_rows(examples: list[ChatExample], every: int = 3, k: int = 3, add: bool = False) -> list[dict]:
    """``examples`` as JSONL row dicts, one question in ``every`` of each fact with ``k`` passages
    (replaced in place, or with ``add`` appended as copies after the plain rows)."""
    if every < 1 or k < 1:
        raise InputError(f"every 和 k 都必须是正整数（现在 every={every}，k={k}）")
    plain = plain_rows(examples)
    missing = next((e for e in plain if not e.meta.get("fact_id")), None)
    if missing is not None:
        raise InputError(f"第 {missing.line} 行没有 fact_id：带资料的样本要知道每个问题属于哪条知识，"
                         "请给每行加上 fact_id（同一条知识的不同问法用同一个 fact_id）")
    places = _round_of(plain)
    indexes: dict[int, Retriever] = {}
    rows, copies = [], []
    for example, place in zip(plain, places):
        if place % every != 1 % every:
            rows.append(example.to_dict())
            continue
        if place not in indexes:
            indexes[place] = _index_without(plain, places, place, k)
        shown = indexes[place].search(example.question)
        random.Random(example.meta.get("id") or example.question).shuffle(shown)
        row = {**example.meta, "passages": [p.id for p in shown],
               "messages": augment_messages(example.prompt_messages, shown) + [example.messages[-1]]}
        if add:
            rows.append(example.to_dict())
            copies.append({**row, "id": f"{example.meta.get('id') or example.line}{CONTEXT_SUFFIX}"})
        else:
            rows.append(row)
    return rows + copies


def add_context_rows(path: str | Path, out: str | Path | None = None, every: int = 3, k: int = 3,
                     add: bool = False) -> dict:
    """Write :func:`context_rows` of ``path`` to ``out`` (default: ``path`` itself) and say what it did.

    The file is written under a temporary name and renamed, so a failure leaves the old one whole.
    """
    path = Path(path)
    target = Path(out) if out else path
    rows = context_rows(load_chat_jsonl(path), every=every, k=k, add=add)
    shown = [row for row in rows if "passages" in row]
    partial = target.with_name(target.name + ".partial")
    partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    os.replace(partial, target)
    return {"file": str(target), "rows": len(rows), "with_passages": len(shown),
            "own_fact_shown": sum(row["fact_id"] in row["passages"] for row in shown), "k": k, "every": every,
            "mode": "add" if add else "replace"}
