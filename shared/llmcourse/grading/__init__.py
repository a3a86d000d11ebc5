"""The instructor's side: nbgrader workflow (``grading.workflow``), the learners' autograded checks
(``checks``), the rubric, the grader's own recheck, integrity flags, the learner edition, a synthetic cohort."""
