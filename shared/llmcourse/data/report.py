"""The data report of ``llmcourse data build``: JSON for graders, Markdown and a histogram for people.

Usage::

    from llmcourse.data.build import build_dataset
    from llmcourse.data.report import show_report, load_rejected
    report = build_dataset("day3/config.yaml")
    show_report(report)                          # in a notebook: the Markdown report and the histogram
    show_report("day3/data/built")               # the same from the files of an earlier build
    load_rejected("day3/data/built", "too_long") # the dropped rows of one reason

Files written into ``data.built_dir``: ``data_report.json`` (counts per source, split and reason,
PII counts, lengths, class balance, near-duplicate pairs, the leakage check), ``data_report.md``
(the same in Chinese tables) and ``length_hist.png`` (question and answer lengths in characters).
Nothing time-dependent is written, so rebuilding unchanged data leaves the files byte-identical.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from llmcourse.artifacts import DATA_REPORT_JSON, DATA_REPORT_MD, LENGTH_HIST, REJECTED, SPLITS
from llmcourse.data.pii import KIND_NAMES, PLACEHOLDERS

# Why a row was dropped: key → the reader's word for it (build tags rows, the report counts them).
REASONS = {
    "empty": "空行",
    "bad_columns": "列数不对",
    "bad_row": "无法解析的行",
    "encoding": "编码错误",
    "missing_question": "缺少问题",
    "too_short": "太短",
    "too_long": "太长",
    "missing_answer": "没有答案",
    "unknown_fact": "知识点不存在或没有答案",
    "missing_key_facts": "缺少关键信息",
    "key_fact_not_in_answer": "关键信息不在答案里",
    "not_in_policy": "与政策文档不符",
    "missing_label": "缺少标签",
    "unknown_label": "未知标签",
    "duplicate": "完全重复",
    "conflict": "同一问题答案/标签冲突",
    "near_duplicate": "近似重复",
    "leakage": "与训练集近似（防泄漏）",
}

REPORT_JSON = DATA_REPORT_JSON
REPORT_MD = DATA_REPORT_MD
LENGTH_HIST = LENGTH_HIST
REJECTED = REJECTED


def _lengths(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarize_build(data, reads, splits, rejected_rows, pii: Counter, near_pairs, leakage, outputs) -> dict[str, Any]:
    """Everything ``data_report.json`` holds, from the pieces the build produced."""

    kept_by_source = Counter(example.record.source for name in SPLITS for example in splits[name])
    rejected_by_source: dict[str, Counter] = {}
    for row in rejected_rows:
        rejected_by_source.setdefault(row["source"], Counter())[row["reason"]] += 1
    by_reason = Counter(row["reason"] for row in rejected_rows)
    examples = [example for name in SPLITS for example in splits[name]]
    category = "label" if data.scenario == "intent" else "topic"
    balance = {name: dict(sorted(Counter(getattr(e, category) or "（无）" for e in splits[name]).items()))
               for name in SPLITS}
    facts_in_train = {e.fact_id for e in splits["train"] if e.fact_id}
    held_out_facts = {e.fact_id for name in ("val", "test") for e in splits[name] if e.fact_id}
    warnings = [f"{name} 为空" for name in SPLITS if name in outputs and not splits[name]]
    return {
        "scenario": data.scenario,
        "settings": {name: getattr(data, name) for name in ("val_ratio", "test_ratio", "split_seed", "min_chars",
                                                             "max_chars", "mask_pii", "near_duplicate_threshold")},
        "sources": [{"path": read.source, "kind": read.kind, "use": read.use, "rows": read.rows,
                     "records": len(read.records), "kept": kept_by_source[read.source],
                     "rejected": sum(rejected_by_source.get(read.source, Counter()).values())} for read in reads],
        "splits": {name: len(splits[name]) for name in SPLITS},
        "rejected": {"total": len(rejected_rows),
                     "by_reason": {reason: by_reason[reason] for reason in REASONS if by_reason[reason]},
                     "by_source": {source: dict(counts) for source, counts in rejected_by_source.items()}},
        "pii": {"masked": {kind: pii[kind] for kind in PLACEHOLDERS}, "enabled": data.mask_pii},
        "lengths": {"question": _lengths([len(e.question) for e in examples]),
                    "answer": _lengths([len(e.answer) for e in examples])},
        "balance": {"by": category, **balance},
        "facts": {"total": len({e.fact_id for e in examples if e.fact_id}), "in_train": len(facts_in_train),
                  "held_out_without_train": sorted(held_out_facts - facts_in_train)},
        "near_duplicates": {"threshold": data.near_duplicate_threshold, "removed": len(near_pairs), "pairs": near_pairs},
        "leakage": leakage,
        "files": {name: str(path) for name, path in outputs.items()},
        "warnings": warnings,
    }


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(summary: dict[str, Any]) -> str:
    """The report in Chinese Markdown tables."""
    splits = summary["splits"]
    overview = (f"训练集 **{splits['train']}** 条，验证集 **{splits['val']}** 条，测试集 **{splits['test']}** 条；"
                f"拒绝 **{summary['rejected']['total']}** 行（每行的位置、原因和原文见 `{REJECTED}`）。")
    lines = [f"# 数据构建报告（场景：{summary['scenario']}）", "", overview, ""]
    lines += [f"> 注意：{warning}" for warning in summary["warnings"]]
    lines += ["## 各来源", "", "| 文件 | 类型 | 读取行数 | 问题数 | 保留 | 拒绝 |", "|---|---|---|---|---|---|"]
    for source in summary["sources"]:
        kind = source["kind"] + ("（参考文档）" if source["use"] == "reference" else "")
        lines.append(f"| {_cell(source['path'])} | {kind} | {source['rows']} | {source['records']} | {source['kept']} "
                     f"| {source['rejected']} |")
    lines += ["", "读取行数：原始文件的行；问题数：其中读出的问题（一行的“相似问法”各算一个）。"]
    lines += ["", "## 拒绝原因", "", "| 原因 | 代码 | 行数 |", "|---|---|---|"]
    lines += [f"| {REASONS[reason]} | `{reason}` | {count} |" for reason, count in summary["rejected"]["by_reason"].items()]
    pii = summary["pii"]
    lines += ["", "## 隐私信息", "", "已替换为占位符：" if pii["enabled"] else "**未开启脱敏**（mask_pii: false），发现：",
              "", "| 类型 | 占位符 | 次数 |", "|---|---|---|"]
    lines += [f"| {KIND_NAMES[kind]} | `{PLACEHOLDERS[kind]}` | {count} |" for kind, count in pii["masked"].items()]
    lines += ["", "姓名、地址等无法用规则可靠识别，请人工抽查。", "", "## 长度（字数）", "",
              "| | 最短 | 中位数 | 最长 |", "|---|---|---|---|"]
    names = {"question": "问题", "answer": "答案"}
    lines += [f"| {names[part]} | {v['min']} | {v['median']} | {v['max']} |" for part, v in summary["lengths"].items()]
    lines += ["", f"![长度分布]({LENGTH_HIST})", ""]
    balance = summary["balance"]
    categories = sorted(set().union(*(balance[name] for name in ("train", "val", "test"))))
    lines += [f"## 类别分布（按{'标签' if balance['by'] == 'label' else '主题'}）", "",
              "| 类别 | train | val | test |", "|---|---|---|---|"]
    lines += [f"| {_cell(c)} | {balance['train'].get(c, 0)} | {balance['val'].get(c, 0)} | {balance['test'].get(c, 0)} |"
              for c in categories]
    facts = summary["facts"]
    if facts["total"]:
        missing = "、".join(facts["held_out_without_train"]) or "无"
        lines += ["", f"知识点 {facts['total']} 个，训练集覆盖 {facts['in_train']} 个；只出现在验证/测试集的知识点：{missing}。"]
    near = summary["near_duplicates"]
    lines += ["", f"## 近似重复（相似度 ≥ {near['threshold']}）", "", f"删除 {near['removed']} 条。"]
    if near["pairs"]:
        lines += ["", "| 保留 | 删除 | 相似度 |", "|---|---|---|"]
        lines += [f"| {_cell(p['kept_question'])} | {_cell(p['removed_question'])} | {p['similarity']} |"
                  for p in near["pairs"][:10]]
    leak = summary["leakage"]
    verdict = "**通过**：验证/测试集里没有与训练集近似的问题。" if leak["passed"] else \
        f"**发现 {len(leak['pairs_found'])} 对**近似问题，已从验证/测试集删除。"
    lines += ["", f"## 泄漏检查（相似度 ≥ {leak['threshold']}）", "", verdict, ""]
    if leak["pairs_found"]:
        lines += ["| 划分 | 问题 | 训练集问题 | 相似度 |", "|---|---|---|---|"]
        lines += [f"| {p['split']} | {_cell(p['question'])} | {_cell(p['train_question'])} | {p['similarity']} |"
                  for p in leak["pairs_found"][:10]]
        lines.append("")
    if leak["closest_pairs"]:
        lines += ["最相近的保留问题对（低于阈值：同一知识点的不同问法，正是测试要考的）：", "",
                  "| 划分 | 问题 | 最相近的训练集问题 | 相似度 |", "|---|---|---|---|"]
        lines += [f"| {p['split']} | {_cell(p['question'])} | {_cell(p['train_question'])} | {p['similarity']} |"
                  for p in leak["closest_pairs"]]
    lines += ["", "## 输出文件", ""] + [f"- `{name}`: {path}" for name, path in summary["files"].items()]
    return "\n".join(lines) + "\n"


def plot_lengths(question_lengths: list[int], answer_lengths: list[int], path: str | Path) -> Path:
    """Two histograms of lengths in characters (axis text in English: no CJK font is assumed)."""
    from matplotlib.figure import Figure  # no pyplot: headless and thread-safe

    figure = Figure(figsize=(8, 3))
    for ax, values, title in zip(figure.subplots(1, 2), (question_lengths, answer_lengths), ("questions", "answers")):
        ax.hist(values or [0], bins=20, color="#4a7")
        ax.set_title(f"{title} (n={len(values)})")
        ax.set_xlabel("characters")
        ax.set_ylabel("rows")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    return Path(path)


def write_report(summary: dict[str, Any], splits, outputs: dict[str, Path]) -> None:
    examples = [example for part in splits.values() for example in part]
    outputs["report_json"].write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    outputs["report_md"].write_text(render_markdown(summary), encoding="utf-8")
    plot_lengths([len(e.question) for e in examples], [len(e.answer) for e in examples], outputs["length_hist"])


def _built_dir(report_or_dir) -> Path:
    return Path(getattr(report_or_dir, "built_dir", report_or_dir))


def load_rejected(report_or_dir, reason: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``rejected.jsonl``, optionally only one reason code (e.g. ``near_duplicate``)."""
    path = _built_dir(report_or_dir) / REJECTED
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if reason is None or row["reason"] == reason]


def show_report(report_or_dir) -> None:
    """Display the Markdown report and the length histogram (prints the Markdown outside Jupyter)."""
    folder = _built_dir(report_or_dir)
    text = (folder / REPORT_MD).read_text(encoding="utf-8")
    try:
        from IPython import get_ipython
        from IPython.display import Image, Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    display(Markdown(text.replace(f"![长度分布]({LENGTH_HIST})", "")))
    display(Image(filename=str(folder / LENGTH_HIST)))
