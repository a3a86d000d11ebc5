"""Training throughput and peak memory per engine, side by side on the same data and settings.

Usage:  make bench   (or  .venv/bin/python benchmarks/train_throughput.py [--steps 20])

Runs, each in its own process so peak RSS is its own:
  unsloth        our default engine (.venv)
  trl            our settings on plain PEFT + TRL (.venv-trl)
  trl-defaults   TRL's quick-start with TRL's defaults (.venv-trl; benchmarks/plain_trl_defaults.py)
and prints input tokens/s over the training loop (model loading excluded) and the process's peak RSS.
Numbers drift run to run on shared machines: compare the ratios printed in one run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"
PYTHONS = {"unsloth": ROOT / ".venv" / "bin" / "python", "trl": ROOT / ".venv-trl" / "bin" / "python"}


def _run(command: list[str]) -> tuple[str, float]:
    """Run a command, sampling its RSS every 0.2 s; return stdout and the peak RSS in MB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True)
        watched, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        out.seek(0), err.seek(0)
        if process.wait() != 0:
            sys.exit(f"failed: {' '.join(command)}\n{err.read()[-3000:]}")
        return out.read(), peak / 2**20


def bench_engine(engine: str, steps: int, samples: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
    command = [str(PYTHONS[engine]), "-m", "llmcourse.cli", "train", str(CONFIG), f"train.engine={engine}",
               f"train.max_steps={steps}", f"data.max_samples={samples}", f"train.output_dir={out}",
               f"train.save_steps={steps * 10}"]
    _, peak = _run(command)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {"engine": engine, "tokens": log[-1]["tokens_seen"], "seconds": log[-1]["elapsed_s"],
            "peak_rss_mb": round(peak), "final_loss": log[-1]["loss"]}


def bench_trl_defaults(steps: int, samples: int) -> dict:
    config = Path(tempfile.mkdtemp()) / "config.yaml"
    from llmcourse.config import load_config
    load_config(CONFIG, **{"data.max_samples": samples}).save(config)
    stdout, peak = _run([str(PYTHONS["trl"]), str(ROOT / "benchmarks" / "plain_trl_defaults.py"), str(config), str(steps)])
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"engine": "trl-defaults", "tokens": result["tokens"], "seconds": result["seconds"],
            "peak_rss_mb": round(peak), "final_loss": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=80)
    args = parser.parse_args()
    rows = [bench_trl_defaults(args.steps, args.samples), bench_engine("trl", args.steps, args.samples),
            bench_engine("unsloth", args.steps, args.samples)]
    base = rows[0]["tokens"] / rows[0]["seconds"]
    print(f"\nLoRA training, gemma3-270m, batch 4, {args.steps} steps, {args.samples} rows (CPU)")
    print(f"{'engine':<14}{'tokens/s':>10}{'vs TRL defaults':>17}{'peak RSS MB':>13}")
    for row in rows:
        rate = row["tokens"] / row["seconds"]
        print(f"{row['engine']:<14}{rate:>10.1f}{rate / base:>16.2f}x{row['peak_rss_mb']:>13}")


if __name__ == "__main__":
    main()
