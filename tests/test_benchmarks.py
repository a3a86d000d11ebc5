"""Benchmark scripts run end to end at tiny sizes and end with a RESULT line that make bench can read."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def result_of(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1].removeprefix("RESULT "))


def test_generation_benchmark_compares_every_batch_size_with_the_sequential_answers():
    result = result_of("generation_throughput.py", "--prompts", "4", "--max-tokens", "4", "--rounds", "1")
    runs = result["runs"]
    assert {"batch 1", "batch 4", "batch 8"} <= set(runs)
    assert runs["batch 1"]["vs_batch_1"] == 1.0 and all(r["tokens"] > 0 for r in runs.values())
    assert all(isinstance(r["same_answers_as_batch_1"], bool) for r in runs.values())
    assert [g["goal"] for g in result["goals"]] == ["≥ 4x", "identical"]
