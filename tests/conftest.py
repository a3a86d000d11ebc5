"""Shared fixtures: repository paths, the stand-in config, and a runner for the CLI of either lane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:  # Unsloth patches transformers/TRL/PEFT on import, so it must come first, as in the notebooks.
    import unsloth  # noqa: F401
except ImportError:  # the plain-TRL lane
    pass

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIG = ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"
GPU_CONFIG = ROOT / "day1" / "configs" / "qwen3-4b_lora_sft.yaml"
TRAIN_FILE = ROOT / "day1" / "data" / "faq_train.jsonl"
TEST_FILE = ROOT / "day1" / "data" / "faq_test.jsonl"
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def run_cli(*args: str, python: str | Path = sys.executable, timeout: int = 900, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m llmcourse.cli ARGS`` and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(python), "-m", "llmcourse.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, **popen)


@pytest.fixture
def trl_python() -> Path:
    if not TRL_PYTHON.exists():
        pytest.fail(f"{TRL_PYTHON} is missing: run `make test`, which builds the plain-TRL lane")
    return TRL_PYTHON


@pytest.fixture(scope="session")
def executed_course(tmp_path_factory):
    """Day 1, Day 2 and Day 3 executed with papermill (CI parameters) into one folder, as `make run` does."""
    from llmcourse.course import CI_PARAMETERS, run_day
    out = tmp_path_factory.mktemp("course")
    seconds = {day: run_day(day, out, CI_PARAMETERS[day]) for day in ("day1", "day2", "day3")}
    return out, seconds


def grade_ids(path) -> set[str]:
    import nbformat
    return {c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(path, as_version=4).cells
            if "nbgrader" in c.metadata}


def validate(path, invert=False) -> dict:
    """nbgrader's validator results (it exits 0 whatever happens, so tests read these)."""
    from nbgrader.validator import Validator
    from traitlets.config import Config
    config = Config()
    config.Execute.timeout = 900
    return Validator(invert=invert, config=config).validate(str(path))


def generate_release(day: str, tmp_path) -> Path:
    """`nbgrader generate_assignment DAY` with the course config, into a scratch course folder."""
    import shutil
    course = tmp_path / "course"
    shutil.copytree(ROOT / day, course / day, ignore=shutil.ignore_patterns("runs", "*.executed.ipynb"))
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", day, "--force",
         f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"],
        capture_output=True, text=True, cwd=course, timeout=600,
        env={**os.environ, "JUPYTER_CONFIG_PATH": str(ROOT / "grading")})
    assert done.returncode == 0, done.stderr[-3000:]
    return course / "grading" / "release" / day
