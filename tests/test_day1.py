"""Day 1 end to end: papermill runs the source notebooks (the learner edition is validated in
tests/test_learner_edition.py)."""
import json

import nbformat
import pytest
from conftest import ROOT

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
    assert [row["step"] for row in log if row.get("eval_loss")] == [4, 8]  # the validation curve's points
    assert "你的适配器文件：15.2 MB" in text  # r = 16, as the prose next to it says





def test_no_code_notebook_leaves_the_evidence(executed_course):
    from llmcourse.grading.checks import check_no_code_submission
    folder = executed_course[0] / "day1"
    status = check_no_code_submission(folder / "no_code_submission")
    assert status["steps"] == 5
