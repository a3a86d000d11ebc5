"""Every course notebook: committed without outputs, short cells, Chinese step headings."""
import re
import statistics

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted(p for day in ("day1", "day2", "day3") for p in (ROOT / day).glob("*.ipynb")
                   if not p.name.endswith(".executed.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cells_are_short_and_prose_outnumbers_code(path):
    notebook = nbformat.read(path, as_version=4)
    code = [len(c.source.strip().splitlines()) for c in notebook.cells if c.cell_type == "code"]
    markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
    assert statistics.median(code) <= 5, f"median code cell is {statistics.median(code)} lines"
    assert max(code) <= 15, f"longest code cell is {max(code)} lines"
    assert len(markdown) > len(code)
    steps = [int(m.group(1)) for c in markdown for m in re.finditer(r"^## 第 (\d+) 步：", c.source, re.M)]
    assert steps and steps == list(range(1, len(steps) + 1)), steps


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parameters_cell_and_nbgrader_metadata(path):
    notebook = nbformat.read(path, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    graded = [c.metadata["nbgrader"] for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert graded and all(m["schema_version"] == 3 and m["points"] > 0 for m in graded)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in notebook.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "duplicate grade_id"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_test_cells_end_in_a_statement(path):
    """nbgrader reads a test cell's last value as partial credit: a test cell must not end in an expression."""
    import ast
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            last = ast.parse(cell.source).body[-1]
            ok = not isinstance(last, ast.Expr) or (isinstance(last.value, ast.Call)
                                                      and getattr(last.value.func, "id", "") == "check_quiz_format")
            assert ok, f"{cell.metadata['nbgrader']['grade_id']}: assign the check's result to a name"
