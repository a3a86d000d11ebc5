"""nbgrader preprocessors the course plugs in through grading/nbgrader_config.py.

Usage (grading/nbgrader_config.py)::

    from llmcourse.grading.nbgrader_plugins import GuardedExecute, HideHiddenTestTracebacks
    c.Autograde.autograde_preprocessors = [GuardedExecute, ...]        # instead of nbgrader's Execute
    c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor,
                                        HideHiddenTestTracebacks, ClearHiddenTests]
    c.GuardedExecute.timeout = 60              # seconds per cell
    c.GuardedExecute.notebook_timeout = 900    # seconds per notebook, all cells together
    c.GuardedExecute.output_limit = 200_000    # characters of output per cell
    c.GuardedExecute.report_dir = "grading/records"   # where execution reports go ("" = none)

:class:`GuardedExecute` is nbgrader's ``Execute`` with three guards a batch of learners needs:
a whole-notebook time budget (each cell's timeout shrinks to what is left), an output limit
per cell (the rest is dropped and the cell interrupted, so a print loop cannot fill memory),
and a JSON execution report per notebook (``REPORT_DIR/<assignment>/<student>/execution/<notebook>.json``:
per cell seconds, output size, timeout, flood, error name) that :mod:`llmcourse.grading.integrity` turns into flags.
A notebook without any autograder test cell (Day 2's ``02_acceleration``: its answers are graded by hand)
is not executed at all (``skip_without_tests``): nothing in it scores automatically, and its demo cells
start vLLM and load models, a minute or more per learner; its report says ``skipped``. Single demo
cells tagged ``skip-when-grading`` (:data:`SKIP_TAG`) are left unexecuted the same way.

:class:`HideHiddenTestTracebacks` keeps hidden tests out of feedback: nbgrader's
``ClearHiddenTests`` clears the hidden lines from the cell's source, but a failing hidden
assert still shows its own source line in the traceback. For cells that had hidden tests it
replaces the traceback by ``ErrorName: message`` (the message is the learner-facing hint).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode, default

from llmcourse.grading.cells import has_autograder_tests  # also read by the tests from here

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
# A demo cell with this tag is not run while grading: it earns nothing and is slow (Day 1's PEFT demo
# imports PEFT and wraps the model, ~15 s a learner). Cells with nbgrader metadata always run.
SKIP_TAG = "skip-when-grading"
TIMEOUT_ERROR = "CellTimeoutError"


def output_size(msg_or_output: dict) -> int:
    """Characters an output carries (stream text, rich data, error text)."""
    content = msg_or_output.get("content", msg_or_output)
    size = len(content.get("text", "") or "")
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value))
    size += len(content.get("evalue", "") or "") + sum(len(line) for line in content.get("traceback", []) or [])
    return size


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` plus a notebook time budget, an output limit and an execution report."""

    notebook_timeout = Integer(0, help="seconds for the whole notebook; 0 = no budget").tag(config=True)
    output_limit = Integer(200_000, help="characters of output kept per cell; 0 = no limit").tag(config=True)
    interrupt_on_flood = Bool(True, help="interrupt a cell once it passes output_limit").tag(config=True)
    report_dir = Unicode("", help="folder for execution reports; empty = write none").tag(config=True)
    skip_without_tests = Bool(True, help="leave a notebook with no autograder test cell unexecuted").tag(config=True)

    @default("error_on_timeout")
    def _chinese_timeout_error(self):
        return {"ename": TIMEOUT_ERROR, "evalue": "单元格运行超时，已被中断（评分时记为超时）",
                "traceback": [f"{TIMEOUT_ERROR}: 单元格运行超时，已被中断（评分时记为超时）"]}

    def preprocess(self, nb, resources=None, km=None):
        self._started = time.monotonic()
        self._budget_from: float | None = None  # the first cell: starting the kernel is not the learner's time
        self._cells: dict[int, dict] = {}
        self._skipped = None
        if self.skip_without_tests and not has_autograder_tests(nb):
            self._skipped = "没有自动评分的测试单元格，评分时不运行（其中的演示会加载模型、启动 vLLM）"
            self._write_report(nb, resources or {})
            return nb, resources
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self._write_report(nb, resources or {})

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        if not self.notebook_timeout:
            return timeout
        if self._budget_from is None:
            self._budget_from = time.monotonic()
        left = max(1, int(self._budget_from + self.notebook_timeout - time.monotonic()))
        return left if timeout is None else min(timeout, left)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        record = self._cells.setdefault(index, {"index": index, "output_chars": 0, "flood": False,
                                                "timed_out": False, "error": None})
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        record["grade_id"] = grade_id
        if SKIP_TAG in cell.metadata.get("tags", []) and not grade_id:
            record["skipped"], record["seconds"] = True, 0.0
            return cell, resources
        started = time.monotonic()
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            record["seconds"] = round(time.monotonic() - started, 3)
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                record["error"] = errors[-1].get("ename")
                record["timed_out"] = any(o.get("ename") == TIMEOUT_ERROR for o in errors)

    def output(self, outs, msg, display_id, cell_index):
        record = self._cells.setdefault(cell_index, {"index": cell_index, "output_chars": 0, "flood": False,
                                                     "timed_out": False, "error": None})
        record["output_chars"] += output_size(msg)
        is_error = msg.get("msg_type") == "error"
        if not self.output_limit or record["output_chars"] <= self.output_limit or is_error:
            return super().output(outs, msg, display_id, cell_index)
        if not record["flood"]:
            record["flood"] = True
            outs.append(new_output("stream", name="stderr",
                                   text=f"\n……输出超过 {self.output_limit} 个字符，其余已丢弃（评分时记为刷屏）\n"))
            if self.interrupt_on_flood and self.km is not None:
                asyncio.ensure_future(self._interrupt())
        return None

    async def _interrupt(self):
        result = self.km.interrupt_kernel()
        if asyncio.iscoroutine(result):
            await result

    def _write_report(self, nb, resources: dict) -> None:
        info = resources.get("nbgrader", {})
        if not self.report_dir or not info.get("student"):
            return
        folder = Path(self.report_dir) / info["assignment"] / info["student"] / "execution"
        folder.mkdir(parents=True, exist_ok=True)
        cells_seconds = time.monotonic() - (self._budget_from or time.monotonic())
        report = {"notebook": info["notebook"], "seconds": round(time.monotonic() - self._started, 3),
                  "cells_seconds": round(cells_seconds, 3),
                  "cell_timeout": self.timeout, "notebook_timeout": self.notebook_timeout,
                  "output_limit": self.output_limit, "cells": sorted(self._cells.values(), key=lambda c: c["index"])}
        if self._skipped:
            report["skipped"] = self._skipped
        (folder / f"{info['notebook']}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1),
                                                         encoding="utf-8")


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """In cells with hidden tests, show failures as ``ErrorName: message`` without source lines."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and HIDDEN_BEGIN in cell.source:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = output.get("evalue") or "隐藏测试未通过"
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {message}"]
        return cell, resources
