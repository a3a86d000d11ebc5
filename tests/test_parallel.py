"""The two-worker set-up of the suite (tests/parallel.py): core shares, scopes, the course first, the guard."""
from types import SimpleNamespace

import pytest
from parallel import (
    COURSE_SCOPE,
    check_course_grouping,
    core_share,
    course_first,
    course_modules,
    scope_of,
)


def test_each_worker_gets_its_own_cores():
    assert core_share([0, 1], 0, 2) == [0] and core_share([0, 1], 1, 2) == [1]
    assert core_share([0, 1, 2, 3, 4], 1, 2) == [1, 3]
    assert core_share([5], 1, 2) == [5]  # fewer cores than workers: they share one, never none


def test_the_course_modules_are_one_scope_and_every_other_module_its_own():
    course = course_modules()
    assert {"test_day1.py", "test_day2.py", "test_day3.py"} <= course
    assert not {"test_parallel.py", "test_day3_scenarios.py", "test_train.py"} & course  # these only name it
    assert scope_of("tests/test_day1.py::test_notebooks_run", course) == COURSE_SCOPE
    assert scope_of("tests/test_day3.py::test_x[intent]", course) == COURSE_SCOPE
    assert scope_of("tests/test_train.py::test_a", course) == scope_of("tests/test_train.py::test_b", course)
    assert scope_of("tests/test_train.py::test_a", course) != scope_of("tests/test_cli.py::test_a", course)


def item(nodeid, fixtures=()):
    path = nodeid.split("::")[0]
    return SimpleNamespace(nodeid=nodeid, path=path, fixturenames=list(fixtures))


def test_the_course_runs_first_and_the_rest_keeps_its_order():
    items = [item("tests/test_cli.py::a"), item("tests/test_day2.py::b"), item("tests/test_train.py::c"),
             item("tests/test_day1.py::d")]
    course_first(items)
    assert [i.nodeid for i in items] == ["tests/test_day2.py::b", "tests/test_day1.py::d", "tests/test_cli.py::a",
                                         "tests/test_train.py::c"]


def test_a_course_test_outside_the_grouped_modules_stops_the_run():
    check_course_grouping([item("tests/test_day1.py::a", ["executed_course"]), item("tests/test_cli.py::b")])
    with pytest.raises(pytest.UsageError, match="test_cli.py::b use executed_course"):
        check_course_grouping([item("tests/test_cli.py::b", ["tmp_path", "executed_course"])])
