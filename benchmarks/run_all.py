"""Every benchmark of the course pack in one run: ``make bench``.

Usage::

    .venv/bin/python benchmarks/run_all.py                      # all parts -> outputs/bench/
    .venv/bin/python benchmarks/run_all.py --only train,generation
    .venv/bin/python benchmarks/run_all.py --readme             # also refresh README's table

Each part is a script in ``benchmarks/`` run in its own process (so its peak memory is its own);
its last ``RESULT {json}`` line is its result. A part whose script is missing, fails or prints no
``RESULT`` is reported as skipped / failed and the run goes on. The ``course`` part keeps its
executed course in ``outputs/bench/course``; ``grading_real`` grades real submissions made from it
(run on its own, ``--only grading_real`` runs the course first where that folder is missing). Writes ``bench.json`` (every
result, the machine, the load average before and after each part) and ``bench.md`` (one table
row per figure, with its goal) to ``--out``; ``--readme`` copies that table into README.md
between ``<!-- bench:start -->`` and ``<!-- bench:end -->``.

Numbers on a shared machine drift from run to run: every goal is a ratio of two things measured
side by side within one part. A part's RESULT may carry ``summary`` (one line for the table) and
``goals`` (``[{"goal": str, "value": str, "met": bool}]``); parts without them get a generic row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")

# name, script, extra arguments, time limit in seconds
PARTS = [
    ("train", "train_throughput.py", ["--levers"], 7200),
    ("generation", "generation_throughput.py", [], 1800),
    ("vllm", "vllm_generation.py", [], 2400),
    ("api", "api_load.py", [], 1800),
    # The course run is kept: the real-submission grading part reads its learner artifacts.
    ("course", "course_time.py", ["--keep", str(ROOT / "outputs" / "bench" / "course")], 3600),
    ("grading", "grading_throughput.py", [], 1800),
    ("grading_real", "grading_throughput.py", ["--real", "--executed", str(ROOT / "outputs" / "bench" / "course")], 3600),
    # Day 3's model checks for 20 learners: a load and an API start each vs one vLLM for the class.
    ("class_grading", "class_grading.py", ["--count", "20"], 7200),
]


def machine() -> dict:
    """CPU model, cores, RAM and the library versions of the course lane."""
    import psutil

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), re.MULTILINE)
        model = found.group(1).strip() if found else model
    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "unsloth"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    flags = Path("/proc/cpuinfo").read_text(errors="replace") if cpuinfo.exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "native_bf16": any(f" {flag}" in flags for flag in ("amx_bf16", "avx512_bf16")),
            "platform": platform.platform(), "python": platform.python_version(), **versions}


def last_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            try:
                return json.loads(line[len("RESULT "):])
            except json.JSONDecodeError:
                return None
    return None


def run_part(name: str, script: str, extra: list[str], limit: int) -> dict:
    path = ROOT / "benchmarks" / script
    record = {"script": f"benchmarks/{script}", "load_before": round(os.getloadavg()[0], 2)}
    if not path.exists():
        print(f"\n=== {name}: SKIPPED ({record['script']} does not exist yet)", flush=True)
        return {**record, "status": "skipped", "reason": f"{record['script']} not found"}
    print(f"\n=== {name}: {record['script']} {' '.join(extra)}", flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        with subprocess.Popen([str(PYTHON), str(path), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) as process:
            timer = threading.Timer(limit, process.kill)  # a hung part must not hold up the others
            timer.start()
            for line in process.stdout:  # stream the part's own report as it comes
                print("  " + line, end="", flush=True)
                lines.append(line)
            code = process.wait()
            timer.cancel()
    except OSError as exc:
        return {**record, "status": "failed", "reason": str(exc)}
    record.update(seconds=round(time.perf_counter() - started, 1), load_after=round(os.getloadavg()[0], 2))
    result = last_result("".join(lines))
    if code != 0 or result is None:
        why = f"exit code {code}" if code != 0 else "no RESULT line"
        if code == -9:
            why = f"killed after the {limit} s limit"
        print(f"=== {name}: FAILED ({why}); the other parts go on", flush=True)
        return {**record, "status": "failed", "reason": why, "tail": "".join(lines[-15:]), "result": result}
    print(f"=== {name}: done in {record['seconds']} s", flush=True)
    return {**record, "status": "ok", "result": result}


def _yes(met) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def rows_for(name: str, part: dict) -> list[tuple[str, str, str, str]]:
    """(what, figure, goal, met) rows of one part."""
    if part["status"] != "ok":
        return [(name, f"{part['status']}: {part.get('reason', '')}", "", "")]
    result = part["result"]
    if name == "grading" and "seconds_per_submission" in result:
        figure = (f"{result['seconds_per_submission']} s ({result.get('submissions')} submissions, "
                  f"{result.get('workers')} workers)")
        return [("grading: seconds per submission", figure, f"≤ {result.get('goal_s')} s",
                 _yes(result.get("meets_goal")))]
    rows = []
    for goal in result.get("goals", []):
        rows.append((goal.get("what", name), str(goal.get("value", "")), goal.get("goal", ""), _yes(goal.get("met"))))
    if result.get("summary"):
        rows.insert(0, (name, result["summary"], "", ""))
    if not rows:
        scalars = ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, (int, float, str)) and k != "benchmark")
        rows.append((name, scalars, "", ""))
    return rows


def markdown(report: dict) -> str:
    info = report["machine"]
    heading = (f"Measured {report['date']} with `make bench` on {info['cpu']}, {info['cores']} cores"
               f"{' with native bf16 (AMX / AVX512-BF16)' if info.get('native_bf16') else ''}, "
               f"{info['ram_gb']} GiB RAM, no GPU; torch {info['torch']}, transformers {info['transformers']}, "
               f"TRL {info['trl']}, Unsloth {info['unsloth']}. Load average {report['load_start']} at the start, "
               f"{report['load_end']} at the end (other jobs share this machine: compare ratios, not absolute "
               "figures).")
    lines = [heading, "", "| what | figure | goal | met |", "|---|---|---|---|"]
    for name, part in report["parts"].items():
        for what, figure, goal, met in rows_for(name, part):
            lines.append(f"| {what} | {figure} | {goal} | {met} |")
    return "\n".join(lines) + "\n"


def update_readme(table: str, readme: Path = ROOT / "README.md") -> bool:
    text = readme.read_text(encoding="utf-8")
    start, end = MARKERS
    if start not in text or end not in text:
        print(f"README.md has no {start} ... {end} block: not updated")
        return False
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    readme.write_text(f"{before}{start}\n{table}{end}{after}", encoding="utf-8")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [name for name, *_ in PARTS]
    parser.add_argument("--only", help=f"comma-separated parts among {','.join(names)}")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench"))
    parser.add_argument("--readme", action="store_true", help="copy the table into README.md")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else names
    unknown = (set(chosen) | set(filter(None, args.skip.split(",")))) - set(names)
    if unknown:
        sys.exit(f"unknown part(s): {', '.join(sorted(unknown))}; parts: {', '.join(names)}")
    report = {"date": dt.datetime.now().astimezone().isoformat(timespec="minutes"), "machine": machine(),
              "load_start": round(os.getloadavg()[0], 2), "parts": {}}
    for name, script, extra, limit in PARTS:
        if name in chosen and name not in args.skip.split(","):
            report["parts"][name] = run_part(name, script, extra, limit)
    report["load_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    table = markdown(report)
    (out / "bench.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    print(f"written: {out / 'bench.json'}, {out / 'bench.md'}")
    if args.readme and update_readme(table):
        print("README.md performance table updated")


if __name__ == "__main__":
    main()
