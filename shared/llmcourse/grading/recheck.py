"""The grader's own pass: every graded test cell runs again outside the learner's kernel.

Usage::

    from llmcourse.grading.recheck import recheck_notebook, recheck_submission, shadowing
    verdicts = recheck_notebook("day1/02_lora_training.ipynb",                    # the instructor's source
                                "grading/autograded/alice/day1/02_lora_training.ipynb")
    # {"check_config": None, "check_train_log": "CheckFailed: 训练日志只有 3 步…"}   (None: passed)
    shadowing("grading/autograded/alice/day1/02_lora_training.ipynb", "day1/02_lora_training.ipynb")
    # ["#12: 给 llmcourse 的检查函数 check_adapter 重新赋值", ...]
    flags = recheck_submission(course, "day1", "alice")   # zeroes faked cells in the gradebook, returns flags

Why: nbgrader runs the test cells in the learner's own kernel, after the learner's cells, and those
cells can rebind ``llmcourse.grading.checks.check_adapter``, replace ``sys.modules["llmcourse.grading.checks"]``, make
``_require`` a no-op, hand in a ``str`` subclass that equals every answer, or hook IPython so that test
cells never run. Whatever the kernel reports, the points come from here: the test cells' source (the
instructor's notebook, hidden tests included) is executed in the grader's process, in a namespace that
holds only literal values: the parameters cell and the learner's answer cells read with
``ast.literal_eval`` (none of the learner's code runs), plus ``Path``. The working directory is the
autograded folder, so the checks read the learner's artifacts. A test cell that the kernel passed and
this pass fails scores 0 and is flagged ``check_faked``; a run that is not the submitted config's is
flagged ``config_mismatch``; learner cells that rebind or patch what the test cells use are flagged
``check_shadowed`` whatever they scored (obfuscated patches may escape that scan, not the recheck).

An answer the recheck cannot read as a literal (computed, or re-assigned by other code) is missing
here, and the cells that read it fail: write answers as plain values, as the learner edition's
skeletons show. The exception is an answer the instructor's own solution computes (Day 3's
``my_answers`` reads a report object): cells reading such an answer keep the kernel's verdict.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
from pathlib import Path
from typing import Any

import nbformat

from llmcourse.grading.cells import is_test_cell, nbgrader_meta
from llmcourse.grading.integrity import Flag

PARAMETER_TAGS = {"parameters", "injected-parameters"}
# Calls and names that only a patch needs; any of them in a learner cell is worth a look.
SUSPICIOUS_CALLS = {"setattr", "delattr", "exec", "eval", "compile", "__import__", "get_ipython", "reload"}
SUSPICIOUS_NAMES = {"sys.modules", "builtins", "__builtins__", "globals", "vars", "get_ipython"}


class _Poisoned:
    """A name whose value is not a literal: the recheck treats it as undefined."""


def python_source(source: str) -> str:
    """Cell source without IPython magics and shell lines (they are not Python)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _names(target: ast.AST) -> list[str]:
    return [node.id for node in ast.walk(target) if isinstance(node, ast.Name)]


def literal_values(sources: list[str]) -> dict[str, Any]:
    """Names bound to literal values by these cells, in order; anything else that binds a name unbinds it."""
    values: dict[str, Any] = {}
    for source in sources:
        try:
            tree = ast.parse(python_source(source))
        except SyntaxError:
            continue
        for statement in tree.body:
            if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                try:
                    value = ast.literal_eval(statement.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    value = _Poisoned
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        values[target.id] = value
                    elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                          and isinstance(values.get(target.value.id), dict) and value is not _Poisoned):
                        try:  # quiz["q1"] = "B"
                            values[target.value.id][ast.literal_eval(target.slice)] = value
                        except (ValueError, TypeError, SyntaxError):
                            values[target.value.id] = _Poisoned
                    else:
                        for name in _names(target):
                            values[name] = _Poisoned
            else:
                for node in ast.walk(statement):
                    bound = (node.id if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del))
                             else node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                             else None)
                    if bound:
                        values[bound] = _Poisoned
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        for alias in node.names:
                            values[alias.asname or alias.name.split(".")[0]] = _Poisoned
                    if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                            and isinstance(node.value, ast.Name)):  # quiz.update-style mutation through attributes
                        values[node.value.id] = _Poisoned
                    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                            and isinstance(node.func.value, ast.Name)):  # quiz.update({...}), answers.append(...)
                        values[node.func.value.id] = _Poisoned
    return {name: value for name, value in values.items() if value is not _Poisoned}


def bound_names(sources: list[str]) -> set[str]:
    """Every name these cells assign, define or import."""
    names = set()
    for source in sources:
        try:
            tree = ast.parse(python_source(source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
    return names


def read_names(source: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(python_source(source)))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def answer_sources(notebook) -> list[str]:
    """Parameters cells and answer (solution) code cells, in notebook order."""
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"
            and (PARAMETER_TAGS & set(cell.get("metadata", {}).get("tags", [])) or nbgrader_meta(cell).get("solution"))]


def graded_cells(source_notebook: str | Path) -> list[tuple[str, str]]:
    """(grade_id, source) of every graded test cell of the instructor's notebook."""
    notebook = nbformat.read(source_notebook, as_version=4)
    return [(nbgrader_meta(cell)["grade_id"], cell.source) for cell in notebook.cells if is_test_cell(cell)]


def recheck_notebook(source_notebook: str | Path, submitted_notebook: str | Path,
                     folder: str | Path | None = None) -> dict[str, str | None]:
    """Run the source's test cells on the submission's literal answers and files: grade_id -> None or why not.

    ``folder`` (default: the submitted notebook's) is the working directory the checks read files from.
    """
    submitted = nbformat.read(submitted_notebook, as_version=4)
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__recheck__", "Path": Path}
    namespace.update(literal_values(answer_sources(submitted)))
    # Answers the instructor's own solution computes (Day 3 reads its numbers off a report object) may be
    # computed by the learner too: a cell that reads one the recheck cannot evaluate keeps the kernel's verdict.
    source_answers = answer_sources(nbformat.read(source_notebook, as_version=4))
    computable = bound_names(source_answers) - set(literal_values(source_answers)) - set(namespace)
    verdicts: dict[str, str | None] = {}
    with contextlib.chdir(folder or Path(submitted_notebook).parent), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for grade_id, source in graded_cells(source_notebook):
            if computable & read_names(source):
                verdicts[grade_id] = None
                continue
            try:
                exec(compile(python_source(source), f"<{Path(source_notebook).name}#{grade_id}>", "exec"), namespace)  # noqa: S102
                verdicts[grade_id] = None
            except Exception as exc:  # noqa: BLE001  (any failure of a test cell is a failed test)
                verdicts[grade_id] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return verdicts


def _used_by_tests(source_notebook: Path) -> set[str]:
    """Names the test cells read or import (check functions, helpers, modules)."""
    used = set()
    for _, source in graded_cells(source_notebook):
        for node in ast.walk(ast.parse(python_source(source))):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.alias):
                used.add(node.asname or node.name.split(".")[-1])
            elif isinstance(node, ast.ImportFrom) and node.module:
                used.update(node.module.split("."))
    return used


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def shadowing(submitted_notebook: str | Path, source_notebook: str | Path) -> list[str]:
    """Learner-editable cells that rebind, patch or hook what the test cells use: ``#<cell>: why`` each."""
    submitted = nbformat.read(submitted_notebook, as_version=4)
    answers = bound_names(answer_sources(nbformat.read(source_notebook, as_version=4)))
    watched = (_used_by_tests(Path(source_notebook)) | {"llmcourse", "checks", "CheckFailed", "_require"}) - answers
    findings = []
    for number, cell in enumerate(submitted.cells):
        if cell.cell_type != "code" or nbgrader_meta(cell).get("locked") or is_test_cell(cell):
            continue  # locked and test cells are put back from the release before grading
        try:
            tree = ast.parse(python_source(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            why = None
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in watched:
                why = f"给检查用到的名字 {node.id} 重新赋值"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in watched:
                why = f"定义了与检查同名的 {node.name}"
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)) and (
                    node.attr in watched or set(_dotted(node).split(".")) & {"llmcourse", "checks", "builtins"}):
                why = f"修改了 {_dotted(node)}"
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)) \
                    and _dotted(node.value) in SUSPICIOUS_NAMES:
                why = f"修改了 {_dotted(node.value)}[…]"
            elif isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in SUSPICIOUS_CALLS:
                why = f"调用了 {_dotted(node.func)}()"
            elif isinstance(node, ast.alias) and (node.asname or node.name.split(".")[-1]) in watched \
                    and node.asname and node.asname != node.name.split(".")[-1]:
                why = f"把 {node.name} 以检查用到的名字 {node.asname} 导入"
            if why:
                findings.append(f"#{number}: {why}")
    return sorted(set(findings), key=lambda item: int(item[1:].split(":")[0]))


def recheck_submission(course, assignment: str, student: str) -> list[Flag]:
    """Recheck one learner's autograded notebooks; zero the faked cells in the gradebook; return the flags."""
    from llmcourse.grading.gradebook import zero_grades

    folder = course.autograded_dir(student, assignment)
    flags: list[Flag] = []
    zeroed: list[tuple[str, str]] = []
    for source in sorted((course.root / assignment).glob("*.ipynb")):
        submitted = folder / source.name
        if not submitted.is_file() or not graded_cells(source):
            continue
        try:
            verdicts = recheck_notebook(source, submitted, folder)
        except Exception:  # noqa: BLE001  (an unreadable autograded notebook: the grader already flagged it)
            continue
        for finding in shadowing(submitted, source):
            flags.append(Flag("check_shadowed", f"{source.name}{finding.split(':')[0]}", finding.split(": ", 1)[1]))
        for grade_id, why in verdicts.items():
            if why and "ConfigMismatch" in why:
                flags.append(Flag("config_mismatch", f"{source.name}#{grade_id}", why.split(": ", 1)[1]))
            if why:
                zeroed.append((source.stem, grade_id))
    for notebook in sorted({notebook for notebook, _ in zeroed}):
        ids = [grade_id for name, grade_id in zeroed if name == notebook]
        for grade_id, score in zero_grades(course, assignment, student, notebook, ids).items():
            if score > 0:
                flags.append(Flag("check_faked", f"{notebook}.ipynb#{grade_id}",
                                  f"学员内核里通过（{score:g} 分），评分程序独立重查没有通过，已记 0 分"))
    return flags
