"""Two pytest workers on a 2-core machine (``make test`` runs ``pytest -n $(TEST_JOBS)``; ``TEST_JOBS=0`` is serial).

Usage: ``tests/conftest.py`` calls :func:`pin_this_worker` before it imports torch, imports the scheduler hook
below, and calls :func:`check_course_grouping` and :func:`course_first` on the collected items. Without
pytest-xdist, or with ``-n 0``, only the order changes (the course's tests run first).

Why each worker gets its own cores: torch and vLLM start one OpenMP thread per core they can see. Two workers
that both see every core run four busy-waiting threads on two cores, and the suite took longer than serially
(tried in stop 30). Pinned, each worker's threads (and the kernels, CLIs and vLLM servers it starts, which
inherit the mask) stay on its own share, and the single-threaded parts (imports, process starts, servers
coming up, tokenising) of one worker overlap the other's compute.

Why a scheduler of our own: every test that reads the executed course (the ``executed_course`` session
fixture, 12 notebooks) must run on one worker, or each worker would execute the course again; and each
module's tests stay together so module fixtures (a training run, a class of learners) are built once.
xdist's ``loadgroup`` would do the first through ``xdist_group`` marks, but with pytest 9.2 it silently stops
grouping (pytest-dev/pytest-xdist#1386, open), so we group by module, from node ids alone.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
COURSE_FIXTURE = "executed_course"
COURSE_SCOPE = "the executed course"
# A test or fixture that takes the course as an argument: ``def test_x(executed_course, tmp_path):``
REQUESTS_COURSE = re.compile(rf"def \w+\([^)]*\b{COURSE_FIXTURE}\b")


def pin_this_worker() -> None:
    """In an xdist worker, keep this process (and its children) on its share of the cores; else do nothing."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    share = core_share(sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")), int(count))
    os.sched_setaffinity(0, share)
    threads = str(len(share))  # read by torch, the BLAS libraries and tokenizers when they start
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[name] = threads


def core_share(cores: list[int], index: int, count: int) -> list[int]:
    """Worker ``index`` of ``count``: every count-th core from its own; with fewer cores than workers, one shared."""
    if len(cores) < count:
        return [cores[index % len(cores)]]
    return cores[index::count]


def course_modules() -> set[str]:
    """Test modules that use the executed course: their tests run on one worker, one after another."""
    return {path.name for path in TESTS.glob("test_*.py") if REQUESTS_COURSE.search(path.read_text(encoding="utf-8"))}


def scope_of(nodeid: str, course: set[str]) -> str:
    """The unit a worker takes whole: the executed course's modules together, else the test's module."""
    module = nodeid.split("::", 1)[0]
    return COURSE_SCOPE if Path(module).name in course else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class CourseFirstScheduling(LoadScopeScheduling):
        """xdist's load-by-scope scheduler with our scopes; the course, the longest unit, is handed out first."""

        course = course_modules()

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid, self.course)

    config.option.loadscopereorder = False  # keep the collection order below: the course first
    return CourseFirstScheduling(config, log)


def course_first(items: list) -> None:
    """Put the course's tests first (a stable sort, so every other test keeps its place)."""
    course = course_modules()
    items.sort(key=lambda item: scope_of(item.nodeid, course) != COURSE_SCOPE)


def check_course_grouping(items: list) -> None:
    """A test that uses the executed course from a module the scheduler does not group would build it again."""
    course = course_modules()
    stray = [item.nodeid for item in items
             if COURSE_FIXTURE in getattr(item, "fixturenames", ()) and Path(item.path).name not in course]
    if stray:
        raise pytest.UsageError(f"{', '.join(stray)} use {COURSE_FIXTURE} but tests/parallel.py does not group "
                                f"their module with the course; request the fixture in a function of the module itself")
