"""Day 1 end to end: papermill runs the source notebooks, nbgrader's validator passes them,
and the generated release notebooks fail every test (nbgrader exits 0 either way, so we
look at the validator's results)."""
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from llmcourse.course import CI_PARAMETERS, run_day
from conftest import ROOT

pytestmark = pytest.mark.slow


def _grade_ids(path):
    return {c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(path, as_version=4).cells
            if "nbgrader" in c.metadata}


def _validate(path, invert=False):
    from nbgrader.validator import Validator
    from traitlets.config import Config
    config = Config()
    config.Execute.timeout = 900
    return Validator(invert=invert, config=config).validate(str(path))


@pytest.fixture(scope="module")
def executed_day1(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    seconds = run_day("day1", out, CI_PARAMETERS["day1"])
    return out / "day1", seconds


def test_papermill_runs_every_day1_notebook(executed_day1):
    folder, seconds = executed_day1
    assert set(seconds) == {p.name for p in (ROOT / "day1").glob("*.ipynb")}
    trained = nbformat.read(folder / "02_lora_training.executed.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in trained.cells if c.cell_type == "code" for o in c.outputs)
    assert "共 8 步" in text
    log = [json.loads(line) for line in (folder / "runs" / "my_first_lora" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and log[-1]["loss"] < log[0]["loss"]


def test_source_notebooks_pass_the_validator_reusing_artifacts(executed_day1):
    folder, _ = executed_day1
    stamp = (folder / "runs" / "my_first_lora" / "train_log.jsonl").stat().st_mtime_ns
    for notebook in ("01_concepts.ipynb", "02_lora_training.ipynb"):
        results = _validate(folder / notebook)
        assert results == {}, (notebook, results)
    # Artifact mode: the validator (NBGRADER_EXECUTION set) reused the run instead of retraining.
    assert (folder / "runs" / "my_first_lora" / "train_log.jsonl").stat().st_mtime_ns == stamp


def test_release_notebooks_fail_every_test(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(ROOT / "day1", course / "day1", ignore=shutil.ignore_patterns("runs", "*.executed.ipynb"))
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "day1", "--force",
         f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"],
        capture_output=True, text=True, cwd=course, timeout=600,
        env={**os.environ, "JUPYTER_CONFIG_PATH": str(ROOT / "grading")})
    assert done.returncode == 0, done.stderr[-3000:]
    release = course / "grading" / "release" / "day1"
    for notebook in ("01_concepts.ipynb", "02_lora_training.ipynb"):
        released = release / notebook
        source_text = (ROOT / "day1" / notebook).read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" in source_text and "BEGIN SOLUTION" not in released.read_text(encoding="utf-8")
        assert "BEGIN HIDDEN TESTS" not in released.read_text(encoding="utf-8")
        assert _grade_ids(released) == _grade_ids(ROOT / "day1" / notebook)
        results = _validate(released, invert=True)
        assert "passed" not in results and "changed" not in results, (notebook, results)
    assert (release / "data" / "faq_train.jsonl").exists() and not (release / "runs").exists()
