"""Grading weights (grading/rubric.yaml, the only place they live) and Day 3's rubric evidence.

Usage::

    from llmcourse.grading.rubric import load_rubric, collect_evidence, dimension_scores, assignment_percent, track_scores
    rubric = load_rubric()                                          # grading/rubric.yaml
    track_scores(rubric, "day1", {"01_concepts": (12, 13), "02_lora_training": (0, 13), "03_no_code": (10, 10)})
    # -> {"percent": 96.2, "common": 92.3, "tracks": {"code": 0.0, "no_code": 100.0}, "track": "no_code"}
    evidence = collect_evidence(rubric, "day3", "grading/submitted/alice/day3")
    scores = dimension_scores(rubric, "day3", evidence, manual={"summary": 0.8})   # 0–1 each, None = not graded
    assignment_percent(rubric, "day3", scores)                      # weighted, 0–100
    course_total(rubric, {"day1": 90.0, "day2": 75.0, "day3": 64.0})

Day 1 and Day 2 are scored on their notebooks' nbgrader points in groups (:func:`track_scores`): the
``common`` notebooks, and two ``tracks`` (code, no-code) of which only the better one counts, so either
track can reach 100 %; ``common_weight`` splits the two parts.

Day 3 is scored on the seed's rubric: data 20 %, fine-tuning completeness 25 %, model
improvement 25 %, deployment and usability 20 %, summary and reflection 10 % (weights in the YAML).
Each automatic dimension is a list of checks read from the learner's Day 3 folder
(the layout of day3/: ``data/built/``, ``train/run/``, ``deploy/``, ``README.md``, ``config.yaml``):

* ``data``: the three splits load as chat JSONL; enough rows; no test question in train;
  every test row has key facts or a label; ``rejected.jsonl`` logs drops with reasons; the data report.
* ``fine_tuning``: run artifacts; the config passes ``check_config``; the log passes ``check_train_log``;
  the adapter passes ``check_adapter``; eval files. A fabricated log (:mod:`llmcourse.grading.integrity`) zeroes it.
* ``improvement``: the grader re-evaluates the learner's adapter and the base model on the instructor's
  held-out set (capped questions and tokens) and scores the key-fact gain (label accuracy for intent data).
  A batch asks one shared vLLM instead of loading the model per learner (:mod:`llmcourse.grading.class_eval`);
  both paths compute in the rubric's ``dtype`` and refuse an adapter that does not fit the base (:func:`adapter_mismatch`).
* ``deployment``: ``deploy/client.py`` uses the openai client; the learner's API starts
  (:func:`llmcourse.serving.server.running_server`) and holds a multi-turn chat (:func:`llmcourse.serving.chat.multi_turn`);
  load-test results; the README results section is filled in, and so are its 环境 / 启动方式 /
  效果展示 sections where the template (day3/README.md) has them.

A check that cannot run *here* (e.g. a missing grading dependency) is skipped, not failed:
it carries no points and says why. The summary dimension is a manual cell in formgrader.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import itertools
import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from llmcourse.errors import CourseError

from llmcourse.artifacts import (ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, COURSE_ROOT, DATA_REPORT_JSON,
                                 DATA_REPORT_MD, LENGTH_HIST, LOADTEST_JSON, LOSS_CURVE, REJECTED, RUN_CONFIG,
                                 RUN_ENV, TRAIN_LOG)
from llmcourse.evaluation.scoring import keyfact_hits, label_match, squeeze

RUBRIC_FILE = COURSE_ROOT / "grading" / "rubric.yaml"
# The Day 3 project layout (see day3/README.md).
BUILT = Path("data/built")
RUN = Path("train/run")
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


class RubricError(CourseError, ValueError):
    """grading/rubric.yaml cannot be used; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManualCell(_Strict):
    notebook: str
    grade_id: str


class Dimension(_Strict):
    weight: float = Field(gt=0, le=1)
    evidence: Literal["data", "fine_tuning", "improvement", "deployment"] | None = None
    manual: ManualCell | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.evidence is None) == (self.manual is None):
            raise ValueError("每个维度必须且只能写 evidence 或 manual 之一")
        return self


def _notebook_names(names: list[str]) -> list[str]:
    # nbgrader names a notebook by its stem; "01_concepts.ipynb" in the YAML means the same notebook.
    return [name.removesuffix(".ipynb") for name in names]


class AssignmentRubric(_Strict):
    weight: float = Field(ge=0, le=1)
    dimensions: dict[str, Dimension] = {}
    evidence: dict[str, dict[str, Any]] = {}
    common: list[str] = []
    common_weight: float | None = Field(default=None, ge=0, le=1)
    tracks: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _weights_add_up(self):
        if self.dimensions and not math.isclose(sum(d.weight for d in self.dimensions.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"dimensions 的权重之和必须是 1，现在是 {sum(d.weight for d in self.dimensions.values()):.3f}")
        return self

    @model_validator(mode="after")
    def _tracks_are_consistent(self):
        if not (self.tracks or self.common or self.common_weight is not None):
            return self
        if self.dimensions:
            raise ValueError("同一个作业不能同时写 dimensions 和 tracks/common")
        if not self.tracks:
            raise ValueError("写了 common 或 common_weight 就必须写 tracks（至少一条路线）")
        empty = [name for name, notebooks in self.tracks.items() if not notebooks]
        if empty:
            raise ValueError(f"路线 {empty} 没有列出任何笔记本")
        if self.common and self.common_weight is None:
            raise ValueError("写了 common 就必须写 common_weight（0–1，公共部分在本作业中的占比）")
        self.common = _notebook_names(self.common)
        self.tracks = {name: _notebook_names(notebooks) for name, notebooks in self.tracks.items()}
        listed = self.common + [n for notebooks in self.tracks.values() for n in notebooks]
        twice = sorted({n for n in listed if listed.count(n) > 1})
        if twice:
            raise ValueError(f"这些笔记本出现在多个组里：{twice}；每个笔记本只能属于 common 或一条路线")
        return self


class Rubric(_Strict):
    assignments: dict[str, AssignmentRubric]
    path: Path | None = None

    @model_validator(mode="after")
    def _weights_add_up(self):
        total = sum(a.weight for a in self.assignments.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"assignments 的权重之和必须是 1，现在是 {total:.3f}")
        return self

    def settings(self, assignment: str, evidence: str) -> dict[str, Any]:
        return dict(self.assignments[assignment].evidence.get(evidence, {}))


def load_rubric(path: str | Path = RUBRIC_FILE) -> Rubric:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RubricError(f"找不到评分规则文件 {path}") from None
    except yaml.YAMLError as exc:
        raise RubricError(f"{path}: YAML 语法错误：{exc}") from None
    try:
        return Rubric.model_validate({**(raw or {}), "path": path})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise RubricError(f"{path} 有问题：\n  - " + "\n  - ".join(problems)) from None


def has_dimensions(rubric: Rubric, assignment: str) -> bool:
    return assignment in rubric.assignments and bool(rubric.assignments[assignment].dimensions)


def has_tracks(rubric: Rubric, assignment: str) -> bool:
    return assignment in rubric.assignments and bool(rubric.assignments[assignment].tracks)


def _group_percent(points: dict[str, tuple[float, float]], names: list[str]) -> float | None:
    found = [points[name] for name in names if name in points and points[name][1]]
    if not found:
        return None  # none of the group's notebooks is part of this assignment: the group does not apply
    return 100 * sum(score for score, _ in found) / sum(maximum for _, maximum in found)


def track_scores(rubric: Rubric, assignment: str, points: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """An assignment with tracks, from ``{notebook: (score, max_score)}`` (nbgrader points, manual included).

    Returns ``percent`` (0–100), ``common`` (points % of the common notebooks, None if there are none),
    ``tracks`` (``{track: points % or None}``; None = the track has no notebook in this assignment) and
    ``track``, the track that counted ("" while every track is at 0). Notebooks no group names count as
    common; ties go to the track listed first.
    """
    spec = rubric.assignments[assignment]
    listed = {n for notebooks in spec.tracks.values() for n in notebooks}
    common_names = spec.common + [name for name in points if name not in listed and name not in spec.common]
    common = _group_percent(points, common_names)
    tracks = {name: _group_percent(points, notebooks) for name, notebooks in spec.tracks.items()}
    available = {name: value for name, value in tracks.items() if value is not None}
    best = max(available, key=available.get) if available else ""
    if not available:
        percent = common or 0.0
    elif common is None:
        percent = available[best]
    else:
        weight = spec.common_weight if spec.common_weight is not None else 0.0
        percent = weight * common + (1 - weight) * available[best]
    return {"percent": percent, "common": common, "tracks": tracks,
            "track": best if available and available[best] > 0 else ""}


# ---------------------------------------------------------------------------------------------- checks

@dataclass
class Check:
    name: str
    earned: float          # 0 … points
    points: float = 1.0    # 0 when skipped
    detail: str = ""

    @classmethod
    def of(cls, name: str, passed: bool | float, detail: str = "", points: float = 1.0) -> Check:
        return cls(name, round(points * float(passed), 4), points, detail)

    @classmethod
    def skipped(cls, name: str, why: str) -> Check:
        return cls(name, 0.0, 0.0, f"未评（不计分）：{why}")


def _fraction(checks: list[Check]) -> float | None:
    points = sum(c.points for c in checks)
    return sum(c.earned for c in checks) / points if points else None


def _load_rows(path: Path):
    from llmcourse.data.jsonl import DataError, load_chat_jsonl
    try:
        return load_chat_jsonl(path), ""
    except DataError as exc:
        return None, str(exc).splitlines()[0] if exc.problems else str(exc)


def data_evidence(folder: Path, settings: dict) -> dict:
    built = project_paths(folder)[0]
    splits = {name: _load_rows(built / f"{name}.jsonl") for name in ("train", "val", "test")}
    loaded = {name: rows for name, (rows, _) in splits.items() if rows is not None}
    problems = [message for _, message in splits.values() if message]
    checks = [Check.of("splits_load", len(loaded) / 3, "；".join(problems) or "train/val/test 都能读取", points=2)]
    minimum = {"train": settings.get("min_train", 50), "val": settings.get("min_val", 5), "test": settings.get("min_test", 10)}
    sizes = {name: len(loaded.get(name) or []) for name in minimum}
    short = [f"{name} {sizes[name]} < {minimum[name]}" for name in minimum if sizes[name] < minimum[name]]
    checks.append(Check.of("sizes", not short, "；".join(short) or f"行数 {sizes}"))
    if "train" in loaded and "test" in loaded:
        seen = {squeeze(e.question) for e in loaded["train"]}
        leaked = [e.question for e in loaded["test"] if squeeze(e.question) in seen]
        checks.append(Check.of("no_leakage", not leaked, f"测试集有 {len(leaked)} 个问题也在训练集里" if leaked else "无泄漏"))
    else:
        checks.append(Check.of("no_leakage", False, "缺少 train 或 test，无法检查"))
    test = loaded.get("test") or []
    labelled = sum(1 for e in test if e.key_facts or e.meta.get("label"))
    checks.append(Check.of("test_labelled", labelled / len(test) if test else 0,
                           f"{labelled}/{len(test)} 条测试样本带 key_facts 或 label"))
    rejected = built / REJECTED
    if rejected.is_file():
        try:
            rows = [json.loads(line) for line in rejected.read_text(encoding="utf-8").splitlines() if line.strip()]
            ok = all(isinstance(r, dict) and any("reason" in key for key in r) for r in rows)
            checks.append(Check.of("rejected_logged", ok, f"{len(rows)} 条被丢弃的记录" + ("" if ok else "，有的缺少原因")))
        except json.JSONDecodeError:
            checks.append(Check.of("rejected_logged", False, "rejected.jsonl 不是合法的 JSONL"))
    else:
        checks.append(Check.of("rejected_logged", False, "没有 rejected.jsonl"))
    report_ok, report_detail = False, "没有 data_report.json"
    if (built / DATA_REPORT_JSON).is_file():
        try:
            json.loads((built / DATA_REPORT_JSON).read_text(encoding="utf-8"))
            missing = [n for n in (DATA_REPORT_MD, LENGTH_HIST) if not (built / n).is_file()]
            report_ok, report_detail = not missing, f"缺少 {missing}" if missing else "数据报告齐全"
        except json.JSONDecodeError:
            report_detail = "data_report.json 不是合法的 JSON"
    checks.append(Check.of("data_report", report_ok, report_detail))
    return {"checks": [asdict(c) for c in checks]}


def _check_call(name: str, function, *args, **kwargs) -> Check:
    from llmcourse.grading.checks import CheckFailed
    try:
        function(*args, **kwargs)
        return Check.of(name, True, "通过")
    except CheckFailed as exc:
        return Check.of(name, False, str(exc))
    except Exception as exc:  # noqa: BLE001  (a broken artifact must cost points, not stop grading)
        return Check.of(name, False, f"{type(exc).__name__}: {exc}")


def project_paths(folder: Path) -> tuple[Path, Path]:
    """(built data folder, training run folder) of the project in ``folder``.

    The project's config decides (``config.yaml``, or a scenario config in ``configs/`` such as
    intent.yaml, whose folders are ``data/built/intent`` and ``train/run_intent``): the first config
    whose run holds a training log wins, else ``config.yaml``'s; folders outside the submission and
    configs that do not load are passed over; with no usable config, the template's layout.
    """
    from llmcourse.config import ConfigError, load_config

    folder = Path(folder).resolve()
    found = []
    for path in [folder / "config.yaml", *sorted((folder / "configs").glob("*.yaml"))]:
        try:
            cfg = load_config(path)
        except (ConfigError, OSError, ValueError):
            continue
        built, run = Path(cfg.data.built_dir or folder / BUILT).resolve(), Path(cfg.train.output_dir).resolve()
        if built.is_relative_to(folder) and run.is_relative_to(folder):
            found.append((built, run))
    for built, run in found:
        if (run / TRAIN_LOG).is_file():
            return built, run
    return found[0] if found else (folder / BUILT, folder / RUN)


def fine_tuning_evidence(folder: Path, settings: dict) -> dict:
    from llmcourse.grading.checks import check_adapter, check_config, check_train_log
    from llmcourse.grading.integrity import training_run_problems

    run = project_paths(folder)[1]
    artifacts = [RUN_CONFIG, TRAIN_LOG, f"{ADAPTER_DIR}/{ADAPTER_CONFIG}", f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}",
                 LOSS_CURVE, RUN_ENV]
    missing = [name for name in artifacts if not (run / name).is_file()]
    checks = [Check.of("artifacts", 1 - len(missing) / len(artifacts), f"缺少 {missing}" if missing else "产物齐全"),
              _check_call("config", check_config, run / RUN_CONFIG),
              _check_call("train_log", check_train_log, run, min_steps=settings.get("min_steps", 5)),
              _check_call("adapter", check_adapter, run)]
    evals = [name for name in ("eval_val.json", "eval_test.json") if (run / name).is_file()]
    checks.append(Check.of("eval_files", len(evals) / 2, f"有 {evals}"))
    problems = training_run_problems(run)
    return {"checks": [asdict(c) for c in checks], "fabricated": problems}


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.with_suffix(".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def grading_config(folder: Path, dtype: str | None = None):
    """The learner's run config made runnable here: their adapter, our model cache, greedy decoding.

    ``dtype`` (rubric.yaml's ``dtype`` of the dimension) replaces the learner's ``model.dtype``: the grader
    computes every learner in the same precision, whichever engine answers (see llmcourse.grading.class_eval).
    """
    from llmcourse.config import load_config

    run = project_paths(folder)[1]
    cfg = load_config(run / RUN_CONFIG) if (run / RUN_CONFIG).is_file() else load_config(folder / "config.yaml")
    if cfg.model.path and not Path(cfg.model.path).exists():
        cfg.model.path = None  # a folder on the learner's machine: use this machine's copy of the model
    if dtype:
        cfg.model.dtype = dtype
    cfg.model.device = "auto"
    cfg.train.output_dir = str(run)
    cfg.serve.adapter_dir = str(run / ADAPTER_DIR)
    cfg.infer.temperature = 0.0
    return cfg


def answer_metric(examples, answers: list[str]) -> tuple[str, float]:
    """Key-fact hit rate when the rows carry key facts; else label accuracy (intent data)."""
    facts = sum(len(e.key_facts) for e in examples)
    if facts:
        return "keyfact_hit_rate", sum(keyfact_hits(a, e.key_facts) for e, a in zip(examples, answers)) / facts
    labelled = [(e.meta["label"], a) for e, a in zip(examples, answers) if e.meta.get("label")]
    if labelled:
        return "label_accuracy", sum(label_match(label, a) for label, a in labelled) / len(labelled)
    return "none", 0.0


def adapter_mismatch(cfg, adapter: Path) -> str | None:
    """Why the LoRA ``adapter`` does not fit ``cfg``'s base model (a module it lacks, other shapes), or None.

    Read from the safetensors headers only. Checked before any engine gets the adapter: vLLM loads an
    adapter of another model's shapes without a word and answers as the base model would.
    """
    import re

    from safetensors import SafetensorError, safe_open

    from llmcourse.env.loading import resolve_model_path

    weights = Path(adapter) / ADAPTER_WEIGHTS
    files = sorted(Path(resolve_model_path(cfg)).glob("*.safetensors"))
    if not files or not weights.is_file():
        return None  # a hub id, or no weights file: the engines say what is missing
    shapes = {}
    for path in files:
        with safe_open(str(path), "np") as handle:
            shapes.update({key: handle.get_slice(key).get_shape() for key in handle.keys()})  # noqa: SIM118  (a safetensors handle, not a dict)
    try:
        with safe_open(str(weights), "np") as handle:
            lora = {key: handle.get_slice(key).get_shape() for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        return f"适配器文件 {weights.name} 读不出来（{exc}）"
    for key, shape in sorted(lora.items()):
        match = re.fullmatch(r"base_model\.model\.(.+)\.lora_([AB])(?:\.\w+)?\.weight", key)
        if not match:
            continue
        module, part = match.groups()
        base = shapes.get(f"{module}.weight")
        if base is None:
            return f"适配器的 {module} 在基座模型 {cfg.model.name} 里不存在：它不是在这个基座上训练的"
        want, got = (base[1], shape[1]) if part == "A" else (base[0], shape[0])
        if want != got:
            return (f"适配器与基座模型 {cfg.model.name} 的形状不符（{module} 需要 {want} 维，适配器是 {got} 维）："
                    "它是在别的基座模型上训练的，或者文件被改过")
    return None


def _generate(cfg, adapter: Path | None, examples) -> list[str]:
    from llmcourse.inference.engines import TransformersEngine
    return [g.text for g in TransformersEngine(cfg, adapter).generate([e.prompt_messages for e in examples])]


def improvement_evidence(folder: Path, settings: dict, rubric_dir: Path, cache_dir: Path | None = None,
                         generate=None) -> dict:
    """Re-evaluate the learner's adapter and the base model on the held-out set; score the gain.

    ``generate(cfg, adapter or None, examples) -> answers`` answers the questions: by default a fresh
    transformers load per call; the class path (llmcourse.grading.class_eval) passes one that asks the
    class's shared vLLM server. Its ``engine`` attribute keeps the two paths' cached base answers apart.
    """
    from llmcourse.data.jsonl import load_chat_jsonl

    generate = generate or _generate
    built, run = project_paths(folder)
    adapter = run / ADAPTER_DIR
    if not (adapter / ADAPTER_CONFIG).is_file():
        return {"checks": [asdict(Check.of("heldout_gain", False, "没有训练好的适配器 train/run/adapter"))]}
    cfg = grading_config(folder, settings.get("dtype"))
    mismatch = adapter_mismatch(cfg, adapter)
    if mismatch:
        return {"checks": [asdict(Check.of("heldout_gain", False, mismatch, points=3))]}
    cfg.infer.max_tokens = settings.get("max_tokens", 48)
    cfg.infer.engine = "transformers"
    scenario = cfg.data.scenario
    heldout = (settings.get("heldout") or {}).get(scenario)
    source = rubric_dir / heldout if heldout else built / "test.jsonl"
    if heldout and not source.is_file():
        return {"checks": [asdict(Check.skipped("heldout_gain", f"评分用的留出集 {source} 不存在"))]}
    examples = load_chat_jsonl(source)[: settings.get("max_questions", 12)]
    key = hashlib.sha256(f"{cfg.model.name}|{source.resolve()}|{source.stat().st_mtime_ns}|{len(examples)}|"
                         f"{cfg.infer.max_tokens}|{cfg.model.dtype}|{getattr(generate, 'engine', 'transformers')}"
                         .encode()).hexdigest()[:16]
    cache = (cache_dir or folder / ".grading_cache") / f"base_{key}.json"
    with _locked(cache):
        if cache.is_file():
            base_answers = json.loads(cache.read_text(encoding="utf-8"))
        else:
            base_answers = generate(cfg, None, examples)
            cache.write_text(json.dumps(base_answers, ensure_ascii=False), encoding="utf-8")
    tuned_answers = generate(cfg, adapter, examples)
    metric, base = answer_metric(examples, base_answers)
    _, tuned = answer_metric(examples, tuned_answers)
    target = settings.get("target_gain", 0.3)
    gain = tuned - base
    detail = (f"{'留出集' if heldout else '学员自己的测试集（该场景没有留出集）'} {source.name} 前 {len(examples)} 题："
              f"{metric} 基座 {base:.2f} → 微调后 {tuned:.2f}（提升 {gain:+.2f}，满分需 {target:+.2f}）")
    return {"checks": [asdict(Check.of("heldout_gain", max(0.0, min(1.0, gain / target)), detail, points=3))],
            "numbers": {"metric": metric, "base": round(base, 4), "fine_tuned": round(tuned, 4), "questions": len(examples),
                        "source": str(source), "examples": [{"question": e.question, "base": b, "fine_tuned": t}
                                                            for e, b, t in zip(examples, base_answers, tuned_answers)]}}


def _client_check(folder: Path) -> Check:
    client = folder / "deploy" / "client.py"
    if not client.is_file():
        return Check.of("client_script", False, "没有 deploy/client.py")
    try:
        tree = ast.parse(client.read_text(encoding="utf-8"), filename=str(client))
    except SyntaxError as exc:
        return Check.of("client_script", False, f"deploy/client.py 第 {exc.lineno} 行语法错误")
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    uses = "openai" in imported or "llmcourse" in imported
    return Check.of("client_script", uses, "使用 openai 客户端" if uses else "deploy/client.py 没有用 openai 客户端")


def _api_check(folder: Path, settings: dict, serve=None) -> tuple[Check, list[dict]]:
    """The learner's API holds a multi-turn chat. ``serve(cfg)`` is a context manager giving the endpoint
    (``base_url``, ``api_key``, ``model``, optional ``extra_body``): by default the learner's own server
    (:func:`llmcourse.serving.server.running_server`), in the class path their adapter on the shared one."""
    try:
        from llmcourse.serving.chat import multi_turn
        from llmcourse.serving.server import running_server
    except ImportError as exc:
        return Check.skipped("api_multi_turn", f"评分环境缺少 {exc.name}"), []
    turns = settings.get("turns") or ["你好", "请再说一遍"]
    serve = serve or (lambda cfg: running_server(cfg, timeout=settings.get("start_timeout_s", 300)))
    try:
        cfg = grading_config(folder, settings.get("dtype"))
        mismatch = adapter_mismatch(cfg, Path(cfg.serve.adapter_dir)) if cfg.serve.use_adapter else None
        if mismatch:
            return Check.of("api_multi_turn", False, f"没有启动服务：{mismatch}", points=2), []
        with serve(cfg) as server:
            answers = multi_turn(server.base_url, server.api_key, server.model, turns,
                                 max_tokens=settings.get("max_tokens", 48), extra_body=getattr(server, "extra_body", None))
    except Exception as exc:  # noqa: BLE001  (the learner's service failing is the finding)
        return Check.of("api_multi_turn", False, f"服务没有启动或对话失败：{type(exc).__name__}: {str(exc)[:300]}", points=2), []
    transcript = [{"question": t.question, "answer": t.answer, "messages_sent": t.messages_sent} for t in answers]
    answered = sum(bool(t.answer.strip()) for t in answers)
    history = all(b.messages_sent > a.messages_sent for a, b in itertools.pairwise(answers))
    return Check.of("api_multi_turn", answered / len(turns) if history else 0.0,
                    f"{answered}/{len(turns)} 轮有回答" + ("" if history else "，但历史没有随对话增长"), points=2), transcript


# The README sections 04_verify fills besides the results (llmcourse.evaluation.project.README_SECTIONS).
README_SECTIONS = {"env": "环境", "launch": "启动方式", "showcase": "效果展示"}


def _readme_section(path: Path, name: str) -> str | None:
    """The text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; None without the markers."""
    text = path.read_text(encoding="utf-8")
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    start, end = text.find(start_marker), text.find(end_marker)
    return text[start + len(start_marker): end].strip() if 0 <= start < end else None


def _readme_checks(folder: Path, template: Path | None) -> list[Check]:
    """The results section filled in; where the template has them, also 环境 / 启动方式 / 效果展示."""
    readme = folder / "README.md"
    has_template = template is not None and template.is_file()

    def filled(name: str) -> bool:
        if not readme.is_file():
            return False
        mine = _readme_section(readme, name) or ""
        blank = (_readme_section(template, name) or "") if has_template else ""
        return bool(mine) and squeeze(mine) != squeeze(blank)

    results = filled("results")
    checks = [Check.of("readme_results", results, "结果部分已填写" if results else
                       "README 的结果部分还是空的或仍是模板" if readme.is_file() else "没有 README.md")]
    expected = [name for name in README_SECTIONS if has_template and _readme_section(template, name) is not None]
    if expected:
        empty = [README_SECTIONS[name] for name in expected if not filled(name)]
        checks.append(Check.of("readme_sections", 1 - len(empty) / len(expected),
                               f"README 的 {'、'.join(empty)} 还是空的或仍是模板（运行 04_verify.ipynb 的生成报告）"
                               if empty else "环境、启动方式、效果展示都已填写"))
    return checks


def deployment_evidence(folder: Path, settings: dict, template_readme: Path | None = None, run_api: bool = True,
                        serve=None) -> dict:
    checks = [_client_check(folder)]
    transcript: list[dict] = []
    if run_api:
        api, transcript = _api_check(folder, settings, serve)
        checks.append(api)
    loadtest = folder / "deploy" / "loadtest" / LOADTEST_JSON
    try:
        json.loads(loadtest.read_text(encoding="utf-8"))
        checks.append(Check.of("loadtest", True, "有压测结果"))
    except (OSError, json.JSONDecodeError):
        checks.append(Check.of("loadtest", False, "没有可读的 deploy/loadtest/loadtest.json"))
    checks += _readme_checks(folder, template_readme)
    return {"checks": [asdict(c) for c in checks], "transcript": transcript}


def collect_evidence(rubric: Rubric, assignment: str, folder: str | Path, cache_dir: Path | None = None,
                     run_models: bool = True, kinds: set[str] | None = None, generate=None,
                     serve=None) -> dict[str, dict]:
    """Evidence for every automatic dimension of ``assignment`` from one learner's folder.

    ``run_models=False`` skips the two checks that load a model (re-evaluation, API chat).
    ``kinds``: only the dimensions with these evidence kinds (e.g. ``{"improvement", "deployment"}``).
    ``generate`` / ``serve``: how the model checks reach the model (:func:`improvement_evidence`,
    :func:`_api_check`); the defaults load it for this learner, the class path passes its shared server's.
    """
    folder = Path(folder)
    rubric_dir = Path(rubric.path).parent if rubric.path else RUBRIC_FILE.parent
    evidence = {}
    for name, dimension in rubric.assignments[assignment].dimensions.items():
        if kinds is not None and dimension.evidence not in kinds:
            continue
        settings = rubric.settings(assignment, dimension.evidence) if dimension.evidence else {}
        try:
            if dimension.evidence == "data":
                evidence[name] = data_evidence(folder, settings)
            elif dimension.evidence == "fine_tuning":
                evidence[name] = fine_tuning_evidence(folder, settings)
            elif dimension.evidence == "improvement":
                evidence[name] = improvement_evidence(folder, settings, rubric_dir, cache_dir, generate) if run_models \
                    else {"checks": [asdict(Check.skipped("heldout_gain", "本次评分没有运行模型"))]}
            elif dimension.evidence == "deployment":
                evidence[name] = deployment_evidence(folder, settings, COURSE_ROOT / assignment / "README.md", run_models,
                                                     serve)
        except Exception as exc:  # noqa: BLE001  (one broken dimension must not lose the others)
            evidence[name] = {"checks": [asdict(Check.of(dimension.evidence, False, f"{type(exc).__name__}: {exc}"))]}
    return evidence


# ---------------------------------------------------------------------------------------------- scores

def dimension_scores(rubric: Rubric, assignment: str, evidence: dict[str, dict],
                     manual: dict[str, float | None] | None = None) -> dict[str, float | None]:
    """0–1 per dimension; None where nothing could be graded yet (manual cell ungraded, no evidence)."""
    scores = {}
    for name, dimension in rubric.assignments[assignment].dimensions.items():
        if dimension.manual:
            scores[name] = (manual or {}).get(name)
            continue
        found = evidence.get(name)
        if not found:
            scores[name] = None
            continue
        if found.get("fabricated"):
            scores[name] = 0.0
            continue
        scores[name] = _fraction([Check(**c) for c in found["checks"]])
    return scores


def assignment_percent(rubric: Rubric, assignment: str, scores: dict[str, float | None]) -> float:
    """Weighted 0–100; a dimension without a score counts 0 (the export lists what is pending)."""
    dimensions = rubric.assignments[assignment].dimensions
    return 100 * sum(d.weight * (scores.get(name) or 0.0) for name, d in dimensions.items())


def course_total(rubric: Rubric, percents: dict[str, float]) -> float:
    """Weighted 0–100 over the assignments in ``percents`` (those released so far; weights renormalised)."""
    weights = {name: a.weight for name, a in rubric.assignments.items() if name in percents}
    if not sum(weights.values()):
        return 0.0
    return sum(weight * percents[name] for name, weight in weights.items()) / sum(weights.values())


def manual_fraction(rubric: Rubric, assignment: str, submission) -> dict[str, float | None]:
    """Scores of manually graded dimensions from an nbgrader submission (None until graded)."""
    if not has_dimensions(rubric, assignment):
        return {}
    found = {}
    for name, dimension in rubric.assignments[assignment].dimensions.items():
        if not dimension.manual:
            continue
        found[name] = None
        for notebook in submission.notebooks:
            if notebook.name != dimension.manual.notebook:
                continue
            for grade in notebook.grades:
                if grade.name == dimension.manual.grade_id and grade.max_score and not grade.needs_manual_grade:
                    found[name] = grade.score / grade.max_score
    return found
