"""The learner edition: the notebooks learners open, built from the nbgrader sources of all three days.

Usage::

    make student                                  # = llmcourse student --out learner
    llmcourse student --out learner [--days day1 day2]

    from llmcourse.grading.workflow import Course
    from llmcourse.grading.learner_edition import build, audit
    out = build(Course(), "learner")              # learner/day1, learner/day2, learner/day3, learner/README.md
    assert audit(Course(), out) == {}             # nothing of the answer key reached it

Each day is nbgrader's release (:func:`llmcourse.grading.workflow.release`, the same command an instructor
runs): solution regions become the skeletons written above them, hidden tests are removed, and the
learner's own artifacts (runs/, my_cases.jsonl, Day 3's data/built, train/run ...; the list is
:data:`llmcourse.artifacts.LEARNER_ARTIFACTS`) are left out, so the edition starts empty where the learner
writes. Nothing under ``grading/`` (held-out sets, rubric, gradebook) is copied.

Rebuilding never deletes a learner's work: a day folder that already exists in ``out`` is moved to
``out/.replaced-<time>/<day>`` first, and the command says where it went.

:func:`audit` reads every text file of an edition and reports what belongs to the answer key: the
lines of every solution region and solution cell (minus the lines the skeleton shares with them),
the lines of every hidden test, and every question of the instructor's held-out sets.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from llmcourse.notebooks.run import DAYS

# What nbgrader puts in place of a solution region / a markdown answer cell (grading/nbgrader_config.py
# reads these): a pointer to the skeleton above it, not `raise NotImplementedError()`, so an untouched
# skeleton runs and the checks after it say what to fill in.
CODE_STUB = "# ↑ 在上面的骨架里作答（YOUR CODE HERE）"
TEXT_STUB = "（在这里写你的答案：双击本单元格进入编辑，写完按 Shift+Enter。）"
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)
TEXT_SUFFIXES = {".ipynb", ".md", ".py", ".yaml", ".yml", ".jsonl", ".json", ".csv", ".txt"}
MIN_LINE = 8   # shorter lines ("\"\"\"", "quiz = {") say nothing about an answer

README = """# 学员版课程

这是课程的**学员版**：答案和隐藏测试都已去掉，需要你作答的单元格里留好了骨架（变量名、三引号、要填的键）。

- 从 `day1/01_concepts.ipynb` 开始，按天、按编号依次打开；每天的交付物和评分方式见 `docs/learner.md`（课程仓库里）。
- 运行环境：在课程仓库根目录执行 `.venv/bin/jupyter lab learner/`。
- 自动检查单元格（锁定）会告诉你哪里还没填、哪里不对；提交时把整个 `dayN/` 文件夹交给老师（包括 `runs/` 等产物）。
"""


def _answer_key_lines(notebook_path: Path) -> tuple[set[str], set[str]]:
    """(solution lines, hidden-test lines) of one source notebook, each stripped and non-trivial."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    solution, hidden, elsewhere = set(), set(), set()
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        text = cell.source
        regions = SOLUTION.findall(text)
        if meta.get("solution") and not regions:
            regions = [text]  # a whole-cell solution (markdown answers): nbgrader replaces all of it
        outside = SOLUTION.sub("", HIDDEN.sub("", text)) if regions != [text] else ""
        solution.update(line.strip() for region in regions for line in region.splitlines())
        hidden.update(line.strip() for region in HIDDEN.findall(text) for line in region.splitlines())
        elsewhere.update(line.strip() for line in outside.splitlines())
    keep = lambda lines: {line for line in lines - elsewhere if len(line) >= MIN_LINE}
    return keep(solution), keep(hidden)


def _heldout_questions(course) -> set[str]:
    questions = set()
    for path in sorted((course.grading / "heldout").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                questions.update(m["content"].strip() for m in row.get("messages", []) if m.get("role") == "user")
    return {q for q in questions if len(q) >= MIN_LINE // 2}


def _text_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            yield path, path.read_text(encoding="utf-8", errors="replace")


def audit(course, edition: str | Path, days=DAYS) -> dict[str, list[str]]:
    """What of the answer key is in ``edition``: {"solution" | "hidden_test" | "heldout": ["file: text", ...]}."""
    from llmcourse.grading.workflow import source_notebooks

    edition = Path(edition)
    solution, hidden = set(), set()
    for day in days:
        for notebook in source_notebooks(course, day):
            found = _answer_key_lines(notebook)
            solution |= found[0]
            hidden |= found[1]
    kinds = {"solution": solution, "hidden_test": hidden, "heldout": _heldout_questions(course)}
    findings: dict[str, list[str]] = {}
    files = [item for day in days for item in _text_files(edition / day)]
    for path, text in files:
        if path.suffix == ".ipynb":  # compare cell sources, not their JSON escaping
            text = "\n".join(c.get("source", "") if isinstance(c.get("source"), str) else "".join(c["source"])
                             for c in json.loads(text).get("cells", []))
        for kind, needles in kinds.items():
            for needle in needles:
                if needle in text:
                    findings.setdefault(kind, []).append(f"{path.relative_to(edition)}: {needle[:60]}")
    return findings


def build(course, out: str | Path = "learner", days=None) -> Path:
    """Release each day with nbgrader and copy the releases into ``out/<day>``; return ``out``."""
    from llmcourse.grading.workflow import GradingError, release

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for day in days or DAYS:
        released = release(course, day)
        target = out / day
        if target.exists():
            keep = out / f".replaced-{stamp}" / day
            keep.parent.mkdir(parents=True, exist_ok=True)
            target.rename(keep)
            print(f"{target} 已存在：原来的内容移到了 {keep}（没有删除任何文件）")
        shutil.copytree(released, target)
        print(f"学员版 {day}：{target}（{len(list(target.glob('*.ipynb')))} 个笔记本）")
    (out / "README.md").write_text(README, encoding="utf-8")
    leaks = audit(course, out, days or DAYS)
    if leaks:
        raise GradingError(f"学员版 {out} 里有答案内容，已停止：{json.dumps(leaks, ensure_ascii=False)[:800]}")
    return out
