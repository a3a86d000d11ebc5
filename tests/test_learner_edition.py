"""The learner edition (`make student`): no answer key in it, skeletons that teach, and a scripted
learner who writes only into the answer cells earns every automatic point of every day."""
from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from conftest import ROOT, grade_ids, validate
from llmcourse.grading.cohort import learner_notebook
from llmcourse.notebooks.run import DAYS
from llmcourse.grading.workflow import Course
from llmcourse.grading.learner_edition import CODE_STUB, audit, build

pytestmark = pytest.mark.slow
# What the training, generation and evaluation cells compute (plots and the learner's own sheets may be redrawn).
COMPUTED = {"train_log.jsonl", "adapter_model.safetensors", "generations.jsonl", "benchmark.csv", "eval_val.json",
            "eval_test.json", "loadtest.json"}


def scratch_course(root):
    """The day folders and the held-out sets, as in a fresh clone (no learner artifacts)."""
    from llmcourse.notebooks.run import SKIP
    for day in DAYS:
        shutil.copytree(ROOT / day, root / day, ignore=SKIP)
    shutil.copytree(ROOT / "grading" / "heldout", root / "grading" / "heldout")
    return Course(root)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    course = scratch_course(tmp_path_factory.mktemp("course"))
    return course, build(course, course.root / "learner")


def test_the_learner_edition_holds_no_answer_key(edition):
    course, out = edition
    assert audit(course, out) == {}
    notebooks = {p.relative_to(out).as_posix() for p in out.glob("day*/*.ipynb")}
    assert notebooks == {p.relative_to(course.root).as_posix() for day in DAYS for p in (course.root / day).glob("*.ipynb")}
    for name in notebooks:  # the same graded cells as the sources, so nbgrader can match them
        assert grade_ids(out / name) == grade_ids(course.root / name), name
    text = "\n".join(p.read_text(encoding="utf-8") for p in out.rglob("*.ipynb"))
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    # Empty where the learner writes; the materials they start from are there.
    for absent in ("day1/runs", "day1/my_lora_sft.yaml", "day2/my_cases.jsonl", "day3/data/built",
                   "day3/train/run", "day3/report.md", "grading"):
        assert not (out / absent).exists(), absent
    for present in ("day1/data/faq_train.jsonl", "day2/data/default_cases.jsonl", "day3/data/raw", "README.md"):
        assert (out / present).exists(), present


def test_the_audit_finds_each_kind_of_leak(edition, tmp_path):
    """The check above can fail: plant one solution line, one hidden assert and one held-out question."""
    course, out = edition
    leaky = tmp_path / "leaky"
    shutil.copytree(out, leaky)
    quiz = leaky / "day1" / "01_concepts.ipynb"
    notebook = nbformat.read(quiz, as_version=4)
    notebook.cells[0].source += '\nquiz = {"q1": "B", "q2": "C", "q3": "A", "q4": "D"}'
    notebook.cells[1].source += '\nassert quiz["q1"].strip().upper() == "B", "第 1 题答错了，回到上面的讲解再想想"'
    nbformat.write(notebook, quiz)
    heldout = json.loads((course.grading / "heldout" / "day3_faq_test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    question = heldout["messages"][1]["content"]
    (leaky / "day3" / "data" / "raw" / "notes.md").write_text(f"# 备忘\n{question}\n", encoding="utf-8")
    found = audit(course, leaky)
    assert set(found) == {"solution", "hidden_test", "heldout"}, found


def test_every_answer_cell_shows_a_skeleton(edition):
    """Outside the stub line, each released answer code cell still names what to fill in."""
    _, out = edition
    for path in sorted(out.glob("day*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and cell.cell_type == "code":
                skeleton = cell.source.replace(CODE_STUB, "").strip()
                assert "NotImplementedError" not in cell.source, (path.name, meta["grade_id"])
                assert "=" in skeleton, f"{path.name}#{meta['grade_id']}: no skeleton above the answer"


def autograded(path) -> bool:
    """Has test cells that nbgrader scores by itself (a notebook of manual answers only earns nothing
    automatically: Day 2's 02_acceleration; validating it would only start vLLM twice more)."""
    from llmcourse.grading.cells import has_autograder_tests

    return has_autograder_tests(nbformat.read(path, as_version=4))


def scripted(released_dir, source_dir, target_dir):
    """The learner who writes only into the answer cells, the answers taken from the sources."""
    written = []
    for released in sorted(p for p in released_dir.glob("*.ipynb") if autograded(p)):
        target = target_dir / f"{released.stem}.learner.ipynb"
        nbformat.write(learner_notebook("correct", released, source_dir / released.name), target)
        written.append(target)
    return written


@pytest.mark.parametrize("day", DAYS)
def test_a_scripted_learner_earns_every_automatic_point(edition, executed_course, day):
    """The filled-in learner edition, run by nbgrader's validator beside the day's artifacts, fails no test."""
    _, out = edition
    folder = executed_course[0] / day
    artifacts = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.name in COMPUTED}
    assert artifacts, folder
    for notebook in scripted(out / day, ROOT / day, folder):
        results = validate(notebook)
        assert results == {}, (notebook.name, results)
    # Under nbgrader the saved runs are reused, not recomputed.
    assert {p: p.stat().st_mtime_ns for p in artifacts} == artifacts


@pytest.mark.parametrize("day", DAYS)
def test_the_untouched_learner_edition_fails_every_test_without_crashing(edition, tmp_path, day):
    """Run as handed out, in a fresh folder: every graded test fails, every notebook runs to its end."""
    _, out = edition
    folder = tmp_path / day
    shutil.copytree(out / day, folder)
    for notebook in sorted(p for p in folder.glob("*.ipynb") if autograded(p)):
        results = validate(notebook, invert=True)
        assert "passed" not in results and "changed" not in results, (notebook.name, results)


# Days whose real submission runs under nbgrader without any cell raising. Day 2's demo cells read the learner's
# Day 1 run at ../day1 (adapter_dir), which a Day 2 submission does not hold: those cells raise while grading.
CLEAN_UNDER_GRADING = {"day1"}


def errors_in(notebook) -> list[tuple[str, str]]:
    """(cell, error name) of every code cell that raised when nbgrader executed ``notebook``."""
    cells = nbformat.read(notebook, as_version=4).cells
    return [(c.metadata.get("nbgrader", {}).get("grade_id") or c.get("id"), o.get("ename"))
            for c in cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("day", ["day1", "day2"])
def test_a_real_submission_autogrades_without_loading_a_model(executed_course, tmp_path, monkeypatch, day):
    """The filled-in learner edition beside the artifacts of the learner's own run, autograded with model loads
    forbidden (``LLMCOURSE_NO_MODEL_LOADS``: loading weights, training or starting an engine raises): every
    automatic point, and no cell raised; a demo cell that loads a model under nbgrader fails this test."""
    from llmcourse.grading.cohort import real_submission
    from llmcourse.notebooks.run import SKIP
    from llmcourse.grading.workflow import Settings, autograde, collect, release
    from llmcourse.env.models import NO_MODEL_LOADS
    from nbgrader.api import Gradebook

    monkeypatch.setenv(NO_MODEL_LOADS, "1")  # inherited by the grading worker and its kernels
    course = Course(tmp_path / "course")
    shutil.copytree(ROOT / day, course.root / day, ignore=SKIP)
    release(course, day)
    real_submission(course.release_dir(day), course.root / day, executed_course[0] / day, tmp_path / "inbox" / "real")
    collect(course, day, tmp_path / "inbox")
    [graded] = autograde(course, day, Settings(workers=1, cell_timeout=120, evidence="none"))
    assert graded.status == "ok", graded.message
    with Gradebook(course.db_url, course.course_id) as gradebook:
        scores = {nb.name: [(g.name, g.auto_score, g.max_score) for g in nb.grades if g.auto_score is not None]
                  for nb in gradebook.find_submission(day, "real").notebooks}
    assert all(scores[p.stem] for p in (course.root / day).glob("*.ipynb") if autograded(p)), scores
    lost = {name: [g for g in grades if g[1] != g[2]] for name, grades in scores.items()}
    assert not any(lost.values()), lost
    executed = sorted(course.autograded_dir("real", day).glob("*.ipynb"))
    assert executed, graded.message
    errors = {p.name: errors_in(p) for p in executed}
    assert not any(name == "ModelLoadForbidden" for found in errors.values() for _, name in found), errors
    if day in CLEAN_UNDER_GRADING:
        assert not any(errors.values()), errors

