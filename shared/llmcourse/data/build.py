"""From raw business files to train/val/test chat JSONL, with every dropped row accounted for.

Usage::

    from llmcourse.config import load_config
    from llmcourse.data.build import build_dataset_from_config
    report = build_dataset_from_config(load_config("day3/config.yaml"))
    report.splits           # {'train': 151, 'val': 30, 'test': 59}
    report.rejected         # {'empty': 3, 'bad_columns': 3, ..., 'near_duplicate': 9}
    print(report.summary_line())

or on the command line ``llmcourse data build day3/config.yaml [data.split_seed=7]``.

Steps, all driven by the ``data`` section of the config (:class:`llmcourse.config.DataSection`):

1. read every source (:mod:`llmcourse.data.raw`); unreadable rows are rejected, not fatal;
2. clean: strip HTML tags and entities, invisible characters, extra spaces; mask personal data
   (:mod:`llmcourse.data.pii`) when ``mask_pii``; drop questions shorter than ``min_chars`` or longer
   than ``max_chars``;
3. resolve the answer: ``faq`` / ``domain_qa`` rows that name a fact (``fact_column`` or a Markdown
   ``{#ID}``) get that fact's answer, key facts and topic from the first row that defines it;
   a fact whose key facts are not written in its answer, or not in a ``use: reference`` document
   (the policy), is rejected with every row that points to it. ``intent`` rows need a label
   from ``data.labels``; the answer is the label;
4. drop exact duplicates (same question after removing case, spaces and punctuation); a question
   seen with two different answers or labels is a conflict and all its copies are dropped;
5. drop near duplicates: pairs whose similarity (:func:`question_similarity`) reaches
   ``near_duplicate_threshold`` and that share the answer keep only the first;
6. split into train/val/test per fact (``faq``, ``domain_qa``; rows without a fact id: per answer)
   or per label (``intent``) with ``val_ratio`` / ``test_ratio`` rounded per fact, at least one row
   of each fact in train, and near-duplicate questions with different answers kept in the same
   split; facts with a single row (or group) are pooled and split at random (cannot be taught and tested);
7. check leakage: a val/test question as similar as the threshold to a train question is
   removed and listed (the split makes this zero; the check guards hand-edited data).

Outputs: ``data.train_file`` / ``eval_file`` / ``test_file`` (the day1 chat format, loadable by
:func:`llmcourse.data.jsonl.load_chat_jsonl`) and, in ``data.built_dir``, ``rejected.jsonl`` (source,
line, reason, detail, masked text of every dropped row), ``data_report.json``, ``data_report.md``
and ``length_hist.png`` (:mod:`llmcourse.data.report`). Raw files are only read; the same inputs
and settings always give byte-identical outputs.
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from llmcourse.config import ConfigError, CourseConfig, DataSection
from llmcourse.data.jsonl import DataError
from llmcourse.data.pii import mask_pii
from llmcourse.data.raw import RawProblem, RawRecord, read_source
from llmcourse.data.report import REASONS, REPORT_JSON, summarize_build, write_report
from llmcourse.artifacts import (DATA_REPORT_JSON, DATA_REPORT_MD, LENGTH_HIST, REJECTED, SPLITS,
                                 reuse_or_compute)


_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_INVISIBLE = re.compile("[\u200b-\u200f\u2028\u2029\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CJK = "\u2e80-\u9fff\u3000-\u303f\uff00-\uffef"
_SPACE_NEAR_CJK = re.compile(f"(?<=[{_CJK}])\\s+|\\s+(?=[{_CJK}])")
_REPEATED_MARK = re.compile(r"([?？!！~～。，,])\1+")


def clean_text(text: str | None) -> str:
    """Text as a learner would type it: no HTML, invisible characters, spaces around Chinese or repeated ？！."""
    if not text:
        return ""
    text = html.unescape(_TAG.sub(" ", text))
    text = " ".join(_INVISIBLE.sub("", text).split())
    return _REPEATED_MARK.sub(r"\1", _SPACE_NEAR_CJK.sub("", text))


def normalize_question(text: str) -> str:
    """Comparison key: full-width folded, lower case, letters and digits only."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(char for char in text if unicodedata.category(char)[0] in "LN")


def question_similarity(first: str, second: str) -> float:
    """0..1; 1 means the same question once case, spaces and punctuation are ignored."""
    from rapidfuzz import fuzz
    return fuzz.ratio(normalize_question(first), normalize_question(second)) / 100


def similar_pairs(queries: list[str], choices: list[str], threshold: float,
                  same_list: bool = False) -> Iterator[tuple[int, int, float]]:
    """(i, j, similarity) of normalized questions at or above ``threshold`` (i < j if ``same_list``)."""
    import numpy as np
    from rapidfuzz import fuzz, process

    if not queries or not choices:
        return
    for start in range(0, len(queries), 512):  # blocks keep memory flat on large exports
        scores = process.cdist(queries[start:start + 512], choices, scorer=fuzz.ratio,
                               score_cutoff=threshold * 100, dtype=np.float32, workers=1)
        for row, column in zip(*np.nonzero(scores >= threshold * 100)):
            i = start + int(row)
            if not same_list or i < int(column):
                yield i, int(column), round(float(scores[row, column]) / 100, 3)


@dataclass
class Example:
    """A cleaned question with its answer, on its way to a split."""

    record: RawRecord
    question: str
    answer: str = ""
    key_facts: list[str] = field(default_factory=list)
    fact_id: str | None = None
    topic: str | None = None
    label: str | None = None

    @property
    def id(self) -> str:
        return self.record.location

    @cached_property
    def key(self) -> str:
        return normalize_question(self.question)

    @property
    def target(self) -> str:
        """What the question must be answered with; duplicates are compared on it."""
        return self.label or self.fact_id or self.answer

    @property
    def stratum(self) -> str:
        """Rows that teach the same thing: a label, a fact, or else the same answer."""
        return self.label or self.fact_id or normalize_question(self.answer)

    def to_row(self, system_prompt: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id}
        for name in ("fact_id", "topic", "label"):
            if getattr(self, name):
                row[name] = getattr(self, name)
        row["key_facts"] = self.key_facts
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        row["messages"] = system + [{"role": "user", "content": self.question},
                                    {"role": "assistant", "content": self.answer}]
        return row


@dataclass
class BuildReport:
    """What one build did; ``summary`` is also written as ``data_report.json``."""

    summary: dict[str, Any]
    seconds: float
    built_dir: Path

    @property
    def splits(self) -> dict[str, int]:
        return self.summary["splits"]

    @property
    def rejected(self) -> dict[str, int]:
        return self.summary["rejected"]["by_reason"]

    @property
    def pii(self) -> dict[str, int]:
        return self.summary["pii"]["masked"]

    @property
    def leakage(self) -> dict[str, Any]:
        return self.summary["leakage"]

    @property
    def files(self) -> dict[str, str]:
        return self.summary["files"]

    def summary_line(self) -> str:
        splits = " / ".join(f"{name} {count}" for name, count in self.splits.items())
        dropped = "，".join(f"{REASONS[reason]} {count}" for reason, count in self.rejected.items()) or "无"
        return (f"数据构建完成（{self.seconds:.1f} 秒）：{splits}；拒绝 {sum(self.rejected.values())} 行（{dropped}）；"
                f"泄漏检查：{'通过' if self.leakage['passed'] else '未通过'}；报告：{self.files['report_md']}")


class _Rejections:
    """Collects dropped rows in the order they are dropped."""

    def __init__(self, mask: bool):
        self.rows: list[dict[str, Any]] = []
        self.mask = mask

    def add(self, source: str, line: int, reason: str, detail: str, text: str, part: int = 0) -> None:
        shown = mask_pii(text)[0] if self.mask else text
        entry = {"source": source, "line": line, "reason": reason, "reason_zh": REASONS[reason],
                 "detail": detail, "text": shown}
        if part:
            entry["part"] = part
        self.rows.append(entry)

    def add_record(self, record: RawRecord, reason: str, detail: str) -> None:
        self.add(record.source, record.line, reason, detail, record.question, record.part)

    def add_problem(self, problem: RawProblem) -> None:
        self.add(problem.source, problem.line, problem.reason, problem.detail, problem.text)


def _output_paths(data: DataSection) -> dict[str, Path]:
    """Check the settings a build needs; return where each output goes."""
    if not data.sources:
        raise ConfigError("data.sources 为空：在配置的 data 段里列出原始文件（参考 day3/config.yaml）")
    missing = [name for name in ("raw_dir", "built_dir") if not getattr(data, name)]
    if data.val_ratio > 0 and not data.eval_file:
        missing.append("eval_file（val_ratio > 0 时需要）")
    if data.test_ratio > 0 and not data.test_file:
        missing.append("test_file（test_ratio > 0 时需要）")
    if missing:
        raise ConfigError(f"数据构建缺少设置：data.{', data.'.join(missing)}")
    if data.scenario == "intent" and not data.labels:
        raise ConfigError("scenario: intent 需要 data.labels（允许的标签列表），例如 [查询订单, 退款退货]")
    if data.min_chars > data.max_chars:
        raise ConfigError(f"data.min_chars ({data.min_chars}) 不能大于 data.max_chars ({data.max_chars})")
    built = Path(data.built_dir)
    outputs = {"train": Path(data.train_file), "val": Path(data.eval_file) if data.val_ratio > 0 else None,
               "test": Path(data.test_file) if data.test_ratio > 0 else None,
               "rejected": built / REJECTED, "report_json": built / DATA_REPORT_JSON,
               "report_md": built / DATA_REPORT_MD, "length_hist": built / LENGTH_HIST}
    outputs = {name: path for name, path in outputs.items() if path is not None}
    raw_dir = Path(data.raw_dir).resolve()
    for path in outputs.values():
        if path.resolve().is_relative_to(raw_dir):
            raise ConfigError(f"输出文件 {path} 在 data.raw_dir（{raw_dir}）里：原始数据只读，请输出到别处，如 data/built/")
    if len({path.resolve() for path in outputs.values()}) != len(outputs):
        raise ConfigError("data.train_file / eval_file / test_file 不能指向同一个文件")
    return outputs


def _clean(reads, data: DataSection, rejections: _Rejections, pii: Counter) -> list[Example]:
    examples = []
    for read in reads:
        for problem in read.problems:
            pii.update(mask_pii(problem.text)[1])
            rejections.add_problem(problem)
        for record in read.records:
            question, answer = clean_text(record.question), clean_text(record.answer)
            key_facts = [clean_text(fact) for fact in record.key_facts or []]
            if data.mask_pii:
                question, found = mask_pii(question)
                pii.update(found)
                answer, found = mask_pii(answer)
                if record.part == 0:
                    pii.update(found)
                key_facts = [mask_pii(fact)[0] for fact in key_facts]
            else:
                pii.update(mask_pii(question)[1])
            example = Example(record, question, answer, [fact for fact in key_facts if fact],
                              clean_text(record.fact_id) or None, clean_text(record.topic) or None,
                              clean_text(record.label) or None)
            if not question:
                rejections.add_record(record, "missing_question", "问题为空")
            elif len(question) < data.min_chars or not example.key:
                rejections.add_record(record, "too_short", f"问题只有 {len(question)} 个字（min_chars={data.min_chars}）")
            elif len(question) > data.max_chars:
                rejections.add_record(record, "too_long", f"问题有 {len(question)} 个字（max_chars={data.max_chars}）")
            else:
                examples.append(example)
    return examples


def _fact_problem(example: Example, reference: str | None) -> tuple[str, str] | None:
    """Why an example cannot define (or be) a fact, or None."""
    if not example.key_facts:
        return "missing_key_facts", "没有关键信息：写出答案中必须出现的词（如 48小时）：表格用 key_facts_column，Markdown 用加粗"
    squeezed = "".join(example.answer.split())
    absent = [fact for fact in example.key_facts if "".join(fact.split()) not in squeezed]
    if absent:
        return "key_fact_not_in_answer", f"关键信息 {absent} 没有原样出现在答案里：{example.answer}"
    if reference is not None:
        absent = [fact for fact in example.key_facts if "".join(fact.split()) not in reference]
        if absent:
            return "not_in_policy", f"关键信息 {absent} 在政策文档里找不到（过期或写错？）"
    return None


def _resolve_answers(examples: list[Example], data: DataSection, reference: str | None,
                     rejections: _Rejections) -> list[Example]:
    """Give every example its answer (fact, own answer or label); drop those that have none."""
    resolved = []
    if data.scenario == "intent":
        allowed = set(data.labels or [])
        for example in examples:
            if not example.label:
                rejections.add_record(example.record, "missing_label", "没有标签")
            elif example.label not in allowed:
                rejections.add_record(example.record, "unknown_label",
                                      f"标签 '{example.label}' 不在 data.labels 里：{'、'.join(data.labels or [])}")
            else:
                example.answer, example.key_facts = example.label, [example.label]
                resolved.append(example)
        return resolved
    facts: dict[str, Example] = {}
    fact_problems: dict[str, tuple[str, str]] = {}
    blank_answers: set[str] = set()  # facts whose answer cell exists but is empty
    for example in examples:  # the first row that gives a fact an answer defines it
        if example.fact_id and example.answer and example.fact_id not in facts:
            facts[example.fact_id] = example
            problem = _fact_problem(example, reference)
            if problem:
                fact_problems[example.fact_id] = (problem[0], f"知识点 {example.fact_id}：{problem[1]}")
        elif example.fact_id and example.record.answer is not None and not example.answer:
            blank_answers.add(example.fact_id)
    for example in examples:
        if example.fact_id:
            if example.fact_id in fact_problems:
                rejections.add_record(example.record, *fact_problems[example.fact_id])
                continue
            if example.fact_id not in facts:
                detail = (f"知识点 {example.fact_id} 的答案是空的" if example.fact_id in blank_answers
                          else f"找不到知识点 {example.fact_id}：没有任何一行给出它的答案（编号写错了？）")
                rejections.add_record(example.record, "unknown_fact", detail)
                continue
            definition = facts[example.fact_id]
            example.answer, example.key_facts = definition.answer, definition.key_facts
            example.topic = example.topic or definition.topic
        elif not example.answer:
            rejections.add_record(example.record, "missing_answer", "没有答案：既没有答案列，也没有关联知识点")
            continue
        else:
            problem = _fact_problem(example, reference)
            if problem:
                rejections.add_record(example.record, *problem)
                continue
        if len(example.answer) > data.max_chars:
            rejections.add_record(example.record, "too_long", f"答案有 {len(example.answer)} 个字（max_chars={data.max_chars}）")
            continue
        resolved.append(example)
    return resolved


def _drop_duplicates(examples: list[Example], rejections: _Rejections) -> list[Example]:
    targets: dict[str, set[str]] = defaultdict(set)
    for example in examples:
        targets[example.key].add(example.target)
    first: dict[str, Example] = {}
    kept = []
    for example in examples:
        if len(targets[example.key]) > 1:
            rejections.add_record(example.record, "conflict",
                                  f"同一个问题对应不同的答案/标签：{' / '.join(sorted(targets[example.key]))}；请人工确认")
        elif example.key in first:
            rejections.add_record(example.record, "duplicate", f"与 {first[example.key].id} 重复")
        else:
            first[example.key] = example
            kept.append(example)
    return kept


def _drop_near_duplicates(examples: list[Example], threshold: float,
                          rejections: _Rejections) -> tuple[list[Example], list[dict[str, Any]], list[tuple[int, int]]]:
    """Keep the first of each near-duplicate pair with one answer; link pairs with different answers."""
    keys = [example.key for example in examples]
    removed: set[int] = set()
    pairs, links = [], []
    for i, j, score in sorted(similar_pairs(keys, keys, threshold, same_list=True), key=lambda pair: (pair[1], pair[0])):
        if i in removed or j in removed:
            continue
        if examples[i].target == examples[j].target:
            removed.add(j)
            rejections.add_record(examples[j].record, "near_duplicate", f"与 {examples[i].id} 近似（相似度 {score}）")
            pairs.append({"kept": examples[i].id, "removed": examples[j].id, "similarity": score,
                          "kept_question": examples[i].question, "removed_question": examples[j].question})
        else:
            links.append((i, j))
    kept_index = {old: new for new, old in enumerate(i for i in range(len(examples)) if i not in removed)}
    links = [(kept_index[i], kept_index[j]) for i, j in links if i in kept_index and j in kept_index]
    return [example for i, example in enumerate(examples) if i not in removed], pairs, links


def _groups(count: int, links: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the near-duplicate links, in order of first member."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in links:
        parent[max(root(i), root(j))] = min(root(i), root(j))
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(count):
        members[root(i)].append(i)
    return list(members.values())


def _split(examples: list[Example], links: list[tuple[int, int]], data: DataSection) -> dict[str, list[Example]]:
    by_stratum: dict[str, list[list[int]]] = defaultdict(list)
    for group in _groups(len(examples), links):
        by_stratum[examples[group[0]].stratum].append(group)
    # A fact with a single group of rows cannot be both taught and tested: such groups are split at random together.
    singles = [stratum for stratum, groups in by_stratum.items() if len(groups) == 1]
    for stratum in singles:
        by_stratum[""] += by_stratum.pop(stratum)
    assigned: dict[int, str] = {}
    for stratum in sorted(by_stratum):
        groups = by_stratum[stratum]
        random.Random(f"{data.split_seed}/{stratum}").shuffle(groups)
        size = sum(len(group) for group in groups)
        want = {"test": math.floor(size * data.test_ratio + 0.5), "val": math.floor(size * data.val_ratio + 0.5)}
        got = Counter()
        for group in groups:
            name = next((split for split in ("test", "val") if got[split] < want[split]), "train")
            got[name] += len(group)
            assigned.update({i: name for i in group})
        if not got["train"]:  # every fact or label must be taught
            assigned.update({i: "train" for i in groups[-1]})
    splits = {name: [] for name in SPLITS}
    for i, example in enumerate(examples):
        splits[assigned[i]].append(example)
    return splits


def _check_leakage(splits: dict[str, list[Example]], threshold: float,
                   rejections: _Rejections) -> tuple[dict[str, Any], dict[str, list[Example]]]:
    train_keys = [example.key for example in splits["train"]]
    found, closest = [], []
    cleaned = {"train": splits["train"]}
    for name in ("val", "test"):
        keys = [example.key for example in splits[name]]
        leaks = {}
        for i, j, score in similar_pairs(keys, train_keys, threshold):
            leaks.setdefault(i, (j, score))
        for i, (j, score) in sorted(leaks.items()):
            found.append({"split": name, "id": splits[name][i].id, "train_id": splits["train"][j].id, "similarity": score,
                          "question": splits[name][i].question, "train_question": splits["train"][j].question})
            rejections.add_record(splits[name][i].record, "leakage",
                                  f"{name} 问题与训练集 {splits['train'][j].id} 近似（相似度 {score}）")
        cleaned[name] = [example for i, example in enumerate(splits[name]) if i not in leaks]
        closest += _closest_pairs(splits[name], splits["train"], name)
    closest = sorted(closest, key=lambda pair: -pair["similarity"])[:5]
    return {"threshold": threshold, "pairs_found": found, "removed": len(found), "passed": not found,
            "closest_pairs": closest}, cleaned


def _closest_pairs(examples: list[Example], train: list[Example], name: str) -> list[dict[str, Any]]:
    """For each held-out question its most similar train question: what the learner should look at."""
    from rapidfuzz import fuzz, process

    pairs = []
    train_keys = [example.key for example in train]
    for example in examples:
        match = process.extractOne(example.key, train_keys, scorer=fuzz.ratio) if train_keys else None
        if match:
            pairs.append({"split": name, "id": example.id, "question": example.question,
                          "train_id": train[match[2]].id, "train_question": train[match[2]].question,
                          "similarity": round(match[1] / 100, 3)})
    return pairs


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    partial.replace(path)


def build_dataset_from_config(cfg: CourseConfig) -> BuildReport:
    """Run every step on ``cfg.data``; write the splits, rejected rows and the report."""

    started = time.perf_counter()
    data = cfg.data
    outputs = _output_paths(data)
    reads = [read_source(source, data.raw_dir) for source in data.sources]
    references = [read.reference_text for read in reads if read.use == "reference"]
    reference = "".join("".join(clean_text(text).split()) for text in references) if references else None
    rejections, pii = _Rejections(data.mask_pii), Counter()
    examples = _clean(reads, data, rejections, pii)
    examples = _resolve_answers(examples, data, reference, rejections)
    examples = _drop_duplicates(examples, rejections)
    examples, near_pairs, links = _drop_near_duplicates(examples, data.near_duplicate_threshold, rejections)
    splits = _split(examples, links, data)
    leakage, splits = _check_leakage(splits, data.near_duplicate_threshold, rejections)
    system_prompt = data.filled_system_prompt()
    for name in SPLITS:
        if name in outputs:
            _write_jsonl(outputs[name], [example.to_row(system_prompt) for example in splits[name]])
    _write_jsonl(outputs["rejected"], rejections.rows)
    summary = summarize_build(data, reads, splits, rejections.rows, pii, near_pairs, leakage, outputs)
    write_report(summary, splits, outputs)
    report = BuildReport(summary, time.perf_counter() - started, Path(data.built_dir))
    if not splits["train"]:
        problem = f"{outputs['train']}: 清洗后没有任何可用样本；原因见 {outputs['rejected']} 与 {outputs['report_md']}"
        raise DataError(outputs["train"], [problem])
    return report


def build_or_reuse(cfg: CourseConfig) -> BuildReport:
    """:func:`build_dataset_from_config`, except under nbgrader, where the learner's built data is reused
    as it is: the grader scores what the learner built, and an untouched notebook run by the grader
    builds nothing for them."""

    path = Path(cfg.data.built_dir) / REPORT_JSON
    return reuse_or_compute("构建数据", path, compute=lambda: build_dataset_from_config(cfg),
                            hint="请在提交前运行构建数据的单元格",
                            load=lambda: BuildReport(json.loads(path.read_text(encoding="utf-8")), 0.0,
                                                     Path(cfg.data.built_dir)))


def build_dataset(config_path: str | Path, **overrides: Any) -> BuildReport:
    """Load a config (with ``section.field`` overrides) and build its dataset."""
    from llmcourse.config import load_config
    return build_dataset_from_config(load_config(config_path, **overrides))
