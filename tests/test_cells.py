"""What an nbgrader cell is (llmcourse/grading/cells.py): one predicate for the plugins, recheck and flags."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from llmcourse.grading.cells import has_autograder_tests, is_answer_cell, is_test_cell


def cell(kind="code", **nbgrader):
    made = new_code_cell("x = 1") if kind == "code" else new_markdown_cell("答：")
    if nbgrader:
        made.metadata["nbgrader"] = {"grade_id": "c", **nbgrader}
    return made


def test_a_test_cell_is_graded_code_that_is_not_an_answer():
    assert is_test_cell(cell(grade=True, solution=False, points=1))
    assert not is_test_cell(cell(grade=True, solution=True, points=1))      # an autograded answer
    assert not is_test_cell(cell("markdown", grade=True, solution=True))   # a written answer
    assert not is_test_cell(cell(locked=True)) and not is_test_cell(cell())
    assert is_answer_cell(cell(solution=True)) and not is_answer_cell(cell(grade=True))


def test_a_notebook_of_written_answers_has_no_autograder_tests():
    written = new_notebook(cells=[cell("markdown", grade=True, solution=True, points=2), cell()])
    assert not has_autograder_tests(written)
    written.cells.append(cell(grade=True, solution=False, points=1))
    assert has_autograder_tests(nbformat.from_dict(written))
