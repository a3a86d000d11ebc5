"""Answer held-out questions with the base or the fine-tuned model and count key-fact hits.

Usage::

    from llmcourse.evaluation.ask import ask, evaluate_run, score
    print(ask(cfg, "退货期多久？", adapter_dir="runs/day1/adapter"))
    report = evaluate_run("runs/day1", include_base=True)   # writes eval.json / eval_generations.jsonl

An answer is *correct* when every key fact of its question appears verbatim in it.
Generation goes through :mod:`llmcourse.inference.engines` (transformers engine, greedy, batched).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcourse.config import ConfigError, CourseConfig, load_config
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.evaluation.scoring import all_facts_present, keyfact_hits
from llmcourse.inference.engines import TransformersEngine
from llmcourse.artifacts import ADAPTER_DIR, RUN_CONFIG
from llmcourse.errors import InputError, RunMissing


def score(examples, answers: list[str]) -> dict[str, Any]:
    correct = [all_facts_present(a, e.key_facts) for e, a in zip(examples, answers)]
    hits = sum(keyfact_hits(a, e.key_facts) for e, a in zip(examples, answers))
    facts = sum(len(e.key_facts) for e in examples)
    return {"questions": len(examples), "correct": sum(correct), "accuracy": round(sum(correct) / len(examples), 4),
            "keyfact_hit_rate": round(hits / facts, 4) if facts else None}


def evaluate_run(run_dir: str | Path, include_base: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Evaluate a training run's adapter (and optionally the base model) on the config's eval file."""
    run_dir = Path(run_dir)
    # What a learner can get wrong is checked before the model loads (a minute on CPU).
    if limit is not None and limit < 1:
        raise InputError(f"--limit 必须是正整数（评估前 N 个问题），现在是 {limit}")
    if not (run_dir / RUN_CONFIG).is_file():
        raise RunMissing(f"{run_dir} 不是训练产物文件夹（没有 {RUN_CONFIG}）；先运行 llmcourse train，"
                         "再把它的 train.output_dir 传给 evaluate")
    cfg = load_config(run_dir / RUN_CONFIG)
    if not cfg.data.eval_file:
        raise ConfigError(f"{run_dir / RUN_CONFIG}: 没有 data.eval_file，无法评估；在训练配置的 data 段写上评估文件")
    if not (run_dir / ADAPTER_DIR).is_dir():
        raise RunMissing(f"{run_dir / ADAPTER_DIR} 不存在：这次训练没有跑完；用 llmcourse train --resume 继续")
    examples = load_chat_jsonl(cfg.data.eval_file)[:limit]
    prompts = [e.prompt_messages for e in examples]
    variants = {"fine_tuned": run_dir / ADAPTER_DIR}
    if include_base:
        variants = {"base": None, **variants}
    summary, rows = {}, {}
    for name, adapter in variants.items():
        rows[name] = [g.text for g in TransformersEngine(cfg, adapter).generate(prompts, progress=True)]
        summary[name] = score(examples, rows[name])
    with (run_dir / "eval_generations.jsonl").open("w", encoding="utf-8") as handle:
        for index, example in enumerate(examples):
            record = {"id": example.meta.get("id"), "question": example.question, "key_facts": example.key_facts,
                      **{name: rows[name][index] for name in rows}}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    report = {"summary": summary, "eval_file": cfg.data.eval_file}
    (run_dir / "eval.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return report


def ask(cfg: CourseConfig, question: str, adapter_dir: str | Path | None = None, system: str | None = None) -> str:
    """One greedy answer to one question (base model, or with the adapter), for before/after demos.

    Under nbgrader it answers with a note instead: a demo cell earns no points, and loading the model
    for it cost about a minute per submission on 2 cores.
    """
    from llmcourse.artifacts import in_grading

    if in_grading():
        return "（评分模式：演示单元格不加载模型）"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return TransformersEngine(cfg, adapter_dir).generate([messages])[0].text
