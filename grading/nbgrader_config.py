"""nbgrader configuration of the course.

The repository root is the course directory and the day folders are the source assignments
(day1, day2, day3). nbgrader finds this file through JUPYTER_CONFIG_PATH, from anywhere:

    JUPYTER_CONFIG_PATH=grading nbgrader generate_assignment day1

Generated folders (release/, submitted/, autograded/, feedback/) and gradebook.db live in
grading/ and are never committed.
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

GRADING = os.path.dirname(os.path.abspath(__file__))
COURSE = os.path.dirname(GRADING)

c.CourseDirectory.root = COURSE
c.CourseDirectory.source_directory = "."
c.CourseDirectory.release_directory = "grading/release"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = f"sqlite:///{os.path.join(GRADING, 'gradebook.db')}"
c.CourseDirectory.course_id = "llmcourse"
# Learners' own runs and executed copies never go into a release (Day 3: data/built, train/run,
# deploy/loadtest, report.md). `llmcourse grade autograde` narrows this list so that the learner's
# artifacts do reach the autograded copy (see llmcourse.artifacts.AUTOGRADE_IGNORE).
from llmcourse.artifacts import JUNK, LEARNER_ARTIFACTS  # noqa: E402  (the one list, shared with `make run`)

c.CourseDirectory.ignore = JUNK + LEARNER_ARTIFACTS

# Stubs that teach: every answer cell of the learner edition keeps the skeleton written above its solution
# region (variable names, triple quotes, dict keys, list shapes, with empty values), and the region itself
# becomes one pointer line instead of nbgrader's `raise NotImplementedError()`. An untouched skeleton runs
# and fails the graded checks with a message saying what to fill in (tests/test_learner_edition.py).
from llmcourse.grading.learner_edition import CODE_STUB, TEXT_STUB  # noqa: E402

c.ClearSolutions.code_stub = {"python": CODE_STUB}
c.ClearSolutions.text_stub = TEXT_STUB

# Files the learner writes must survive autograde (released copies would overwrite them).
c.Autograde.exclude_overwriting = {"day1": ["my_lora_sft.yaml"]}
# Hidden tests never reach feedback: ClearHiddenTests clears their source, HideHiddenTestTracebacks
# their source lines quoted in a failing cell's traceback.
from llmcourse.grading.nbgrader_plugins import GuardedExecute, HideHiddenTestTracebacks
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTestTracebacks, ClearHiddenTests]
c.ExecutePreprocessor.timeout = 600
# Autograde: nbgrader's list with Execute replaced by GuardedExecute (notebook time budget, output
# limit, execution report); `llmcourse grade autograde` sets its limits per run.
c.Autograde.autograde_preprocessors = [GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
# A deleted or de-marked test cell is put back and graded (llmcourse.grading.integrity flags the tampering).
c.OverwriteCells.add_missing_cells = True
