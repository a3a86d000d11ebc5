"""The retrieval arm: a knowledge source → passages → BM25 over jieba tokens → the top k in the prompt.

Usage::

    import bm25s
    from llmcourse.inference.retrieval import faq_passages, tokenize, Retriever, augment_messages
    passages = faq_passages("day1/data/faq_train.jsonl")       # one passage per fact_id
    index = bm25s.BM25()                                        # the notebooks build the index in a cell
    index.index([tokenize(p.search_text) for p in passages], show_progress=False)
    retriever = Retriever(index, passages, k=3)
    top = retriever.search("退货期多久？")                        # [Passage, ...], best first
    messages = augment_messages(case["messages"], top)          # the passages go into the system message
    hit_rate(retriever, load_chat_jsonl("day1/data/faq_test.jsonl"))   # {"top1": 0.7, "top3": 0.92, ...}

``Retriever.build(passages)`` does the two index lines itself (tests, scripts).

Knowledge sources: :func:`faq_passages` reads a chat JSONL whose rows carry ``fact_id`` (Day 1's FAQ,
Day 3's built train split; never the test split): one passage per fact, its text the canonical answer,
and its training questions added to what is indexed (measured on Day 1's 90 held-out paraphrases:
top-3 hits 69 → 81 of 90 with 3 questions a fact; 83 once :data:`STOP_WORDS` are dropped; with 6 questions
a fact, top-1 72 and top-3 82). Rows without
``fact_id`` (the intent scenario) are one passage each: question and label.

jieba logs its dictionary loading to stderr and caches the parsed dictionary in the system's temp
folder; :func:`tokenizer` silences it and keeps the cache in the course cache
(``~/.cache/llmcourse/jieba``, ``LLMCOURSE_CACHE`` moves it), so every run tokenises the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from llmcourse.errors import InputError

# Function words that match every question ("多少", "怎么", "吗") and only blur the ranking.
STOP_WORDS = frozenset("的 了 吗 呢 吧 啊 我 你 你们 我们 是 有 在 能 可以 怎么 多少 什么 请问 一下 要 会 还 就 "
                       "都 和 与 或 几 多 么 哪些 哪 如何".split())
_NOISE = re.compile(r"^[\s\W_]+$")

# What the model is told around the passages (the notebooks print it): answer from them, admit gaps.
CONTEXT_HEADER = "以下是知识库里与问题最相关的资料，回答时以资料为准；资料里没有的内容，请说明不清楚，不要编造："


@dataclass(frozen=True)
class Passage:
    """One retrievable entry: ``text`` goes into the prompt, ``search_text`` is what BM25 indexes."""

    id: str
    text: str
    search_text: str
    questions: tuple[str, ...] = field(default=())


_JIEBA = None


def tokenizer():
    """jieba, initialised once, quietly, with its dictionary cache in the course cache."""
    global _JIEBA
    if _JIEBA is None:
        import logging

        import jieba

        from llmcourse.env.lane import cache_dir

        jieba.setLogLevel(logging.WARNING)  # "Building prefix dict ..." on every fresh kernel otherwise
        folder = cache_dir() / "jieba"
        folder.mkdir(parents=True, exist_ok=True)
        jieba.dt.tmp_dir = str(folder)
        jieba.initialize()
        _JIEBA = jieba
    return _JIEBA


def tokenize(text: str) -> list[str]:
    """jieba words of ``text``, lower-cased, without punctuation and :data:`STOP_WORDS`."""
    words = (word.strip().lower() for word in tokenizer().lcut(text or ""))
    return [word for word in words if word and not _NOISE.match(word) and word not in STOP_WORDS]


def faq_passages(path: str | Path, include_questions: bool = True) -> list[Passage]:
    """One passage per ``fact_id`` of a chat JSONL (its answer; its questions indexed too)."""
    from llmcourse.data.jsonl import load_chat_jsonl

    passages = passages_of(load_chat_jsonl(path), include_questions)
    if not passages:
        raise InputError(f"{path} 里没有可检索的内容：知识库至少要有一条带答案的对话")
    return passages


def passages_of(examples, include_questions: bool = True) -> list[Passage]:
    """:func:`faq_passages` of rows already loaded; a question asked twice (a row and its copy with
    passages, :mod:`llmcourse.data.context_rows`) is indexed once."""
    facts: dict[str, dict] = {}
    for number, example in enumerate(examples, 1):
        fact = example.meta.get("fact_id")
        if not fact:  # intent rows: each row is its own passage (a labelled example)
            key = example.meta.get("id") or f"row-{number}"
            facts[key] = {"answer": f"{example.question} → {example.answer}", "questions": []}
            continue
        entry = facts.setdefault(fact, {"answer": example.answer, "questions": []})
        if example.question not in entry["questions"]:
            entry["questions"].append(example.question)
    return [Passage(id=key, text=entry["answer"], questions=tuple(entry["questions"]),
                    search_text="\n".join([entry["answer"], *(entry["questions"] if include_questions else [])]))
            for key, entry in facts.items()]


class Retriever:
    """A built ``bm25s.BM25`` index and the passages it was built from, in the same order."""

    def __init__(self, index, passages: list[Passage], k: int = 3):
        if not passages:
            raise InputError("知识库是空的：先用 faq_passages(...) 读出至少一条资料，再建索引")
        if k < 1:
            raise InputError(f"k 必须是正整数（每个问题放进提示的资料条数），现在是 {k}")
        self.index, self.passages, self.k = index, list(passages), k

    @classmethod
    def build(cls, passages: list[Passage], k: int = 3) -> "Retriever":
        import bm25s

        if not passages:
            raise InputError("知识库是空的：先用 faq_passages(...) 读出至少一条资料，再建索引")
        index = bm25s.BM25()
        index.index([tokenize(p.search_text) for p in passages], show_progress=False)
        return cls(index, passages, k)

    def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first (fewer when the source is smaller)."""
        k = min(k or self.k, len(self.passages))
        # Words the index has never seen are dropped by bm25s; none left: every score is 0, order arbitrary.
        ids, _ = self.index.retrieve([tokenize(query)], k=k, show_progress=False)
        return [self.passages[int(i)] for i in ids[0]]

    def __call__(self, messages: list[dict]) -> tuple[list[dict], list[str]]:
        """Augmented messages and the retrieved passage ids, for :func:`llmcourse.evaluation.benchmark.run_benchmark`."""
        top = self.search(query_of(messages))
        return augment_messages(messages, top), [p.id for p in top]


def query_of(messages: list[dict]) -> str:
    """What is searched: every user turn, so a follow-up ("那生鲜呢？") keeps its topic."""
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def augment_messages(messages: list[dict], passages: list[Passage]) -> list[dict]:
    """``messages`` with the passages appended to the system message (one is added if there is none).

    The system message is where the course's models expect instructions; the user's turns stay as
    asked, so the fine-tuned model still sees the questions it was trained on.
    """
    context = "\n".join([CONTEXT_HEADER, *(f"[{n}] {p.text}" for n, p in enumerate(passages, 1))])
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{context}"
    else:
        out.insert(0, {"role": "system", "content": context})
    return out


def hit_rate(retriever: Retriever, examples, ks: tuple[int, ...] = (1, 3)) -> dict:
    """Share of ``examples`` (rows with ``fact_id``) whose own fact is among the top k passages.

    Rows without ``fact_id`` (the intent scenario) cannot be judged: ``questions`` is then 0, with a note.
    """
    rows = [e for e in examples if e.meta.get("fact_id")]
    if not rows:
        return {"questions": 0, **{f"top{k}": None for k in ks}, "misses": [],
                "note": "这些样本没有 fact_id（知识编号），无法判断检索到的是不是它自己的那条知识"}
    top = [[p.id for p in retriever.search(e.question, k=max(ks))] for e in rows]
    rates = {f"top{k}": round(sum(e.meta["fact_id"] in ids[:k] for e, ids in zip(rows, top)) / len(rows), 4)
             for k in ks}
    misses = [{"question": e.question, "fact_id": e.meta["fact_id"], "retrieved": ids[:max(ks)]}
              for e, ids in zip(rows, top) if e.meta["fact_id"] not in ids[:max(ks)]]
    return {"questions": len(rows), **rates, "misses": misses}
