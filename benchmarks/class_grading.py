"""Day 3's model checks for a class: one model load and one API start per learner vs one vLLM for all.

Usage::

    .venv/bin/python benchmarks/class_grading.py                       # 20 learners, both paths, the rubric's sizes
    nice .venv/bin/python benchmarks/class_grading.py --count 4 --questions 4 --max-tokens 16
    .venv/bin/python benchmarks/class_grading.py --count 20 --old-count 5   # old path timed on 5 of them only

Builds ``--count`` Day 3 projects (:func:`llmcourse.grading.cohort.write_day3_project`) with real adapters
of the stand-in, each different (:func:`llmcourse.grading.cohort.write_real_adapters`, lora_B scales cycling),
then computes the improvement and deployment evidence of every learner twice, in one run:

* old: :func:`llmcourse.grading.rubric.collect_evidence` per learner, one after another (a transformers
  load of base + adapter for the held-out answers, base answers cached; the learner's own vLLM API server
  for the multi-turn chat), as each autograde worker does;
* new: :func:`llmcourse.grading.class_eval.class_evidence`, one vLLM server for the class, every adapter
  loaded into it under the learner's name.

Prints both wall times, seconds per learner, the class server's start time, and how many learners got
different scores on the two paths (the goal is 0). ``--old-count K`` times the old path on the first K
learners only (its per-learner seconds are then measured on K; the total for ``--count`` is that times
``count``, marked as extrapolated). The last line is ``RESULT {json}`` for ``make bench`` (run_all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCALES = (0.0, 0.005, 0.01, 0.02, 0.03)


def build_class(folder: Path, count: int) -> dict[str, Path]:
    from llmcourse.grading.cohort import write_day3_project, write_real_adapters

    folders = {f"s{n:02d}": write_day3_project(folder / f"s{n:02d}") for n in range(1, count + 1)}
    write_real_adapters({path / "train" / "run": SCALES[n % len(SCALES)] for n, path in enumerate(folders.values())})
    return folders


def rubric_for(folder: Path, questions: int | None, max_tokens: int | None):
    import yaml
    from llmcourse.grading.rubric import load_rubric

    raw = yaml.safe_load((ROOT / "grading" / "rubric.yaml").read_text(encoding="utf-8"))
    evidence = raw["assignments"]["day3"]["evidence"]
    if questions:
        evidence["improvement"]["max_questions"] = questions
    if max_tokens:
        evidence["improvement"]["max_tokens"] = evidence["deployment"]["max_tokens"] = max_tokens
    shutil.copytree(ROOT / "grading" / "heldout", folder / "heldout")
    (folder / "rubric.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_rubric(folder / "rubric.yaml")


def model_scores(rubric, evidence: dict) -> dict:
    from llmcourse.grading.rubric import dimension_scores

    return {k: v for k, v in dimension_scores(rubric, "day3", evidence).items() if k in ("improvement", "deployment")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="learners")
    parser.add_argument("--old-count", type=int, default=None, help="time the old path on this many (default: all)")
    parser.add_argument("--questions", type=int, default=None, help="held-out questions (default: rubric.yaml's)")
    parser.add_argument("--max-tokens", type=int, default=None, help="answer tokens (default: rubric.yaml's)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "shared"))
    from llmcourse.env.vllm_lane import vllm_python
    from llmcourse.grading.class_eval import class_evidence
    from llmcourse.grading.rubric import collect_evidence

    if vllm_python() is None:
        print("RESULT " + json.dumps({"benchmark": "class_grading", "skipped": "no Python with vLLM here",
                                      "summary": "skipped: no vLLM (make setup builds .venv-vllm)"}))
        return
    work = Path(tempfile.mkdtemp(prefix="llmcourse-class-bench-"))
    try:
        started = time.perf_counter()
        folders = build_class(work / "class", args.count)
        rubric = rubric_for(work / "rubric", args.questions, args.max_tokens)
        settings = rubric.settings("day3", "improvement")
        print(f"{args.count} learners with real adapters built in {time.perf_counter() - started:.1f} s; "
              f"{settings.get('max_questions')} held-out questions, {settings.get('max_tokens')} tokens, "
              f"dtype {settings.get('dtype')}", flush=True)

        old_count = min(args.old_count or args.count, args.count)
        old, old_each = {}, {}
        started = time.perf_counter()
        for student in list(folders)[:old_count]:
            began = time.perf_counter()
            old[student] = collect_evidence(rubric, "day3", folders[student], work / "cache_old",
                                            kinds={"improvement", "deployment"})
            old_each[student] = round(time.perf_counter() - began, 1)
            print(f"  old path {student}: {old_each[student]} s {model_scores(rubric, old[student])}", flush=True)
        old_s = time.perf_counter() - started

        new_each = {}
        started = time.perf_counter()
        new = class_evidence(rubric, "day3", folders, work / "cache_new", work / "logs",
                             progress=lambda student, seconds: new_each.__setitem__(student, seconds))
        new_s = time.perf_counter() - started
        server_start_s = round(new_s - sum(new_each.values()), 1)
        for student in folders:
            print(f"  new path {student}: {new_each.get(student)} s {model_scores(rubric, new[student])}", flush=True)

        differing = [s for s in old if model_scores(rubric, old[s]) != model_scores(rubric, new[s])]
        answers_differ = [s for s in old if old[s].get("improvement", {}).get("numbers", {}).get("examples")
                          != new[s].get("improvement", {}).get("numbers", {}).get("examples")]
        old_per, new_per = old_s / old_count, new_s / args.count
        extrapolated = old_count < args.count
        print(f"old path: {old_s:.1f} s for {old_count} learners = {old_per:.1f} s each"
              + (f" (x {args.count} = {old_per * args.count:.0f} s, extrapolated)" if extrapolated else ""))
        print(f"new path: {new_s:.1f} s for {args.count} learners = {new_per:.1f} s each "
              f"(server start and first load ~{server_start_s} s, then {sum(new_each.values()) / args.count:.1f} s each)")
        print(f"speed-up {old_per / new_per:.1f}x per learner; scores differ for {len(differing)} of {old_count} "
              f"learners {differing}; held-out answers differ for {len(answers_differ)} {answers_differ}")
        print(f"load average {os.getloadavg()[0]:.1f}, cores {os.cpu_count()}")
        result = {"benchmark": "class_grading", "learners": args.count, "old_learners": old_count,
                  "old_s": round(old_s, 1), "old_s_per_learner": round(old_per, 1),
                  "old_s_extrapolated": round(old_per * args.count, 1) if extrapolated else None,
                  "new_s": round(new_s, 1), "new_s_per_learner": round(new_per, 1),
                  "new_server_start_s": server_start_s, "old_each_s": old_each, "new_each_s": new_each,
                  "speedup": round(old_per / new_per, 2), "scores_differ": differing, "answers_differ": answers_differ,
                  "load_average_1min": round(os.getloadavg()[0], 2),
                  "summary": f"Day 3 model checks, {args.count} learners: per learner {old_per:.1f} s each, one vLLM "
                             f"for the class {new_per:.1f} s each ({old_per / new_per:.1f}x)",
                  "goals": [{"what": "class grading: scores equal to the per-learner path", "goal": "0 learners differ",
                             "value": f"{len(differing)} of {old_count}", "met": not differing},
                            {"what": "class grading: faster than a load per learner", "goal": "new < old per learner",
                             "value": f"{new_per:.1f} s vs {old_per:.1f} s", "met": new_per < old_per}]}
        print("RESULT " + json.dumps(result, ensure_ascii=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
