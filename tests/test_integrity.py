"""Integrity flags: tampered notebooks, execution reports, fabricated training logs (llmcourse.grading.integrity)."""
import json

import nbformat
import pytest
from llmcourse.grading.cohort import write_run
from llmcourse.grading.integrity import (
    MISSING_NOTICE,
    execution_flags,
    inspect_submission,
    notebook_flags,
    read_submitted,
    restore_notebook,
    run_flags,
    training_run_problems,
)


def _meta(grade_id, grade, solution, locked, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    return {"nbgrader": {**meta, "points": points} if points else meta}


def _release(path):
    """A released notebook: an answer cell, three identical-looking test cells, a locked prompt."""
    cells = [nbformat.v4.new_markdown_cell("**问题**：写出答案", metadata=_meta("prompt", False, False, True)),
             nbformat.v4.new_code_cell("# YOUR CODE HERE\nraise NotImplementedError()",
                                       metadata=_meta("answer", False, True, False))]
    cells += [nbformat.v4.new_code_cell("check(answer)", metadata=_meta(f"t{i}", True, False, True, points=1))
              for i in (1, 2, 3)]
    notebook = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(notebook, path)
    return notebook


def _cell(notebook, grade_id):
    return next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _codes(flags):
    return sorted(str(f) for f in flags)


def test_untouched_submission_has_no_flags(tmp_path):
    notebook = _release(tmp_path / "nb.ipynb")
    _cell(notebook, "answer").source = "answer = 42"
    nbformat.write(notebook, tmp_path / "mine.ipynb")
    assert notebook_flags(tmp_path / "nb.ipynb", tmp_path / "mine.ipynb") == []


def test_edited_deleted_and_stripped_cells_are_told_apart(tmp_path):
    notebook = _release(tmp_path / "nb.ipynb")
    _cell(notebook, "t1").source = "pass"
    notebook.cells.remove(_cell(notebook, "t2"))
    del _cell(notebook, "t3").metadata["nbgrader"]  # same text as the deleted t2: the id says which one it is
    _cell(notebook, "prompt").source = "**问题**：随便写"
    nbformat.write(notebook, tmp_path / "mine.ipynb")
    assert _codes(notebook_flags(tmp_path / "nb.ipynb", tmp_path / "mine.ipynb")) == [
        "locked_cell_edited:nb.ipynb#prompt", "metadata_stripped:nb.ipynb#t3", "test_cell_deleted:nb.ipynb#t2",
        "test_cell_edited:nb.ipynb#t1"]


def test_stripped_cells_without_ids_are_matched_by_text_once(tmp_path):
    notebook = _release(tmp_path / "nb.ipynb")
    notebook.cells.remove(_cell(notebook, "t2"))
    stripped = _cell(notebook, "t3")
    del stripped.metadata["nbgrader"]
    stripped.pop("id")
    nbformat.write(notebook, tmp_path / "mine.ipynb")
    codes = [f.code for f in notebook_flags(tmp_path / "nb.ipynb", tmp_path / "mine.ipynb")]
    assert sorted(codes) == ["metadata_stripped", "test_cell_deleted"]


def test_changed_points_duplicates_missing_and_unreadable_notebooks(tmp_path):
    notebook = _release(tmp_path / "nb.ipynb")
    _cell(notebook, "t1").metadata["nbgrader"]["points"] = 100
    notebook.cells.append(nbformat.from_dict(json.loads(json.dumps(_cell(notebook, "t2")))))
    notebook.cells[-1]["id"] = "copy-of-t2"
    nbformat.write(notebook, tmp_path / "mine.ipynb")
    assert _codes(notebook_flags(tmp_path / "nb.ipynb", tmp_path / "mine.ipynb")) == [
        "duplicate_cell:nb.ipynb#t2", "metadata_changed:nb.ipynb#t1"]
    assert _codes(notebook_flags(tmp_path / "nb.ipynb", tmp_path / "absent.ipynb")) == ["notebook_missing:nb.ipynb"]
    (tmp_path / "broken.ipynb").write_text("{not json", encoding="utf-8")
    assert [f.code for f in notebook_flags(tmp_path / "nb.ipynb", tmp_path / "broken.ipynb")] == ["notebook_unreadable"]


def _strip(notebook, ids):
    """What an editor outside JupyterLab saves: no nbgrader metadata; cell ids removed or renewed."""
    for cell in notebook.cells:
        cell.metadata.pop("nbgrader", None)
        if ids == "removed":
            cell.pop("id")
        elif ids == "renewed":
            cell["id"] = "new-" + cell["id"]
    return notebook


def _grade_ids_in_order(notebook):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in notebook.cells]


@pytest.mark.parametrize("ids", ["kept", "removed", "renewed"])
def test_stripped_cells_are_restored_by_id_text_or_position(tmp_path, ids):
    released = _release(tmp_path / "nb.ipynb")
    learner = nbformat.from_dict(json.loads(json.dumps(released)))
    _cell(learner, "answer").source = "answer = 42"  # a filled answer: its text no longer matches the release
    _strip(learner, ids)
    nbformat.write(learner, tmp_path / "mine.ipynb")
    restored, done, inserted = restore_notebook(released, learner)
    assert _grade_ids_in_order(restored) == ["prompt", "answer", "t1", "t2", "t3"] and inserted == []
    assert sorted(done) == ["answer", "prompt", "t1", "t2", "t3"]
    assert _cell(restored, "answer").source == "answer = 42"  # the learner's text is kept, only metadata returns
    assert _grade_ids_in_order(learner) == [None] * 5  # the submitted notebook itself is not changed
    assert _codes(notebook_flags(tmp_path / "nb.ipynb", tmp_path / "mine.ipynb")) == [
        f"metadata_stripped:nb.ipynb#{g}" for g in ("answer", "prompt", "t1", "t2", "t3")]


def test_an_answer_among_extra_cells_is_not_guessed_and_missing_tests_come_back(tmp_path):
    released = _release(tmp_path / "nb.ipynb")
    learner = _strip(nbformat.from_dict(json.loads(json.dumps(released))), "removed")
    learner.cells[1].source = "answer = 42"
    learner.cells.insert(2, nbformat.v4.new_code_cell("print(answer)"))  # the learner's own extra cell
    del learner.cells[3]  # t1 deleted as well
    restored, done, inserted = restore_notebook(released, learner)
    # Two unmatched cells stand where the release has one answer: no guess. The tests are found by their text
    # (t1–t3 read alike, so the two left are taken in order) and the missing one is put back after them.
    assert _grade_ids_in_order(restored) == ["prompt", None, None, "t1", "t2", "t3"]
    assert sorted(done) == ["prompt", "t1", "t2"] and inserted == ["t3"]
    assert _cell(restored, "t3").source == f"# {MISSING_NOTICE}\ncheck(answer)"
    nbformat.write(learner, tmp_path / "mine.ipynb")
    assert sorted(f.code for f in notebook_flags(tmp_path / "nb.ipynb", tmp_path / "mine.ipynb")) == [
        "cell_deleted", "metadata_stripped", "metadata_stripped", "metadata_stripped", "test_cell_deleted"]


def test_unreadable_notebooks_are_told_from_readable_ones(tmp_path):
    for text in ("{这不是一个笔记本", '{"cells": 3}', "[]", '{"nbformat": 4, "nbformat_minor": 5}'):
        (tmp_path / "bad.ipynb").write_text(text, encoding="utf-8")
        notebook, reason = read_submitted(tmp_path / "bad.ipynb")
        assert notebook is None and "不是有效的笔记本" in reason, text
    notebook = _release(tmp_path / "nb.ipynb")
    assert read_submitted(tmp_path / "nb.ipynb") == (notebook, "")


def test_execution_reports_become_timeout_and_flood_flags(tmp_path):
    report = {"notebook": "01_concepts", "seconds": 32.0, "cells_seconds": 30.5, "cell_timeout": 10, "notebook_timeout": 30,
              "output_limit": 1000, "cells": [
                  {"index": 3, "grade_id": "quiz_answers", "timed_out": True, "flood": False, "output_chars": 0},
                  {"index": 4, "grade_id": None, "timed_out": False, "flood": True, "output_chars": 5000},
                  {"index": 5, "grade_id": "quiz_q1", "timed_out": False, "flood": False, "output_chars": 10}]}
    (tmp_path / "01_concepts.json").write_text(json.dumps(report), encoding="utf-8")
    assert _codes(execution_flags(tmp_path)) == ["cell_timeout:01_concepts.ipynb#quiz_answers",
                                                 "notebook_timeout:01_concepts.ipynb",
                                                 "output_flood:01_concepts.ipynb#cell4"]


def test_a_consistent_synthetic_run_is_not_flagged(tmp_path):
    assert training_run_problems(write_run(tmp_path / "run")) == []


@pytest.mark.parametrize(("make", "expected"), [
    ({"steps": 60, "max_steps": 8}, "train.max_steps = 8"),
    ({"clock": "frozen"}, "elapsed_s 没有前进"),
    ({"trained": False}, "lora_B 全为 0"),
])
def test_fabricated_runs_are_caught(tmp_path, make, expected):
    problems = training_run_problems(write_run(tmp_path / "run", **make))
    assert any(expected in p for p in problems), problems


def _rewrite_log(run, change):
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    rows = change(rows)
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_log_edits_that_contradict_time_tokens_config_or_adapter(tmp_path):
    run = write_run(tmp_path / "run")
    _rewrite_log(run, lambda rows: [{**r, "tokens_per_s": 900.0} if r["step"] == 4 else r for r in rows])
    assert any("吞吐" in p for p in training_run_problems(run))

    run = write_run(tmp_path / "run2")
    _rewrite_log(run, lambda rows: [{**r, "learning_rate": 0.01} for r in rows])
    assert any("学习率" in p for p in training_run_problems(run))

    run = write_run(tmp_path / "run3")
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({**saved, "r": 8, "target_modules": ["q_proj"]}))
    problems = training_run_problems(run)
    assert any("r = 8" in p for p in problems) and any("模块" in p for p in problems)

    run = write_run(tmp_path / "run4")
    _rewrite_log(run, lambda rows: rows[:3] + rows[2:])
    assert "步数不是严格递增的整数" in training_run_problems(run)

    run = write_run(tmp_path / "run5")
    (run / "train_log.jsonl").write_text((run / "train_log.jsonl").read_text() + "{oops\n")
    assert "无法解析" in training_run_problems(run)[0]


def test_a_resumed_run_may_restart_its_clock(tmp_path):
    run = write_run(tmp_path / "run")
    # Resuming from a checkpoint at step 4 restarts elapsed_s (the callback's clock starts again).
    _rewrite_log(run, lambda rows: rows[:4] + [{**r, "elapsed_s": r["elapsed_s"] - 10.0} for r in rows[4:]])
    assert training_run_problems(run) == []
    _rewrite_log(run, lambda rows: [{**r, "elapsed_s": 20.0 - r["step"]} for r in rows])
    assert any("倒退" in p for p in training_run_problems(run))


def test_inspect_submission_collects_every_source(tmp_path):
    release, submission = tmp_path / "release", tmp_path / "submission"
    release.mkdir()
    submission.mkdir()
    notebook = _release(release / "nb.ipynb")
    notebook.cells.remove(_cell(notebook, "t1"))
    nbformat.write(notebook, submission / "nb.ipynb")
    write_run(submission / "runs" / "a", steps=60, max_steps=8)
    write_run(submission / "runs" / "a" / "checkpoints" / "checkpoint-2")  # checkpoints are not runs
    flags = inspect_submission(release, submission, tmp_path / "no-reports", grader_status="timeout")
    assert _codes(flags) == ["fabricated_log:runs/a", "notebook_timeout:submission", "test_cell_deleted:nb.ipynb#t1"]
    assert [f.code for f in run_flags(submission)] == ["fabricated_log"]


@pytest.mark.slow
def test_a_real_training_run_is_not_flagged(tmp_path):
    """No false alarm on what llmcourse.training.run really writes (3 steps on 8 examples)."""
    from conftest import CPU_CONFIG
    from llmcourse.config import load_config
    from llmcourse.training.run import train

    cfg = load_config(CPU_CONFIG, **{"train.max_steps": 3, "data.max_samples": 8,
                                     "train.output_dir": str(tmp_path / "run")})
    train(cfg)
    assert training_run_problems(tmp_path / "run") == []
