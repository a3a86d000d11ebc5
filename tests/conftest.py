"""Shared fixtures: repository paths, the stand-in config, and a runner for the CLI of either lane."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from parallel import check_course_grouping, course_first, pin_this_worker
from parallel import pytest_xdist_make_scheduler  # noqa: F401  (a hook: xdist asks the conftest for it)

pin_this_worker()  # before torch starts its threads (tests/parallel.py says why)

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
    check_course_grouping(items)
    course_first(items)
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
    """Day 1, Day 2 and Day 3 executed with papermill (CI parameters) into one folder, as `make run` does.

    ``LLMCOURSE_EXECUTED_COURSE=DIR`` reuses a folder an earlier run left (to rerun one test locally;
    the tests that read the seconds per notebook then see none)."""
    from llmcourse.notebooks.run import CI_PARAMETERS, run_day
    if os.environ.get("LLMCOURSE_EXECUTED_COURSE"):
        return Path(os.environ["LLMCOURSE_EXECUTED_COURSE"]), {}
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


# Debian's Chromium on a closed network, as root (see .ci/install-chromium).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


# The Day 3 project's notebooks, in the order a learner runs them.
DAY3_NOTEBOOKS = ("01_data.ipynb", "02_train.ipynb", "03_deploy.ipynb", "04_verify.ipynb")


def readme_section(text: str, name: str) -> str:
    """What the README holds between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (Day 3's filled sections)."""
    from llmcourse.evaluation.project import section_markers

    start, end = section_markers(name)
    return text.split(start)[1].split(end)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def jupyter_lab(folder: Path, scratch: Path):
    """JupyterLab of the course venv on 127.0.0.1 with a token, serving ``folder``: yields (url, token)."""
    import secrets

    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "JUPYTER_CONFIG_DIR": str(scratch / "jupyter-config")}
    log = scratch / "lab.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
    try:
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=30)
