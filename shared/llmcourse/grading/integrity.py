"""Integrity flags: tampered notebooks, hangs, output floods, fabricated training logs.

Usage::

    from llmcourse.grading.integrity import inspect_submission, notebook_flags, restore_notebook, training_run_problems
    flags = inspect_submission("grading/release/day1", "grading/submitted/alice/day1",
                               "grading/records/day1/alice/execution", grader_status="ok")
    [str(f) for f in flags]         # ["test_cell_edited:01_concepts.ipynb#quiz_q2", ...]
    training_run_problems("grading/submitted/alice/day1/runs/my_first_lora")   # [] or reasons
    notebook, restored, inserted = restore_notebook(released_nb, submitted_nb)   # what nbgrader grades

A flag never changes a score by itself (``check_faked`` reports the recheck's zero): it tells the
instructor where to look. Codes:

=====================  ==================================================================
test_cell_edited       a locked test cell's source differs from the release
locked_cell_edited     another locked cell (instructions) differs from the release
test_cell_deleted      a graded cell of the release is gone (nbgrader re-adds test cells)
cell_deleted           a solution cell of the release is gone
metadata_stripped      the cell is there (same id, same text, or an answer in its place) but its nbgrader
                       metadata is not; the grader restores the release's metadata and grades it
metadata_changed       nbgrader metadata (points, grade, locked, solution) differs from the release
duplicate_cell         one grade_id appears more than once
notebook_missing       a released notebook was not submitted
notebook_unreadable    a submitted notebook is not a notebook (not JSON, no cell list): it scores 0, the
                       others are graded
cell_timeout           a cell ran past its timeout and was interrupted
notebook_timeout       the notebook used up its time budget, or the learner overran the grader's deadline
output_flood           a cell printed more than the output limit
fabricated_log         a training log that the run's config and adapter contradict
grader_error           nbgrader could not grade the submission, or one notebook of it (that one scores 0)
grader_crashed         the grading process died on this submission
check_faked            (llmcourse.grading.recheck) a test cell the learner's kernel passed fails the grader's own
                       rerun: its score is set to 0 there
check_shadowed         (llmcourse.grading.recheck) a learner cell rebinds, patches or hooks what the test cells use
config_mismatch        (llmcourse.grading.recheck) the graded run was not trained with the submitted config file
=====================  ==================================================================

Fabricated-log reasons (:func:`training_run_problems`): more steps than ``train.max_steps``,
steps not increasing, elapsed times that stand still or run backwards (a resume may restart the
clock a few times), logged throughput that disagrees with tokens and time, a learning rate above the
configured one, an adapter whose rank / alpha / target modules differ from the config, and an
adapter whose ``lora_B`` is all zero (never trained) while the log says the loss fell.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from llmcourse.artifacts import (ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, CHECKPOINT_DIR, LogLineInvalid,
                                 RUN_CONFIG, TRAIN_LOG, read_train_log)
from llmcourse.grading.cells import is_test_cell

LOCKED_KEYS = ("grade", "solution", "locked", "task", "points")
MAX_CLOCK_RESTARTS = 3       # resumed runs restart elapsed_s; more restarts than this is not a resume
THROUGHPUT_TOLERANCE = 0.5   # logged tokens/s may differ from Δtokens/Δtime by this fraction (rounding)


@dataclass(frozen=True)
class Flag:
    code: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}:{self.where}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _normalized(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _read_notebook(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)


def read_submitted(path: str | Path):
    """``(notebook, "")`` for a notebook nbgrader can take, ``(None, reason)`` for one it cannot read."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # editors drop cell ids; nbformat warns and makes new ones
            notebook = _read_notebook(Path(path))
    except Exception as exc:  # noqa: BLE001  (nbformat raises several kinds for unreadable files)
        return None, f"不是有效的笔记本（{type(exc).__name__}）"
    cells = notebook.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) and c.get("cell_type") in ("code", "markdown", "raw")
                                              and isinstance(c.get("source", ""), str) for c in cells):
        return None, "不是有效的笔记本（cells 不是单元格列表）"
    return notebook, ""


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def match_cells(released, submitted) -> dict[int, tuple[int, str]]:
    """Where each released cell is in the submission: ``{released index: (submitted index, how)}``.

    ``how`` is ``grade_id`` (its nbgrader metadata is intact), ``id`` (same cell id: the metadata is gone
    but the editor kept ids), ``text`` (same type and normalized text, in order: a locked cell or an
    untouched answer) or ``position`` (an answer cell whose text changed, paired with the one cell of its
    type that stands between the same matched neighbours; only when the gap holds as many cells on both
    sides, so a learner's extra cells never make a guess). A submitted cell explains one released cell only.
    """
    from difflib import SequenceMatcher

    pairs: dict[int, tuple[int, str]] = {}
    marked = {j for j, cell in enumerate(submitted.cells) if _grade_id(cell)}
    first_copy: dict[str, int] = {}
    for j in sorted(marked):
        first_copy.setdefault(_grade_id(submitted.cells[j]), j)
    for i, cell in enumerate(released.cells):
        if _grade_id(cell) in first_copy:
            pairs[i] = (first_copy[_grade_id(cell)], "grade_id")
    used = {j for j, _ in pairs.values()} | marked
    by_id = {}
    for j, cell in enumerate(submitted.cells):
        if j not in used and cell.get("id"):
            by_id.setdefault(cell["id"], j)
    for i, cell in enumerate(released.cells):
        j = by_id.get(cell.get("id")) if i not in pairs else None
        if j is not None and j not in used and submitted.cells[j].cell_type == cell.cell_type:
            pairs[i] = (j, "id")
            used.add(j)
    # Align the rest on text; cells paired above (and marked cells) are anchors that only match their partner.
    partner = {j: i for i, (j, _) in pairs.items()}
    left = [f"pair{i}" if i in pairs else f"{c.cell_type}\n{_normalized(c.source)}" for i, c in enumerate(released.cells)]
    right = [f"pair{partner[j]}" if j in partner else f"marked{j}" if j in marked
             else f"{c.cell_type}\n{_normalized(c.source)}" for j, c in enumerate(submitted.cells)]
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, left, right, autojunk=False).get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                if i not in pairs and j not in used:
                    pairs[i] = (j, "text")
        elif tag == "replace" and i2 - i1 == j2 - j1:
            for i, j in zip(range(i1, i2), range(j1, j2)):
                meta = released.cells[i].metadata.get("nbgrader") or {}
                answer = meta.get("solution") or not meta  # locked cells need their own text to be recognised
                if (i not in pairs and j not in used and answer
                        and released.cells[i].cell_type == submitted.cells[j].cell_type):
                    pairs[i] = (j, "position")
    return pairs


MISSING_NOTICE = "（这个单元格在提交的笔记本中缺失，评分时已按学生版补回。）"


def restore_notebook(released, submitted):
    """The submission as nbgrader should grade it: ``(notebook, restored, inserted)`` (grade ids).

    Cells that lost their nbgrader metadata but are matched to a released cell (:func:`match_cells`)
    get the release's metadata back, so they are graded; a graded cell that cannot be found at all is
    put back from the release after the cell that precedes it there (nbgrader then overwrites a locked
    cell's text with the source's, hidden tests included). ``submitted`` is not changed.
    """
    import copy

    import nbformat

    notebook = copy.deepcopy(submitted)
    pairs = match_cells(released, notebook)
    restored, inserted, after = [], [], []
    for i, cell in enumerate(released.cells):
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        if i in pairs:
            j, how = pairs[i]
            if how != "grade_id":
                notebook.cells[j].setdefault("metadata", {})["nbgrader"] = copy.deepcopy(meta)
                restored.append(meta["grade_id"])
        elif meta.get("grade"):
            anchor = max((pairs[k][0] for k in range(i) if k in pairs), default=-1)
            new = copy.deepcopy(cell)
            new.source = (f"# {MISSING_NOTICE}\n" if cell.cell_type == "code" else f"{MISSING_NOTICE}\n\n") + cell.source
            new.pop("id", None)
            if notebook.get("nbformat_minor", 0) >= 5:
                new["id"] = nbformat.v4.new_code_cell().id
            after.append((anchor, len(after), new))
            inserted.append(meta["grade_id"])
    for anchor, _, new in sorted(after, key=lambda item: (item[0], item[1]), reverse=True):
        notebook.cells.insert(anchor + 1, new)
    return notebook, restored, inserted


def notebook_flags(release_path: str | Path, submitted_path: str | Path) -> list[Flag]:
    """Compare a submitted notebook's graded cells with the released notebook's."""
    release_path, submitted_path = Path(release_path), Path(submitted_path)
    name = release_path.name
    if not submitted_path.is_file():
        return [Flag("notebook_missing", name, f"没有提交 {name}")]
    released = _read_notebook(release_path)
    submitted, problem = read_submitted(submitted_path)
    if submitted is None:
        return [Flag("notebook_unreadable", name, f"{name} {problem}：本笔记本记 0 分，其余笔记本照常评分")]
    marked: dict[str, list] = {}
    for cell in submitted.cells:
        if _grade_id(cell):
            marked.setdefault(_grade_id(cell), []).append(cell)
    pairs = match_cells(released, submitted)
    flags = []
    for i, cell in enumerate(released.cells):
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        grade_id, where = meta["grade_id"], f"{name}#{meta['grade_id']}"
        is_test = is_test_cell(cell)
        copies = marked.get(grade_id, [])
        if len(copies) > 1:
            flags.append(Flag("duplicate_cell", where, f"{grade_id} 出现了 {len(copies)} 次"))
        if not copies:
            if i in pairs:
                flags.append(Flag("metadata_stripped", where,
                                  f"{grade_id} 还在，但评分元数据被删除（评分时已按学生版恢复）"))
            elif is_test:
                flags.append(Flag("test_cell_deleted", where, f"测试单元格 {grade_id} 被删除（评分时已补回）"))
            else:
                flags.append(Flag("cell_deleted", where, f"单元格 {grade_id} 被删除"))
            continue
        copy = copies[0]
        theirs = copy.metadata["nbgrader"]
        changed = [key for key in LOCKED_KEYS if theirs.get(key) != meta.get(key)]
        if changed:
            flags.append(Flag("metadata_changed", where, f"{grade_id} 的评分元数据被修改：{', '.join(changed)}"))
        if meta.get("locked") and _normalized(copy.source) != _normalized(cell.source):
            code = "test_cell_edited" if is_test else "locked_cell_edited"
            flags.append(Flag(code, where, f"锁定的单元格 {grade_id} 被修改（评分时已恢复原内容）"))
    return flags


def execution_flags(execution_dir: str | Path) -> list[Flag]:
    """Timeouts and output floods recorded by GuardedExecute's reports."""
    flags = []
    for path in sorted(Path(execution_dir).glob("*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        name = f"{report['notebook']}.ipynb"
        for cell in report.get("cells", []):
            where = f"{name}#{cell.get('grade_id') or 'cell' + str(cell['index'])}"
            if cell.get("timed_out"):
                flags.append(Flag("cell_timeout", where, f"单元格运行超过 {report['cell_timeout']} 秒被中断"))
            if cell.get("flood"):
                flags.append(Flag("output_flood", where,
                                  f"单元格输出 {cell['output_chars']} 个字符，超过上限 {report['output_limit']}"))
        if report.get("grader_error"):
            flags.append(Flag("grader_error", name, f"nbgrader 无法评分这本笔记本（记 0 分）：{report['grader_error'][-300:]}"))
        budget = report.get("notebook_timeout") or 0
        spent = report.get("cells_seconds", report.get("seconds", 0))
        if budget and spent >= budget:
            flags.append(Flag("notebook_timeout", name, f"整本笔记本运行 {spent:.0f} 秒，用完了 {budget} 秒的时间预算"))
    return flags


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _clock_problems(rows: list[dict]) -> list[str]:
    steps = [row.get("step") for row in rows]
    elapsed = [_number(row.get("elapsed_s")) for row in rows]
    if any(value is None for value in elapsed):
        return []
    problems, restarts = [], 0
    for i in range(1, len(rows)):
        if elapsed[i] < elapsed[i - 1]:
            restarts += 1
        elif elapsed[i] == elapsed[i - 1] and steps[i] > steps[i - 1]:
            problems.append(f"第 {steps[i - 1]}→{steps[i]} 步的耗时为 0 秒（elapsed_s 没有前进）")
            break
    if restarts > MAX_CLOCK_RESTARTS:
        problems.append(f"elapsed_s 倒退了 {restarts} 次（续训最多 {MAX_CLOCK_RESTARTS} 次）")
    if elapsed and elapsed[0] <= 0:
        problems.append("第一条日志的 elapsed_s 不大于 0")
    for i in range(1, len(rows)):
        tokens = (_number(rows[i].get("tokens_seen")), _number(rows[i - 1].get("tokens_seen")))
        rate = _number(rows[i].get("tokens_per_s"))
        span = elapsed[i] - elapsed[i - 1]
        if None in tokens or rate is None or span < 0.5:
            continue
        expected = (tokens[0] - tokens[1]) / span
        if expected <= 0 or abs(rate - expected) > THROUGHPUT_TOLERANCE * expected:
            problems.append(f"第 {steps[i]} 步记录的吞吐 {rate} tokens/s 与 token 数和耗时算出的 {expected:.1f} 不符")
            break
    return problems


def _adapter_problems(run_dir: Path, cfg, losses: list[float]) -> list[str]:
    adapter = run_dir / ADAPTER_DIR
    config_file, weights = adapter / ADAPTER_CONFIG, adapter / ADAPTER_WEIGHTS
    if not (config_file.is_file() and weights.is_file()):
        return []
    from llmcourse.env.models import get_model

    problems = []
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    if saved.get("r") != cfg.lora.r:
        problems.append(f"适配器的 r = {saved.get('r')}，配置是 {cfg.lora.r}")
    if saved.get("lora_alpha") != cfg.lora.lora_alpha:
        problems.append(f"适配器的 lora_alpha = {saved.get('lora_alpha')}，配置是 {cfg.lora.lora_alpha}")
    targets = cfg.lora.target_modules
    if targets is None:
        targets = list(get_model(cfg.model.name).target_modules)
    if targets != "all-linear" and set(saved.get("target_modules") or []) != set(targets):
        problems.append(f"适配器作用的模块 {sorted(saved.get('target_modules') or [])} 与配置 {sorted(targets)} 不一致")
    from safetensors import safe_open
    with safe_open(str(weights), framework="pt") as tensors:  # pt: bf16 adapters too
        names = list(tensors.keys())
        ranks = {tensors.get_slice(n).get_shape()[0] for n in names if "lora_A" in n}
        ranks |= {tensors.get_slice(n).get_shape()[-1] for n in names if "lora_B" in n}
        if ranks and ranks != {cfg.lora.r}:
            problems.append(f"适配器权重的秩 {sorted(ranks)} 与配置 r = {cfg.lora.r} 不一致")
        b_names = [n for n in names if "lora_B" in n]
        untrained = bool(b_names) and all(not tensors.get_tensor(n).any() for n in b_names)
    from llmcourse.grading.checks import loss_drop
    if untrained and len(losses) >= 2 and loss_drop(losses) > 0.05:
        problems.append(f"适配器的 lora_B 全为 0（从未训练），日志却显示 loss 下降了 {loss_drop(losses):.0%}")
    return problems


def training_run_problems(run_dir: str | Path) -> list[str]:
    """Why a run folder's log cannot be what training wrote (empty when it is consistent)."""
    from llmcourse.config import ConfigError, load_config

    run_dir = Path(run_dir)
    log_path = run_dir / TRAIN_LOG
    if not log_path.is_file():
        return []
    try:
        rows = read_train_log(run_dir)
    except LogLineInvalid:
        return ["train_log.jsonl 有无法解析的行（训练日志被手工修改过）"]
    if not rows:
        return []
    problems = []
    steps = [row.get("step") for row in rows]
    if not all(isinstance(s, int) for s in steps) or any(b <= a for a, b in itertools.pairwise(steps)):
        problems.append("步数不是严格递增的整数")
        steps = []
    losses = [v for v in (_number(row.get("loss")) for row in rows) if v is not None]
    try:
        cfg = load_config(run_dir / RUN_CONFIG) if (run_dir / RUN_CONFIG).is_file() else None
    except ConfigError:
        cfg = None
    if cfg is not None:
        if steps and cfg.train.max_steps > 0 and steps[-1] > cfg.train.max_steps:
            problems.append(f"日志到了第 {steps[-1]} 步，但配置的 train.max_steps = {cfg.train.max_steps}")
        rates = [v for v in (_number(row.get("learning_rate")) for row in rows) if v is not None]
        if rates and max(rates) > cfg.train.learning_rate * 1.01:
            problems.append(f"日志里的学习率 {max(rates)} 高于配置的 {cfg.train.learning_rate}")
        problems += _adapter_problems(run_dir, cfg, losses)
    if steps:
        problems += _clock_problems(rows)
    return problems


def find_runs(folder: str | Path) -> list[Path]:
    """Training run folders (those holding a train_log.jsonl) inside a submission."""
    return sorted(p.parent for p in Path(folder).rglob(TRAIN_LOG) if CHECKPOINT_DIR not in p.parts)


def run_flags(submission_dir: str | Path) -> list[Flag]:
    submission_dir = Path(submission_dir)
    flags = []
    for run in find_runs(submission_dir):
        problems = training_run_problems(run)
        if problems:
            flags.append(Flag("fabricated_log", str(run.relative_to(submission_dir)), "；".join(problems)))
    return flags


def inspect_submission(release_dir: str | Path, submission_dir: str | Path, execution_dir: str | Path | None = None,
                       grader_status: str = "ok", grader_message: str = "") -> list[Flag]:
    """Every flag for one learner's assignment: notebooks vs release, execution, runs, the grader."""
    release_dir, submission_dir = Path(release_dir), Path(submission_dir)
    flags = []
    for released in sorted(release_dir.glob("*.ipynb")):
        flags += notebook_flags(released, submission_dir / released.name)
    if execution_dir and Path(execution_dir).is_dir():
        flags += execution_flags(execution_dir)
    flags += run_flags(submission_dir)
    if grader_status == "error" and not any(f.code == "grader_error" for f in flags):
        flags.append(Flag("grader_error", submission_dir.name, f"nbgrader 无法评分：{grader_message[-300:]}"))
    elif grader_status == "timeout":
        flags.append(Flag("notebook_timeout", submission_dir.name, "超过单个学员的评分时间上限，评分进程被终止"))
    elif grader_status == "crashed":
        flags.append(Flag("grader_crashed", submission_dir.name, f"评分进程在这份提交上意外退出：{grader_message}"))
    return flags
