"""Scores the course writes into nbgrader's gradebook itself (after nbgrader's own autograde).

Usage::

    from llmcourse.grading.gradebook import zero_grades
    zero_grades(course, "day1", "alice", "02_lora_training")               # a notebook nbgrader refused
    zero_grades(course, "day1", "alice", "02_lora_training", ["check_adapter"])  # faked checks

One place writes a score the grader decided, so a change in how zeros are recorded happens once.
"""
from __future__ import annotations


def zero_grades(course, assignment: str, student: str, notebook: str,
                grade_ids: list[str] | None = None) -> dict[str, float]:
    """Set ``auto_score = 0`` for the notebook's grades (all, or those in ``grade_ids``) and mark none as
    needing manual grading; return each changed grade's previous score (grade id → score)."""
    from nbgrader.api import Gradebook, MissingEntry

    previous = {}
    with Gradebook(course.db_url + "?timeout=60", course.course_id) as gradebook:
        try:
            grades = gradebook.find_submission_notebook(notebook, assignment, student).grades
        except MissingEntry:
            return previous
        for grade in grades:
            if grade_ids is None or grade.name in grade_ids:
                previous[grade.name] = grade.auto_score or 0.0
                grade.auto_score, grade.needs_manual_grade = 0.0, False
        gradebook.db.commit()
    return previous
