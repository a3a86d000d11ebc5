"""llmcourse: the course's helper package, grouped by stage.

Usage: ``from llmcourse.config import load_config``, then the stage you are at:
``llmcourse.data`` (raw files → JSONL), ``llmcourse.training`` (LoRA fine-tuning),
``llmcourse.inference`` (engines), ``llmcourse.serving`` (the API), ``llmcourse.evaluation`` (scores,
benchmarks, the Day 3 report), ``llmcourse.grading`` (nbgrader, rubric, checks), ``llmcourse.notebooks``
(display helpers, forms, running the course), ``llmcourse.env`` (models, lanes, versions).
README.md "Layout" has one line per file. Old flat names still import (llmcourse/legacy.py).
"""
from llmcourse import legacy

legacy.install()
