"""Load-test a running chat API with aiperf at several concurrency levels and tabulate the results.

Usage::

    from llmcourse.serving.loadtest import run_load_test
    rows = run_load_test(server.base_url, server.api_key, server.model, prompts=["退货期多久？", ...],
                         tokenizer="~/.cache/llmcourse/models/gemma3-270m", out_dir="deploy/loadtest")
    # rows: one dict per concurrency level; also written to loadtest.json and loadtest.md

aiperf (NVIDIA's load generator, no torch) lives in its own virtual environment
(``make setup`` builds ``.venv-load``), because its pins clash with the course's.
It is found through ``LLMCOURSE_AIPERF``, then ``PATH``, then ``.venv-load/bin/aiperf``.
Each level sends real questions (not random tokens), streams, and reads token counts
from the server's ``usage``; the table holds requests/s, time to first token, latency p50 / p95
and errors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from llmcourse.artifacts import COURSE_ROOT, LOADTEST_JSON, LOADTEST_MD, reuse_or_compute
from llmcourse.errors import InputError, SetupError


COLUMNS = {"concurrency": "并发数", "requests": "请求数", "errors": "错误数", "requests_per_s": "请求/秒",
           "output_tokens_per_s": "输出 token/秒", "ttft_p50_ms": "首 token p50 (ms)",
           "latency_p50_ms": "延迟 p50 (ms)", "latency_p95_ms": "延迟 p95 (ms)"}


def find_aiperf() -> str:
    for candidate in (os.environ.get("LLMCOURSE_AIPERF"), shutil.which("aiperf"), COURSE_ROOT / ".venv-load" / "bin" / "aiperf"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SetupError("找不到压测工具 aiperf：在仓库根目录运行 make setup（会建 .venv-load），"
                       "或 pip install aiperf 后设置环境变量 LLMCOURSE_AIPERF=aiperf 的路径")


def aiperf_command(root_url: str, api_key: str, model: str, tokenizer: str | Path, prompts_file: Path,
                   concurrency: int, requests: int, max_tokens: int, out_dir: Path) -> list[str]:
    return [find_aiperf(), "profile", "--model", model, "--url", root_url, "--endpoint-type", "chat",
            "--streaming", "--api-key", api_key, "--tokenizer", str(tokenizer),
            "--input-file", str(prompts_file), "--custom-dataset-type", "single_turn",
            "--prompt-output-tokens-mean", str(max_tokens), "--request-count", str(requests),
            "--concurrency", str(concurrency), "--use-server-token-count", "--random-seed", "42",
            "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry",
            # aiperf's own worker processes compete with the model for the CPU: keep them few.
            "--workers-max", "1", "--record-processor-service-count", "1",
            "--output-artifact-dir", str(out_dir)]


def _stat(metrics: dict, name: str, stat: str) -> float | None:
    value = (metrics.get(name) or {}).get(stat)
    return None if value is None else round(float(value), 3)


def summarize_aiperf(export_json: str | Path, concurrency: int) -> dict[str, Any]:
    """One table row from aiperf's ``profile_export_aiperf.json``."""
    metrics = json.loads(Path(export_json).read_text(encoding="utf-8"))
    errors = sum(int(item.get("count", 1)) for item in metrics.get("error_summary") or [])
    completed = _stat(metrics, "request_count", "avg") or 0
    return {"concurrency": concurrency, "requests": int(completed) + errors, "errors": errors,
            "requests_per_s": _stat(metrics, "request_throughput", "avg"),
            "output_tokens_per_s": _stat(metrics, "output_token_throughput", "avg"),
            "ttft_p50_ms": _stat(metrics, "time_to_first_token", "p50"),
            "latency_p50_ms": _stat(metrics, "request_latency", "p50"),
            "latency_p95_ms": _stat(metrics, "request_latency", "p95")}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join("—" if row.get(key) is None else f"{row[key]:g}" if isinstance(row[key], float)
                                       else str(row[key]) for key in COLUMNS) + " |")
    return "\n".join(lines)


def run_load_test(base_url: str, api_key: str, model: str, prompts: list[str], tokenizer: str | Path,
                  out_dir: str | Path, concurrency_levels: tuple[int, ...] = (1, 8), requests_per_level: int | None = None,
                  max_tokens: int = 16, timeout: float = 1800) -> list[dict[str, Any]]:
    """Run aiperf once per concurrency level; ``requests_per_level`` defaults to 2 × concurrency (≥ 4)."""
    if not prompts:
        raise InputError("压测至少需要一个问题")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts_file = out_dir / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps({"text": p}, ensure_ascii=False) + "\n" for p in prompts), encoding="utf-8")
    root_url = base_url.removesuffix("/").removesuffix("/v1")
    rows = []
    for concurrency in concurrency_levels:
        requests = requests_per_level or max(4, 2 * concurrency)
        level_dir = out_dir / f"concurrency_{concurrency}"
        shutil.rmtree(level_dir, ignore_errors=True)
        command = aiperf_command(root_url, api_key, model, Path(tokenizer).expanduser(), prompts_file,
                                 concurrency, requests, max_tokens, level_dir)
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
        (out_dir / f"aiperf_concurrency_{concurrency}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        export = level_dir / "profile_export_aiperf.json"
        if done.returncode != 0 or not export.exists():
            raise RuntimeError(f"aiperf 在并发 {concurrency} 时失败（返回码 {done.returncode}），"
                               f"日志：{out_dir / f'aiperf_concurrency_{concurrency}.log'}\n{done.stderr[-1500:]}")
        rows.append(summarize_aiperf(export, concurrency))
    (out_dir / LOADTEST_JSON).write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    (out_dir / LOADTEST_MD).write_text(markdown_table(rows) + "\n", encoding="utf-8")
    return rows


def load_test_or_reuse(base_url: str, api_key: str, model: str, prompts: list[str], tokenizer: str | Path,
                       out_dir: str | Path, **kwargs) -> list[dict[str, Any]]:
    """:func:`run_load_test`, except under nbgrader with saved results: graders read, they do not re-measure."""
    saved = Path(out_dir) / LOADTEST_JSON
    return reuse_or_compute("压测结果", saved, required=False,
                            compute=lambda: run_load_test(base_url, api_key, model, prompts, tokenizer, out_dir, **kwargs),
                            load=lambda: json.loads(saved.read_text(encoding="utf-8")))
