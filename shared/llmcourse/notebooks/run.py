"""Run the course's notebooks end to end with papermill (``make run``, CI).

Usage::

    from llmcourse.notebooks.run import run_day, CPU_PARAMETERS
    executed = run_day("day1", "outputs", CPU_PARAMETERS["day1"])

``run_day`` copies the day's source folder (notebooks, configs, data) to ``OUT/<day>/``
and executes every notebook there in order, so each run's artifacts land beside its
executed notebook and the repository stays clean.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from llmcourse.artifacts import COURSE_ROOT, JUNK, LEARNER_ARTIFACTS

SKIP = shutil.ignore_patterns(*LEARNER_ARTIFACTS, *JUNK)

# Small enough for a 2-core CPU and CI, large enough for every check to mean something.
CPU_PARAMETERS = {
    # Day 1's two tracks train the same reference run (80 steps of 8): the notebook's answer, the form's defaults.
    "day1": {"02_lora_training.ipynb": {"max_steps": 80},
             "03_no_code.ipynb": {"auto_start": True}},
    "day2": {"05_no_code.ipynb": {"auto_fill": True}},
    "day3": {},
}
CI_PARAMETERS = {
    "day1": {"02_lora_training.ipynb": {"max_steps": 8, "max_samples": 32},
             "03_no_code.ipynb": {"auto_start": True, "max_steps": 5, "max_samples": 16}},
    "day2": {"01_inference.ipynb": {"max_cases": 6, "max_heldout": 2, "max_tokens": 24},  # 4 arms × 13 cases
             "02_acceleration.ipynb": {"n_prompts": 8, "max_tokens": 16},
             "04_troubleshooting.ipynb": {"max_steps": 3, "max_samples": 8, "batch_size": 2, "probe_count": 2,
                                          "max_tokens": 12, "memory_batch": 2, "memory_length": 32},
             # The no-code Day 2 fills its form as a learner would, on the no-code Day 1 run; 3 + 5 cases.
             "05_no_code.ipynb": {"auto_fill": True, "max_cases": 3, "max_tokens": 16}},
    "day3": {"02_train.ipynb": {"max_steps": 8, "max_samples": 32, "eval_limit": 4},
             "03_deploy.ipynb": {"max_tokens": 16},
             "04_verify.ipynb": {"max_cases": 6, "max_tokens": 24}},
}
DAYS = ["day1", "day2", "day3"]


def copy_day(day: str, out_dir: str | Path) -> Path:
    target = Path(out_dir) / day
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(COURSE_ROOT / day, target, ignore=SKIP)
    return target


def run_day(day: str, out_dir: str | Path, parameters: dict[str, dict] | None = None,
            timeout: int = 1800) -> dict[str, float]:
    """Execute each notebook of a day in a copy under ``out_dir``; return seconds per notebook."""
    import papermill

    folder = copy_day(day, out_dir)
    seconds = {}
    for notebook in sorted(folder.glob("*.ipynb")):
        started = time.perf_counter()
        papermill.execute_notebook(str(notebook), str(notebook.with_suffix(".executed.ipynb")),
                                   parameters=(parameters or {}).get(notebook.name, {}), cwd=str(folder),
                                   execution_timeout=timeout, progress_bar=False)  # kernel: the notebook's own
        seconds[notebook.name] = round(time.perf_counter() - started, 1)
        print(f"{day}/{notebook.name}: {seconds[notebook.name]} s")
    return seconds
