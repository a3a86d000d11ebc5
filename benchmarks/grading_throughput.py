"""Seconds per submission when autograding a synthetic cohort (goal: at most 6 s each on 2 cores),
or a class of real Day 1 / Day 2 submissions (``--real``; goal: at most 20 s each on 2 cores).

Usage::

    .venv/bin/python benchmarks/grading_throughput.py                 # 50 submissions, 2 workers
    .venv/bin/python benchmarks/grading_throughput.py --count 20 --workers 4 --kinds correct
    .venv/bin/python benchmarks/grading_throughput.py --untrimmed --count 2   # Day 1's full notebooks
    .venv/bin/python benchmarks/grading_throughput.py --real                  # 20 real submissions per day
    .venv/bin/python benchmarks/grading_throughput.py --real --days day1 --count 1 --workers 1 --executed DIR

Builds a scratch course from Day 1's notebooks 01 and 02 (graded cells only, see llmcourse.grading.cohort),
releases it, writes ``--count`` learners cycling through ``--kinds`` (by default every synthetic kind,
so hanging learners cost their cell timeout), collects them from one zip each and autogrades them in
one call.

``--real``: for each of ``--days`` a scratch course of the day's full source notebooks is released and
``--count`` learners hand in real submissions (:func:`llmcourse.grading.cohort.real_submission`: the learner
edition filled in with the sources' answers, beside the artifacts of a papermill run of the day with
the CI parameters). That run is read from ``--executed DIR`` (``DIR/day1``, ``DIR/day2``, as
``benchmarks/course_time.py --keep DIR`` leaves them; ``make bench`` passes outputs/bench/course) and
made in a scratch folder when DIR lacks a day. The figure is the autograde wall time divided by the
class size, beside each learner's own seconds (two learners at a time with 2 workers) and the scores.

The last line is ``RESULT {json}`` for ``make bench`` (benchmarks/run_all.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its waited-for children (workers, and through them kernels)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


REAL_GOAL_S = 20.0
REAL_DAYS = ("day1", "day2")


def notebook_scores(course, assignment: str) -> dict[str, dict[str, list[float]]]:
    """``{student: {notebook: [points scored automatically, their maximum]}}`` from the gradebook."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(course.db_url, course.course_id) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            scores[submission.student_id] = {  # cells graded by hand have no auto score: left out
                notebook.name: [round(sum(g.auto_score for g in notebook.grades if g.auto_score is not None), 2),
                                round(sum(g.max_score for g in notebook.grades if g.auto_score is not None), 2)]
                for notebook in submission.notebooks}
    return scores


def executed_days(executed: Path | None, scratch: Path, days) -> Path:
    """A folder with ``<day>/`` as ``run_day`` leaves it for every day; days it lacks are run into ``scratch``."""
    from llmcourse.notebooks.run import CI_PARAMETERS, run_day

    if executed is not None and all((executed / day / "runs").is_dir() for day in days):
        return executed
    out = scratch / "executed"
    for day in ("day1", "day2"):  # Day 2 reads Day 1's adapters: run both, in order
        started = time.perf_counter()
        run_day(day, out, CI_PARAMETERS[day])
        print(f"course run {day} (CI parameters): {time.perf_counter() - started:.0f} s")
    return out


def grade_real_class(day: str, executed: Path, scratch: Path, count: int, workers: int, cell_timeout: int) -> dict:
    """Release ``day`` in a scratch course, collect ``count`` real submissions, autograde them: the numbers."""
    from llmcourse.grading.cohort import real_submission
    from llmcourse.artifacts import COURSE_ROOT as ROOT
    from llmcourse.notebooks.run import SKIP
    from llmcourse.grading.workflow import Course, Settings, autograde, collect, release

    course = Course(scratch / f"course-{day}")
    shutil.copytree(ROOT / day, course.root / day, ignore=SKIP)
    release(course, day)
    for number in range(1, count + 1):
        real_submission(course.release_dir(day), course.root / day, executed / day,
                        scratch / f"inbox-{day}" / f"s{number:02d}_real")
    collect(course, day, scratch / f"inbox-{day}")
    settings = Settings(workers=workers, cell_timeout=cell_timeout, notebook_timeout=900, evidence="none")
    load_before = os.getloadavg()[0]
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    graded = autograde(course, day, settings)
    autograde_s, cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_before
    scores = notebook_scores(course, day)
    distinct = {json.dumps(s, sort_keys=True) for s in scores.values()}
    statuses = {status: sum(g.status == status for g in graded) for status in {g.status for g in graded}}
    per_submission = autograde_s / len(graded)
    print(f"{day}: {len(graded)} real submissions, {workers} workers, autograde {autograde_s:.1f} s = "
          f"{per_submission:.1f} s per submission (goal <= {REAL_GOAL_S:.0f} s); each learner "
          f"{sum(g.seconds for g in graded) / len(graded):.1f} s on average; {cpu_s / len(graded):.1f} CPU-s each; "
          f"statuses {statuses}; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{day}: scores per notebook (auto, max): {scores[sorted(scores)[0]]}"
          + ("" if len(distinct) == 1 else f"; {len(distinct)} different score sets in the class"))
    return {"submissions": len(graded), "autograde_s": round(autograde_s, 1),
            "seconds_per_submission": round(per_submission, 2),
            "learner_seconds_mean": round(sum(g.seconds for g in graded) / len(graded), 2),
            "cpu_seconds_per_submission": round(cpu_s / len(graded), 2), "statuses": statuses,
            "scores": scores[sorted(scores)[0]], "same_scores_for_all": len(distinct) == 1,
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def main_real(args) -> None:
    days = [day for day in args.days.split(",") if day]
    unknown = sorted(set(days) - set(REAL_DAYS))
    if unknown:
        raise SystemExit(f"--real grades {', '.join(REAL_DAYS)} only; not: {', '.join(unknown)}")
    count = args.count or 20
    with tempfile.TemporaryDirectory(prefix="grading-real-") as scratch:
        scratch = Path(args.keep or scratch)  # --keep: the courses stay (records/*/execution: seconds per cell)
        shutil.rmtree(scratch / "courses", ignore_errors=True)
        scratch = scratch / "courses"
        executed = executed_days(Path(args.executed) if args.executed else None, scratch, days)
        per_day = {day: grade_real_class(day, executed, scratch, count, args.workers, args.cell_timeout)
                   for day in days}
    goals = [{"what": f"grading: real {day} submissions", "goal": f"<= {REAL_GOAL_S:.0f} s per submission on 2 cores",
              "value": f"{r['seconds_per_submission']:.1f} s ({r['submissions']} submissions, {args.workers} workers; "
                       f"{r['learner_seconds_mean']:.0f} s per learner)",
              "met": r["seconds_per_submission"] <= REAL_GOAL_S and set(r["statuses"]) == {"ok"}}
             for day, r in per_day.items()]
    result = {"benchmark": "grading_real", "workers": args.workers, "cores": os.cpu_count(),
              "cell_timeout_s": args.cell_timeout, "goal_s": REAL_GOAL_S, "days": per_day,
              "meets_goal": all(g["met"] for g in goals), "load_average_1min": round(os.getloadavg()[0], 2),
              "summary": "autograde real submissions with " + f"{args.workers} workers: " + ", ".join(
                  f"{day} {r['seconds_per_submission']:.1f} s each" for day, r in per_day.items()),
              "goals": goals}
    print("RESULT " + json.dumps(result, ensure_ascii=False))


def main() -> None:
    from llmcourse.grading.cohort import KINDS, build_course, make_cohort
    from llmcourse.grading.workflow import Course, Settings, autograde, collect, export, release

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help="submissions (default: 50 synthetic, 20 real per day)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--cell-timeout", type=int, help="seconds per cell (default: 10 synthetic, 60 real)")
    parser.add_argument("--untrimmed", action="store_true", help="grade Day 1's full notebooks (loads the model)")
    parser.add_argument("--real", action="store_true", help="a class of real Day 1 / Day 2 submissions")
    parser.add_argument("--days", default=",".join(REAL_DAYS), help="--real: the days to grade")
    parser.add_argument("--executed", help="--real: a course run's folder holding day1/ and day2/ (with runs/)")
    parser.add_argument("--keep", help="--real: grade in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if args.real:
        args.cell_timeout = args.cell_timeout or 60
        return main_real(args)
    args.count, args.cell_timeout = args.count or 50, args.cell_timeout or 10

    with tempfile.TemporaryDirectory(prefix="grading-bench-") as scratch:
        scratch = Path(scratch)
        course = Course(build_course(scratch / "course", trim=not args.untrimmed))
        started = time.perf_counter()
        release(course, "day1")
        release_s = time.perf_counter() - started
        kinds = list(itertools.islice(itertools.cycle(args.kinds), args.count))
        make_cohort(course, scratch / "inbox", kinds, zipped=True)
        started = time.perf_counter()
        collect(course, "day1", scratch / "inbox")
        collect_s = time.perf_counter() - started
        settings = Settings(workers=args.workers, cell_timeout=args.cell_timeout, notebook_timeout=300,
                            output_limit=100_000, evidence="none")
        started, cpu_before = time.perf_counter(), _cpu_seconds()
        graded = autograde(course, "day1", settings)
        autograde_s, cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_before
        started = time.perf_counter()
        export(course)
        export_s = time.perf_counter() - started
    per_submission = autograde_s / len(graded)
    statuses = {status: sum(g.status == status for g in graded) for status in {g.status for g in graded}}
    print(f"release {release_s:.1f} s, collect {collect_s:.1f} s, export {export_s:.1f} s")
    print(f"autograde: {len(graded)} submissions, {args.workers} workers, {autograde_s:.1f} s "
          f"= {per_submission:.2f} s per submission (goal <= 6 s on 2 cores); statuses {statuses}")
    print(f"CPU time (this process and its finished workers and kernels): {cpu_s:.0f} s "
          f"= {cpu_s / len(graded):.2f} CPU-s per submission")
    print(f"load average during the run (other jobs share this machine): {os.getloadavg()[0]:.1f}, "
          f"cores: {os.cpu_count()}")
    result = {"benchmark": "grading_throughput", "submissions": len(graded), "workers": args.workers,
              "cores": os.cpu_count(), "trimmed": not args.untrimmed, "kinds": sorted(set(kinds)),
              "cell_timeout_s": args.cell_timeout, "autograde_s": round(autograde_s, 1),
              "seconds_per_submission": round(per_submission, 2),
              "cpu_seconds_per_submission": round(cpu_s / len(graded), 2), "goal_s": 6.0,
              "meets_goal": per_submission <= 6.0, "load_average_1min": round(os.getloadavg()[0], 2),
              "summary": f"autograde {len(graded)} synthetic submissions with {args.workers} workers: "
                         f"{per_submission:.2f} s each ({cpu_s / len(graded):.2f} CPU-s)",
              "goals": [{"goal": "<= 6 s per submission on 2 cores", "value": f"{per_submission:.2f} s",
                         "met": per_submission <= 6.0}]}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":  # the grading workers are spawned processes: they must not rerun this
    main()
