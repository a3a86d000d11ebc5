"""Instructor workflow: release, collect, autograde a synthetic cohort, feedback, export (llmcourse.grading.workflow)."""
import csv
import hashlib
import json
import time
import zipfile

import nbformat
import pytest
from conftest import ROOT, grade_ids, run_cli
from llmcourse.grading.cohort import KINDS, build_course, make_cohort
from llmcourse.grading.workflow import (
    Course,
    GradingError,
    Settings,
    autograde,
    collect,
    feedback,
    find_leaks,
    release,
    run_pool,
)

# Points of the scratch assignment (Day 1's 01 + 02, graded cells only): quiz 4 x 1, written 3 x 3 (manual),
# check_config 3, check_train_log 4, check_adapter 4, check_statement 2.
MAX_SCORE = 26.0
EXPECTED = {
    # kind: (autograded score, flag codes)
    "correct": (17.0, set()),
    "wrong": (1.0, {"config_mismatch"}),         # quiz q3 only; bad config, not the run's config; statement too short
    "erroring": (2.0, {"config_mismatch"}),      # quiz and config cells raise: no config, so no run of it; statement 2
    "hanging": (13.0, {"cell_timeout"}),         # quiz cell interrupted: no quiz points
    "tampered": (14.0, {"test_cell_edited", "test_cell_deleted", "metadata_stripped"}),  # restored tests: quiz q3 only
    "fabricated": (17.0, {"fabricated_log"}),    # the notebook checks pass; the log contradicts the config
    "fabricated_untrained": (13.0, {"fabricated_log"}),  # check_adapter fails (lora_B zero)
    "flooding": (17.0, {"output_flood"}),
    "corrupt": (13.0, {"notebook_unreadable"}),  # 01 is not a notebook: 0 for it alone, 02 in full
    "stripped": (17.0, {"metadata_stripped"}),   # 01's metadata and ids are gone: restored from the release, graded
    "ungradable": (4.0, {"grader_error"}),       # nbgrader refuses 02 (future schema): 0 for it alone, 01's quiz
}


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_collect_takes_folders_and_zips_and_skips_bad_entries(tmp_path):
    course = Course(tmp_path / "course")
    inbox = tmp_path / "inbox"
    (inbox / "alice" / "day1").mkdir(parents=True)
    (inbox / "alice" / "day1" / "01_concepts.ipynb").write_text("{}", encoding="utf-8")
    (inbox / "alice" / "day1" / "runs" / "r").mkdir(parents=True)
    (inbox / "alice" / "day1" / "runs" / "r" / "train_log.jsonl").write_text("{}\n", encoding="utf-8")
    (inbox / "alice" / "day1" / ".ipynb_checkpoints").mkdir()
    with zipfile.ZipFile(inbox / "张三.zip", "w") as archive:
        archive.writestr("day1/02_lora_training.ipynb", "{}")
        archive.writestr("__MACOSX/day1/._02_lora_training.ipynb", "junk")
    with zipfile.ZipFile(inbox / "mallory.zip", "w") as archive:
        archive.writestr("../../escape.ipynb", "{}")
    (inbox / "bad name!").mkdir()
    (inbox / "notes.txt").write_text("not a submission", encoding="utf-8")
    (inbox / "broken.zip").write_bytes(b"not a zip")
    before = _digest(inbox)

    results = {r.student: r for r in collect(course, "day1", inbox)}

    assert results["alice"].ok and results["张三"].ok
    assert not results["mallory"].ok and "不安全的路径" in results["mallory"].message
    assert not results["bad name!"].ok and not results["notes.txt"].ok and not results["broken"].ok
    alice = course.submitted_dir("alice", "day1")
    assert (alice / "01_concepts.ipynb").is_file() and (alice / "runs" / "r" / "train_log.jsonl").is_file()
    assert not (alice / ".ipynb_checkpoints").exists()
    assert (course.submitted_dir("张三", "day1") / "02_lora_training.ipynb").is_file()
    assert not (tmp_path / "escape.ipynb").exists() and not (course.grading / "escape.ipynb").exists()
    assert course.students("day1") == ["alice", "张三"]
    assert _digest(inbox) == before  # the instructor's inbox is only read


def test_collect_without_submissions_is_an_error(tmp_path):
    (tmp_path / "inbox").mkdir()
    with pytest.raises(GradingError, match="没有任何学员"):
        collect(Course(tmp_path / "course"), "day1", tmp_path / "inbox")


def test_run_pool_replaces_workers_that_hang_or_crash():
    import grading_pool_worker

    started = time.monotonic()
    results = run_pool(["a", "hang1", "b", "crash1", "c", "d"], grading_pool_worker.start, deadline=3, workers=2)
    assert results["a"] == "A" and results["b"] == "B" and results["c"] == "C" and results["d"] == "D"
    assert results["hang1"][0] == "timeout" and results["crash1"] == ("crashed", 3)
    assert time.monotonic() - started < 60


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    done = run_cli("grade", "autograde", "day1", "--course", str(tmp_path))
    assert done.returncode == 2 and done.stderr.startswith("错误：") and "release" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("grade", "release", "day9", "--course", str(tmp_path))
    assert done.returncode == 2 and "找不到源作业" in done.stderr


@pytest.mark.slow
def test_release_of_day1_has_no_solutions_and_keeps_grade_ids(tmp_path):
    import shutil
    shutil.copytree(ROOT / "day1", tmp_path / "day1", ignore=shutil.ignore_patterns("runs", "*.executed.ipynb"))
    course = Course(tmp_path)
    out = release(course, "day1")
    for notebook in (ROOT / "day1").glob("*.ipynb"):
        assert grade_ids(out / notebook.name) == grade_ids(notebook)
        assert "BEGIN HIDDEN TESTS" not in (out / notebook.name).read_text(encoding="utf-8")
    assert not (out / "runs").exists() and (out / "data" / "faq_train.jsonl").is_file()


@pytest.fixture(scope="module")
def graded_cohort(tmp_path_factory):
    """The synthetic cohort, one learner of each kind, collected from zips and autograded in one call."""
    scratch = tmp_path_factory.mktemp("cohort")
    course = Course(build_course(scratch / "course"))
    release(course, "day1")
    learners = make_cohort(course, scratch / "inbox", KINDS, zipped=True)
    assert all(r.ok for r in collect(course, "day1", scratch / "inbox"))
    started = time.monotonic()
    graded = autograde(course, "day1", Settings(workers=2, cell_timeout=15, notebook_timeout=120, output_limit=100_000))
    print(f"autograde: {len(graded)} learners in {time.monotonic() - started:.1f} s")
    return course, learners, {g.student: g for g in graded}


@pytest.mark.slow
def test_synthetic_cohort_gets_the_expected_scores_and_flags(graded_cohort):
    from nbgrader.api import Gradebook

    course, learners, graded = graded_cohort
    with Gradebook(course.db_url, course.course_id) as gradebook:
        scores = {s: gradebook.find_submission("day1", s).score for s in learners}
        maxima = {gradebook.find_submission("day1", s).max_score for s in learners}
        flagged = {s: any(nb.flagged for nb in gradebook.find_submission("day1", s).notebooks) for s in learners}
    assert maxima == {MAX_SCORE}
    table = {kind: (scores[s], {f["code"] for f in graded[s].flags}) for s, kind in learners.items()}
    assert table == EXPECTED
    assert flagged == {s: bool(EXPECTED[kind][1]) for s, kind in learners.items()}
    assert {g.status for g in graded.values()} == {"ok"}  # one broken notebook never fails the submission
    with Gradebook(course.db_url, course.course_id) as gradebook:
        per_notebook = {kind: {nb.name: nb.score for nb in gradebook.find_submission("day1", s).notebooks}
                        for s, kind in learners.items() if kind in ("correct", "corrupt", "stripped", "ungradable")}
    assert per_notebook == {"correct": {"01_concepts": 4.0, "02_lora_training": 13.0},
                            "corrupt": {"01_concepts": 0.0, "02_lora_training": 13.0},
                            "stripped": {"01_concepts": 4.0, "02_lora_training": 13.0},
                            "ungradable": {"01_concepts": 4.0, "02_lora_training": 0.0}}
    stripped = next(s for s, k in learners.items() if k == "stripped")
    # The learner's file is graded through a restored copy; the submitted original is left as it was handed in.
    assert "nbgrader" not in (course.submitted_dir(stripped, "day1") / "01_concepts.ipynb").read_text(encoding="utf-8")
    graded_copy = nbformat.read(course.autograded_dir(stripped, "day1") / "01_concepts.ipynb", as_version=4)
    written = next(c for c in graded_copy.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written_q1")
    assert "从头训练" in written.source  # the learner's written answer, back in its graded cell for formgrader
    assert not (course.grading / ".prepared" / stripped).exists()  # the graded copy is removed afterwards
    # The learner's own run travels into the autograded copy (the release leaves runs/ out).
    correct = next(s for s, k in learners.items() if k == "correct")
    assert (course.autograded_dir(correct, "day1") / "runs" / "my_first_lora" / "train_log.jsonl").is_file()
    where = {f["where"] for f in graded[next(s for s, k in learners.items() if k == "tampered")].flags}
    assert where == {"01_concepts.ipynb#quiz_q2", "01_concepts.ipynb#quiz_q3", "01_concepts.ipynb#quiz_q4"}


@pytest.mark.slow
def test_feedback_keeps_hidden_tests_out(graded_cohort, monkeypatch):
    from llmcourse.grading import workflow as grading

    course, learners, _ = graded_cohort
    pages = feedback(course, "day1")
    assert len(pages) == 2 * len(learners) - 2  # no page for the corrupt learner's 01 or the ungradable one's 02
    wrong = next(s for s, k in learners.items() if k == "wrong")
    page = (course.grading / "feedback" / wrong / "day1" / "01_concepts.html").read_text(encoding="utf-8")
    assert "第 1 题答错了" in page  # the hint reaches the learner ...
    assert find_leaks(course, "day1") == {}  # ... the hidden assert does not
    # Without the traceback filter a failing hidden test quotes itself: feedback() refuses and removes those pages.
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades
    real_config = grading.nbgrader_config

    def leaky(c):
        config = real_config(c)
        config.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests]
        return config
    monkeypatch.setattr(grading, "nbgrader_config", leaky)
    with pytest.raises(GradingError, match="隐藏测试"):
        feedback(course, "day1")
    assert not (course.grading / "feedback" / wrong / "day1" / "01_concepts.html").exists()
    monkeypatch.undo()
    feedback(course, "day1")
    assert find_leaks(course, "day1") == {}


@pytest.mark.slow
def test_export_merges_manual_grades_and_lists_flags(graded_cohort, tmp_path):
    from nbgrader.api import Gradebook

    course, learners, _ = graded_cohort
    correct = next(s for s, k in learners.items() if k == "correct")
    with Gradebook(course.db_url, course.course_id) as gradebook:  # what formgrader's save does
        for grade_id, points in (("written_q1", 3), ("written_q2", 2), ("written_q3", 3)):
            grade = gradebook.find_grade(grade_id, "01_concepts", "day1", correct)
            grade.manual_score, grade.needs_manual_grade = points, False
        gradebook.add_student("s99_absent")  # enrolled, never handed in
        gradebook.db.commit()
    done = run_cli("grade", "export", "--course", str(course.root), "--out", str(tmp_path / "exports"))
    assert done.returncode == 0, done.stderr
    with (tmp_path / "exports" / "gradebook.csv").open(encoding="utf-8-sig") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {*learners, "s99_absent"}
    assert rows["s99_absent"]["flags"] == "not_submitted" and float(rows["s99_absent"]["total"]) == 0
    assert float(rows[correct]["day1_score"]) == 17.0 + 8 and rows[correct]["pending_manual"] == "0"
    assert float(rows[correct]["total"]) == pytest.approx(100 * 25 / MAX_SCORE, abs=0.05)
    for student, kind in learners.items():
        assert set(filter(None, rows[student]["flags"].split(";"))) == EXPECTED[kind][1]
        assert float(rows[student]["day1_score"]) == EXPECTED[kind][0] + 8 * (student == correct)
    report = (tmp_path / "exports" / "class_report.md").read_text(encoding="utf-8")
    assert "fabricated_log" in report and "scores.png" in report
    assert (tmp_path / "exports" / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flags = json.loads((course.records_dir("day1", correct) / "flags.json").read_text(encoding="utf-8"))
    assert flags == []


@pytest.mark.slow
def test_learner_notebooks_start_from_the_release(graded_cohort):
    course, learners, _ = graded_cohort
    correct = next(s for s, k in learners.items() if k == "correct")
    submitted = nbformat.read(course.submitted_dir(correct, "day1") / "01_concepts.ipynb", as_version=4)
    assert "BEGIN HIDDEN TESTS" not in json.dumps(submitted)
    assert grade_ids(course.submitted_dir(correct, "day1") / "01_concepts.ipynb") == \
        grade_ids(course.release_dir("day1") / "01_concepts.ipynb")


@pytest.mark.slow
def test_day3_is_scored_on_the_rubric_and_the_manual_summary_is_merged(tmp_path):
    import shutil

    from llmcourse.grading.cohort import trimmed, write_day3_project
    from llmcourse.grading.workflow import export as grading_export
    from nbgrader.api import Gradebook

    root = tmp_path / "course"
    shutil.copytree(ROOT / "day3", root / "day3",
                    ignore=shutil.ignore_patterns("*.ipynb", "built", "run", "loadtest", "report.md", "__pycache__"))
    for notebook in (ROOT / "day3").glob("*.ipynb"):
        nbformat.write(trimmed(nbformat.read(notebook, as_version=4)), root / "day3" / notebook.name)
    course = Course(root)
    release(course, "day3")
    inbox = tmp_path / "inbox"
    shutil.copytree(course.release_dir("day3"), inbox / "alice")
    write_day3_project(inbox / "alice")
    collect(course, "day3", inbox)
    graded = autograde(course, "day3", Settings(workers=1, cell_timeout=60, evidence="static"))
    assert [(g.student, g.status, g.flags) for g in graded] == [("alice", "ok", [])]
    # A project assignment keeps the learner's own files (the release's README would have replaced theirs).
    assert "测试集准确率 0.8" in (course.autograded_dir("alice", "day3") / "README.md").read_text(encoding="utf-8")
    evidence = json.loads((course.records_dir("day3", "alice") / "evidence.json").read_text(encoding="utf-8"))
    assert set(evidence) == {"data", "fine_tuning", "improvement", "deployment"}
    with Gradebook(course.db_url, course.course_id) as gradebook:  # the summary, graded in formgrader
        grade = gradebook.find_grade("conclusions", "04_verify", "day3", "alice")
        grade.manual_score, grade.needs_manual_grade = grade.max_score / 2, False
        gradebook.db.commit()
    grading_export(course, tmp_path / "exports")
    with (tmp_path / "exports" / "gradebook.csv").open(encoding="utf-8-sig") as handle:
        row = next(csv.DictReader(handle))
    assert {k: row[k] for k in row if k.startswith("day3_") and not k.endswith(("_score", "_max"))} == {
        "day3_data": "100.0", "day3_fine_tuning": "100.0", "day3_improvement": "", "day3_deployment": "100.0",
        "day3_summary": "50.0", "day3_percent": "70.0"}  # 20 + 25 + 0 (not re-evaluated here) + 20 + 10 x 0.5
    assert float(row["total"]) == 70.0


def test_export_scores_day1_and_day2_on_the_better_track(tmp_path):
    """Code only, no-code only and both reach 100 %; only the better track counts (grading/rubric.yaml)."""
    import shutil

    from llmcourse.grading.cohort import write_gradebook
    from llmcourse.grading.workflow import export as grading_export

    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        for notebook in (ROOT / day).glob("*.ipynb"):
            shutil.copy(notebook, tmp_path / day / notebook.name)
    course = Course(tmp_path)
    day1 = {"code": {"01_concepts": 1, "02_lora_training": 1},
            "no_code": {"01_concepts": 1, "03_no_code": 1},
            "both": {"01_concepts": 1, "02_lora_training": 0.5, "03_no_code": 1},
            "half": {"01_concepts": 0.5, "02_lora_training": 1, "03_no_code": 0.2}}
    day2 = {"code": {"01_inference": 1, "02_acceleration": 1, "03_benchmark": 1, "04_troubleshooting": 1},
            "no_code": {"02_acceleration": 1, "04_troubleshooting": 1, "05_no_code": 1},
            "both": {"01_inference": 1, "02_acceleration": 1, "03_benchmark": 0.5, "04_troubleshooting": 1,
                     "05_no_code": 0.5},
            "half": {"02_acceleration": 0.5, "04_troubleshooting": 0.5, "05_no_code": 1}}
    write_gradebook(course, {name: {"day1": day1[name], "day2": day2[name]} for name in day1})
    grading_export(course, tmp_path / "exports")
    with (tmp_path / "exports" / "gradebook.csv").open(encoding="utf-8-sig") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    got = {s: (float(r["day1_percent"]), r["day1_track"], float(r["day2_percent"]), r["day2_track"], float(r["total"]))
           for s, r in rows.items()}
    # day1 = 0.5 common + 0.5 best track; day2 = 0.4 common + 0.6 best track; total = mean of the two (weights 0.25 each).
    both_day2 = 100 * (4 + 0.5 * 10) / 14  # the code track: 01_inference in full, 03_benchmark half (5 of 10 points)
    assert got == {"code": (100.0, "code", 100.0, "code", 100.0),
                   "no_code": (100.0, "no_code", 100.0, "no_code", 100.0),
                   "both": (100.0, "no_code", pytest.approx(40 + 0.6 * both_day2, abs=0.05), "code",
                            pytest.approx((100 + 40 + 0.6 * both_day2) / 2, abs=0.1)),
                   "half": (75.0, "code", 80.0, "no_code", 77.5)}
    assert float(rows["both"]["day1_code"]) == 50.0 and float(rows["both"]["day1_no_code"]) == 100.0
    assert float(rows["half"]["day1_common"]) == 50.0 and float(rows["no_code"]["day2_code"]) == 0.0
    report = (tmp_path / "exports" / "class_report.md").read_text(encoding="utf-8")
    assert "| day1 | no_code | 2 |" in report and "| day2 | code | 2 |" in report
