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
    assert "你的适配器文件：30.4 MB" in text  # r = 32, as the prose next to it says


def test_the_notebooks_step_by_step_run_leaves_what_train_leaves(executed_course):
    """02_lora_training trains cell by cell (TrainingRun + the library calls); 03_no_code through train().
    Both runs hold the same files, the same env.json and config.yaml fields and the same kind of adapter."""
    import yaml

    runs = executed_course[0] / "day1" / "runs"
    cells, helper = runs / "my_first_lora", runs / "no_code"

    def contents(run):
        files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "checkpoints" not in p.parts)
        env = json.loads((run / "env.json").read_text(encoding="utf-8"))
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        adapter = json.loads((run / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
        return files, sorted(env), {k: sorted(v) for k, v in config.items() if isinstance(v, dict)}, \
            (adapter["peft_type"], adapter["task_type"], sorted(adapter["target_modules"]))

    assert contents(cells) == contents(helper)
    assert json.loads((cells / "env.json").read_text(encoding="utf-8"))["engine"] == "unsloth"





def test_no_code_notebook_leaves_the_evidence(executed_course):
    from llmcourse.grading.checks import check_no_code_submission
    folder = executed_course[0] / "day1"
    status = check_no_code_submission(folder / "no_code_submission")
    assert status["steps"] == 5
