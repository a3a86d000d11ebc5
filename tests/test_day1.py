"""Day 1 end to end: papermill runs the source notebooks, nbgrader's validator passes them
(reusing the saved run), and the generated release notebooks fail every test."""
import json

import nbformat
import pytest

from conftest import ROOT, generate_release, grade_ids, validate

pytestmark = pytest.mark.slow
NOTEBOOKS = ("01_concepts.ipynb", "02_lora_training.ipynb", "03_no_code.ipynb")


def test_papermill_runs_every_day1_notebook(executed_course):
    out, seconds = executed_course
    assert set(seconds["day1"]) == {p.name for p in (ROOT / "day1").glob("*.ipynb")}
    trained = nbformat.read(out / "day1" / "02_lora_training.executed.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in trained.cells if c.cell_type == "code" for o in c.outputs)
    assert "共 8 步" in text
    log = [json.loads(line) for line in (out / "day1" / "runs" / "my_first_lora" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and log[-1]["loss"] < log[0]["loss"]


def test_source_notebooks_pass_the_validator_reusing_artifacts(executed_course):
    folder = executed_course[0] / "day1"
    stamp = (folder / "runs" / "my_first_lora" / "train_log.jsonl").stat().st_mtime_ns
    for notebook in NOTEBOOKS:
        results = validate(folder / notebook)
        assert results == {}, (notebook, results)
    # Artifact mode: the validator (NBGRADER_EXECUTION set) reused the run instead of retraining.
    assert (folder / "runs" / "my_first_lora" / "train_log.jsonl").stat().st_mtime_ns == stamp


def test_release_notebooks_fail_every_test(tmp_path):
    release = generate_release("day1", tmp_path)
    for notebook in NOTEBOOKS:
        released = (release / notebook).read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in released and "BEGIN HIDDEN TESTS" not in released
        assert grade_ids(release / notebook) == grade_ids(ROOT / "day1" / notebook)
        results = validate(release / notebook, invert=True)
        assert "passed" not in results and "changed" not in results, (notebook, results)
    assert (release / "data" / "faq_train.jsonl").exists() and not (release / "runs").exists()


def test_no_code_notebook_leaves_the_evidence(executed_course):
    from llmcourse.checks import check_no_code_submission
    folder = executed_course[0] / "day1"
    status = check_no_code_submission(folder / "no_code_submission")
    assert status["steps"] == 5
