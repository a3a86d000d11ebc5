"""Four arms on the same cases: base, base + retrieval, fine-tuned, fine-tuned + retrieval.

Usage::

    from llmcourse.evaluation.benchmark import run_benchmark
    from llmcourse.evaluation.arms import arms_table, arms_findings, write_arms
    table = run_benchmark(cfg, cases, adapter_dir, "runs/benchmark", retriever=retriever)  # writes arms.* too
    summary = arms_table(table, cases, kinds=["faq"])    # one row per arm
    print("\\n".join(arms_findings(summary)))             # sentences read off the measured numbers
    write_arms("runs/benchmark")                          # arms.csv + arms.md from benchmark.csv + cases.jsonl

The scores are :mod:`llmcourse.evaluation.scoring`'s: ``keyfact_score`` is the mean automatic score
(the share of key facts present), ``fully_correct`` counts the answers with every key fact (or the
label) in them, over the cases that have key facts or a label (``scored``); open cases (a reference
only) have no "fully correct". ``latency_s`` and ``prompt_tokens`` are means per answer: what the
passages in the prompt cost. Nothing in the findings is a number the table does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmcourse.artifacts import BENCHMARK_CSV
from llmcourse.errors import InputError, RunMissing

ARMS = {"base": "原始模型", "base+rag": "原始模型 + 检索", "fine_tuned": "微调模型", "fine_tuned+rag": "微调模型 + 检索"}
ARMS_CSV, ARMS_MD = "arms.csv", "arms.md"
COLUMNS = ["arm", "label", "cases", "scored", "fully_correct", "fully_correct_share", "keyfact_score",
           "latency_s", "prompt_tokens", "output_tokens"]


def arms_table(table, cases: list[dict], kinds: list[str] | None = None):
    """One row per arm (in :data:`ARMS` order) over ``cases`` (only those of ``kinds``, if given)."""
    import pandas as pd

    by_id = {case["case_id"]: case for case in cases}
    scorable = {cid for cid, case in by_id.items() if case.get("key_facts") or case.get("label")}
    picked = table[table.case_id.isin(by_id)]
    if kinds is not None:
        picked = picked[picked.kind.isin(kinds)]
    missing = [arm for arm in ARMS if arm not in set(picked.model)]
    if missing or picked.empty:
        raise InputError(f"对比表里缺少这些组：{missing or list(ARMS)}；请用 run_benchmark(..., retriever=...) "
                         "让四组回答同一批用例" + (f"（用例类型 {kinds}）" if kinds else ""))
    rows = []
    for arm, label in ARMS.items():
        group = picked[picked.model == arm]
        scored = group[group.case_id.isin(scorable)]
        correct = int((scored.auto_score >= 1 - 1e-9).sum())
        rows.append({"arm": arm, "label": label, "cases": int(group.case_id.nunique()), "scored": len(scored),
                     "fully_correct": correct,
                     "fully_correct_share": round(correct / len(scored), 4) if len(scored) else None,
                     "keyfact_score": round(float(scored.auto_score.mean()), 4) if len(scored) else None,
                     "latency_s": round(float(group.latency_s.mean()), 3),
                     "prompt_tokens": round(float(group.prompt_tokens.mean()), 1),
                     "output_tokens": round(float(group.output_tokens.mean()), 1)})
    return pd.DataFrame(rows, columns=COLUMNS)


def arms_markdown(summary) -> str:
    lines = ["| 组 | 用例数 | 全对 | 全对比例 | 关键事实命中率 | 平均延迟 (s) | 平均提示 token | 平均回答 token |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary.itertuples():
        share = "—" if row.fully_correct_share is None or row.fully_correct_share != row.fully_correct_share \
            else f"{row.fully_correct_share:.1%}"
        score = "—" if row.keyfact_score is None or row.keyfact_score != row.keyfact_score else f"{row.keyfact_score:.3f}"
        lines.append(f"| {row.label} | {row.cases} | {row.fully_correct}/{row.scored} | {share} | {score} | "
                     f"{row.latency_s:.2f} | {row.prompt_tokens:.0f} | {row.output_tokens:.0f} |")
    return "\n".join(lines) + "\n"


def write_arms(out_dir: str | Path, kinds: list[str] | None = None):
    """``arms.csv`` and ``arms.md`` (the table and its findings) from a benchmark folder's files."""
    import pandas as pd

    out = Path(out_dir)
    csv, cases_file = out / BENCHMARK_CSV, out / "cases.jsonl"
    if not csv.is_file() or not cases_file.is_file():
        raise RunMissing(f"{out} 里没有 {BENCHMARK_CSV} 和 cases.jsonl：先运行四组对比的单元格")
    cases = [json.loads(line) for line in cases_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary = arms_table(pd.read_csv(csv), cases, kinds)
    summary.to_csv(out / ARMS_CSV, index=False)
    findings = "\n".join(f"- {line}" for line in arms_findings(summary))
    (out / ARMS_MD).write_text(arms_markdown(summary) + "\n" + findings + "\n", encoding="utf-8")
    return summary


def _points(a: float, b: float) -> str:
    """b - a in percentage points, signed."""
    return f"{(b - a) * 100:+.1f} 个百分点"


def arms_findings(summary) -> list[str]:
    """Sentences read off an :func:`arms_table`: which arm gets the facts right, what fine-tuning and
    retrieval each add, and what the passages cost in prompt tokens and latency."""
    rows = {row.arm: row for row in summary.itertuples()}
    if any(rows[arm].fully_correct_share is None for arm in ARMS):
        return ["这批用例没有关键事实或标签，无法比较“全对”：加几个带 key_facts 的用例再比。"]
    share = {arm: float(rows[arm].fully_correct_share) for arm in ARMS}
    n = rows["base"].scored
    best = max(ARMS, key=lambda arm: (share[arm], -rows[arm].prompt_tokens))
    lines = [f"事实最准的是 **{ARMS[best]}**：{rows[best].fully_correct}/{n} 个用例全对（{share[best]:.1%}）。"
             + ("" if sum(share[a] == share[best] for a in ARMS) == 1 else "（与它并列的组里，它的提示最短。）")]
    tuned, retrieved = share["fine_tuned"] - share["base"], share["base+rag"] - share["base"]
    lines.append(f"只微调：{share['base']:.1%} → {share['fine_tuned']:.1%}（{_points(share['base'], share['fine_tuned'])}）；"
                 f"只检索：{share['base']:.1%} → {share['base+rag']:.1%}（{_points(share['base'], share['base+rag'])}）；"
                 f"微调后再检索：{share['fine_tuned']:.1%} → {share['fine_tuned+rag']:.1%}"
                 f"（{_points(share['fine_tuned'], share['fine_tuned+rag'])}）。")
    plain = (rows["base"].prompt_tokens + rows["fine_tuned"].prompt_tokens) / 2
    augmented = (rows["base+rag"].prompt_tokens + rows["fine_tuned+rag"].prompt_tokens) / 2
    slow = (rows["base"].latency_s + rows["fine_tuned"].latency_s) / 2
    slow_rag = (rows["base+rag"].latency_s + rows["fine_tuned+rag"].latency_s) / 2
    lines.append(f"检索的代价：每个问题的提示从平均 {plain:.0f} 个 token 变成 {augmented:.0f} 个"
                 f"（{augmented / plain:.1f} 倍），平均延迟 {slow:.2f} s → {slow_rag:.2f} s。" if plain and slow else
                 f"检索的代价：每个问题的提示平均多 {augmented - plain:.0f} 个 token。")
    if tuned > retrieved:
        lines.append("这里微调比单独检索带来的更多：原始模型即使看到资料也不会照着答（不会按口径回答、不会用资料），"
                     "要先微调让它学会这个业务的回答方式。")
    elif retrieved > tuned:
        lines.append("这里单独检索比微调带来的更多：模型本来就会照着资料回答，事实放进提示比训练进权重更准，"
                     "事实常变、需要说明出处时，先做检索。")
    else:
        lines.append("这里微调和单独检索带来的提升一样多。")
    gain = share["fine_tuned+rag"] - max(share["fine_tuned"], share["base+rag"])
    if gain > 0:
        lines.append(f"两者叠加最好（比单用其中更好的一个 {_points(0, gain)}）：微调管回答的方式和口径，检索管事实；"
                     "代价是更长的提示。")
    elif share["fine_tuned+rag"] < share["fine_tuned"]:
        lines.append("微调模型加上检索反而变差：检查没命中的资料（检索的 top-k 命中率），或者模型没学会使用提示里的资料"
                     "（训练数据里没有带资料的样本）。")
    else:
        lines.append("叠加检索没有比单用其中一个更好：看一看两组都答错的用例，是检索没找到，还是模型没用上。")
    return lines
