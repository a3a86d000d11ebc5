"""A synthetic cohort of Day 1 submissions: the grading tests and the grading benchmark use it.

Usage::

    from llmcourse.grading.cohort import build_course, make_cohort, KINDS
    from llmcourse.grading.workflow import Course, release
    root = build_course("/tmp/course")                 # scratch course: assignment "day1" (graded cells only)
    release(Course(root), "day1")
    learners = make_cohort(Course(root), "/tmp/inbox", KINDS)   # {"s01_correct": "correct", ...}
    make_cohort(Course(root), "/tmp/inbox", ["correct"] * 50, zipped=True)   # one zip per learner

The scratch assignment is built from the course's own source notebooks ``day1/01_concepts.ipynb``
and ``day1/02_lora_training.ipynb``, keeping every markdown cell, every nbgrader cell and the
``parameters`` cell, and dropping the other code cells (the ones that load a model or generate text),
so grading a learner costs seconds. Learners start from the *released* notebooks and fill in
answers, as real learners do. Each kind:

=====================  ============================================================================
correct                the source notebooks' own solutions; a consistent training run
wrong                  wrong quiz answers, a config with ``lora.r: 256``, a too-short statement
erroring               the quiz cell raises; the config cell raises before saving the file
hanging                the quiz cell sleeps far past the cell timeout
tampered               wrong quiz; test cell quiz_q2 edited, quiz_q3 deleted, quiz_q4's metadata stripped
fabricated             correct answers; train_log claims 60 steps for ``max_steps: 8``, a frozen clock
fabricated_untrained   correct answers; the adapter's lora_B is all zero while the log says loss fell
flooding               correct answers; the statement cell then prints ~2 MB
corrupt                01_concepts.ipynb is not a notebook (not JSON): it scores 0, 02 is graded
stripped               correct answers; 01_concepts.ipynb lost every cell's nbgrader metadata and id (an editor
                       outside JupyterLab): the grader restores it from the release and grades it
ungradable             correct answers; 02_lora_training.ipynb has nbgrader metadata of a future schema, which
                       nbgrader refuses: that notebook scores 0, 01 is graded
=====================  ============================================================================

The training runs are synthetic too (:func:`write_run`): a config, a log and a tiny adapter in
PEFT's format with the ranks, alpha and target modules of the config, written without a model.
:func:`write_day3_project` lays out a complete Day 3 project (data/built, train/run, deploy, README)
the same way, for the rubric's evidence checks; :func:`write_real_adapters` gives such projects real
adapters of the stand-in (for the model checks: class grading on one vLLM).
:func:`write_gradebook` fills an nbgrader gradebook directly (no autograde) with learners who earned a
chosen share of each notebook's points, for the track scoring of Day 1 and Day 2 (code, no-code, both).
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import nbformat

from llmcourse.grading.learner_edition import CODE_STUB
from llmcourse.env.models import ALL_LINEAR
from llmcourse.artifacts import (ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, COURSE_ROOT, DATA_REPORT_JSON,
                                 DATA_REPORT_MD, LENGTH_HIST, LOADTEST_JSON, LOSS_CURVE, REJECTED, RUN_CONFIG,
                                 RUN_ENV, TRAIN_LOG)

NOTEBOOKS = ("01_concepts.ipynb", "02_lora_training.ipynb")
KINDS = ("correct", "wrong", "erroring", "hanging", "tampered", "fabricated", "fabricated_untrained",
         "flooding", "corrupt", "stripped", "ungradable")
RUN_DIR = "runs/my_first_lora"
PLACEHOLDER = re.compile(re.escape(CODE_STUB))
WRONG_QUIZ = 'quiz = {"q1": "A", "q2": "A", "q3": "A", "q4": "A"}'


def trimmed(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Markdown, nbgrader cells and the parameters cell; other code cells go."""
    keep = [c for c in notebook.cells if c.cell_type == "markdown" or "nbgrader" in c.metadata
            or "parameters" in c.metadata.get("tags", [])]
    copy = nbformat.from_dict(notebook)
    copy.cells = keep
    return copy


def build_course(root: str | Path, assignment: str = "day1", trim: bool = True) -> Path:
    """A scratch course folder whose ``assignment`` is Day 1's notebooks 01 and 02 plus its data."""
    root = Path(root)
    target = root / assignment
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(COURSE_ROOT / "day1", target, ignore=shutil.ignore_patterns("*.ipynb", "runs", "outputs", "__pycache__"))
    for name in NOTEBOOKS:
        notebook = nbformat.read(COURSE_ROOT / "day1" / name, as_version=4)
        nbformat.write(trimmed(notebook) if trim else notebook, target / name)
    return root


def solution(source_cell) -> str:
    """What a learner who got it right writes: the text between the solution markers (or all of it)."""
    text = source_cell.source
    match = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION\n?", text, re.DOTALL)
    return match.group(1).rstrip("\n") if match else text


def fill(released_cell, answer: str) -> None:
    """Put ``answer`` where the released cell has its placeholder."""
    if released_cell.cell_type == "markdown":
        released_cell.source = answer
    elif PLACEHOLDER.search(released_cell.source):
        released_cell.source = PLACEHOLDER.sub(lambda _: answer, released_cell.source, count=1)
    else:
        released_cell.source = answer


def _answers(kind: str) -> dict[str, str]:
    if kind == "wrong":
        return {"quiz_answers": WRONG_QUIZ,
                "write_config": 'config_text = """\nmodel: {name: gemma3-270m}\nlora: {r: 256, lora_alpha: 512}\n'
                                'train: {max_steps: 60, assistant_only_loss: true}\n"""',
                "statement": 'statement = "训练好了。"'}
    if kind == "erroring":
        return {"quiz_answers": 'raise RuntimeError("还没写完")',
                "write_config": 'config_text = open("没有这个文件.yaml", encoding="utf-8").read()'}
    if kind == "hanging":
        return {"quiz_answers": "import time\n\ntime.sleep(3600)"}
    if kind == "tampered":
        return {"quiz_answers": WRONG_QUIZ}
    return {}


def _by_id(notebook) -> dict[str, object]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells if "nbgrader" in c.metadata}


def learner_notebook(kind: str, released_path: Path, source_path: Path) -> nbformat.NotebookNode:
    """The released notebook as a learner of ``kind`` hands it in."""
    notebook = nbformat.read(released_path, as_version=4)
    sources = _by_id(nbformat.read(source_path, as_version=4))
    answers = _answers(kind)
    for grade_id, cell in _by_id(notebook).items():
        meta = cell.metadata["nbgrader"]
        if meta.get("solution"):
            fill(cell, answers.get(grade_id, solution(sources[grade_id])))
    cells = _by_id(notebook)
    if kind == "flooding" and "statement" in cells:
        cells["statement"].source += '\nfor line in range(100_000):\n    print("刷屏", line, "x" * 10)'
    if kind == "tampered" and "quiz_q2" in cells:
        cells["quiz_q2"].source = 'print("这道题我跳过了")'
        notebook.cells.remove(cells["quiz_q3"])
        del cells["quiz_q4"].metadata["nbgrader"]
    return notebook


def write_run(run_dir: str | Path, steps: int = 8, max_steps: int = 8, r: int = 16, lora_alpha: int = 32,
              trained: bool = True, clock: str = "real", seed: int = 0, config: str | Path | None = None) -> Path:
    """A training run folder as ``llmcourse.training.run`` writes it, without a model.

    ``clock``: ``real`` (2.5 s per step, throughput consistent with tokens) or ``frozen`` (every row
    at the same time, a hand-written log's tell). ``trained=False`` leaves lora_B at zero (PEFT's init).
    ``config``: the learner's config file the run is of (its rank and alpha replace ``r`` / ``lora_alpha``;
    ``max_steps`` and the output folder are recorded as the overrides a notebook applies); without it a
    default config is written and the run is nobody's config's run.
    """
    import numpy as np
    from safetensors.numpy import save_file

    from llmcourse.config import build_config, load_config

    run_dir = Path(run_dir)
    (run_dir / ADAPTER_DIR).mkdir(parents=True, exist_ok=True)
    if config is not None:
        overrides = {"train.max_steps": max_steps, "train.output_dir": str(run_dir), "model.device": "cpu"}
        cfg = load_config(config, **overrides)
        cfg.train.engine = "unsloth"
        r, lora_alpha = cfg.lora.r, cfg.lora.lora_alpha
    else:
        cfg = build_config({"model": {"name": "gemma3-270m", "device": "cpu"},
                            "lora": {"r": r, "lora_alpha": lora_alpha},
                            "train": {"engine": "unsloth", "max_steps": max_steps, "output_dir": str(run_dir)}},
                           base_dir=run_dir)
    cfg.save(run_dir / RUN_CONFIG)
    rows = []
    for step in range(1, steps + 1):
        elapsed = 2.5 * step if clock == "real" else 1.0
        rows.append({"step": step, "loss": round(3.0 * 0.8 ** step + 0.1, 5),
                     "learning_rate": 1e-3 * (1 - (step - 1) / max(steps, max_steps)), "grad_norm": 4.0,
                     "tokens_seen": 260 * step, "tokens_per_s": 104.0 if clock == "real" else 5000.0,
                     "memory_mb": 2500.0, "memory_kind": "cpu_rss", "elapsed_s": elapsed, "epoch": step / 34})
    (run_dir / TRAIN_LOG).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    generator = np.random.default_rng(seed)
    tensors = {}
    for module in ALL_LINEAR:
        group = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        prefix = f"base_model.model.model.layers.0.{group}.{module}"
        tensors[f"{prefix}.lora_A.weight"] = generator.normal(0, 0.02, (r, 8)).astype(np.float32)
        tensors[f"{prefix}.lora_B.weight"] = (generator.normal(0, 0.02, (8, r)) if trained
                                              else np.zeros((8, r))).astype(np.float32)
    save_file(tensors, str(run_dir / ADAPTER_DIR / ADAPTER_WEIGHTS))
    adapter_config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": lora_alpha,
                      "lora_dropout": 0.0, "target_modules": list(ALL_LINEAR), "bias": "none", "use_rslora": False}
    (run_dir / ADAPTER_DIR / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2), encoding="utf-8")
    (run_dir / RUN_ENV).write_text(json.dumps({"device": "cpu", "engine": "unsloth", "synthetic": True,
                                                  "launch": cfg.origin}), encoding="utf-8")
    return run_dir


def _write_config(folder: Path, source_dir: Path) -> Path | None:
    """``my_lora_sft.yaml`` from the source notebook's solution of the config exercise."""
    import ast

    source = source_dir / NOTEBOOKS[1]
    cell = _by_id(nbformat.read(source, as_version=4)).get("write_config")
    if cell is None:
        return None
    assignment = ast.parse(solution(cell)).body[0]
    path = folder / "my_lora_sft.yaml"
    path.write_text(ast.literal_eval(assignment.value), encoding="utf-8")
    return path


def _rewrite_cells(path: Path, change) -> None:
    """Edit a notebook's JSON as another editor would save it (no nbformat normalising on the way)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook["cells"] = change(notebook["cells"])
    path.write_text(json.dumps(notebook, ensure_ascii=False, indent=1), encoding="utf-8")


def make_submission(kind: str, release_dir: Path, source_dir: Path, folder: Path, seed: int = 0) -> Path:
    """One learner's folder as they would hand it in."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choices: {', '.join(KINDS)}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(release_dir, folder)
    for released in sorted(release_dir.glob("*.ipynb")):
        nbformat.write(learner_notebook(kind, released, source_dir / released.name), folder / released.name)
    if kind == "corrupt":
        (folder / NOTEBOOKS[0]).write_text("{这不是一个笔记本", encoding="utf-8")
    if kind == "stripped":
        _rewrite_cells(folder / NOTEBOOKS[0], lambda cells: [{k: v for k, v in c.items() if k != "id"}
                                                            | {"metadata": {}} for c in cells])
    if kind == "ungradable":
        def future_schema(cells):
            next(c for c in cells if "nbgrader" in c["metadata"])["metadata"]["nbgrader"]["schema_version"] = 99
            return cells
        _rewrite_cells(folder / NOTEBOOKS[1], future_schema)
    # The learner's config file as their notebook saved it, and the run trained from it (a wrong config's
    # learner trained before changing it: their run is not that config's).
    config = _write_config(folder, source_dir) if kind not in ("wrong", "erroring") else None
    if kind == "fabricated":
        write_run(folder / RUN_DIR, steps=60, max_steps=8, clock="frozen", seed=seed, config=config)
    else:
        write_run(folder / RUN_DIR, trained=kind != "fabricated_untrained", seed=seed, config=config)
    return folder


def make_cohort(course, inbox: str | Path, kinds, assignment: str = "day1", zipped: bool = False) -> dict[str, str]:
    """One submission per entry of ``kinds`` into ``inbox`` (folders, or zips wrapping a day1/ folder)."""
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    release_dir, source_dir = course.release_dir(assignment), course.root / assignment
    learners = {}
    for number, kind in enumerate(kinds, start=1):
        student = f"s{number:02d}_{kind}"
        folder = make_submission(kind, release_dir, source_dir, inbox / student, seed=number)
        if zipped:
            with zipfile.ZipFile(inbox / f"{student}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(folder.rglob("*")):
                    archive.write(path, Path(assignment) / path.relative_to(folder))
            shutil.rmtree(folder)
        learners[student] = kind
    return learners


def chat_rows(prefix: str, count: int, facts: bool = True) -> list[dict]:
    system = {"role": "system", "content": "你是客服助手。"}
    return [{"id": f"{prefix}{i}", **({"key_facts": [f"{i}天"]} if facts else {}),
             "messages": [system, {"role": "user", "content": f"{prefix} 第{i}个问题是什么？"},
                          {"role": "assistant", "content": f"答案是{i}天。"}]} for i in range(count)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_day3_project(folder: str | Path) -> Path:
    """Every Day 3 deliverable in the contract's place (data/built, train/run, deploy, README), synthetic."""
    from llmcourse.training.run import plot_loss, read_train_log

    folder = Path(folder)
    built = folder / "data" / "built"
    write_jsonl(built / "train.jsonl", chat_rows("训练", 60))
    write_jsonl(built / "val.jsonl", chat_rows("验证", 6))
    write_jsonl(built / "test.jsonl", chat_rows("测试", 12))
    write_jsonl(built / REJECTED, [{"source": "chat.csv", "line": 3, "reason": "empty"}])
    (built / DATA_REPORT_JSON).write_text(json.dumps({"splits": {"train": 60}}), encoding="utf-8")
    (built / DATA_REPORT_MD).write_text("# 数据报告\n", encoding="utf-8")
    (built / LENGTH_HIST).write_bytes(b"\x89PNG\r\n\x1a\n")
    run = write_run(folder / "train" / "run")
    plot_loss(read_train_log(run), run / LOSS_CURVE)
    for name in ("eval_val.json", "eval_test.json"):
        (run / name).write_text(json.dumps({"summary": {}}), encoding="utf-8")
    (folder / "deploy" / "loadtest").mkdir(parents=True, exist_ok=True)
    (folder / "deploy" / "client.py").write_text("from openai import OpenAI\n\nclient = OpenAI()\n", encoding="utf-8")
    (folder / "deploy" / "loadtest" / LOADTEST_JSON).write_text("{}", encoding="utf-8")
    (folder / "README.md").write_text("# 项目\n<!-- env:start -->\n设备 cpu，训练引擎 unsloth\n<!-- env:end -->\n"
                                      "<!-- launch:start -->\nllmcourse serve config.yaml\n<!-- launch:end -->\n"
                                      "<!-- showcase:start -->\n微调后：4张\n<!-- showcase:end -->\n"
                                      "<!-- results:start -->\n测试集准确率 0.8\n<!-- results:end -->\n",
                                      encoding="utf-8")
    return folder


def write_real_adapters(runs: dict[str | Path, float], seed: int = 0) -> None:
    """Replace each run's synthetic adapter by a real PEFT adapter for its config's model, one model load for all.

    ``runs`` = ``{run folder: scale}``: lora_B is drawn from N(0, scale) (0 = PEFT's untrained init), so
    learners with different scales answer differently; the tokenizer with the course template goes beside
    it, as training saves it. For the class-grading test and benchmark (llmcourse.grading.class_eval).
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.config import load_config
    from llmcourse.env.loading import resolve_model_path, use_course_template
    from llmcourse.training.run import lora_config

    model = None
    for number, (run, scale) in enumerate(runs.items()):
        run = Path(run)
        cfg = load_config(run / RUN_CONFIG)
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg))
            tokenizer = use_course_template(AutoTokenizer.from_pretrained(resolve_model_path(cfg)), cfg)
        peft_model = get_peft_model(model, lora_config(cfg))
        generator = torch.Generator().manual_seed(seed + number)
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.data.normal_(0, scale, generator=generator) if scale else parameter.data.zero_()
        shutil.rmtree(run / ADAPTER_DIR, ignore_errors=True)
        peft_model.save_pretrained(run / ADAPTER_DIR)
        tokenizer.save_pretrained(run / ADAPTER_DIR)
        model = peft_model.unload()  # the bare base model again, for the next learner


def write_gradebook(course, learners: dict[str, dict[str, dict[str, float]]]) -> Path:
    """nbgrader's gradebook for ``course`` with graded submissions, without running anything.

    ``learners`` = ``{student: {assignment: {notebook stem: share of its points, 0–1}}}``. The grade cells
    (ids, points, code or markdown) are those of the course's own source notebooks ``<assignment>/*.ipynb``;
    every notebook of a handed-in assignment gets a submission, one the learner skipped scores 0.
    """
    from nbgrader.api import Gradebook

    assignments = sorted({a for days in learners.values() for a in days})
    course.grading.mkdir(parents=True, exist_ok=True)
    with Gradebook(course.db_url, course.course_id) as gradebook:
        cells = {}
        for assignment in assignments:
            gradebook.update_or_create_assignment(assignment)
            for path in sorted((course.root / assignment).glob("*.ipynb")):
                gradebook.add_notebook(path.stem, assignment)
                for cell in nbformat.read(path, as_version=4).cells:
                    meta = cell.metadata.get("nbgrader", {})
                    if meta.get("grade"):
                        gradebook.add_grade_cell(meta["grade_id"], path.stem, assignment, max_score=meta["points"],
                                                 cell_type=cell.cell_type)
                        cells.setdefault(assignment, []).append((path.stem, meta["grade_id"], meta["points"]))
        for student, days in learners.items():
            gradebook.add_student(student)
            for assignment, shares in days.items():
                gradebook.add_submission(assignment, student)
                for notebook, grade_id, points in cells.get(assignment, []):
                    grade = gradebook.find_grade(grade_id, notebook, assignment, student)
                    grade.auto_score, grade.manual_score = points * shares.get(notebook, 0.0), None
                    grade.needs_manual_grade = False
        gradebook.db.commit()
    return course.db_path


def real_submission(release_dir: str | Path, source_dir: str | Path, executed_dir: str | Path,
                    folder: str | Path) -> Path:
    """A real learner's folder (not trimmed, not synthetic), for the real-submission grading test and benchmark.

    Every released notebook of the day with the source notebooks' own answers written into its answer
    cells (:func:`learner_notebook`, kind ``correct``), beside every artifact a course run of that day
    left in ``executed_dir`` (``llmcourse.notebooks.run.run_day``'s folder: ``runs/``, ``my_lora_sft.yaml``,
    ``my_cases.jsonl``, ``no_code_submission/`` ...). The executed notebooks themselves stay out.
    """
    from llmcourse.artifacts import JUNK

    release_dir, source_dir, folder = Path(release_dir), Path(source_dir), Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(executed_dir, folder, ignore=shutil.ignore_patterns("*.ipynb", *JUNK))
    for released in sorted(release_dir.glob("*.ipynb")):
        nbformat.write(learner_notebook("correct", released, source_dir / released.name), folder / released.name)
    return folder
