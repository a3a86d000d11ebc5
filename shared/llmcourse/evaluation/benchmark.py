"""Base vs fine-tuned × engine on the same cases → ``generations.jsonl``, ``benchmark.csv``, plots.

Usage::

    from llmcourse.evaluation.benchmark import run_benchmark, summary_table, plot_benchmark
    table = run_benchmark(cfg, cases, adapter_dir="runs/day1/adapter", out_dir="bench")
    print(summary_table(table))          # Markdown: one row per model and engine
    plot_benchmark(table, "bench")        # quality.png, latency.png, memory.png

Files written to ``out_dir`` (the artifact contract of Day 2):
``cases.jsonl`` (the cases used), ``generations.jsonl`` (one answer per case, model and engine),
``benchmark.csv`` (columns in :data:`COLUMNS`), ``summary.md`` and the plots.
Memory is the peak while that model answered all cases ("unavailable" where it cannot be measured).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmcourse.artifacts import BENCHMARK_CSV, BENCHMARK_SUMMARY, GENERATIONS, reuse_or_compute
from llmcourse.evaluation.cases import question_of
from llmcourse.config import CourseConfig
from llmcourse.inference.engines import default_engines, load_engine
from llmcourse.inference.monitor import ResourceMonitor
from llmcourse.evaluation.scoring import auto_score, rouge_l

COLUMNS = ["model", "engine", "case_id", "kind", "auto_score", "rouge_l", "latency_s", "ttft_s",
           "prompt_tokens", "output_tokens", "tokens_per_s", "peak_memory_mb", "memory_kind"]
RAG = "+rag"  # the retrieval arms: "base+rag", "fine_tuned+rag"


def run_benchmark(cfg: CourseConfig, cases: list[dict], adapter_dir: str | Path, out_dir: str | Path,
                  engines: list[str] | None = None, batch_size: int | None = None, retriever=None):
    """Answer every case with the base and the fine-tuned model on each engine; write the files.

    With ``retriever`` (a callable: messages -> (augmented messages, passage ids), e.g.
    :class:`llmcourse.inference.retrieval.Retriever`) each model also answers the augmented prompts:
    four arms, ``model`` = base, base+rag, fine_tuned, fine_tuned+rag (:data:`RAG`); the retrieved
    ids are saved with each answer, and ``arms.csv`` / ``arms.md`` (:mod:`llmcourse.evaluation.arms`)
    are written too. Both prompt sets of a model share one load: its peak memory covers both.
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "cases.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(case, ensure_ascii=False) + "\n" for case in cases)
    rows, generations = [], []
    arms = {"": ([case["messages"] for case in cases], [None] * len(cases))}
    if retriever is not None:  # retrieval runs once; every model then sees the same augmented prompts
        augmented = [retriever(case["messages"]) for case in cases]
        arms[RAG] = ([messages for messages, _ in augmented], [ids for _, ids in augmented])
    for engine_name in engines or default_engines():
        for base_name, adapter in (("base", None), ("fine_tuned", adapter_dir)):
            with ResourceMonitor(cfg.model.device) as monitor:
                engine = load_engine(cfg, adapter, engine=engine_name)
                answered = {suffix: engine.generate(prompts, batch_size=batch_size, progress=True)
                            for suffix, (prompts, _) in arms.items()}
            del engine
            for suffix, results in answered.items():
                _record(rows, generations, cases, results, arms[suffix][1], base_name + suffix, engine_name, monitor)
    with (out / GENERATIONS).open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(g, ensure_ascii=False) + "\n" for g in generations)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(out / BENCHMARK_CSV, index=False)
    (out / BENCHMARK_SUMMARY).write_text(summary_table(table), encoding="utf-8")
    if retriever is not None:
        from llmcourse.evaluation.arms import write_arms
        write_arms(out)
    return table


def _record(rows: list, generations: list, cases: list[dict], results: list, retrieved: list,
            model_name: str, engine_name: str, monitor) -> None:
    """One generation and one table row per case (the table is recomputable from the generations)."""
    for case, result, ids in zip(cases, results, retrieved):
        generations.append({"model": model_name, "engine": engine_name, "case_id": case["case_id"],
                            "question": question_of(case), **result.to_dict(),
                            **({"retrieved": ids} if ids is not None else {})})
        rows.append({"model": model_name, "engine": engine_name, "case_id": case["case_id"],
                     "kind": case.get("kind", ""), "auto_score": auto_score(case, result.text),
                     "rouge_l": rouge_l(result.text, case.get("reference", "")),
                     "latency_s": result.latency_s, "ttft_s": result.ttft_s,
                     "prompt_tokens": result.prompt_tokens, "output_tokens": result.output_tokens,
                     "tokens_per_s": result.tokens_per_s, "peak_memory_mb": monitor.summary["peak_memory_mb"],
                     "memory_kind": monitor.summary["memory_kind"]})


def benchmark_or_reuse(cfg: CourseConfig, cases: list[dict], adapter_dir: str | Path, out_dir: str | Path,
                       **kwargs):
    """:func:`run_benchmark`, except under nbgrader, where the saved ``benchmark.csv`` is reused."""
    import pandas as pd

    csv = Path(out_dir) / BENCHMARK_CSV
    return reuse_or_compute("基准结果", csv, compute=lambda: run_benchmark(cfg, cases, adapter_dir, out_dir, **kwargs),
                            load=lambda: pd.read_csv(csv))


def compare_batch_sizes(engine, prompts: list[list[dict]], sizes=(1, 4, 8)):
    """Output tokens/s of the same prompts at each batch size (1 = one prompt at a time)."""
    import time

    import pandas as pd

    rows = []
    for size in sizes:
        with ResourceMonitor(engine.cfg.model.device) as monitor:
            started = time.perf_counter()
            results = engine.generate(prompts, batch_size=size)
            seconds = time.perf_counter() - started
        tokens = sum(r.output_tokens for r in results)
        rows.append({"batch_size": size, "output_tokens": tokens, "seconds": round(seconds, 2),
                     "tokens_per_s": round(tokens / seconds, 1),
                     "mean_latency_s": round(sum(r.latency_s for r in results) / len(results), 2),
                     "peak_memory_mb": monitor.summary["peak_memory_mb"]})
    table = pd.DataFrame(rows)
    table["speedup"] = (table.tokens_per_s / table.tokens_per_s.iloc[0]).round(2)
    return table


def compare_engines(engines: dict, prompts: list[list[dict]], sizes=(1, 16)):
    """The same prompts through each engine at each batch size: speed, time to first token, memory.

    Returns ``(table, answers)``: one row per engine and batch size (``tokens_per_s`` = all output
    tokens / wall time; ``ttft_s`` and ``ms_per_output_token`` = means over requests, the latter
    (latency - TTFT) / (tokens - 1); ``peak_memory_mb`` = peak RSS of this process and its children
    while that engine answered: vLLM's engine runs in a child process; shared pages count once per
    process, so it is an upper bound), and ``answers[engine]`` = the answers at the largest batch size.
    """
    import time

    import pandas as pd

    rows, answers = [], {}
    for name, engine in engines.items():
        for size in sizes:
            with ResourceMonitor(engine.cfg.model.device, include_children=True) as monitor:
                started = time.perf_counter()
                results = engine.generate(prompts, batch_size=size)
                seconds = time.perf_counter() - started
            tokens = sum(r.output_tokens for r in results)
            ttfts = [r.ttft_s for r in results if r.ttft_s is not None]
            per_token = [(r.latency_s - r.ttft_s) / (r.output_tokens - 1) for r in results
                         if r.ttft_s is not None and r.output_tokens > 1]
            rows.append({"engine": name, "batch_size": size, "prompts": len(prompts), "output_tokens": tokens,
                         "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                         "ttft_s": round(sum(ttfts) / len(ttfts), 3) if ttfts else None,
                         "ms_per_output_token": round(1000 * sum(per_token) / len(per_token), 1) if per_token else None,
                         "peak_memory_mb": monitor.summary["peak_memory_mb"]})
            answers[name] = results
    return pd.DataFrame(rows), answers


def compare_answers(first: list, second: list):
    """Greedy answers of two engines, token by token: per prompt, identical or the first differing token."""
    import pandas as pd

    rows = []
    for index, (a, b) in enumerate(zip(first, second)):
        ids_a, ids_b = a.token_ids or [], b.token_ids or []
        differ = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y),
                      None if len(ids_a) == len(ids_b) else min(len(ids_a), len(ids_b)))
        rows.append({"prompt": index, "identical": differ is None, "first_difference_at": differ,
                     "same_text": a.text == b.text,  # same tokens, other text = a detokenizer difference
                     "tokens_a": len(ids_a), "tokens_b": len(ids_b), "text_a": a.text, "text_b": b.text})
    return pd.DataFrame(rows)


def engine_findings(table) -> list[str]:
    """Sentences read off a :func:`compare_engines` table (nothing here is a number we did not measure)."""
    lines = []
    engines = list(dict.fromkeys(table.engine))
    if len(engines) < 2:
        return ["只测了一个引擎，没有可比较的数字。"]
    base, other = engines[0], engines[1]
    for size in sorted(set(table.batch_size)):
        a = table[(table.engine == base) & (table.batch_size == size)].iloc[0]
        b = table[(table.engine == other) & (table.batch_size == size)].iloc[0]
        ratio = b.tokens_per_s / a.tokens_per_s if a.tokens_per_s else float("nan")
        lines.append(f"批大小 {size}：{other} {b.tokens_per_s} tokens/s，{base} {a.tokens_per_s} tokens/s，"
                     f"{other} 是 {base} 的 {ratio:.2f} 倍。")
    for name in engines:
        rows = table[table.engine == name].sort_values("batch_size")
        small, large = rows.iloc[0], rows.iloc[-1]
        if large.batch_size > small.batch_size and small.tokens_per_s:
            lines.append(f"{name}：批大小 {small.batch_size} → {large.batch_size}，吞吐 "
                         f"{large.tokens_per_s / small.tokens_per_s:.2f} 倍；峰值内存 {large.peak_memory_mb} MB。")
    return lines


def summary_table(table) -> str:
    """Markdown: mean score, latency p50/p95, tokens/s and peak memory per model and engine."""
    grouped = table.groupby(["model", "engine"])
    lines = ["| 模型 | 引擎 | 用例数 | 自动分（均值） | ROUGE-L | 延迟 p50 (s) | 延迟 p95 (s) | tokens/s | 峰值内存 (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (model, engine), group in grouped:
        lines.append(f"| {model} | {engine} | {len(group)} | {group.auto_score.mean():.3f} | {group.rouge_l.mean():.3f} | "
                     f"{group.latency_s.quantile(0.5):.2f} | {group.latency_s.quantile(0.95):.2f} | "
                     f"{group.tokens_per_s.mean():.1f} | {group.peak_memory_mb.iloc[0]} |")
    return "\n".join(lines) + "\n"


def plot_benchmark(table, out_dir: str | Path) -> list[Path]:
    """quality.png (mean auto score), latency.png (distribution), memory.png (peak) per model/engine."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    labels = [f"{m}\n{e}" for (m, e), _ in table.groupby(["model", "engine"])]
    groups = [g for _, g in table.groupby(["model", "engine"])]
    paths = []
    for name, title, draw in [
        ("quality.png", "mean automatic score", lambda ax: ax.bar(labels, [g.auto_score.mean() for g in groups])),
        ("latency.png", "latency per request (s)", lambda ax: ax.boxplot([g.latency_s for g in groups], tick_labels=labels)),
        ("memory.png", "peak memory (MB)", lambda ax: ax.bar(labels, [_number(g.peak_memory_mb.iloc[0]) for g in groups])),
    ]:
        ax = Figure(figsize=(5, 3.2)).subplots()
        draw(ax)
        ax.set_title(title)
        ax.figure.tight_layout()
        ax.figure.savefig(out / name, dpi=100)
        paths.append(out / name)
    return paths


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # "unavailable" is drawn as a gap, never as 0
