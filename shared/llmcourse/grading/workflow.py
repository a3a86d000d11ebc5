"""The instructor's workflow over nbgrader: release, collect, autograde, feedback, export.

Usage::

    llmcourse grade release day1
    llmcourse grade collect day1 inbox/                 # inbox/<student>/ folders or inbox/<student>.zip
    llmcourse grade autograde day1 --workers 2 --cell-timeout 60 --notebook-timeout 900
    llmcourse grade feedback day1
    llmcourse grade export                              # grading/exports/gradebook.csv, class_report.md, scores.png

    from llmcourse.grading.workflow import Course, Settings, release, collect, autograde, feedback, export
    course = Course()                  # this repository; Course(path) for a scratch course folder
    release(course, "day1")
    collect(course, "day1", "inbox")
    results = autograde(course, "day1", Settings(workers=2, cell_timeout=60))   # [Graded(student, status, flags)]
    feedback(course, "day1")
    paths = export(course)

The course directory is the repository root; the day folders are nbgrader's source
assignments and grading/nbgrader_config.py is the configuration (loaded from here, as
``JUPYTER_CONFIG_PATH=grading`` would). Everything generated lives under ``grading/``:
``gradebook.db`` (nbgrader's), ``release/``, ``submitted/``, ``autograded/``, ``feedback/``,
``records/<assignment>/<student>/`` (autograde log, execution reports, integrity flags,
Day 3 evidence) and ``exports/``.

Autograde runs one nbgrader ``Autograde`` per learner inside a small pool of worker processes
(each imports nbgrader once and takes the next learner when free). Every cell has a timeout,
every notebook a time budget and an output limit (:class:`llmcourse.grading.nbgrader_plugins.GuardedExecute`),
and a watchdog kills a worker (and its kernel) that overruns a learner's deadline, records
the learner as timed out and starts a fresh worker: one bad submission never stops the batch.
nbgrader grades a prepared copy of each submission (``_Grader.prepare``): a notebook that cannot be
read is left out and scores 0 alone, cells that lost their nbgrader metadata get the release's back;
a notebook nbgrader still refuses is graded apart from the others and scores 0 alone.
Afterwards :mod:`llmcourse.grading.recheck` runs every test cell again in the grader's own process on the
learner's literal answers and files (a cell the kernel passed and the recheck fails scores 0), and
:mod:`llmcourse.grading.integrity` compares each submission with the release and checks its
training runs; every finding becomes a flag in ``flags.json``, the exported gradebook and
nbgrader's own "flagged" mark (visible in formgrader).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
import zipfile
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from llmcourse.artifacts import AUTOGRADE_IGNORE, COURSE_ROOT
from llmcourse.errors import CourseError
from llmcourse.grading.gradebook import zero_grades

CONFIG_DIR = COURSE_ROOT / "grading"
# Project assignments: every file is the learner's own work, none is replaced by the source's copy.
PROJECT_ASSIGNMENTS = {"day3"}
STUDENT_ID = re.compile(r"^\w[\w.-]{0,63}$")
# What nbgrader grades: a copy of each submission with unreadable notebooks left out and stripped
# metadata restored (`_Grader.prepare`); removed after each learner.
PREPARED = ".prepared"
MAX_UNZIPPED_BYTES = 4 * 2**30


class GradingError(CourseError):
    """A grading step that cannot go on; the message (Chinese) says what to do."""


@dataclass
class Course:
    """Where a course lives. The default is this repository; tests pass a scratch folder."""

    root: Path = COURSE_ROOT
    course_id: str = "llmcourse"

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    @property
    def grading(self) -> Path:
        return self.root / "grading"

    @property
    def db_path(self) -> Path:
        return self.grading / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def release_dir(self, assignment: str) -> Path:
        return self.grading / "release" / assignment

    def submitted_dir(self, student: str, assignment: str) -> Path:
        return self.grading / "submitted" / student / assignment

    def autograded_dir(self, student: str, assignment: str) -> Path:
        return self.grading / "autograded" / student / assignment

    def records_dir(self, assignment: str, student: str) -> Path:
        return self.grading / "records" / assignment / student

    @property
    def exports(self) -> Path:
        return self.grading / "exports"

    @property
    def rubric_path(self) -> Path:
        own = self.grading / "rubric.yaml"
        return own if own.is_file() else CONFIG_DIR / "rubric.yaml"

    def students(self, assignment: str) -> list[str]:
        base = self.grading / "submitted"
        return sorted(p.parent.name for p in base.glob(f"*/{assignment}") if p.is_dir()) if base.is_dir() else []


def _venv_path() -> str:
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return path if path.startswith(bin_dir + os.pathsep) else bin_dir + os.pathsep + path


def _use_course_venv() -> None:
    """In a grading worker: kernels start by name ("python3"), so this interpreter's bin comes first on PATH."""
    os.environ["PATH"] = _venv_path()
    os.environ["JUPYTER_CONFIG_PATH"] = str(CONFIG_DIR)


@contextmanager
def _venv_on_path():
    """nbgrader runs ``alembic`` when it creates a gradebook: find the course venv's, for this call only."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = _venv_path()
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def nbgrader_config(course: Course):
    """grading/nbgrader_config.py, pointed at ``course`` (root and gradebook)."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(CONFIG_DIR)).load_config()
    config.CourseDirectory.root = str(course.root)
    config.CourseDirectory.db_url = course.db_url
    config.CourseDirectory.course_id = course.course_id
    return config


def _run_app(app_class, course: Course, config, assignment: str, student: str | None = None, **attrs) -> dict:
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = assignment
    if student is not None:
        coursedir.student_id = student
    app = app_class(coursedir=coursedir, config=config)
    for name, value in attrs.items():
        setattr(app, name, value)
    return capture_log(app)


def _tail(result: dict, lines: int = 12) -> str:
    text = (result.get("log") or "") + (result.get("error") or "")
    return "\n".join(text.strip().splitlines()[-lines:])


def source_notebooks(course: Course, assignment: str) -> list[Path]:
    folder = course.root / assignment
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.endswith(".executed.ipynb"))
    if not notebooks:
        raise GradingError(f"找不到源作业 {folder}（其中应有 .ipynb 笔记本）；作业名应为 day1 / day2 / day3 之一")
    return notebooks


# ---------------------------------------------------------------------------------------------- release

def release(course: Course, assignment: str) -> Path:
    """``nbgrader generate_assignment``: the student version (no solutions, no hidden tests)."""
    from nbgrader.converters import GenerateAssignment

    source_notebooks(course, assignment)
    course.grading.mkdir(parents=True, exist_ok=True)
    with _venv_on_path():
        result = _run_app(GenerateAssignment, course, nbgrader_config(course), assignment, force=True,
                          create_assignment=True)
    if not result["success"]:
        raise GradingError(f"生成学生版 {assignment} 失败：\n{_tail(result)}")
    out = course.release_dir(assignment)
    leaked = [p.name for p in out.glob("*.ipynb")
              if any(marker in p.read_text(encoding="utf-8") for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"))]
    if leaked:
        raise GradingError(f"学生版 {out} 中仍有答案或隐藏测试：{leaked}；请检查源笔记本的标记")
    return out


# ---------------------------------------------------------------------------------------------- collect

@dataclass
class Collected:
    student: str
    ok: bool
    message: str = ""


def _unwrap(folder: Path) -> Path:
    """A learner folder or zip often holds one top folder (``day1/`` …): look inside it."""
    entries = [p for p in folder.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
    while len(entries) == 1 and entries[0].is_dir() and not list(folder.glob("*.ipynb")):
        folder = entries[0]
        entries = [p for p in folder.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
    return folder


def _safe_extract(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        total = sum(m.file_size for m in members)
        if total > MAX_UNZIPPED_BYTES:
            raise GradingError(f"{archive.name}: 解压后 {total / 2**30:.1f} GiB，超过上限 {MAX_UNZIPPED_BYTES / 2**30:.0f} GiB")
        for member in members:
            name = Path(member.filename)
            if name.is_absolute() or ".." in name.parts:
                raise GradingError(f"{archive.name}: 压缩包里有不安全的路径 {member.filename!r}")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise GradingError(f"{archive.name}: 压缩包里有符号链接 {member.filename!r}，请打包真实文件")
        zipped.extractall(target)


def collect(course: Course, assignment: str, source: str | Path) -> list[Collected]:
    """Copy submissions into grading/submitted/<student>/<assignment>/ (the source is never changed).

    ``source`` holds one entry per learner: a folder ``<student>/`` or an archive ``<student>.zip``;
    either may wrap the files in a single top folder. An entry that cannot be read is reported and skipped.
    """
    source = Path(source)
    if not source.is_dir():
        raise GradingError(f"找不到提交目录 {source}：其中应有每位学员一个文件夹或一个 .zip")
    results = []
    for entry in sorted(source.iterdir()):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if not (entry.is_dir() or entry.suffix.lower() == ".zip"):
            results.append(Collected(entry.name, False, f"跳过 {entry.name}：既不是文件夹也不是 .zip"))
            continue
        student = entry.stem if entry.is_file() else entry.name
        if not STUDENT_ID.match(student):
            results.append(Collected(student, False, f"跳过 {entry.name}：学员编号只能含字母、数字、汉字、_ . -"))
            continue
        target = course.submitted_dir(student, assignment)
        staging = target.with_name(f".{assignment}.collecting")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            if entry.is_dir():
                shutil.copytree(_unwrap(entry), staging, ignore=shutil.ignore_patterns(*AUTOGRADE_IGNORE))
            else:
                unpacked = staging.with_name(f".{assignment}.unzip")
                shutil.rmtree(unpacked, ignore_errors=True)
                try:
                    _safe_extract(entry, unpacked)
                    shutil.copytree(_unwrap(unpacked), staging, ignore=shutil.ignore_patterns(*AUTOGRADE_IGNORE))
                finally:
                    shutil.rmtree(unpacked, ignore_errors=True)
        except (GradingError, zipfile.BadZipFile, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            results.append(Collected(student, False, f"{entry.name}: {exc}"))
            continue
        notebooks = sorted(p.name for p in staging.glob("*.ipynb"))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        results.append(Collected(student, True, f"{len(notebooks)} 个笔记本：{', '.join(notebooks) or '无'}"))
    if not results:
        raise GradingError(f"{source} 里没有任何学员的提交（文件夹或 .zip）")
    return results


# ---------------------------------------------------------------------------------------------- autograde

@dataclass
class Settings:
    workers: int = 2
    cell_timeout: int = 60
    notebook_timeout: int = 900
    output_limit: int = 200_000
    evidence: str = "all"          # rubric evidence (Day 3): all | static (no model runs) | none
    evidence_timeout: int = 900
    class_server: str = "auto"     # Day 3 model checks: auto = one vLLM for the batch where enabled (class_eval) | off

    def deadline(self, notebooks: int, with_evidence: bool) -> float:
        """Seconds a worker may spend on one learner before the watchdog steps in."""
        return notebooks * (self.notebook_timeout + 90) + (self.evidence_timeout if with_evidence else 0) + 60


@dataclass
class Graded:
    student: str
    status: str                     # ok | error | timeout | crashed
    seconds: float = 0.0
    message: str = ""
    flags: list[dict] = field(default_factory=list)


def _exclusions(course: Course, assignment: str, release_ignore: list[str]) -> list[str]:
    """Source files autograde must not copy over the learner's (learner artifacts, project files)."""
    from nbgrader.utils import find_all_files

    folder = course.root / assignment
    kept = []
    for path in find_all_files(str(folder), AUTOGRADE_IGNORE + ["*.ipynb"]):
        relative = Path(path).relative_to(folder)
        learner_file = any(Path(*relative.parts[: i + 1]).match(pattern) for pattern in release_ignore
                           for i in range(len(relative.parts)))
        if learner_file or assignment in PROJECT_ASSIGNMENTS:
            kept.append(str(relative))
    return kept


class _Grader:
    """One worker's nbgrader set-up; ``grade`` never raises."""

    def __init__(self, course: Course, assignment: str, settings: Settings):
        from llmcourse.grading.rubric import has_dimensions, load_rubric

        _use_course_venv()
        self.course, self.assignment, self.settings = course, assignment, settings
        config = nbgrader_config(course)
        release_ignore = list(config.CourseDirectory.ignore)
        config.CourseDirectory.ignore = AUTOGRADE_IGNORE
        # A sqlite busy timeout: several workers write the same gradebook.
        config.CourseDirectory.db_url = course.db_url + "?timeout=60"
        excluded = dict(config.Autograde.exclude_overwriting) if "exclude_overwriting" in config.Autograde else {}
        excluded[assignment] = sorted({*excluded.get(assignment, []), *_exclusions(course, assignment, release_ignore)})
        config.Autograde.exclude_overwriting = excluded
        config.GuardedExecute.timeout = settings.cell_timeout
        config.GuardedExecute.notebook_timeout = settings.notebook_timeout
        config.GuardedExecute.output_limit = settings.output_limit
        config.GuardedExecute.report_dir = str(course.grading / "records")
        # nbgrader grades the prepared copy (see ``prepare``), never the learner's own files.
        config.CourseDirectory.submitted_directory = os.path.relpath(course.grading / PREPARED, course.root)
        self.config = config
        self.rubric = load_rubric(course.rubric_path)
        self.with_evidence = settings.evidence != "none" and has_dimensions(self.rubric, assignment)

    def prepare(self, student: str) -> dict[str, dict]:
        """The copy of the submission nbgrader grades, in grading/.prepared/<student>/<assignment>/.

        The learner's files are hard-linked (copied where links fail) and never changed. Per released
        notebook: one that cannot be read is left out, so nbgrader scores it 0 like a missing notebook and
        grades the others; one whose cells lost their nbgrader metadata gets the release's metadata back
        where a cell can be matched, and a graded cell that is gone is put back
        (:func:`llmcourse.grading.integrity.restore_notebook`). Returns ``{notebook: what was done}``.
        """
        import warnings

        import nbformat

        from llmcourse.grading.integrity import read_submitted, restore_notebook

        source = self.course.submitted_dir(student, self.assignment)
        target = self.course.grading / PREPARED / student / self.assignment
        shutil.rmtree(target, ignore_errors=True)
        released = {p.name: p for p in self.course.release_dir(self.assignment).glob("*.ipynb")}

        def link(src, dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        shutil.copytree(source, target, copy_function=link,
                        ignore=lambda folder, names: [n for n in names if Path(folder) == source and n in released])
        notes: dict[str, dict] = {}
        for name, release_path in sorted(released.items()):
            if not (source / name).is_file():
                continue
            submitted, problem = read_submitted(source / name)
            if submitted is None:
                notes[name] = {"unreadable": problem}
                continue
            notebook, restored, inserted = restore_notebook(nbformat.read(release_path, as_version=4), submitted)
            if restored or inserted:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    nbformat.write(notebook, target / name)
                notes[name] = {"restored": restored, "inserted": inserted}
            else:
                shutil.copy2(source / name, target / name)  # a copy: nothing downstream can write through a link
        return notes

    def _autograde(self, student: str, notebook: str = "*") -> dict:
        from nbgrader.converters import Autograde

        config = self.config
        if notebook != "*":
            config = copy.deepcopy(self.config)
            config.CourseDirectory.notebook_id = notebook
        for attempt in range(3):
            result = _run_app(Autograde, self.course, config, self.assignment, student, force=True, create_student=True)
            if result["success"] or "database is locked" not in _tail(result, 200):
                break
            time.sleep(2 + attempt * 3)
        return result

    def _zero(self, student: str, notebook: str, why: str) -> None:
        """A notebook nbgrader could not grade scores 0 (not missing) and its execution report says why."""
        zero_grades(self.course, self.assignment, student, notebook)
        folder = self.course.records_dir(self.assignment, student) / "execution"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{notebook}.json"
        report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"notebook": notebook, "cells": []}
        report["grader_error"] = why
        path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")

    def grade(self, student: str) -> Graded:
        started = time.monotonic()
        records = self.course.records_dir(self.assignment, student)
        shutil.rmtree(records / "execution", ignore_errors=True)
        records.mkdir(parents=True, exist_ok=True)
        prepared = self.course.grading / PREPARED / student
        try:
            notes = self.prepare(student)
            (records / "prepared.json").write_text(json.dumps(notes, ensure_ascii=False, indent=1), encoding="utf-8")
            result = self._autograde(student)
            log = (result.get("log") or "") + (result.get("error") or "")
            status = "ok" if result["success"] else "error"
            message = "" if result["success"] else _tail(result, 6)
            graded = sorted(p.stem for p in (prepared / self.assignment).glob("*.ipynb")
                            if p.name in {r.name for r in self.course.release_dir(self.assignment).glob("*.ipynb")})
            if not result["success"] and len(graded) > 1 and "database is locked" not in message:
                # nbgrader drops the whole submission when one notebook fails: grade them one at a time.
                failed = []
                for notebook in graded:
                    single = self._autograde(student, notebook)
                    log += f"\n===== {notebook} =====\n" + (single.get("log") or "") + (single.get("error") or "")
                    if not single["success"]:
                        failed.append(notebook)
                        self._zero(student, notebook, _tail(single, 6))
                if len(failed) < len(graded):
                    status = "ok"
                    message = f"nbgrader 无法评分 {', '.join(failed)}（记 0 分），其余笔记本已评分" if failed else ""
            (records / "autograde.log").write_text(log, encoding="utf-8")
            if self.with_evidence:
                from llmcourse.grading.rubric import collect_evidence
                evidence = collect_evidence(self.rubric, self.assignment,
                                            self.course.submitted_dir(student, self.assignment),
                                            cache_dir=self.course.grading / "records" / self.assignment / "_cache",
                                            run_models=self.settings.evidence == "all")
                (records / "evidence.json").write_text(json.dumps(evidence, ensure_ascii=False, indent=1),
                                                       encoding="utf-8")
        except Exception as exc:  # noqa: BLE001  (a learner's files must not stop the batch)
            status, message = "error", f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(prepared, ignore_errors=True)
            try:
                prepared.parent.rmdir()  # grading/.prepared goes once no worker uses it
            except OSError:
                pass
        return Graded(student, status, round(time.monotonic() - started, 2), message)


def _worker(connection, course_root: str, assignment: str, settings: Settings) -> None:
    course = Course(course_root)
    # The worker's and its kernels' chatter goes to a log file, not the instructor's terminal.
    logs = course.grading / "records" / assignment / "_workers"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"worker-{os.getpid()}.log").open("a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    grader = _Grader(course, assignment, settings)
    connection.send("ready")
    while True:
        student = connection.recv()
        if student is None:
            break
        connection.send(grader.grade(student))


def _kill_tree(pid: int) -> None:
    import psutil
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    family = parent.children(recursive=True) + [parent]
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


@dataclass
class _Slot:
    process: Any
    connection: Any
    ready: bool = False
    student: str | None = None
    since: float = 0.0


def run_pool(items: list[str], start_worker, deadline: float, on_result=None, workers: int = 2,
             startup_timeout: float = 300, logs: str = "") -> dict[str, Any]:
    """Hand ``items`` one at a time to worker processes; a worker over ``deadline`` is killed and replaced.

    ``start_worker(connection)`` starts a process that sends ``"ready"``, then answers each item it
    receives with one result and stops on ``None``. Returns ``{item: result}``; an item whose worker
    overran gets ``("timeout", seconds)``, one whose worker died ``("crashed", exit code)``.
    """
    from multiprocessing.connection import wait

    pending, results, slots = deque(items), {}, []

    def spawn() -> None:
        parent_end, child_end = multiprocessing.Pipe()
        process = start_worker(child_end)
        child_end.close()
        slots.append(_Slot(process, parent_end, since=time.monotonic()))

    def finish(slot: _Slot, outcome) -> None:
        results[slot.student] = outcome
        if on_result:
            on_result(slot.student, outcome)
        slot.student = None

    def retire(slot: _Slot) -> None:
        _kill_tree(slot.process.pid)
        slot.connection.close()
        slots.remove(slot)

    def give_up(message: str) -> None:
        for slot in slots.copy():  # retire() removes from slots
            retire(slot)
        raise GradingError(message)

    for _ in range(min(workers, len(pending))):
        spawn()
    while slots:
        for slot in slots.copy():  # retire() removes from slots
            if slot.ready and slot.student is None:
                if pending:
                    slot.student, slot.since = pending.popleft(), time.monotonic()
                    slot.connection.send(slot.student)
                else:
                    slot.connection.send(None)
                    slot.process.join(30)
                    retire(slot)
        for connection in wait([s.connection for s in slots], timeout=0.5):
            slot = next(s for s in slots if s.connection is connection)
            try:
                message = connection.recv()
            except (EOFError, OSError):
                slot.process.join(5)
                if not slot.ready:
                    give_up(f"评分进程启动失败（退出码 {slot.process.exitcode}）；{logs}请运行 llmcourse doctor 检查环境")
                finish(slot, ("crashed", slot.process.exitcode))
                retire(slot)
                if pending:
                    spawn()
                continue
            if message == "ready":
                slot.ready = True
            else:
                finish(slot, message)
        now = time.monotonic()
        for slot in slots.copy():  # retire() removes from slots
            if slot.student is not None and now - slot.since > deadline:
                finish(slot, ("timeout", round(now - slot.since, 1)))
                retire(slot)
                if pending:
                    spawn()
            elif not slot.ready and now - slot.since > startup_timeout:
                give_up(f"评分进程 {startup_timeout:.0f} 秒内没有启动；{logs}请运行 llmcourse doctor 检查环境")
    return results


def _start_grading_worker(course: Course, assignment: str, settings: Settings):
    context = multiprocessing.get_context("spawn")  # the parent may hold torch threads: never fork it

    def start(connection):
        process = context.Process(target=_worker, args=(connection, str(course.root), assignment, settings),
                                  daemon=True)
        process.start()
        return process
    return start


def autograde(course: Course, assignment: str, settings: Settings | None = None, students: list[str] | None = None,
              progress=None) -> list[Graded]:
    """Autograde every collected learner of ``assignment`` (or ``students``), then flag integrity problems."""
    from llmcourse.grading.rubric import has_dimensions, load_rubric

    settings = settings or Settings()
    release_dir = course.release_dir(assignment)
    if not release_dir.is_dir():
        raise GradingError(f"还没有生成 {assignment} 的学生版：先运行 llmcourse grade release {assignment}")
    known = course.students(assignment)
    students = students or known
    unknown = sorted(set(students) - set(known))
    if unknown:
        raise GradingError(f"这些学员没有 {assignment} 的提交：{unknown}；先运行 llmcourse grade collect")
    if not students:
        raise GradingError(f"grading/submitted/ 下没有 {assignment} 的提交：先运行 llmcourse grade collect {assignment} 目录")
    notebooks = len(list(release_dir.glob("*.ipynb")))
    rubric = load_rubric(course.rubric_path)
    with_evidence = settings.evidence != "none" and has_dimensions(rubric, assignment)
    # Day 3's model checks for the whole batch on one vLLM (llmcourse.grading.class_eval): the pool then
    # collects only the static evidence, and the class pass below adds improvement and deployment.
    from llmcourse.grading.class_eval import grade_class, use_class_server
    shared = with_evidence and settings.evidence == "all" and use_class_server(rubric, assignment, settings.class_server)
    pool_settings = dataclasses.replace(settings, evidence="static") if shared else settings
    outcomes = run_pool(students, _start_grading_worker(course, assignment, pool_settings),
                        deadline=pool_settings.deadline(notebooks, with_evidence), workers=settings.workers,
                        on_result=progress, logs=f"日志在 {course.grading / 'records' / assignment / '_workers'}；")
    if shared:
        grade_class(course, assignment, students, rubric)
    graded = []
    for student in students:
        outcome = outcomes.get(student, ("crashed", None))
        if isinstance(outcome, tuple):
            kind, detail = outcome
            outcome = Graded(student, kind, detail if kind == "timeout" else 0.0,
                             "超过单个学员的时间上限，评分进程已被终止" if kind == "timeout" else f"评分进程意外退出（{detail}）")
        outcome.flags = [f.to_dict() for f in _flag(course, assignment, outcome)]
        graded.append(outcome)
    _mark_flagged(course, assignment, graded)
    return graded


def _flag(course: Course, assignment: str, graded: Graded):
    from llmcourse.grading.integrity import inspect_submission

    records = course.records_dir(assignment, graded.student)
    records.mkdir(parents=True, exist_ok=True)
    flags = inspect_submission(course.release_dir(assignment), course.submitted_dir(graded.student, assignment),
                               records / "execution", grader_status=graded.status, grader_message=graded.message)
    if course.autograded_dir(graded.student, assignment).is_dir():
        # The points come from the grader's own run of the test cells, not from the learner's kernel.
        from llmcourse.grading.recheck import recheck_submission
        flags += recheck_submission(course, assignment, graded.student)
    status = {"student": graded.student, "status": graded.status, "seconds": graded.seconds, "message": graded.message}
    (records / "status.json").write_text(json.dumps(status, ensure_ascii=False, indent=1), encoding="utf-8")
    (records / "flags.json").write_text(json.dumps([f.to_dict() for f in flags], ensure_ascii=False, indent=1),
                                        encoding="utf-8")
    return flags


def _mark_flagged(course: Course, assignment: str, graded: list[Graded]) -> None:
    """Set nbgrader's own "flagged" mark on notebooks of flagged learners (formgrader shows it)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url + "?timeout=60", course.course_id) as gradebook:
        for result in graded:
            try:
                submission = gradebook.find_submission(assignment, result.student)
            except MissingEntry:
                continue
            for notebook in submission.notebooks:
                notebook.flagged = bool(result.flags)
        gradebook.db.commit()


def read_flags(course: Course, assignment: str, student: str) -> list[dict]:
    path = course.records_dir(assignment, student) / "flags.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


# ---------------------------------------------------------------------------------------------- feedback

def hidden_test_lines(notebook: Path) -> list[str]:
    """The non-trivial lines between BEGIN/END HIDDEN TESTS in a source notebook."""
    import nbformat

    lines, inside = [], False
    for cell in nbformat.read(notebook, as_version=4).cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) >= 8:
                lines.append(" ".join(line.split()))
    return lines


def _visible_text(html_text: str) -> str:
    import html
    text = html.unescape(re.sub(r"<[^>]+>", "", html_text))
    return " ".join(text.split())


def find_leaks(course: Course, assignment: str) -> dict[str, list[str]]:
    """Feedback files that show any hidden-test line: ``{file: [lines]}`` (empty when none leak)."""
    secrets = {nb.stem: hidden_test_lines(nb) for nb in source_notebooks(course, assignment)}
    leaks = {}
    for page in (course.grading / "feedback").glob(f"*/{assignment}/*.html"):
        text = _visible_text(page.read_text(encoding="utf-8"))
        found = [line for line in secrets.get(page.stem, []) if line in text]
        if found:
            leaks[str(page.relative_to(course.root))] = found
    return leaks


def feedback(course: Course, assignment: str) -> list[Path]:
    """``nbgrader generate_feedback`` for every autograded learner; refuses (and removes the pages)
    if any hidden-test line would show. A learner whose page fails is named in records/<assignment>/feedback.log."""
    from nbgrader.converters import GenerateFeedback
    from traitlets.config import Config

    if not any((course.grading / "autograded").glob(f"*/{assignment}")):
        raise GradingError(f"还没有 {assignment} 的自动评分结果：先运行 llmcourse grade autograde {assignment}")
    config = nbgrader_config(course)
    config.merge(Config({"HTMLExporter": {"template_name": "feedback"}}))
    with _venv_on_path():
        result = _run_app(GenerateFeedback, course, config, assignment, "*", force=True)
    log = course.grading / "records" / assignment / "feedback.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text((result.get("log") or "") + (result.get("error") or ""), encoding="utf-8")
    pages = sorted((course.grading / "feedback").glob(f"*/{assignment}/*.html"))
    if not result["success"] and not pages:
        raise GradingError(f"生成 {assignment} 的反馈失败（日志：{log}）：\n{_tail(result)}")
    leaks = find_leaks(course, assignment)
    if leaks:
        for page in leaks:
            (course.root / page).unlink()
        raise GradingError(f"反馈中出现了隐藏测试的内容，已删除这些反馈页面：{sorted(leaks)}；"
                           "请检查 grading/nbgrader_config.py 的 GenerateFeedback.preprocessors")
    return pages


# ---------------------------------------------------------------------------------------------- export

def gradebook_rows(course: Course) -> list[dict[str, Any]]:
    """One row per learner: per-assignment scores, rubric dimensions or tracks, weighted total, flags.

    An assignment with tracks (Day 1, Day 2) adds ``<a>_common`` and ``<a>_<track>`` (points %) and
    ``<a>_track`` (the track that counted); its ``<a>_percent`` follows :func:`llmcourse.grading.rubric.track_scores`.
    """
    from nbgrader.api import Gradebook, MissingEntry

    from llmcourse.grading.rubric import (
        assignment_percent,
        course_total,
        dimension_scores,
        has_dimensions,
        has_tracks,
        load_rubric,
        manual_fraction,
        track_scores,
    )

    rubric = load_rubric(course.rubric_path)
    rows = []
    with Gradebook(course.db_url, course.course_id) as gradebook:
        # Assignments released but not collected yet stay out of the table and the total.
        assignments = sorted(a.name for a in gradebook.assignments if a.submissions)
        for student in sorted(s.id for s in gradebook.students):
            row: dict[str, Any] = {"student": student}
            flags, pending, percents = [], 0, {}
            for assignment in assignments:
                try:
                    submission = gradebook.find_submission(assignment, student)
                except MissingEntry:
                    row[f"{assignment}_score"], row[f"{assignment}_percent"] = 0.0, 0.0
                    percents[assignment] = 0.0
                    flags.append({"code": "not_submitted", "where": assignment, "detail": f"没有提交 {assignment}"})
                    continue
                row[f"{assignment}_score"] = round(submission.score, 2)
                row[f"{assignment}_max"] = round(submission.max_score, 2)
                pending += sum(1 for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade)
                percent = 100 * submission.score / submission.max_score if submission.max_score else 0.0
                evidence_file = course.records_dir(assignment, student) / "evidence.json"
                if has_dimensions(rubric, assignment):
                    evidence = json.loads(evidence_file.read_text(encoding="utf-8")) if evidence_file.is_file() else {}
                    manual = manual_fraction(rubric, assignment, submission)
                    scores = dimension_scores(rubric, assignment, evidence, manual)
                    for name, value in scores.items():
                        row[f"{assignment}_{name}"] = None if value is None else round(100 * value, 1)
                    percent = assignment_percent(rubric, assignment, scores)
                elif has_tracks(rubric, assignment):
                    scored = track_scores(rubric, assignment,
                                          {nb.name: (nb.score, nb.max_score) for nb in submission.notebooks})
                    row[f"{assignment}_common"] = None if scored["common"] is None else round(scored["common"], 1)
                    for name, value in scored["tracks"].items():
                        row[f"{assignment}_{name}"] = None if value is None else round(value, 1)
                    row[f"{assignment}_track"] = scored["track"]
                    percent = scored["percent"]
                percents[assignment] = percent
                row[f"{assignment}_percent"] = round(percent, 1)
                flags += [{**f, "where": f"{assignment}/{f['where']}"} for f in read_flags(course, assignment, student)]
            row["total"] = round(course_total(rubric, percents), 1)
            row["pending_manual"] = pending
            row["flags"] = ";".join(sorted({f["code"] for f in flags}))
            row["flag_details"] = "；".join(f"{f['where']}：{f['detail']}" for f in flags)
            rows.append(row)
    return rows


def export(course: Course, out_dir: str | Path | None = None) -> dict[str, Path]:
    """gradebook.csv (UTF-8 with BOM, opens in Excel), class_report.md and scores.png under ``out_dir``."""
    if not course.db_path.is_file():
        raise GradingError(f"找不到成绩库 {course.db_path}：先 release 并 autograde 至少一次作业")
    out = Path(out_dir) if out_dir else course.exports
    out.mkdir(parents=True, exist_ok=True)
    rows = gradebook_rows(course)
    if not rows:
        raise GradingError("成绩库里还没有学员：先 collect 并 autograde")
    columns = _keys(rows)
    for tail in ("total", "pending_manual", "flags", "flag_details"):
        columns.remove(tail)
        columns.append(tail)
    csv_path = out / "gradebook.csv"
    with csv_path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    png_path = out / "scores.png"
    _plot_scores(rows, png_path)
    md_path = out / "class_report.md"
    md_path.write_text(_class_report(rows, png_path.name), encoding="utf-8")
    return {"csv": csv_path, "report": md_path, "plot": png_path}


def _keys(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _percent_columns(rows: list[dict]) -> list[str]:
    return [k for k in _keys(rows) if k.endswith("_percent")] + ["total"]


def _plot_scores(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: headless and thread-safe
    from matplotlib.ticker import MaxNLocator

    columns = _percent_columns(rows)
    figure = Figure(figsize=(3.2 * len(columns), 3.0))
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        values = [row.get(column) or 0 for row in rows]
        ax.hist(values, bins=range(0, 105, 5), color="#4a7" if column == "total" else "#58a", edgecolor="white")
        ax.set_title(column)
        ax.set_xlabel("score (%)")
        ax.set_xlim(0, 100)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("learners")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _class_report(rows: list[dict], plot_name: str) -> str:
    import statistics

    lines = ["# 班级成绩报告 / Class report", "", f"学员数：{len(rows)}", "", f"![分数分布]({plot_name})", "",
             "| 列 | 平均 | 中位数 | 最低 | 最高 |", "|---|---|---|---|---|"]
    for column in _percent_columns(rows):
        values = [row.get(column) or 0 for row in rows]
        lines.append(f"| {column} | {statistics.mean(values):.1f} | {statistics.median(values):.1f} | "
                     f"{min(values):.1f} | {max(values):.1f} |")
    dimensions = [k for k in _keys(rows) if "_" in k and not k.endswith(("_percent", "_score", "_max", "_track"))
                  and k not in ("student", "total", "pending_manual", "flags", "flag_details")]
    if dimensions:
        lines += ["", "## 评分维度平均 / Rubric dimensions", "", "| 维度 | 平均 (%) | 已评人数 |", "|---|---|---|"]
        for name in dimensions:
            values = [row[name] for row in rows if row.get(name) is not None]
            mean = f"{statistics.mean(values):.1f}" if values else "—"
            lines.append(f"| {name} | {mean} | {len(values)} |")
    tracks = [k for k in _keys(rows) if k.endswith("_track")]
    if tracks:
        lines += ["", "## 计分的路线 / Track that counted", "", "| 作业 | 路线 | 人数 |", "|---|---|---|"]
        for column in tracks:
            chosen = [row.get(column) or "（无）" for row in rows if column in row]
            lines += [f"| {column.removesuffix('_track')} | {name} | {chosen.count(name)} |" for name in sorted(set(chosen))]
    flagged = [row for row in rows if row["flags"]]
    counts: dict[str, int] = {}
    for row in flagged:
        for code in row["flags"].split(";"):
            counts[code] = counts.get(code, 0) + 1
    lines += ["", "## 需要人工查看的标记 / Integrity flags", ""]
    if not flagged:
        lines.append("没有任何标记。")
    else:
        lines += ["| 标记 | 人数 |", "|---|---|"] + [f"| {code} | {n} |" for code, n in sorted(counts.items())]
        lines += ["", "| 学员 | 标记 | 说明 |", "|---|---|---|"]
        lines += [f"| {row['student']} | {row['flags']} | {row['flag_details']} |" for row in flagged]
    pending = sum(row["pending_manual"] for row in rows)
    lines += ["", f"待人工评分的单元格：{pending}（在 formgrader 中评分后重新导出）", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI

def add_grade_commands(sub) -> None:
    """``llmcourse grade release|collect|autograde|feedback|export`` (added to the main parser)."""
    grade = sub.add_parser("grade", help="instructor: release, collect, autograde, feedback, export (nbgrader)")
    steps = grade.add_subparsers(dest="grade_command", required=True)

    def step(name: str, help_text: str, assignment: bool = True):
        parser = steps.add_parser(name, help=help_text)
        if assignment:
            parser.add_argument("assignment", help="day1 | day2 | day3")
        parser.add_argument("--course", default=str(COURSE_ROOT), help="course directory (default: this repository)")
        return parser

    step("release", "generate the student version into grading/release/<assignment>/")
    collect_parser = step("collect", "copy submissions into grading/submitted/<student>/<assignment>/")
    collect_parser.add_argument("source", help="folder with <student>/ folders or <student>.zip files")
    run = step("autograde", "grade every collected submission (parallel workers, timeouts, integrity flags)")
    run.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 2), help="grading processes")
    run.add_argument("--cell-timeout", type=int, default=Settings.cell_timeout, help="seconds per cell")
    run.add_argument("--notebook-timeout", type=int, default=Settings.notebook_timeout, help="seconds per notebook")
    run.add_argument("--output-limit", type=int, default=Settings.output_limit, help="output characters per cell")
    run.add_argument("--student", action="append", default=None, help="only this learner (repeatable)")
    run.add_argument("--evidence", choices=["all", "static", "none"], default="all",
                     help="Day 3 rubric evidence: all, static (no re-evaluation or API start), none")
    run.add_argument("--class-server", choices=["auto", "off"], default="auto",
                     help="Day 3 model checks: auto = one vLLM serving every learner's adapter (rubric.yaml "
                          "class_server), off = a model load and an API start per learner")
    step("feedback", "HTML feedback per learner into grading/feedback/ (hidden tests removed)")
    export_parser = step("export", "gradebook.csv, class_report.md and scores.png", assignment=False)
    export_parser.add_argument("--out", default=None, help="default: <course>/grading/exports")


def run_grade_command(args) -> int:
    """Run one ``llmcourse grade`` step; problems print ``错误：…`` and return 2."""
    from llmcourse.grading.rubric import RubricError

    course = Course(args.course)
    try:
        if args.grade_command == "release":
            print(f"学生版已生成：{release(course, args.assignment)}")
        elif args.grade_command == "collect":
            results = collect(course, args.assignment, args.source)
            for item in results:
                print(f"{'已收取' if item.ok else '警告'} {item.student}：{item.message}")
            print(f"共收取 {sum(r.ok for r in results)} 份，跳过 {sum(not r.ok for r in results)} 份")
            if not any(r.ok for r in results):
                raise GradingError("没有收取到任何提交")
        elif args.grade_command == "autograde":
            settings = Settings(workers=args.workers, cell_timeout=args.cell_timeout,
                                notebook_timeout=args.notebook_timeout, output_limit=args.output_limit,
                                evidence=args.evidence, class_server=args.class_server)
            started = time.monotonic()
            graded = autograde(course, args.assignment, settings, students=args.student,
                               progress=lambda student, result: print(f"  {student}: {getattr(result, 'status', result)}",
                                                                      flush=True))
            seconds = time.monotonic() - started
            for result in graded:
                flags = ", ".join(sorted({f["code"] for f in result.flags})) or "无"
                print(f"{result.student}\t{result.status}\t{result.seconds:.1f} 秒\t标记：{flags}")
            print(f"{len(graded)} 份提交，{min(settings.workers, len(graded))} 个评分进程，共 {seconds:.1f} 秒"
                  f"（每份 {seconds / len(graded):.1f} 秒）；分数在 {course.db_path}")
        elif args.grade_command == "feedback":
            pages = feedback(course, args.assignment)
            print(f"已生成 {len(pages)} 个反馈页面：{course.grading / 'feedback'}")
        elif args.grade_command == "export":
            for kind, path in export(course, args.out).items():
                print(f"{kind}: {path}")
    except (GradingError, RubricError) as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    return 0
