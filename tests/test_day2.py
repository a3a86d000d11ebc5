"""Day 2 end to end on top of the Day 1 run: papermill (the learner edition: tests/test_learner_edition.py)."""
import json

import pandas as pd
import pytest
from llmcourse.evaluation.benchmark import COLUMNS
from llmcourse.evaluation.scoring import auto_score

pytestmark = pytest.mark.slow
NOTEBOOKS = ("01_inference.ipynb", "02_acceleration.ipynb", "03_benchmark.ipynb", "04_troubleshooting.ipynb",
             "05_no_code.ipynb")


def test_papermill_runs_every_day2_notebook_and_writes_the_benchmark(executed_course):
    out, seconds = executed_course
    assert set(seconds["day2"]) == set(NOTEBOOKS)
    bench = out / "day2" / "runs" / "benchmark"
    table = pd.read_csv(bench / "benchmark.csv")
    assert list(table.columns) == COLUMNS
    assert set(table.model) == {"base", "base+rag", "fine_tuned", "fine_tuned+rag"}  # the four arms
    assert set(table.engine) == {"transformers"}
    # CI: 6 default cases + the learner's 5 + 2 more held-out paraphrases (max_heldout)
    assert table.groupby("model").case_id.nunique().to_dict() == dict.fromkeys(set(table.model), 6 + 5 + 2)
    assert (table.memory_kind == "cpu_rss").all() and (table.peak_memory_mb.astype(float) > 100).all()
    generations = [json.loads(line) for line in (bench / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == len(table)
    cases = [json.loads(line) for line in (bench / "cases.jsonl").read_text().splitlines()]
    for name in ("summary.md", "quality.png", "latency.png", "memory.png", "human_scores.csv"):
        assert (bench / name).exists(), name
    retrieved = [g for g in generations if g["model"].endswith("+rag")]
    assert len(retrieved) == 2 * 13 and all(len(g["retrieved"]) == 3 for g in retrieved)
    arms = pd.read_csv(bench / "arms.csv")  # the four arms over every case (at CI all 13 have key facts)
    assert list(arms.arm) == ["base", "base+rag", "fine_tuned", "fine_tuned+rag"] and set(arms.cases) == {13}
    for row in arms.itertuples():  # consistent with the saved answers
        answers = {g["case_id"]: g for g in generations if g["model"] == row.arm}
        assert row.fully_correct == sum(auto_score(case, answers[case["case_id"]]["text"]) == 1 for case in cases)
        assert abs(row.prompt_tokens - sum(g["prompt_tokens"] for g in answers.values()) / 13) < 0.06
    assert (arms.set_index("arm").prompt_tokens["base+rag"] > arms.set_index("arm").prompt_tokens["base"])
    assert "事实最准的是" in (bench / "arms.md").read_text(encoding="utf-8")
    sheet = pd.read_csv(bench / "human_scores.csv", encoding="utf-8-sig")
    assert set(sheet.model) == set(arms.arm)  # the blind sheet carries the retrieval arms too


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
