"""Autograded checks of learners' deliverables; each failure says (in Chinese) what to fix.

Usage (in an nbgrader test cell)::

    from llmcourse.grading.checks import check_config, check_train_log, check_adapter, check_statement
    cfg = check_config("my_lora_sft.yaml", exercise="day1", run_dir="runs/my_first_lora")
    check_train_log("runs/my_first_lora", min_steps=5, config_path="my_lora_sft.yaml")
    check_adapter("runs/my_first_lora", config_path="my_lora_sft.yaml")
    check_statement(statement, min_chars=80)
    exercise_table("day1")                     # the exercise's ranges, as the notebook shows them

Every check raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader marks the cell failed)
and returns what it checked, so a hidden test can look further.

**Exercise ranges** (:data:`EXERCISES`) are the one source of what a config exercise asks for: the
notebook shows them with :func:`exercise_table` and ``check_config(exercise=...)`` enforces them.
**The graded run is the submitted config's run**: given ``run_dir`` / ``config_path``, the checks compare
the submitted config file with the run's resolved ``config.yaml`` (:func:`run_config_problems`), allowing
only the overrides a notebook's parameters cell may apply (:data:`OVERRIDABLE`, recorded by training
in ``env.json`` → ``launch``); a difference raises :class:`ConfigMismatch`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.config import ConfigError, CourseConfig, load_config
from llmcourse.artifacts import (ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, BENCHMARK_CSV,
                                 DATA_REPORT_JSON, GENERATIONS, LOADTEST_JSON, LogLineInvalid, RUN_CONFIG,
                                 RUN_ENV, TRAIN_LOG, read_train_log)


class CheckFailed(AssertionError):
    """A deliverable that does not meet the bar; the message says what to fix."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class ConfigMismatch(CheckFailed):
    """The run being graded was not trained with the config file that was submitted."""


@dataclass(frozen=True)
class Rule:
    """One requirement of a config exercise: ``low <= value <= high`` (``per``: both times another field)."""

    field: str
    low: float | None = None
    high: float | None = None
    per: str | None = None
    equals: Any = None

    def bounds(self, cfg: CourseConfig) -> tuple[float | None, float | None]:
        factor = _field(cfg, self.per) if self.per else 1
        return (None if self.low is None else self.low * factor, None if self.high is None else self.high * factor)

    def describe(self) -> str:
        if self.equals is not None:
            return f"{str(self.equals).lower() if isinstance(self.equals, bool) else self.equals}"
        unit = f" × {self.per}" if self.per else ""
        if self.low == self.high:
            return f"{self.low:g}{unit}"
        if self.high is None:
            return f"至少 {self.low:g}{unit}"
        return f"{self.low:g}{unit} 到 {self.high:g}{unit}"


# Config exercises: what the notebook asks for (exercise_table) is what check_config(exercise=...) enforces.
EXERCISES: dict[str, list[Rule]] = {
    "day1": [Rule("lora.r", 8, 32), Rule("lora.lora_alpha", 2, 2, per="lora.r"), Rule("lora.lora_dropout", 0, 0.1),
             Rule("train.max_steps", 30), Rule("train.learning_rate", 1e-4, 2e-3),
             Rule("train.assistant_only_loss", equals=True)],
}
# A notebook's parameters cell may override these when it loads the learner's config (papermill's CI sizes,
# a GPU learner's model); training records the overrides in env.json, so the run still counts as that config's.
OVERRIDABLE = ("model.name", "model.device", "train.max_steps", "train.output_dir", "data.max_samples")
# Filled in when training starts: a submitted "auto" / unset value matches whatever the run resolved.
RESOLVED_AT_RUN = ("model.device", "train.engine", "train.torch_compile")
COMPARED_SECTIONS = ("model", "data", "lora", "train")


def _field(cfg: CourseConfig, dotted: str) -> Any:
    section, _, name = dotted.partition(".")
    return getattr(getattr(cfg, section), name)


def exercise_table(exercise: str):
    """The exercise's requirements as a table (field, what is allowed), for the notebook to show."""
    import pandas as pd

    return pd.DataFrame([{"字段": rule.field, "要求": rule.describe()} for rule in EXERCISES[exercise]])


def exercise_problems(cfg: CourseConfig, exercise: str) -> list[str]:
    problems = []
    for rule in EXERCISES[exercise]:
        value = _field(cfg, rule.field)
        if rule.equals is not None:
            if value != rule.equals:
                problems.append(f"{rule.field} = {value}：这个练习要求 {rule.describe()}")
            continue
        low, high = rule.bounds(cfg)
        if (low is not None and value < low) or (high is not None and value > high):
            problems.append(f"{rule.field} = {value}：这个练习要求 {rule.describe()}")
    return problems


def _relative(value: Any, base: Path) -> Any:
    if not value:
        return value
    try:
        return Path(value).relative_to(base).as_posix()
    except ValueError:
        return Path(value).as_posix()


def run_config_problems(config_path: str | Path, run_dir: str | Path) -> list[str]:
    """Differences between a submitted config file and the resolved config of the run in ``run_dir``."""
    from llmcourse.config import PATH_FIELDS

    run_dir = Path(run_dir)
    saved = run_dir / RUN_CONFIG
    if not saved.is_file():
        return [f"{saved} 不存在"]
    env_file = run_dir / RUN_ENV
    launch = (json.loads(env_file.read_text(encoding="utf-8")).get("launch") or {}) if env_file.is_file() else {}
    overrides = launch.get("overrides") or {}
    problems = [f"训练时覆盖了 {key}（只允许覆盖 {', '.join(OVERRIDABLE)}）" for key in sorted(overrides)
                if key not in OVERRIDABLE]
    try:
        submitted = load_config(config_path, **{k: v for k, v in overrides.items() if k in OVERRIDABLE})
        ran = load_config(saved)
    except ConfigError as exc:
        return [*problems, f"读不了配置：{exc}"]
    # Paths are compared relative to each config's folder: the run was trained on the learner's machine.
    submitted_base = Path(config_path).resolve().parent
    run_base = Path(launch["config_file"]).parent if launch.get("config_file") else None
    for section in COMPARED_SECTIONS:
        mine, theirs = getattr(submitted, section).model_dump(mode="json"), getattr(ran, section).model_dump(mode="json")
        for name, value in mine.items():
            key, other = f"{section}.{name}", theirs.get(name)
            # output_dir is where the run was written: the run being checked is the one in run_dir.
            if key == "train.output_dir" or (key in RESOLVED_AT_RUN and value in ("auto", None)):
                continue
            if (section, name) in PATH_FIELDS:
                value = _relative(value, submitted_base)
                other = _relative(other, run_base) if run_base else other
                if run_base is None and value and other:  # runs older than env.json's "launch": file names only
                    value, other = Path(value).name, Path(other).name
            if value != other:
                problems.append(f"{key}：提交的配置是 {value}，被评分的运行用的是 {other}")
    return problems


def _require_run_of(config_path: str | Path | None, run_dir: str | Path) -> None:
    if config_path is None:
        return
    problems = run_config_problems(config_path, run_dir)
    if problems:
        raise ConfigMismatch(f"{run_dir} 不是用 {config_path} 训练出来的（改了配置就要重新训练）：" + "；".join(problems[:4]))


def check_config(path: str | Path, exercise: str | None = None, run_dir: str | Path | None = None) -> CourseConfig:
    """The YAML config exists, validates, and its values are in ranges that make sense for LoRA SFT;
    with ``exercise``, in that exercise's ranges (:data:`EXERCISES`); with ``run_dir`` holding a run, it is
    the config that run was trained with."""
    path = Path(path)
    _require(path.is_file(), f"找不到配置文件 {path}：请先运行写配置的单元格")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise CheckFailed(f"配置无效：{exc}") from None
    lora, train = cfg.lora, cfg.train
    _require(2 <= lora.r <= 128, f"lora.r = {lora.r}：LoRA 的秩一般取 4–64，请改到 2–128 之间")
    _require(lora.r / 2 <= lora.lora_alpha <= lora.r * 4,
             f"lora.lora_alpha = {lora.lora_alpha}：一般取 r 的 1–2 倍（允许 r/2–4r，当前 r = {lora.r}）")
    _require(1e-5 <= train.learning_rate <= 5e-3,
             f"train.learning_rate = {train.learning_rate}：LoRA 常用 1e-4–2e-3，请改到 1e-5–5e-3 之间")
    _require(train.max_steps >= 5 or train.max_steps == -1,
             f"train.max_steps = {train.max_steps}：至少训练 5 步才能看出 loss 的变化")
    _require(train.max_length >= 64, f"train.max_length = {train.max_length}：太短会截断回答，至少 64")
    _require(train.assistant_only_loss, "train.assistant_only_loss 应为 true：只在回答上计算 loss 效果好得多")
    if exercise:
        problems = exercise_problems(cfg, exercise)
        _require(not problems, f"{path}：" + "；".join(problems))
    if run_dir is not None and (Path(run_dir) / RUN_CONFIG).is_file():
        _require_run_of(path, run_dir)
    return cfg


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / TRAIN_LOG
    _require(path.is_file(), f"找不到训练日志 {path}：请先完成训练（启动训练的单元格）")
    try:
        return read_train_log(run_dir)
    except LogLineInvalid as error:
        raise CheckFailed(str(error)) from None


def smoothed(values: list[float], window: int) -> list[float]:
    return [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
            for i in range(len(values))]


def loss_drop(losses: list[float]) -> float:
    """Relative fall from the first to the last fifth of the (moving-average) loss curve."""
    part = max(2, len(losses) // 5)
    curve = smoothed(losses, part)
    start, end = sum(losses[:part]) / part, sum(curve[-part:]) / part
    return (start - end) / start if start > 0 else 0.0


def check_train_log(run_dir: str | Path, min_steps: int = 5, min_drop: float = 0.1,
                    config_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Enough logged steps, in order, finite losses, and a smoothed loss that fell by ``min_drop``;
    with ``config_path``, the run is that config's."""
    rows = read_log(run_dir)
    _require_run_of(config_path, run_dir)
    _require(len(rows) >= min_steps, f"训练日志只有 {len(rows)} 步，至少需要 {min_steps} 步：把 train.max_steps 调大后重新训练")
    steps = [row.get("step") for row in rows]
    _require(steps == sorted(steps) and len(set(steps)) == len(steps), "训练日志的步数不是递增的：请删除该运行目录后重新训练")
    losses = [row.get("loss") for row in rows]
    _require(all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses),
             "训练日志里有缺失或非数值（NaN/inf）的 loss：学习率可能太高，调低后重新训练")
    drop = loss_drop(losses)
    _require(drop >= min_drop, f"平滑后的 loss 只下降了 {drop:.0%}（需要至少 {min_drop:.0%}）："
                               "试试增加训练步数或调高学习率")
    return rows


def check_cleaning_rules(config_path: str | Path) -> dict[str, Any]:
    """Day 3 01_data: the cleaning rules the build recorded (``data_report.json`` settings) are in the project's
    ranges, and the built training set holds no personal data (the same finder the build masks with)."""
    from llmcourse.data.pii import KIND_NAMES, find_pii

    data = load_config(config_path).data
    report_file = Path(data.built_dir) / DATA_REPORT_JSON
    _require(report_file.is_file(), f"找不到 {report_file}：请先运行第 4 步（写清洗规则，构建数据）")
    rules = json.loads(report_file.read_text(encoding="utf-8"))["settings"]
    _require(rules["mask_pii"] is True, "mask_pii 没有打开：训练数据里不能有顾客的个人信息")
    _require(2 <= rules["min_chars"] <= 8, f"min_chars = {rules['min_chars']}：应在 2 到 8 之间")
    _require(80 <= rules["max_chars"] <= 300, f"max_chars = {rules['max_chars']}：应在 80 到 300 之间")
    _require(0.8 <= rules["near_duplicate_threshold"] <= 0.95, "near_duplicate_threshold 应在 0.8 到 0.95 之间")
    found = find_pii(Path(data.train_file).read_text(encoding="utf-8"))
    _require(not found, f"训练集里还有个人信息（{'、'.join(sorted({KIND_NAMES[m.kind] for m in found}))}）：打开 mask_pii 重新构建")
    return rules


def check_lora(config_path: str | Path, ranks: tuple[int, ...] = (8, 16, 32)):
    """Day 3 02_train: the LoRA the learner wrote (``train/run/config.yaml``) is in the project's ranges, equals
    the project config's ``lora`` section, and the saved adapter was trained with it. Returns it."""
    project = load_config(config_path)
    run = Path(project.train.output_dir)
    _require((run / RUN_CONFIG).is_file(), f"找不到 {run / RUN_CONFIG}：请先运行第 3 步（写 LoRA，启动训练）")
    trained = load_config(run / RUN_CONFIG).lora
    _require(trained.r in ranks, f"r = {trained.r}：这个项目选 {'、'.join(map(str, ranks))}")
    _require(trained.lora_alpha == 2 * trained.r, f"lora_alpha = {trained.lora_alpha}：应取 r 的 2 倍（{2 * trained.r}）")
    _require(0 <= trained.lora_dropout <= 0.1, f"lora_dropout = {trained.lora_dropout}：应在 0 到 0.1 之间")
    wanted = (project.lora.r, project.lora.lora_alpha, project.lora.lora_dropout)
    _require((trained.r, trained.lora_alpha, trained.lora_dropout) == wanted,
             f"训练用的 LoRA 和 {config_path} 的 lora 段 {wanted} 不一致：先改配置文件，再重新训练")
    adapter_file = run / ADAPTER_DIR / ADAPTER_CONFIG
    _require(adapter_file.is_file(), f"找不到 {adapter_file}：请先运行第 3 步（写 LoRA，启动训练）")
    adapter = json.loads(adapter_file.read_text(encoding="utf-8"))
    _require((adapter["r"], adapter["lora_alpha"]) == (trained.r, trained.lora_alpha), "适配器和训练配置对不上：请重新训练")
    return trained


def check_adapter(run_dir: str | Path, config_path: str | Path | None = None) -> dict[str, Any]:
    """The saved adapter exists, matches the run's config (rank, alpha, target modules) and was trained;
    with ``config_path``, the run is that config's."""
    run_dir = Path(run_dir)
    _require_run_of(config_path, run_dir)
    adapter = run_dir / ADAPTER_DIR
    config_file, weights = adapter / ADAPTER_CONFIG, adapter / ADAPTER_WEIGHTS
    _require(config_file.is_file() and weights.is_file(), f"找不到 LoRA 适配器 {adapter}：训练结束时会自动保存，请重新训练")
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    cfg = load_config(run_dir / RUN_CONFIG)
    _require(saved.get("r") == cfg.lora.r, f"适配器的秩 r = {saved.get('r')} 与配置 lora.r = {cfg.lora.r} 不一致")
    _require(saved.get("lora_alpha") == cfg.lora.lora_alpha,
             f"适配器的 lora_alpha = {saved.get('lora_alpha')} 与配置 {cfg.lora.lora_alpha} 不一致")
    if cfg.lora.target_modules not in (None, "all-linear"):
        _require(set(saved.get("target_modules") or []) == set(cfg.lora.target_modules),
                 f"适配器作用的模块 {saved.get('target_modules')} 与配置 {cfg.lora.target_modules} 不一致")
    from safetensors import safe_open
    with safe_open(str(weights), framework="pt") as tensors:
        names = list(tensors.keys())
        a_names = [n for n in names if "lora_A" in n]
        b_names = [n for n in names if "lora_B" in n]
        _require(a_names and b_names, "适配器文件里没有 LoRA 权重（lora_A / lora_B）")
        ranks = {tensors.get_slice(n).get_shape()[0] for n in a_names}
        _require(ranks == {cfg.lora.r}, f"适配器权重的秩 {sorted(ranks)} 与配置 lora.r = {cfg.lora.r} 不一致")
        trained = any(float(tensors.get_tensor(n).abs().sum()) > 0 for n in b_names)
    _require(trained, "适配器的 lora_B 全为 0：它从未被训练过，请重新训练")
    return {"r": saved.get("r"), "target_modules": saved.get("target_modules"), "tensors": len(names)}


def count_chars(text: str) -> int:
    """Characters that carry meaning: no whitespace, no punctuation runs."""
    return len(re.sub(r"[\s\W_]+", "", text or ""))


def check_statement(text: str, min_chars: int = 80, max_chars: int | None = None) -> int:
    """A written statement long enough (Chinese characters and words, without spaces and punctuation)."""
    placeholder = ("YOUR ANSWER HERE", "在这里写", "TODO")
    _require(bool(text) and not any(p in text for p in placeholder), "还没有填写说明：请把占位文字换成你自己的话")
    length = count_chars(text)
    _require(length >= min_chars, f"说明只有 {length} 个字，至少需要 {min_chars} 个字")
    if max_chars:
        _require(length <= max_chars, f"说明有 {length} 个字，请精简到 {max_chars} 字以内")
    return length


def check_quiz_format(answers: dict[str, str], questions: int, choices: str = "ABCD") -> None:
    """Every quiz question answered with one of the choices (the hidden test checks correctness)."""
    _require(isinstance(answers, dict), "quiz 必须是字典，例如 {\"q1\": \"A\"}")
    missing = [f"q{i}" for i in range(1, questions + 1) if not str(answers.get(f"q{i}") or "").strip()]
    _require(not missing, f"还有题目没作答：{', '.join(missing)}")
    bad = {k: v for k, v in answers.items() if str(v).strip().upper() not in choices}
    _require(not bad, f"这些答案不是 {'/'.join(choices)} 之一：{bad}")


def check_cases(path: str | Path, min_cases: int = 5) -> list[dict]:
    """The learner's own test cases: valid, enough of them, each with something to score against."""
    from llmcourse.evaluation.cases import load_cases
    from llmcourse.data.jsonl import DataError
    try:
        cases = load_cases(path)
    except DataError as exc:
        raise CheckFailed(f"用例文件有问题：{exc}") from None
    _require(len(cases) >= min_cases, f"{path} 只有 {len(cases)} 个用例，至少需要 {min_cases} 个")
    return cases


def check_benchmark(out_dir: str | Path, min_cases: int = 5) -> Any:
    """benchmark.csv has the schema, ≥ min_cases × {base, fine_tuned}, and agrees with generations.jsonl."""
    import pandas as pd

    from llmcourse.evaluation.benchmark import COLUMNS
    from llmcourse.evaluation.scoring import auto_score

    out = Path(out_dir)
    csv, generations_file, cases_file = out / BENCHMARK_CSV, out / GENERATIONS, out / "cases.jsonl"
    for path in (csv, generations_file, cases_file):
        _require(path.is_file(), f"找不到 {path}：请先运行基准测试单元格")
    table = pd.read_csv(csv)
    missing = [c for c in COLUMNS if c not in table.columns]
    _require(not missing, f"benchmark.csv 缺少列：{missing}")
    _require({"base", "fine_tuned"} <= set(table.model), "benchmark.csv 需要同时包含 base 和 fine_tuned 两个模型")
    for (model, engine), group in table.groupby(["model", "engine"]):
        _require(group.case_id.nunique() >= min_cases,
                 f"{model}/{engine} 只有 {group.case_id.nunique()} 个用例，至少需要 {min_cases} 个")
    cases = {c["case_id"]: c for c in map(json.loads, cases_file.read_text(encoding="utf-8").splitlines())}
    answers = {(g["model"], g["engine"], g["case_id"]): g
               for g in map(json.loads, generations_file.read_text(encoding="utf-8").splitlines())}
    for row in table.itertuples():
        saved = answers.get((row.model, row.engine, row.case_id))
        _require(saved is not None, f"benchmark.csv 的 {row.model}/{row.engine}/{row.case_id} 在 generations.jsonl 里找不到")
        _require(saved["output_tokens"] == row.output_tokens and math.isclose(saved["latency_s"], row.latency_s, rel_tol=1e-3),
                 f"{row.case_id}：表中的 token 数或延迟与 generations.jsonl 不一致（表格不要手工修改）")
        expected = auto_score(cases[row.case_id], saved["text"])
        _require(math.isclose(expected, row.auto_score, abs_tol=1e-3),
                 f"{row.case_id}：自动分 {row.auto_score} 与按回答重新计算的 {expected} 不一致")
    return table


def check_human_scores(path: str | Path, min_rows: int = 10):
    """The human score sheet: saved, enough rows, every score an integer from 1 to 5, and (saved by
    ``save_score_sheet`` once complete) the model of every row, so scores can be averaged per model."""
    import pandas as pd

    path = Path(path)
    _require(path.is_file(), f"找不到人工打分表 {path}：请运行保存打分表的单元格")
    sheet = pd.read_csv(path, encoding="utf-8-sig")
    _require(len(sheet) >= min_rows, f"打分表只有 {len(sheet)} 行，至少需要 {min_rows} 行")
    _require("human_score" in sheet, "打分表里没有 human_score 列：请用 save_score_sheet 保存打分表")
    scores = sheet["human_score"]
    _require(scores.notna().all(), f"还有 {int(scores.isna().sum())} 个回答没有打分：在打分单元格里把 scores "
                                   f"填成 {len(sheet)} 个 1–5 的整数，每行一个，顺序同打分表")
    _require(scores.isin([1, 2, 3, 4, 5]).all(), "human_score 只能是 1–5 的整数")
    _require("model" in sheet and sheet["model"].notna().all(),
             "打分表里没有每个回答的模型名：请用 save_score_sheet 保存（打完全部分数后它会写入模型名）")
    return sheet


SUMMARY_TOPIC = "我理解的大模型微调流程"


def check_no_code_training(folder: str | Path) -> dict:
    """No-code training evidence: a valid config snapshot, a run card, training started and finished."""
    folder = Path(folder)
    _require((folder / "config.yaml").is_file(), f"还没有配置快照 {folder / 'config.yaml'}：点“开始训练”时会自动保存")
    check_config(folder / "config.yaml")
    card = folder / "run_card.png"
    _require(card.is_file() and card.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and card.stat().st_size > 5000,
             f"找不到训练卡片 {card}：训练结束时会自动生成，请点“开始训练”并等它完成")
    status_file = folder / "status.json"
    _require(status_file.is_file(), "没有训练记录（status.json）：请点“开始训练”")
    status = json.loads(status_file.read_text(encoding="utf-8"))
    _require(bool(status.get("started_at")), "训练没有开始：请点“开始训练”")
    _require(bool(status.get("finished_at")) and status.get("steps", 0) > 0, "训练没有完成：请等进度条走完再保存")
    # The run folder is recorded relative to the notebook, which sits beside the submission folder.
    run_dir = folder.parent / status["run_dir"] if status.get("run_dir") else None
    rows = read_log(run_dir) if run_dir else []
    _require(len(rows) == status["steps"] or not rows, "训练记录与训练日志的步数不一致")
    return status


def check_no_code_summary(folder: str | Path, min_chars: int = 200, max_chars: int = 600) -> int:
    """The no-code summary (``summary.txt``, saved by its answer cell): about 300 characters on SUMMARY_TOPIC.

    Only the length is checked here; the content is graded by a person (formgrader).
    """
    path = Path(folder) / "summary.txt"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    length = count_chars(text)
    _require(length > 0, f"还没有写总结：在“写总结”那一步的单元格里，把约 300 字的「{SUMMARY_TOPIC}」"
                         "写在两组三引号之间，然后运行这个单元格")
    _require(length >= min_chars, f"总结只有 {length} 个字，至少需要 {min_chars} 个字（建议约 300 字）："
                                  "从准备数据一直写到训练、部署和评估")
    _require(length <= max_chars, f"总结有 {length} 个字，请精简到 {max_chars} 字以内")
    return length


def check_no_code_submission(folder: str | Path, min_chars: int = 200, max_chars: int = 600) -> dict:
    """Every no-code Day 1 deliverable: :func:`check_no_code_training` and :func:`check_no_code_summary`."""
    status = check_no_code_training(folder)
    return {**status, "summary_chars": check_no_code_summary(folder, min_chars, max_chars)}


def check_built_data(config_path: str | Path, min_train: int = 20, min_test: int = 5) -> dict:
    """``llmcourse data build`` ran for this config: splits load, the report exists, no leakage."""
    from llmcourse.data.jsonl import DataError, load_chat_jsonl

    cfg = check_config(config_path)
    report_file = Path(cfg.data.built_dir) / DATA_REPORT_JSON
    _require(report_file.is_file(), f"找不到数据报告 {report_file}：请运行数据构建（llmcourse data build）")
    report = json.loads(report_file.read_text(encoding="utf-8"))
    sizes = {}
    for name, path in (("train", cfg.data.train_file), ("val", cfg.data.eval_file), ("test", cfg.data.test_file)):
        _require(bool(path) and Path(path).is_file(), f"找不到 {name} 划分：{path}")
        try:
            sizes[name] = len(load_chat_jsonl(path))
        except DataError as exc:
            raise CheckFailed(f"{name} 划分的格式有问题：{exc}") from None
        _require(sizes[name] == report["splits"].get(name),
                 f"{name} 有 {sizes[name]} 条，数据报告里写的是 {report['splits'].get(name)}：请重新构建，不要手工修改")
    _require(sizes["train"] >= min_train, f"训练集只有 {sizes['train']} 条，至少需要 {min_train} 条")
    _require(sizes["test"] >= min_test, f"测试集只有 {sizes['test']} 条，至少需要 {min_test} 条")
    _require(report["leakage"]["passed"], "泄漏检查没有通过：测试/验证集里有与训练集几乎相同的问题")
    return report


def check_split_eval(path: str | Path, min_questions: int = 3) -> dict:
    """``train/run/eval_<split>.json``: written by evaluate_split, scores recomputable from its answers."""
    from llmcourse.evaluation.cases import cases_from_split
    from llmcourse.evaluation.scoring import auto_score

    path = Path(path)
    _require(path.is_file(), f"找不到 {path}：请运行“在验证集和测试集上评估”的单元格")
    result = json.loads(path.read_text(encoding="utf-8"))
    rows = result.get("rows", [])
    _require(len(rows) >= min_questions, f"{path} 只评估了 {len(rows)} 个问题，至少需要 {min_questions} 个")
    cases = {case["case_id"]: case for case in cases_from_split(result["split_file"])}
    for row in rows:
        case = cases.get(row["case_id"])
        _require(case is not None, f"{path}：{row['case_id']} 不在 {result['split_file']} 里")
        _require(math.isclose(auto_score(case, row["answer"]), row["auto_score"], abs_tol=1e-3),
                 f"{path}：{row['case_id']} 的自动分与按回答重新计算的不一致（结果文件不要手工修改）")
    return result


def check_conversation(path: str | Path, min_turns: int = 2) -> dict:
    """``deploy/conversation.json``: a real multi-turn chat, each request carrying the earlier turns."""
    path = Path(path)
    _require(path.is_file(), f"找不到 {path}：请运行 03_deploy 第 5 步的多轮对话（或命令行 deploy/client.py）")
    conversation = json.loads(path.read_text(encoding="utf-8"))
    turns = conversation.get("turns", [])
    _require(len(turns) >= min_turns, f"对话只有 {len(turns)} 轮，至少需要 {min_turns} 轮")
    sent = [turn.get("messages_sent", 0) for turn in turns]
    _require(all(later > earlier for earlier, later in zip(sent, sent[1:])),
             "后面的请求没有带上前面的对话历史（messages_sent 应逐轮增加）")
    _require(all(str(turn.get("answer", "")).strip() for turn in turns), "有一轮没有拿到模型的回答")
    return conversation


def check_loadtest(out_dir: str | Path, levels: tuple[int, ...] = (1, 8)) -> list[dict]:
    """``deploy/loadtest/loadtest.json``: one row per concurrency level, every request answered."""
    path = Path(out_dir) / LOADTEST_JSON
    _require(path.is_file(), f"找不到 {path}：请运行压测单元格")
    rows = json.loads(path.read_text(encoding="utf-8"))
    found = sorted(row["concurrency"] for row in rows)
    _require(all(level in found for level in levels), f"压测需要并发 {list(levels)}，现在只有 {found}")
    for row in rows:
        _require(row["requests"] > 0 and row["errors"] == 0,
                 f"并发 {row['concurrency']} 时有 {row['errors']} 个请求出错：看 aiperf 日志，修好服务再压测")
        _require(row["latency_p50_ms"] is not None and row["requests_per_s"], "压测结果缺少延迟或吞吐数据")
    return rows


REPORT_SECTIONS = ("## 1. 数据", "## 2. 微调", "## 3. 验证", "## 4. 部署", "## 5. 结论")


def check_report(path: str | Path, min_conclusion_chars: int = 100) -> str:
    """``report.md``: every section present, with tables and plots, and a real conclusion."""
    path = Path(path)
    _require(path.is_file(), f"找不到 {path}：请运行生成报告的单元格")
    text = path.read_text(encoding="utf-8")
    missing = [section for section in REPORT_SECTIONS if section not in text]
    _require(not missing, f"报告缺少这些部分：{missing}")
    _require(text.count("](") >= 2 and "|---" in text, "报告里应有表格和图（数据、loss 曲线、对比图）")
    check_statement(text.split("## 5. 结论", 1)[1].split("\n", 1)[1], min_chars=min_conclusion_chars)
    return text
