"""The grader's own recheck (llmcourse.grading.recheck): faked checks earn nothing and are flagged.

Each faking learner below hands in Day 1 with correct answers but one way of making the kernel's test
cells pass without the work behind them (most hand in no training run at all). nbgrader's kernel gives
them the points; the recheck takes them away and flags the cell.
"""
import ast
import builtins
import shutil

import nbformat
import pytest
from conftest import ROOT
from llmcourse.grading.cohort import RUN_DIR, build_course, make_cohort
from llmcourse.grading.workflow import Course, Settings, autograde, collect, release
from llmcourse.grading.recheck import answer_sources, python_source, literal_values, recheck_notebook, shadowing, graded_cells

PATCH_CHECKS = ("import llmcourse.grading.checks as c\n\n"
                "c.check_train_log = lambda *args, **kwargs: [{'memory_mb': None}]\n"
                "c.check_adapter = lambda *args, **kwargs: {}")
FAKE_MODULE = ("import sys, types\n\n"
               "import llmcourse.grading.checks as real\n"
               "fake = types.ModuleType('llmcourse.grading.checks')\n"
               "fake.__dict__.update(vars(real))\n"
               "fake.check_train_log = lambda *args, **kwargs: [{'memory_mb': None}]\n"
               "fake.check_adapter = lambda *args, **kwargs: {}\n"
               "sys.modules['llmcourse.grading.checks'] = fake")
NO_REQUIRE = "import llmcourse.grading.checks\n\nllmcourse.grading.checks._require = lambda *args, **kwargs: None"
SKIP_CELLS = "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"
ALWAYS_EQUAL = ("class Yes(str):\n    def strip(self):\n        return self\n\n    def upper(self):\n        return self\n\n"
                "    def __eq__(self, other):\n        return True\n\n    __hash__ = str.__hash__\n\n"
                "quiz = {name: Yes('A') for name in ('q1', 'q2', 'q3', 'q4')}")
# kind: (notebook, answer cell, code appended to it, training run: "none" | "kept" | "two steps")
FAKES = {
    "patched_checks": ("02_lora_training.ipynb", "write_config", PATCH_CHECKS, "none"),
    "fake_module": ("02_lora_training.ipynb", "write_config", FAKE_MODULE, "none"),
    "no_require": ("02_lora_training.ipynb", "write_config", NO_REQUIRE, "two steps"),
    "skipped_tests": ("02_lora_training.ipynb", "write_config", SKIP_CELLS, "none"),
    "always_equal": ("01_concepts.ipynb", "quiz_answers", ALWAYS_EQUAL, "kept"),
}
# After the recheck: (score, faked cells, shadowing flagged?). Honest: quiz 4 + config 3 + log 4 + adapter 4 + statement 2.
EXPECTED = {
    "honest": (17.0, set(), False),
    "patched_checks": (9.0, {"check_train_log", "check_adapter"}, True),
    "fake_module": (9.0, {"check_train_log", "check_adapter"}, True),
    "no_require": (13.0, {"check_train_log"}, True),      # a 2-step log passes only a check that cannot fail
    "skipped_tests": (9.0, {"check_train_log", "check_adapter"}, True),
    "always_equal": (13.0, {"quiz_q1", "quiz_q2", "quiz_q3", "quiz_q4"}, False),
}


def test_literal_values_keep_plain_values_and_drop_everything_computed():
    cells = ['quiz = {"q1": "", "q2": ""}\nquiz = {"q1": "B", "q2": "C"}\nquiz["q2"] = "D"',
             'n = 1\nn = len("ab")\nitems = [1]\nitems.append(2)\nstatement = """写好了"""\n%time x = 1',
             'class Fake(str):\n    pass\n\nanswer = Fake("A")\nfrom somewhere import statement2 as done']
    assert literal_values(cells) == {"quiz": {"q1": "B", "q2": "D"}, "statement": "写好了"}
    assert literal_values([ALWAYS_EQUAL]) == {}


def test_every_test_cell_needs_only_its_notebooks_parameters_answers_and_path():
    """What makes the recheck sound: no test cell reads a name that only the learner's other code defines."""
    for notebook_path in sorted(ROOT.glob("day[123]/*.ipynb")):
        notebook = nbformat.read(notebook_path, as_version=4)
        given = {"Path"} | set(dir(builtins))
        for source in answer_sources(notebook):
            tree = ast.parse(python_source(source))
            given |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        for grade_id, source in graded_cells(notebook_path):
            tree = ast.parse(python_source(source))
            own = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            own |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
            read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert read - own - given == set(), f"{notebook_path.name}#{grade_id}"


def test_shadowing_names_each_kind_of_patch(tmp_path):
    source = ROOT / "day1" / "02_lora_training.ipynb"
    notebook = nbformat.read(source, as_version=4)
    honest = tmp_path / "honest.ipynb"
    nbformat.write(notebook, honest)
    assert shadowing(honest, source) == []
    for code, expected in [(PATCH_CHECKS, "c.check_train_log"), (FAKE_MODULE, "sys.modules"),
                           (NO_REQUIRE, "llmcourse.grading.checks._require"), (SKIP_CELLS, "get_ipython"),
                           ("def check_adapter(*args):\n    return {}", "check_adapter"),
                           ("from os import path as check_config", "check_config")]:
        patched = nbformat.read(source, as_version=4)
        patched.cells.insert(3, nbformat.v4.new_code_cell(code))
        nbformat.write(patched, tmp_path / "patched.ipynb")
        found = shadowing(tmp_path / "patched.ipynb", source)
        assert found and expected in " ".join(found), (code, found)


def test_recheck_reads_the_submissions_files_and_literal_answers(tmp_path):
    """The recheck alone: an honest folder passes every cell; the same answers without a run fail the run checks."""
    course = Course(build_course(tmp_path / "course"))
    release(course, "day1")
    make_cohort(course, tmp_path / "inbox", ["correct"])
    folder = tmp_path / "inbox" / "s01_correct"
    source = course.root / "day1"
    for name in ("01_concepts.ipynb", "02_lora_training.ipynb"):
        assert set(recheck_notebook(source / name, folder / name).values()) == {None}, name
    shutil.rmtree(folder / RUN_DIR)
    verdicts = recheck_notebook(source / "02_lora_training.ipynb", folder / "02_lora_training.ipynb")
    assert {k for k, v in verdicts.items() if v} == {"check_train_log", "check_adapter"}
    assert "train_log.jsonl" in verdicts["check_train_log"]


def _fake(folder, notebook_name, grade_id, code, run):
    path = folder / notebook_name
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source += "\n" + code
    nbformat.write(notebook, path)
    log = folder / RUN_DIR / "train_log.jsonl"
    if run == "none":
        shutil.rmtree(folder / RUN_DIR)
    elif run == "two steps":
        log.write_text("".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[:2]), encoding="utf-8")


@pytest.mark.slow
def test_faked_checks_earn_nothing_and_are_flagged(tmp_path):
    from nbgrader.api import Gradebook

    course = Course(build_course(tmp_path / "course"))
    release(course, "day1")
    inbox = tmp_path / "inbox"
    make_cohort(course, inbox, ["correct"] * len(EXPECTED))
    learners = {}
    for number, kind in enumerate(EXPECTED, start=1):
        folder = inbox / f"s{number:02d}_correct"
        if kind != "honest":
            _fake(folder, *FAKES[kind])
        folder.rename(inbox / kind)
        learners[kind] = kind
    assert all(r.ok for r in collect(course, "day1", inbox))
    graded = {g.student: g for g in autograde(course, "day1", Settings(workers=2, cell_timeout=30))}
    with Gradebook(course.db_url, course.course_id) as gradebook:
        scores = {kind: gradebook.find_submission("day1", kind).score for kind in learners}
    table = {kind: (scores[kind], {f["where"].split("#")[1] for f in graded[kind].flags if f["code"] == "check_faked"},
                    any(f["code"] == "check_shadowed" for f in graded[kind].flags)) for kind in learners}
    assert table == EXPECTED
