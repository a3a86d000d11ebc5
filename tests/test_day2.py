"""Day 2 end to end on top of the Day 1 run: papermill, validator on the sources, release fails."""
import json

import pandas as pd
import pytest

from llmcourse.benchmark import COLUMNS
from conftest import ROOT, generate_release, grade_ids, validate

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


def test_source_notebooks_pass_the_validator(executed_course):
    folder = executed_course[0] / "day2"
    stamp = (folder / "runs" / "benchmark" / "benchmark.csv").stat().st_mtime_ns
    for notebook in NOTEBOOKS:
        results = validate(folder / notebook)
        assert results == {}, (notebook, results)
    assert (folder / "runs" / "benchmark" / "benchmark.csv").stat().st_mtime_ns == stamp


def test_release_notebooks_fail_every_test(tmp_path):
    release = generate_release("day2", tmp_path)
    for notebook in NOTEBOOKS:
        assert grade_ids(release / notebook) == grade_ids(ROOT / "day2" / notebook)
        results = validate(release / notebook, invert=True)
        assert "passed" not in results and "changed" not in results, (notebook, results)
    assert (release / "infer.py").exists() and (release / "data" / "default_cases.jsonl").exists()
