"""Day 2 end to end on top of the Day 1 run: papermill (the learner edition: tests/test_learner_edition.py)."""
import json

import pandas as pd
import pytest
from llmcourse.evaluation.benchmark import COLUMNS

pytestmark = pytest.mark.slow
NOTEBOOKS = ("01_inference.ipynb", "02_acceleration.ipynb", "03_benchmark.ipynb", "04_troubleshooting.ipynb",
             "05_no_code.ipynb")


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


def test_the_no_code_track_writes_the_code_tracks_artifacts_in_its_own_folders(executed_course):
    """05_no_code, its form filled in by papermill: the code track's files, passing the code track's checks."""
    from llmcourse.grading.checks import check_benchmark, check_cases, check_human_scores
    out, seconds = executed_course
    folder = out / "day2"
    bench = folder / "runs" / "no_code_benchmark"
    cases = check_cases(folder / "no_code_submission" / "my_cases.jsonl", min_cases=5)
    table = check_benchmark(bench, min_cases=5)
    assert list(table.columns) == COLUMNS and set(table.engine) == {"transformers"}
    assert table.groupby("model").case_id.nunique().to_dict() == {"base": 3 + 5, "fine_tuned": 3 + 5}  # CI: 3 default
    sheet = check_human_scores(bench / "human_scores.csv", min_rows=10)
    assert set(sheet.case_id) == {c["case_id"] for c in cases} and set(sheet.model) == {"base", "fine_tuned"}
    for name in ("summary.md", "quality.png", "latency.png", "memory.png", "generations.jsonl", "cases.jsonl"):
        assert (bench / name).exists(), name
    assert seconds["day2"]["05_no_code.ipynb"] < 180  # its CI cost (measured ~55 s on 2 idle cores)
