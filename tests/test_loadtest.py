"""aiperf results become the load-test table; aiperf itself runs in the Day 3 end-to-end test."""

import json
from pathlib import Path

import pytest
from llmcourse.serving import loadtest

SAMPLE = Path(__file__).parent / "data" / "aiperf_export_sample.json"


def test_summary_row_reads_aiperf_export():
    row = loadtest.summarize_aiperf(SAMPLE, concurrency=2)
    raw = json.loads(SAMPLE.read_text())
    assert row["concurrency"] == 2
    assert row["errors"] == 1 and row["requests"] == 5  # 4 completed + 1 error
    assert row["latency_p95_ms"] == round(raw["request_latency"]["p95"], 3)
    assert row["latency_p50_ms"] <= row["latency_p95_ms"]
    assert row["requests_per_s"] == round(raw["request_throughput"]["avg"], 3)


def test_markdown_table_has_a_row_per_level():
    rows = [loadtest.summarize_aiperf(SAMPLE, 1), {**loadtest.summarize_aiperf(SAMPLE, 8), "ttft_p50_ms": None}]
    table = loadtest.markdown_table(rows).splitlines()
    assert len(table) == 4 and "并发数" in table[0]
    assert table[3].startswith("| 8 |") and "—" in table[3]


def test_missing_aiperf_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMCOURSE_AIPERF", str(tmp_path / "nothing"))
    monkeypatch.setattr(loadtest.shutil, "which", lambda name: None)
    monkeypatch.setattr(loadtest, "COURSE_ROOT", tmp_path)
    with pytest.raises(RuntimeError, match="make setup"):
        loadtest.find_aiperf()
