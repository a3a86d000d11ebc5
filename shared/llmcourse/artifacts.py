"""The artifact contract: where the course lives, what each step saves under which name, how a training
log is read, and when a step reuses what was saved instead of computing it again.

Usage::

    from llmcourse.artifacts import TRAIN_LOG, read_train_log, reuse_or_compute
    log = read_train_log(run_dir)                       # one row per logged step ([] if none yet)
    table = reuse_or_compute("基准结果", [out / BENCHMARK_CSV], compute=lambda: run(...),
                             load=lambda: pd.read_csv(out / BENCHMARK_CSV))

One place for these names: a module that writes or reads an artifact takes its name from here, so a file
renamed here is renamed for the writer, every reader and the grader at once.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from llmcourse.errors import CourseError

# The checkout's root (day1/, day2/, grading/, pyproject.toml): this file is shared/llmcourse/artifacts.py.
COURSE_ROOT = Path(__file__).resolve().parents[2]

# nbgrader sets this while it executes a notebook (autograde, validate).
GRADING_ENV = "NBGRADER_EXECUTION"

# --- a training run's folder (train.output_dir), written by llmcourse.training.run ---
RUN_CONFIG = "config.yaml"            # the resolved config the run trained with
TRAIN_LOG = "train_log.jsonl"         # one JSON object per logged step
RUN_ENV = "env.json"                  # where it ran: device, engine, versions, hardware, launch
ADAPTER_DIR = "adapter"               # the LoRA adapter (PEFT's save_pretrained)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CHECKPOINT_DIR = "checkpoints"        # the trainer's checkpoints (resume)
LOSS_CURVE = "loss_curve.png"
EVAL_FILE = "eval_{split}.json"       # Day 3: a split's answers and scores (evaluation.project)

# --- a built dataset's folder (data.built_dir), written by llmcourse.data.build ---
SPLITS = ("train", "val", "test")     # train.jsonl, val.jsonl, test.jsonl, in this order
REJECTED = "rejected.jsonl"
DATA_REPORT_JSON = "data_report.json"
DATA_REPORT_MD = "data_report.md"
LENGTH_HIST = "length_hist.png"

# --- a benchmark's folder (evaluation.benchmark) ---
GENERATIONS = "generations.jsonl"
BENCHMARK_CSV = "benchmark.csv"
BENCHMARK_SUMMARY = "summary.md"
HUMAN_SCORES = "human_scores.csv"

# --- serving and the Day 3 report ---
CONVERSATION = "conversation.json"    # Day 3 deploy/: the multi-turn evidence
LOADTEST_JSON = "loadtest.json"
LOADTEST_MD = "loadtest.md"
PROJECT_REPORT = "report.md"

# --- which files are whose: one list each (patterns on names, at any depth) ---
# What a learner's own work creates inside a day folder: course runs leave these behind when they copy a
# day (notebooks.run), nbgrader's release leaves them out (grading/nbgrader_config.py), so the learner edition
# starts empty where the learner writes; the autograded copy keeps them (they are what is graded).
LEARNER_ARTIFACTS = ["runs", "outputs", "*.executed.ipynb", "no_code_submission", "uploads", "my_lora_sft.yaml",
                     "my_cases.jsonl",
                     # Day 3's generated folders and files
                     "built", "run", "run_*", "loadtest", "verify", PROJECT_REPORT, CONVERSATION, "server.log"]
# Caches and OS leftovers: never in a release, a course copy or the autograded copy.
JUNK = [".ipynb_checkpoints", "__pycache__", "*.pyc", CHECKPOINT_DIR, "unsloth_compiled_cache", "__MACOSX",
        ".DS_Store"]
# What the autograded copy of a submission leaves out: junk and executed copies of notebooks.
AUTOGRADE_IGNORE = [*JUNK, "*.executed.ipynb"]

T = TypeVar("T")


def in_grading() -> bool:
    """True while nbgrader executes a notebook (autograde, validate): expensive steps reuse artifacts."""
    return bool(os.environ.get(GRADING_ENV))


def eval_file(split: str) -> str:
    return EVAL_FILE.format(split=split)


class ArtifactMissing(CourseError, FileNotFoundError):
    """Under nbgrader, a step found none of the artifacts it must reuse (the learner did not run it)."""


class RecomputeRefused(CourseError, RuntimeError):
    """Under nbgrader a step that recomputes, and so overwrites, a learner's saved artifacts was started: the
    cell that does it is tagged ``skip-when-grading``, but nbgrader's validator runs every cell."""


class LogLineInvalid(CourseError, ValueError):
    """A train_log.jsonl line is not a JSON object: training never writes one, so the log was edited."""

    def __init__(self, path: Path, line: int):
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: 不是合法的 JSON；训练日志不要手工修改")


def read_train_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every logged step of a run, in order; [] when the run has no log yet.

    Raises :class:`LogLineInvalid` (file and line) for a line that is not a JSON object.
    """
    path = Path(run_dir) / TRAIN_LOG
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise LogLineInvalid(path, number) from None
            if not isinstance(row, dict):
                raise LogLineInvalid(path, number)
            rows.append(row)
    return rows


def reuse_or_compute(what: str, saved: Path | Iterable[Path], compute: Callable[[], T], load: Callable[[], T],
                     *, required: bool = True, hint: str = "请在提交前完整运行这一步的单元格") -> T:
    """``compute()``; under nbgrader ``load()`` the saved artifacts instead (the grader scores what the
    learner produced and recomputes nothing).

    ``what`` names the artifact for the learner (Chinese, e.g. "训练产物"); ``saved`` are the files that must
    all exist to reuse. Missing under nbgrader: :class:`ArtifactMissing` saying what to run (``hint``), or,
    with ``required=False`` (results that are cheap or harmless to recompute), ``compute()``.
    """
    if not in_grading():
        return compute()
    paths = [Path(saved)] if isinstance(saved, (str, Path)) else [Path(p) for p in saved]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        if not required:
            return compute()
        raise ArtifactMissing(f"评分模式：没有找到已保存的{what} {'、'.join(missing)}；{hint}")
    print(f"评分模式：复用已保存的{what} {'、'.join(map(str, paths))}，不重新计算")
    return load()
