"""vLLM vs transformers generation, side by side: base model, LoRA merged, LoRA unmerged; batch 1 and 16+.

Usage:  .venv/bin/python benchmarks/vllm_generation.py [--adapter RUN/adapter] [--prompts 45] [--max-tokens 48]

Both engines answer the same Day 1 held-out questions (one per fact, greedy) through
``llmcourse.inference.engines``: transformers in this process (the course's ``TransformersEngine``), vLLM in a
worker process of ``.venv-vllm`` (``VLLMWorkerEngine``; on a GPU the same code runs in-process).
Three model set-ups: the base model, the Day 1 adapter merged into the weights (``merge_and_unload``,
one folder vLLM loads like any model) and the adapter unmerged (``LoRARequest``). Without
``--adapter`` a 30-step Day 1 run is trained first. Per set-up: tokens/s at batch 1 and at a batch
of all prompts, mean TTFT, ms per output token, peak RSS, and how many greedy answers are identical
token by token. The last line is ``RESULT {json}`` for ``make bench`` (benchmarks/run_all.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"


def train_adapter(out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "llmcourse.cli", "train", str(CONFIG), "train.max_steps=30",
                           f"train.output_dir={out}"], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return out / "adapter"


def merge(cfg, adapter: Path, out: Path) -> Path:
    """The adapter merged into a copy of the base weights, with the base folder's tokenizer files."""
    from llmcourse.inference.engines import load_weights
    from llmcourse.env.loading import resolve_model_path

    model, _ = load_weights(cfg, adapter)
    model.merge_and_unload().save_pretrained(out)
    for name in Path(resolve_model_path(cfg)).iterdir():
        if name.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(name, out / name.name)
    return out


def main() -> None:
    from llmcourse.evaluation.benchmark import compare_answers, compare_engines
    from llmcourse.config import load_config
    from llmcourse.data.jsonl import load_chat_jsonl
    from llmcourse.inference.engines import TransformersEngine, VLLMWorkerEngine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", help="a Day 1 adapter folder (default: train 30 steps first)")
    parser.add_argument("--prompts", type=int, default=45)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as scratch:
        scratch = Path(scratch)
        adapter = Path(args.adapter) if args.adapter else train_adapter(scratch / "run")
        cfg = load_config(adapter.parent / "config.yaml", **{"infer.max_tokens": args.max_tokens})
        seen, prompts = set(), []
        for example in load_chat_jsonl(ROOT / "day1" / "data" / "faq_test.jsonl"):
            key = tuple(example.key_facts)
            if key not in seen:  # one paraphrase per fact
                seen.add(key)
                prompts.append(example.prompt_messages)
        prompts = prompts[:args.prompts]
        merged_cfg = load_config(adapter.parent / "config.yaml", **{"infer.max_tokens": args.max_tokens,
                                                                    "model.path": str(merge(cfg, adapter, scratch / "merged"))})
        setups = {"base": (cfg, None), "merged": (merged_cfg, None), "unmerged": (cfg, adapter)}
        sizes = (1, len(prompts))
        rows, agreement = [], {}
        for name, (setup_cfg, setup_adapter) in setups.items():
            reference = TransformersEngine(cfg if name == "unmerged" else setup_cfg, setup_adapter)
            with VLLMWorkerEngine(setup_cfg, setup_adapter, log_path=scratch / f"vllm_{name}.log") as served:
                table, answers = compare_engines({"transformers": reference, "vllm": served}, prompts, sizes=sizes)
            del reference
            same = compare_answers(answers["transformers"], answers["vllm"])
            agreement[name] = int(same.identical.sum())
            detokenized_apart = int((same.identical & ~same.same_text).sum())
            print(f"{name}: same tokens but different text (detokenizer): {detokenized_apart}", flush=True)
            table.insert(0, "setup", name)
            rows += table.to_dict("records")
            print(table.to_string(index=False), flush=True)
    print(f"\nvLLM vs transformers, {cfg.model.name}, {len(prompts)} prompts, greedy, {args.max_tokens} new tokens")
    print(f"{'setup':<10}{'engine':<14}{'batch':>6}{'tok/s':>9}{'TTFT s':>9}{'ms/token':>10}{'peak MB':>10}")
    for row in rows:
        print(f"{row['setup']:<10}{row['engine']:<14}{row['batch_size']:>6}{row['tokens_per_s']:>9.1f}"
              f"{row['ttft_s'] or 0:>9.3f}{row['ms_per_output_token'] or 0:>10.1f}{row['peak_memory_mb']:>10}")
    goals = []
    for name in setups:
        pick = {(r["engine"], r["batch_size"]): r["tokens_per_s"] for r in rows if r["setup"] == name}
        for size in sizes:
            ratio = pick[("vllm", size)] / pick[("transformers", size)]
            goals.append({"what": f"vLLM vs transformers tokens/s, {name}, batch {size}",
                          "value": f"{pick[('vllm', size)]:.1f} vs {pick[('transformers', size)]:.1f} = {ratio:.2f}x",
                          "goal": "", "met": None})
        goals.append({"what": f"greedy answers identical token by token, {name}",
                      "value": f"{agreement[name]}/{len(prompts)}", "goal": "", "met": None})
        print(f"{name}: {agreement[name]}/{len(prompts)} greedy answers identical token by token")
    best = max(goals[:-1], key=lambda g: float(g["value"].rsplit("= ", 1)[-1].rstrip("x")) if "= " in g["value"] else 0)
    result = {"benchmark": "vllm_generation", "model": cfg.model.name, "prompts": len(prompts),
              "max_tokens": args.max_tokens, "rows": rows, "identical": agreement,
              "summary": f"vLLM vs transformers, best: {best['what']}: {best['value']}", "goals": goals}
    print("RESULT " + json.dumps(result, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
