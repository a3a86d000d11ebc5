"""GPU check: Unsloth vs PEFT + TRL training and vLLM vs transformers generation on one model.

Usage::

    make gpu-check MODEL=/models/Qwen3-4B-Instruct-2507        # or: export LLMCOURSE_GPU_MODEL=...
    .venv/bin/python benchmarks/gpu_check.py --model-path DIR [--model-name qwen3-4b-instruct-2507]
        [--steps 30] [--prompts 64] [--max-tokens 128] [--budget 570]

Needs CUDA (it stops at once with a clear message otherwise), the ``gpu`` extra (vLLM, NVML) and a
local model folder; with those it needs no network (the hubs are switched to offline mode). Four
phases, each in its own process so that each starts with empty GPU memory and has its own peak:

  train-unsloth          ``llmcourse.training.run`` with ``train.engine=unsloth`` (our default engine)
  train-trl              the same config with ``train.engine=trl`` (PEFT + TRL, no Unsloth)
  generate-vllm          vLLM ``LLM`` + ``LoRARequest`` (the adapter of train-unsloth, unmerged)
  generate-transformers  transformers ``generate``, batched, with the same adapter (PEFT)

Same model, data, LoRA and training settings (and so the same batches) (``day1/configs/qwen3-4b_lora_sft.yaml`` for the real
models, the CPU config moved to CUDA for the stand-ins), same prompts (Day 1 held-out questions),
greedy decoding, same ``max_tokens``. Figures: training answer tokens/s (tokens with a label per
second of training) and generation output tokens/s, their ratios, and peak VRAM per phase:
``torch.cuda.max_memory_allocated`` (tensors) and the NVML peak of the device (everything, including
vLLM's KV-cache reservation of ``infer.gpu_memory_utilization``). vLLM runs in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that torch's counter sees its tensors.

Each phase gets a share of ``--budget`` seconds and is stopped past it, so the check ends within
10 minutes; a phase that fails or runs out of time is reported and the others go on. The last line is
``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = {"train-unsloth": 0.27, "train-trl": 0.25, "generate-vllm": 0.28, "generate-transformers": 0.20}
STAND_INS = {"gemma3-270m", "smollm2-135m-instruct"}


def config(args, phase: str, workdir: Path):
    from llmcourse.config import load_config

    base = ROOT / "day1" / "configs" / ("gemma3-270m_lora_sft.yaml" if args.model_name in STAND_INS
                                        else "qwen3-4b_lora_sft.yaml")
    overrides = {"model.name": args.model_name, "model.device": "cuda", "train.max_steps": args.steps,
                 "train.logging_steps": 1, "train.save_steps": args.steps * 10, "infer.max_tokens": args.max_tokens,
                 "infer.temperature": 0.0, "train.output_dir": str(workdir / phase)}
    if args.model_path:
        overrides.update({"model.path": args.model_path, "model.source": "local"})
    return load_config(base, **overrides)


def prompts(count: int) -> list[list[dict]]:
    from llmcourse.data.jsonl import load_chat_jsonl

    held_out = [e.prompt_messages for e in load_chat_jsonl(ROOT / "day1" / "data" / "faq_test.jsonl")]
    return list(itertools.islice(itertools.cycle(held_out), count))


def vram(monitor) -> dict:
    summary = monitor.summary
    torch_peak = summary.get("torch_peak_allocated_mb")
    return {"torch_peak_allocated_mb": torch_peak if isinstance(torch_peak, (int, float)) and torch_peak > 0 else None,
            "nvml_peak_mb": summary.get("peak_gpu_memory_mb") if isinstance(summary.get("peak_gpu_memory_mb"), (int, float)) else None}


def run_phase(args, phase: str, workdir: Path) -> dict:
    """One phase, in this process; returns its figures."""
    from llmcourse.inference.monitor import ResourceMonitor

    cfg = config(args, phase, workdir)
    if phase.startswith("train-"):
        from llmcourse.training.run import train
        cfg.train.engine = phase.removeprefix("train-")
        with ResourceMonitor("cuda") as monitor:
            result = train(cfg)
        last = result.log[-1]
        answers = last.get("answer_tokens_seen") or None  # None where an engine's own loop bypasses the counter
        return {"engine": result.engine, "steps": result.steps, "seconds": last["elapsed_s"],
                "seconds_per_step": round(last["elapsed_s"] / result.steps, 3), "answer_tokens": answers,
                "answer_tokens_per_s": round(answers / last["elapsed_s"], 1) if answers else None,
                "final_loss": last["loss"], **vram(monitor)}
    adapter = workdir / "train-unsloth" / "adapter"
    adapter = adapter if (adapter / "adapter_config.json").exists() else None
    batch = prompts(args.prompts)
    with ResourceMonitor("cuda") as monitor:
        started = time.perf_counter()
        if phase == "generate-vllm":
            from llmcourse.inference.engines import VLLMEngine
            engine = VLLMEngine(cfg, adapter)
        else:
            from llmcourse.inference.engines import TransformersEngine
            engine = TransformersEngine(cfg, adapter)
        load_s = time.perf_counter() - started
        engine.generate(batch[:2], batch_size=2)  # warm-up
        started = time.perf_counter()
        results = engine.generate(batch, batch_size=len(batch) if phase == "generate-vllm" else cfg.infer.batch_size)
        seconds = time.perf_counter() - started
    tokens = sum(r.output_tokens for r in results)
    (workdir / f"{phase}.json").write_text(json.dumps([r.text for r in results], ensure_ascii=False))
    return {"engine": engine.name, "adapter": adapter is not None, "prompts": len(batch), "load_s": round(load_s, 1),
            "seconds": round(seconds, 2), "output_tokens": tokens, "output_tokens_per_s": round(tokens / seconds, 1),
            "batch_size": len(batch) if phase == "generate-vllm" else cfg.infer.batch_size, **vram(monitor)}


def child(args) -> None:
    workdir = Path(args.workdir)
    figures = run_phase(args, args.phase, workdir)
    print("RESULT " + json.dumps(figures, ensure_ascii=False))


def launch(args, phase: str, workdir: Path, limit: float) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--workdir", str(workdir), "--model-name", args.model_name,
               "--steps", str(args.steps), "--prompts", str(args.prompts), "--max-tokens", str(args.max_tokens)]
    command += ["--model-path", args.model_path] if args.model_path else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if phase == "generate-vllm":
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    print(f"--- {phase} (at most {limit:.0f} s)", flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=limit, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - started)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print((done.stdout + done.stderr)[-2500:], flush=True)
        return {"status": "failed", "returncode": done.returncode, "seconds": round(time.perf_counter() - started)}
    return {"status": "ok", "wall_s": round(time.perf_counter() - started), **json.loads(lines[-1][len("RESULT "):])}


def ratio(numerator: dict, denominator: dict, key: str) -> float | None:
    if numerator.get("status") == denominator.get("status") == "ok" and numerator.get(key) and denominator.get(key):
        return round(numerator[key] / denominator[key], 2)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=os.environ.get("LLMCOURSE_GPU_MODEL"),
                        help="local model folder (or env LLMCOURSE_GPU_MODEL); without it the model's hub id is used")
    parser.add_argument("--model-name", default="qwen3-4b-instruct-2507", help="registry name of that model")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--budget", type=float, default=570, help="seconds for all four phases together")
    parser.add_argument("--out", help="also write the RESULT JSON to this file")
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch
    if not torch.cuda.is_available():
        print("gpu-check needs an NVIDIA GPU with CUDA (torch.cuda.is_available() is False here); "
              "run it on the GPU lane: conda env create -f environment.yml, then make gpu-check MODEL=DIR",
              file=sys.stderr)
        sys.exit(2)
    if args.model_path:  # everything is local: never wait on a hub
        os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if args.phase:
        child(args)
        return

    deadline = time.perf_counter() + args.budget
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        for phase, share in PHASES.items():
            remaining = deadline - time.perf_counter()
            later = sum(s for p, s in PHASES.items() if p not in results and p != phase)
            limit = max(30.0, remaining * share / (share + later))
            results[phase] = launch(args, phase, Path(scratch), limit)
            print(json.dumps(results[phase], ensure_ascii=False), flush=True)
        texts = {p: json.loads((Path(scratch) / f"{p}.json").read_text()) for p in ("generate-vllm", "generate-transformers")
                 if (Path(scratch) / f"{p}.json").exists()}
    same = None
    if len(texts) == 2:
        pairs = list(zip(texts["generate-vllm"], texts["generate-transformers"]))
        same = round(sum(a == b for a, b in pairs) / len(pairs), 3)
    summary = {"benchmark": "gpu_check", "gpu": torch.cuda.get_device_name(0), "model": args.model_name,
               "steps": args.steps, "prompts": args.prompts, "max_tokens": args.max_tokens, "phases": results,
               # same steps over the same batches: the ratio of step times is the ratio of answer tokens/s
               "unsloth_vs_trl_train": ratio(results["train-trl"], results["train-unsloth"], "seconds_per_step"),
               "vllm_vs_transformers_generate": ratio(results["generate-vllm"], results["generate-transformers"],
                                                      "output_tokens_per_s"),
               "greedy_answers_identical": same}
    print(f"\n{summary['gpu']}, {args.model_name}")
    print(f"{'phase':<24}{'status':<9}{'tokens/s':>10}{'torch peak MB':>15}{'NVML peak MB':>14}")
    for phase, figures in results.items():
        rate = figures.get("answer_tokens_per_s", figures.get("output_tokens_per_s", ""))
        print(f"{phase:<24}{figures['status']:<9}{rate!s:>10}{figures.get('torch_peak_allocated_mb')!s:>15}"
              f"{figures.get('nvml_peak_mb')!s:>14}")
    print(f"training, Unsloth vs PEFT + TRL (same steps and batches): {summary['unsloth_vs_trl_train']}x")
    print(f"generation, vLLM vs transformers (output tokens/s): {summary['vllm_vs_transformers_generate']}x; "
          f"identical greedy answers: {same}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print("RESULT " + json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
