"""What an nbgrader cell is: a test (graded, not an answer), an answer (solution), or neither.

Usage::

    from llmcourse.grading.cells import is_test_cell, has_autograder_tests
    tests = [cell for cell in notebook.cells if is_test_cell(cell)]
    if has_autograder_tests(notebook): ...      # nbgrader can score this notebook by itself

The grader's plugins, its recheck, the integrity flags and the tests all decide with these.
"""
from __future__ import annotations


def nbgrader_meta(cell) -> dict:
    """The cell's ``metadata.nbgrader`` ({} when it has none)."""
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def is_test_cell(cell) -> bool:
    """A code cell nbgrader scores by running it: graded and not an answer."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_answer_cell(cell) -> bool:
    """A cell the learner fills in (an nbgrader solution cell, code or text)."""
    return bool(nbgrader_meta(cell).get("solution"))


def has_autograder_tests(notebook) -> bool:
    """True when a code cell of ``notebook`` is an nbgrader test cell."""
    return any(is_test_cell(cell) for cell in notebook.cells)
