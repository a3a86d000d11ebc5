"""The lock files of every lane (locks/, written by tools/lock.py = make locks) against pyproject.toml.

Offline: each lock holds every version pyproject.toml pins for its lane, and not the project itself.
Slow (needs PyPI, no GPU): each lock re-resolves from pyproject.toml with uv, without a conflict and without drift;
and the same checks do fail on a conflicting pin and on a pin the lock no longer satisfies.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("llmcourse_lock_tool", ROOT / "tools" / "lock.py")
lock = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))  # dataclasses look it up there
_spec.loader.exec_module(lock)

LANES = list(lock.LANES.values())
# The platform every lock is for (tools/lock.py: manylinux_2_28 x86-64, Python 3.11.0 upwards).
LOCK_PLATFORM = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux",
                 "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
                 "platform_python_implementation": "CPython", "python_version": "3.11", "python_full_version": "3.11.0"}


def unsatisfied(requirements: list[str], pinned: dict[str, str]) -> list[str]:
    """The requirements (of pyproject.toml) that the pinned versions (of a lock) do not satisfy."""
    problems = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({**LOCK_PLATFORM, "extra": ""}):
            continue
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{line}: not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{line}: the lock has {req.name}=={version}")
    return problems


def copy_project(tmp_path: Path) -> Path:
    """pyproject.toml, constraints-cpu.txt and locks/ in a scratch folder, to be edited there."""
    for name in ("pyproject.toml", lock.CPU_CONSTRAINTS):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / lock.LOCKS, tmp_path / lock.LOCKS)
    return tmp_path


def repin(root: Path, old: str, new: str) -> None:
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert text.count(f'"{old}"') == 1, old
    pyproject.write_text(text.replace(f'"{old}"', f'"{new}"'), encoding="utf-8")


@pytest.mark.parametrize("lane", LANES, ids=lambda lane: lane.name)
def test_each_lock_holds_what_pyproject_pins_and_not_the_project(lane):
    text = (ROOT / lane.file).read_text(encoding="utf-8")
    pinned = lock.pins(text)
    assert len(pinned) > 50
    assert unsatisfied(lock.requirements(lane), pinned) == []
    assert "llmcourse" not in pinned and not any(line.startswith(("-e", ".")) for line in text.splitlines())
    if lane.cpu_torch:
        assert pinned["torch"] == "2.13.0+cpu"
    elif lane.with_project:
        assert not pinned["torch"].endswith("+cpu")  # the GPU lane: PyPI's CUDA build


def test_the_offline_check_catches_a_pin_the_lock_does_not_satisfy():
    pinned = lock.pins((ROOT / "locks" / "gpu-linux-x86_64.txt").read_text(encoding="utf-8"))
    assert unsatisfied(["fastapi==0.165.0", "vllm==0.33.0"], pinned) == [
        "fastapi==0.165.0: the lock has fastapi==0.136.3"]
    assert unsatisfied(["no-such-package-xyz>=1"], pinned) == ["no-such-package-xyz>=1: not in the lock"]
    assert unsatisfied(['pywin32>=300; sys_platform == "win32"'], pinned) == []


@pytest.mark.slow
@pytest.mark.parametrize("lane", LANES, ids=lambda lane: lane.name)
def test_each_lock_matches_a_fresh_resolution(lane):
    try:
        differences = lock.check(lane)
    except lock.ResolutionError as error:
        pytest.fail(f"pyproject.toml does not resolve for {lane.name}:\n{error}")
    assert differences == [], (f"{lane.file} drifted from pyproject.toml (run make locks):\n  "
                               + "\n  ".join(differences))


@pytest.mark.slow
def test_a_conflicting_pin_is_reported(tmp_path):
    root = copy_project(tmp_path)
    repin(root, "fastapi==0.136.3", "fastapi==0.165.0")  # issue #15: vllm 0.33 requires fastapi < 0.137
    with pytest.raises(lock.ResolutionError) as raised:
        lock.check(lock.LANES["gpu-linux-x86_64"], root=root)
    message = str(raised.value)
    assert "no resolution" in message and "fastapi" in message and "vllm" in message


@pytest.mark.slow
def test_a_pin_the_lock_no_longer_satisfies_is_reported(tmp_path):
    root = copy_project(tmp_path)
    repin(root, "fastapi==0.136.3", "fastapi==0.135.0")  # still inside vLLM's range: resolves, but not to the lock
    lane = lock.LANES["trl-cpu"]
    assert "fastapi: lock 0.136.3, fresh resolution 0.135.0" in lock.check(lane, root=root)
    assert unsatisfied(lock.requirements(lane, root), lock.pins((root / lane.file).read_text())) == [
        "fastapi==0.135.0: the lock has fastapi==0.136.3"]
