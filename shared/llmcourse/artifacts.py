"""The artifact contract: where the course lives, what each step saves under which name, and when a step
reuses what was saved instead of computing it again.

Usage::

    from llmcourse.artifacts import COURSE_ROOT, in_grading
    if in_grading():          # nbgrader is executing the notebook: reuse, never recompute
        ...

One place for these names: a module that writes or reads an artifact takes its name from here.
"""
from __future__ import annotations

import os
from pathlib import Path

# The checkout's root (day1/, day2/, grading/, pyproject.toml): this file is shared/llmcourse/artifacts.py.
COURSE_ROOT = Path(__file__).resolve().parents[2]

# nbgrader sets this while it executes a notebook (autograde, validate).
GRADING_ENV = "NBGRADER_EXECUTION"


def in_grading() -> bool:
    """True while nbgrader executes a notebook (autograde, validate): expensive steps reuse artifacts."""
    return bool(os.environ.get(GRADING_ENV))


# The splits a built dataset has, in this order (train.jsonl, val.jsonl, test.jsonl).
SPLITS = ("train", "val", "test")
