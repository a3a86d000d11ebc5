"""GuardedExecute (timeouts, notebook budget, output limit, reports) and HideHiddenTestTracebacks."""
import json
import time

import nbformat
from llmcourse.grading.nbgrader_plugins import GuardedExecute, HideHiddenTestTracebacks
from nbformat.v4 import new_code_cell, new_notebook, new_output


def _run(tmp_path, sources, metadata=None, **limits):
    notebook = new_notebook(cells=[new_code_cell(s, metadata=m) for s, m in zip(sources, metadata or [{}] * len(sources))])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    resources = {"metadata": {"path": str(tmp_path)},
                 "nbgrader": {"student": "s1", "assignment": "a1", "notebook": "nb"}}
    started = time.monotonic()
    limits.setdefault("skip_without_tests", False)  # these notebooks have no nbgrader test cells
    executed, _ = GuardedExecute(report_dir=str(tmp_path / "records"), **limits).preprocess(notebook, resources)
    report = json.loads((tmp_path / "records" / "a1" / "s1" / "execution" / "nb.json").read_text(encoding="utf-8"))
    return executed, report, time.monotonic() - started


def test_a_flood_is_cut_and_a_hang_interrupted_and_the_rest_still_runs(tmp_path):
    executed, report, _ = _run(tmp_path, ['print("ok")', 'for i in range(10**6):\n    print("刷屏", i)',
                                          "import time\ntime.sleep(600)", "after = 1\nprint(after)"],
                               timeout=4, output_limit=20_000)
    flood, hang, after = report["cells"][1], report["cells"][2], report["cells"][3]
    assert flood["flood"] and not report["cells"][0]["flood"]
    outputs = executed.cells[1].outputs
    kept = sum(len(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert kept <= 20_000 + 200 and any("评分时记为刷屏" in o.get("text", "") for o in outputs)
    assert outputs[-1]["output_type"] == "error"  # the flood was interrupted, not left to run to the timeout
    assert hang["timed_out"] and hang["error"] == "CellTimeoutError" and hang["seconds"] < 30
    assert not after["timed_out"] and after["error"] is None
    assert executed.cells[3].outputs[0]["text"] == "1\n"


def test_the_notebook_budget_shrinks_each_cells_timeout(tmp_path):
    _, report, seconds = _run(tmp_path, ["import time\ntime.sleep(3)"] * 4, timeout=100, notebook_timeout=5)
    assert [c["timed_out"] for c in report["cells"]][:2] == [False, True]
    assert seconds < 40 and report["notebook_timeout"] == 5


def test_a_notebook_without_test_cells_is_not_executed_and_one_with_a_test_is(tmp_path):
    """Day 2's 02_acceleration has answers graded by hand only: autograde must not start its kernel (vLLM)."""
    executed, report, _ = _run(tmp_path, ['raise RuntimeError("不该运行")'], skip_without_tests=True)
    assert executed.cells[0].outputs == [] and report["cells"] == [] and "不运行" in report["skipped"]
    test = {"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}}
    notebook_with_test = [('print("ran")', {}), ("assert True", test)]
    executed, report, _ = _run(tmp_path, [s for s, _ in notebook_with_test], skip_without_tests=True,
                               metadata=[m for _, m in notebook_with_test])
    assert executed.cells[0].outputs[0]["text"] == "ran\n" and "skipped" not in report


def test_hidden_test_tracebacks_show_only_the_message():
    traceback = ['----> 5 assert quiz["q1"] == "B", "第 1 题答错了"']
    error = new_output("error", ename="AssertionError", evalue="第 1 题答错了", traceback=list(traceback))
    hidden = new_code_cell('check(quiz)\n### BEGIN HIDDEN TESTS\nassert quiz["q1"] == "B"\n### END HIDDEN TESTS',
                           outputs=[error])
    visible = new_code_cell("check(quiz)", outputs=[nbformat.from_dict(json.loads(json.dumps(error)))])
    notebook, _ = HideHiddenTestTracebacks().preprocess(new_notebook(cells=[hidden, visible]), {})
    assert notebook.cells[0].outputs[0]["traceback"] == ["AssertionError: 第 1 题答错了"]
    assert notebook.cells[1].outputs[0]["traceback"] == traceback


def test_a_demo_cell_tagged_skip_when_grading_is_not_run_but_a_graded_one_always_is(tmp_path):
    from llmcourse.grading.nbgrader_plugins import SKIP_TAG

    skip = {"tags": [SKIP_TAG]}
    graded = {"tags": [SKIP_TAG], "nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}}
    executed, report, _ = _run(tmp_path, ['print("demo")', 'raise RuntimeError("不该运行")', 'print("graded")'],
                               metadata=[{}, skip, graded])
    assert [c.outputs[0]["text"] if c.outputs else None for c in executed.cells] == ["demo\n", None, "graded\n"]
    assert [c.get("skipped", False) for c in report["cells"]] == [False, True, False]


def test_the_cells_skipped_while_grading_are_ungraded_demos_whose_names_no_later_cell_reads():
    """A skipped cell may not feed grading: it is no nbgrader cell, and no cell that runs while grading reads
    what it defines (later skipped cells may: Day 1's training is a chain of them)."""
    import ast

    from conftest import ROOT
    from llmcourse.grading.nbgrader_plugins import SKIP_TAG
    from llmcourse.grading.recheck import bound_names, python_source

    def eager_reads(source):
        """Names a cell reads when it runs: a name inside a ``lambda`` is read only when the lambda is called, and
        the reuse helpers call theirs only outside grading (Day 3's ``conversation_or_reuse(lambda: server, …)``)."""
        tree = ast.parse(python_source(source))
        deferred = {id(n) for lam in ast.walk(tree) if isinstance(lam, ast.Lambda) for n in ast.walk(lam.body)}
        return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                and id(n) not in deferred}

    tagged = 0
    for path in sorted(ROOT.glob("day[123]/*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        for number, cell in enumerate(cells):
            if SKIP_TAG not in cell.metadata.get("tags", []):
                continue
            tagged += 1
            assert "nbgrader" not in cell.metadata, (path.name, number)
            defined = bound_names([cell.source]) - {n for n in dir(__builtins__)}
            graded_later = [c for c in cells[number + 1:] if SKIP_TAG not in c.metadata.get("tags", [])]
            later = set().union(*(eager_reads(c.source) for c in graded_later)) if graded_later else set()
            assert not defined & later, (path.name, number, defined & later)
    assert tagged, "no cell is tagged: the test above would pass vacuously"
