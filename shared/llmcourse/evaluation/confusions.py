"""Error analysis: which facts a model's wrong answers confuse with which, and why.

Usage::

    from llmcourse.data.jsonl import load_chat_jsonl
    from llmcourse.evaluation.confusions import fact_table, find_confusions, confusion_table
    facts = fact_table(load_chat_jsonl("day1/data/faq_train.jsonl"))    # fact_id -> Fact
    found = find_confusions(load_chat_jsonl("day1/data/faq_test.jsonl"), answers, facts)
    confusion_table(found)                   # pandas: fact, confused with, count, why, an example

An answer is wrong when a key fact of its question is missing (the course's one rule,
:func:`llmcourse.evaluation.scoring.all_facts_present`). For every wrong answer this module looks for
the fact the model answered instead:

* **共用数字** (shared value): a value of the answer (``10天``, ``129元``, ``9:00-21:00``) is not in the
  right answer but is in another fact's answer: the model took it from there.
* **问题相似** (similar question): no borrowed value, but the held-out question reads more like another
  fact's training questions than like its own (character overlap).
* **编造** (invented): the answer has a value that no fact of the FAQ has.
* **漏说** (incomplete): none of the above; the answer left a key fact out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from llmcourse.evaluation.scoring import all_facts_present

# A value with its unit: what FAQ facts differ by ("7天" vs "15天", "9:00-21:00" vs "10:00-22:00").
_VALUE = re.compile(r"\d+(?:[.:：\-–]\d+)*(?:\s*(?:个工作日|个月|个指纹|小时|分钟|积分|天|年|元|位|家|期|%))?")

REASONS = {
    "shared_value": "共用数字",
    "similar_question": "问题相似",
    "invented": "编造",
    "incomplete": "漏说",
}


@dataclass(frozen=True)
class Fact:
    """One fact of the knowledge source: its canonical answer, key facts and training questions."""

    fact_id: str
    answer: str
    key_facts: tuple[str, ...]
    questions: tuple[str, ...] = field(default=())

    @property
    def values(self) -> set[str]:
        return set(values_in(self.answer))


@dataclass(frozen=True)
class Confusion:
    """One wrong answer and what it was confused with (``confused_with`` None when nothing fits)."""

    case_id: str
    fact_id: str
    question: str
    answer: str
    missing: tuple[str, ...]
    reason: str
    confused_with: str | None = None
    shared: tuple[str, ...] = field(default=())


def values_in(text: str) -> list[str]:
    """The values with units in ``text``, in order (``"满99元包邮，不满99元收取10元"`` → 99元, 99元, 10元)."""
    return [match.group(0).replace(" ", "").replace("：", ":") for match in _VALUE.finditer(text or "")]


def fact_table(examples) -> dict[str, Fact]:
    """fact_id → :class:`Fact` from training rows that carry ``fact_id`` (answer: the first row's)."""
    facts: dict[str, Fact] = {}
    for example in examples:
        fact_id = example.meta.get("fact_id")
        if not fact_id:
            continue
        known = facts.get(fact_id)
        if known is None:
            facts[fact_id] = Fact(fact_id, example.answer, tuple(example.key_facts), (example.question,))
        else:
            facts[fact_id] = Fact(fact_id, known.answer, known.key_facts, known.questions + (example.question,))
    return facts


def _overlap(a: str, b: str) -> float:
    """Share of ``a``'s character bigrams found in ``b``: cheap, tokenizer-free similarity for Chinese."""
    grams = {a[i:i + 2] for i in range(len(a) - 1)}
    other = {b[i:i + 2] for i in range(len(b) - 1)}
    return len(grams & other) / len(grams) if grams else 0.0


def closest_fact(question: str, facts: dict[str, Fact]) -> tuple[str, float]:
    """The fact whose training questions the ``question`` overlaps most, and that overlap."""
    scored = ((max((_overlap(question, q) for q in fact.questions), default=0.0), fact_id)
              for fact_id, fact in facts.items())
    best, fact_id = max(scored)
    return fact_id, best


def explain(case_id: str, fact_id: str, question: str, answer: str, key_facts, facts: dict[str, Fact]) -> Confusion:
    """Why one wrong answer is wrong (see the module docstring for the four reasons)."""
    missing = tuple(fact for fact in key_facts if fact not in answer)
    own = facts[fact_id].values if fact_id in facts else set()
    foreign = [value for value in dict.fromkeys(values_in(answer)) if value not in own]
    if foreign:
        owners = Counter(other_id for value in foreign for other_id, fact in facts.items()
                         if other_id != fact_id and value in fact.values)
        if owners:
            top = max(owners.values())
            # Ties go to the fact whose questions read most like this one: the likelier source.
            tied = [other_id for other_id, count in owners.items() if count == top]
            source = max(tied, key=lambda other_id: max(_overlap(question, q) for q in facts[other_id].questions))
            shared = tuple(value for value in foreign if value in facts[source].values)
            return Confusion(case_id, fact_id, question, answer, missing, "shared_value", source, shared)
        return Confusion(case_id, fact_id, question, answer, missing, "invented", None, tuple(foreign))
    closest, _ = closest_fact(question, facts)
    if closest != fact_id:
        return Confusion(case_id, fact_id, question, answer, missing, "similar_question", closest)
    return Confusion(case_id, fact_id, question, answer, missing, "incomplete")


def find_confusions(examples, answers: list[str], facts: dict[str, Fact]) -> list[Confusion]:
    """A :class:`Confusion` for every wrong answer of ``examples`` (rows with ``fact_id`` and ``key_facts``)."""
    if len(examples) != len(answers):
        raise ValueError(f"{len(examples)} 个问题却有 {len(answers)} 个回答：两者要一一对应")
    found = []
    for example, answer in zip(examples, answers):
        if all_facts_present(answer, example.key_facts):
            continue
        found.append(explain(str(example.meta.get("id", example.line)), str(example.meta.get("fact_id", "")),
                             example.question, answer, example.key_facts, facts))
    return found


def reason_counts(found: list[Confusion]) -> dict[str, int]:
    """How many wrong answers each reason explains, in :data:`REASONS` order (Chinese names)."""
    counts = Counter(confusion.reason for confusion in found)
    return {REASONS[reason]: counts.get(reason, 0) for reason in REASONS}


def top_pairs(found: list[Confusion], count: int = 10) -> list[dict]:
    """The most frequent (fact, confused with) pairs, most frequent first, with one example each."""
    pairs: dict[tuple, list[Confusion]] = {}
    for confusion in found:
        if confusion.confused_with:
            pairs.setdefault((confusion.fact_id, confusion.confused_with), []).append(confusion)
    ranked = sorted(pairs.items(), key=lambda item: (-len(item[1]), item[0]))[:count]
    return [{"事实": fact_id, "被当成": other, "次数": len(rows), "原因": REASONS[rows[0].reason],
             "共用的值": "、".join(dict.fromkeys(v for row in rows for v in row.shared)),
             "例子（问题 → 回答）": f"{rows[0].question} → {rows[0].answer[:60]}"}
            for (fact_id, other), rows in ranked]


def confusion_table(found: list[Confusion], count: int = 10):
    """:func:`top_pairs` as a pandas DataFrame (what the notebooks display)."""
    import pandas as pd

    return pd.DataFrame(top_pairs(found, count),
                        columns=["事实", "被当成", "次数", "原因", "共用的值", "例子（问题 → 回答）"])
