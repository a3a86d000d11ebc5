"""API throughput and latency at concurrency 1 vs 8 (and at 8 without server-side batching), side by side.

Usage:  .venv/bin/python benchmarks/api_load.py [--max-tokens 16] [--requests 16] [--engine auto|vllm|transformers]

Starts ``llmcourse serve`` (the same process the Day 3 project starts: vLLM's OpenAI server where
vLLM is installed, ``.venv-vllm`` on a CPU; ``--engine transformers`` measures our FastAPI app) on the
stand-in base model, so every request runs to ``--max-tokens`` and all levels do the same work per
request. aiperf (``.venv-load``, see ``llmcourse.serving.loadtest``) sends real Day 1 questions, streaming:
concurrency 1, then concurrency 8; then the server is restarted with ``serve.max_batch=1`` (vLLM: ``--max-num-seqs 1``;
our app: one request per ``generate`` call) and concurrency 8 is measured again, so the batching's share of the
gain is visible. The last line is ``RESULT {json}`` for ``make bench`` (benchmarks/run_all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"


def measure(cfg, prompts: list[str], levels: tuple[int, ...], requests: int, max_tokens: int, out: Path) -> list[dict]:
    from llmcourse.serving.loadtest import run_load_test
    from llmcourse.serving.server import running_server
    from llmcourse.env.loading import resolve_model_path

    with running_server(cfg, log_path=out / "server.log") as server:
        rows = []
        for level in levels:  # one aiperf call per level, so each level gets its own request count
            rows += run_load_test(server.base_url, server.api_key, server.model, prompts, resolve_model_path(cfg),
                                  out / f"concurrency_{level}", concurrency_levels=(level,),
                                  requests_per_level=max(requests // 2, 4) if level == 1 else requests,
                                  max_tokens=max_tokens)
        return rows


def main() -> None:
    from llmcourse.config import load_config
    from llmcourse.data.jsonl import load_chat_jsonl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--requests", type=int, default=16, help="requests at concurrency 8 (half of them at 1)")
    parser.add_argument("--engine", choices=["auto", "vllm", "transformers"], default="auto")
    args = parser.parse_args()
    from llmcourse.serving.server import choose_serve_engine

    base = {"serve.use_adapter": False, "serve.engine": args.engine}
    cfg = load_config(CONFIG, **base)
    engine = choose_serve_engine(cfg)
    prompts = [e.prompt_messages[-1]["content"] for e in load_chat_jsonl(ROOT / "day1" / "data" / "faq_test.jsonl")]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="api-bench-") as scratch:
        scratch = Path(scratch)
        batched = measure(cfg, prompts, (1, 8), args.requests, args.max_tokens, scratch / "batched")
        unbatched = measure(load_config(CONFIG, **base, **{"serve.max_batch": 1}), prompts, (8,),
                            args.requests, args.max_tokens, scratch / "max_batch_1")
    one, eight, eight_plain = batched[0], batched[1], unbatched[0]
    ratio = eight["requests_per_s"] / one["requests_per_s"]
    batching = eight["requests_per_s"] / eight_plain["requests_per_s"]
    print(f"API served by {engine} (llmcourse serve), {cfg.model.name} base, {args.max_tokens} output tokens per request, streaming "
          f"(load average at start {load_start:.1f}, {os.cpu_count()} cores)")
    print(f"{'run':<28}{'requests':>9}{'errors':>7}{'req/s':>8}{'tok/s':>8}{'TTFT p50 ms':>12}{'p50 ms':>9}{'p95 ms':>9}")
    for name, row in (("concurrency 1", one), ("concurrency 8", eight), ("concurrency 8, max_batch 1", eight_plain)):
        print(f"{name:<28}{row['requests']:>9}{row['errors']:>7}{row['requests_per_s']:>8.3f}"
              f"{row['output_tokens_per_s'] or 0:>8.2f}{row['ttft_p50_ms'] or 0:>12.0f}{row['latency_p50_ms'] or 0:>9.0f}"
              f"{row['latency_p95_ms'] or 0:>9.0f}")
    print(f"concurrency 8 vs 1: {ratio:.2f}x requests/s; server batching at concurrency 8: {batching:.2f}x")
    errors = one["errors"] + eight["errors"] + eight_plain["errors"]
    result = {"benchmark": "api_load", "engine": engine, "model": cfg.model.name, "max_tokens": args.max_tokens,
              "load_average_start": round(load_start, 2), "rows": {"1": one, "8": eight, "8_max_batch_1": eight_plain},
              "summary": f"API ({engine}) requests/s at concurrency 8 vs 1: {ratio:.2f}x "
                         f"(p50 latency {one['latency_p50_ms']:.0f} → {eight['latency_p50_ms']:.0f} ms)",
              "goals": [{"what": f"API ({engine}) requests/s, concurrency 8 vs 1",
                         "value": f"{eight['requests_per_s']:.3f} vs {one['requests_per_s']:.3f} = {ratio:.2f}x",
                         "goal": "", "met": None},
                        {"what": "API latency p50 / p95, concurrency 1 → 8",
                         "value": f"{one['latency_p50_ms']:.0f} / {one['latency_p95_ms']:.0f} ms → "
                                  f"{eight['latency_p50_ms']:.0f} / {eight['latency_p95_ms']:.0f} ms", "goal": "", "met": None},
                        {"what": "API server batching at concurrency 8 (max_batch 8 vs 1)",
                         "value": f"{batching:.2f}x requests/s", "goal": "", "met": None},
                        {"what": "API errors", "value": str(errors), "goal": "0", "met": errors == 0}]}
    print("RESULT " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
