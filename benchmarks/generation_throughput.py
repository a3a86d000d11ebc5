"""Batched vs sequential generation with transformers, on the same prompts, in one run.

Usage:  .venv/bin/python benchmarks/generation_throughput.py [--prompts 16] [--max-tokens 48]

Generates the same prompts (Day 2 default cases) with batch sizes 1 (sequential), 4 and 8 and prints
output tokens/s and the speed-up over batch 1. Greedy decoding; the base stand-in usually runs to
max tokens, so the batches do the same amount of work.
"""
import argparse
import time
from pathlib import Path

from llmcourse.cases import load_cases
from llmcourse.config import load_config
from llmcourse.infer import TransformersEngine

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    cfg = load_config(ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml", **{"infer.max_tokens": args.max_tokens})
    prompts = [c["messages"] for c in load_cases(ROOT / "day2" / "data" / "default_cases.jsonl")][:args.prompts]
    engine = TransformersEngine(cfg)
    engine.generate(prompts[:2], batch_size=2)  # warm-up
    rates = {}
    for batch in (1, 4, 8):
        started = time.perf_counter()
        results = engine.generate(prompts, batch_size=batch)
        seconds = time.perf_counter() - started
        rates[batch] = sum(r.output_tokens for r in results) / seconds
        print(f"batch {batch}: {sum(r.output_tokens for r in results)} tokens in {seconds:.1f} s "
              f"= {rates[batch]:.1f} tokens/s ({rates[batch] / rates[1]:.2f}x batch 1)")
    print(f"\nbatched (8) vs sequential (1): {rates[8] / rates[1]:.2f}x  [goal: >= 4x]")


if __name__ == "__main__":
    main()
