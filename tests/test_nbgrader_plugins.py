"""GuardedExecute (timeouts, notebook budget, output limit, reports) and HideHiddenTestTracebacks."""
import json
import time

import nbformat
from llmcourse.nbgrader_plugins import GuardedExecute, HideHiddenTestTracebacks
from nbformat.v4 import new_code_cell, new_notebook, new_output


def _run(tmp_path, sources, **limits):
    notebook = new_notebook(cells=[new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    resources = {"metadata": {"path": str(tmp_path)},
                 "nbgrader": {"student": "s1", "assignment": "a1", "notebook": "nb"}}
    started = time.monotonic()
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


def test_hidden_test_tracebacks_show_only_the_message():
    traceback = ['----> 5 assert quiz["q1"] == "B", "第 1 题答错了"']
    error = new_output("error", ename="AssertionError", evalue="第 1 题答错了", traceback=list(traceback))
    hidden = new_code_cell('check(quiz)\n### BEGIN HIDDEN TESTS\nassert quiz["q1"] == "B"\n### END HIDDEN TESTS',
                           outputs=[error])
    visible = new_code_cell("check(quiz)", outputs=[nbformat.from_dict(json.loads(json.dumps(error)))])
    notebook, _ = HideHiddenTestTracebacks().preprocess(new_notebook(cells=[hidden, visible]), {})
    assert notebook.cells[0].outputs[0]["traceback"] == ["AssertionError: 第 1 题答错了"]
    assert notebook.cells[1].outputs[0]["traceback"] == traceback
