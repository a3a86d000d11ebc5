"""The synthetic cohort's building blocks (llmcourse.grading.cohort)."""
import nbformat
import pytest
from conftest import ROOT
from llmcourse.grading.checks import CheckFailed, check_adapter, check_train_log
from llmcourse.grading.cohort import build_course, solution, trimmed, write_run


def test_trimmed_keeps_markdown_graded_cells_and_parameters_only():
    source = nbformat.read(ROOT / "day1" / "01_concepts.ipynb", as_version=4)
    kept = trimmed(source)
    graded = [c for c in source.cells if "nbgrader" in c.metadata]
    assert [c for c in kept.cells if "nbgrader" in c.metadata] == graded
    code = [c for c in kept.cells if c.cell_type == "code" and "nbgrader" not in c.metadata]
    assert [c.metadata.get("tags") for c in code] == [["parameters"]]
    assert not any("load_model" in c.source for c in kept.cells if c.cell_type == "code")
    assert len(source.cells) > len(kept.cells)


def test_build_course_copies_day1_data_and_both_notebooks(tmp_path):
    root = build_course(tmp_path)
    assert sorted(p.name for p in (root / "day1").glob("*.ipynb")) == ["01_concepts.ipynb", "02_lora_training.ipynb"]
    assert (root / "day1" / "data" / "faq_train.jsonl").is_file() and not (root / "day1" / "runs").exists()


def test_solution_is_the_text_between_the_markers():
    cell = nbformat.v4.new_code_cell('### BEGIN SOLUTION\nquiz = {"q1": "B"}\n### END SOLUTION\nprint(quiz)')
    assert solution(cell) == 'quiz = {"q1": "B"}'
    assert solution(nbformat.v4.new_markdown_cell("我的回答")) == "我的回答"


def test_a_synthetic_run_passes_the_course_checks_and_an_untrained_one_does_not(tmp_path):
    run = write_run(tmp_path / "run")
    assert len(check_train_log(run, min_steps=5)) == 8
    assert check_adapter(run)["r"] == 16
    with pytest.raises(CheckFailed, match="lora_B"):
        check_adapter(write_run(tmp_path / "untrained", trained=False))
