"""Day 2 end to end on top of the Day 1 run: papermill (the learner edition: tests/test_learner_edition.py)."""
import json

import pandas as pd
import pytest
from llmcourse.benchmark import COLUMNS

pytestmark = pytest.mark.slow
NOTEBOOKS = ("01_inference.ipynb", "02_acceleration.ipynb", "03_benchmark.ipynb", "04_troubleshooting.ipynb")


def test_papermill_runs_every_day2_notebook_and_writes_the_benchmark(executed_course):
    out, seconds = executed_course
    assert set(seconds["day2"]) == set(NOTEBOOKS)
    bench = out / "day2" / "runs" / "benchmark"
    table = pd.read_csv(bench / "benchmark.csv")
    assert list(table.columns) == COLUMNS
    assert set(table.model) == {"base", "fine_tuned"} and set(table.engine) == {"transformers"}
    assert table.groupby("model").case_id.nunique().min() == 6 + 5  # CI: 6 default cases + the learner's 5
    assert (table.memory_kind == "cpu_rss").all() and (table.peak_memory_mb.astype(float) > 100).all()
    generations = [json.loads(line) for line in (bench / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == len(table)
    for name in ("summary.md", "quality.png", "latency.png", "memory.png", "human_scores.csv"):
        assert (bench / name).exists(), name


