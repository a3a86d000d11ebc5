"""Wall time of every notebook of the course under papermill, with the CI parameters (goal: 15 min in all).

Usage:  .venv/bin/python benchmarks/course_time.py [--days day1,day2] [--keep DIR]

Runs ``llmcourse.notebooks.run.run_day`` for each day of ``llmcourse.notebooks.run.DAYS`` in order (later days
read earlier days' runs) into one temporary folder, exactly as CI's notebook tests do, and prints
seconds per notebook and in all. A day that fails is reported and the next one still runs. The
last line is ``RESULT {json}`` for ``make bench`` (benchmarks/run_all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 15 * 60


def main() -> None:
    from llmcourse.notebooks.run import CI_PARAMETERS, DAYS, run_day
    from papermill.exceptions import PapermillExecutionError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default=",".join(DAYS))
    parser.add_argument("--keep", help="execute into this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    days = args.days.split(",")
    # papermill starts kernels by name and nbgrader shells out: both must find this venv first (as in make run).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    notebooks, failures = {}, {}
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="course-time-") as scratch:
        out = Path(args.keep or scratch)
        started = time.perf_counter()
        for day in days:
            day_started = time.perf_counter()
            try:
                seconds = run_day(day, out, CI_PARAMETERS.get(day, {}))
            except (PapermillExecutionError, OSError, RuntimeError) as exc:  # cell errors, timeouts, dead kernels
                message = str(exc).strip().splitlines()
                failures[day] = f"{type(exc).__name__}: {message[-1][:300] if message else ''}"
                print(f"{day}: FAILED after {time.perf_counter() - day_started:.0f} s: {failures[day]}")
                continue
            notebooks.update({f"{day}/{name}": s for name, s in seconds.items()})
        total = time.perf_counter() - started
    print(f"\nwhole course (CI parameters): {total:.0f} s = {total / 60:.1f} min  [goal: <= {GOAL_S // 60} min]"
          + (f"; FAILED: {', '.join(failures)}" if failures else ""))
    met = not failures and total <= GOAL_S
    figure = f"{total / 60:.1f} min for {len(notebooks)} notebooks" + (f" (failed: {', '.join(failures)})" if failures else "")
    slowest = sorted(notebooks.items(), key=lambda item: -item[1])[:3]
    result = {"benchmark": "course_time", "days": days, "notebooks_s": notebooks, "total_s": round(total, 1),
              "failures": failures, "goal_s": GOAL_S, "meets_goal": met,
              "load_average_start": round(load_start, 2), "load_average_end": round(os.getloadavg()[0], 2),
              "summary": "per notebook: " + ", ".join(f"{name} {s:.0f} s" for name, s in notebooks.items()),
              "goals": [{"what": "whole course under papermill (CI parameters)", "value": figure,
                         "goal": f"≤ {GOAL_S // 60} min", "met": met},
                        {"what": "slowest notebooks", "value": ", ".join(f"{n} {s:.0f} s" for n, s in slowest),
                         "goal": "", "met": None}]}
    print("RESULT " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
