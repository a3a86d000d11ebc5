"""The Day 3 project's evidence: split evaluation, test cases, the conversation log and ``report.md``.

Usage::

    from llmcourse.evaluation.project import evaluate_split, evaluate_splits_or_reuse, cases_from_split, write_report
    evaluate_split(cfg, "train/run/adapter", cfg.data.test_file, "train/run/eval_test.json", limit=30)
    evaluate_splits_or_reuse(cfg, "train/run/adapter", {"val": cfg.data.eval_file}, "train/run")  # eval_val.json
    cases = cases_from_split(cfg.data.test_file, limit=30)        # Day 2's case format
    report = write_report(".", "……", "configs/intent.yaml")       # report.md + the README's filled sections
    sizes_vs_minimums(report.splits, cfg)                         # built sizes vs grading/rubric.yaml

One project folder (``day3/`` or a learner's copy of it) runs one config at a time (``config.yaml``,
``configs/intent.yaml``, ``configs/domain_qa.yaml`` or the learner's own); the config decides where
the data and the run go (``data.built_dir``, ``train.output_dir``), the rest is fixed:
``<train.output_dir>/eval_val.json`` and ``eval_test.json`` (fine-tuned model on each split),
``deploy/conversation.json`` (a multi-turn chat through the API), ``deploy/loadtest/loadtest.md``,
``verify/`` (Day 2's benchmark files on the test split), ``report.md``.

:func:`write_report` fills four sections of the README, each between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` (:data:`README_SECTIONS`): ``env`` (环境: device, engines, versions, model, from
the run's ``env.json`` and the conversation), ``launch`` (启动方式: the commands with this config's
path), ``showcase`` (效果展示: base vs fine-tuned answers from ``verify/``) and ``results`` (the report).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from llmcourse.artifacts import (BENCHMARK_CSV, BENCHMARK_SUMMARY, CONVERSATION, DATA_REPORT_MD,
                                 GENERATIONS, HUMAN_SCORES, LOADTEST_MD, LOSS_CURVE, PROJECT_REPORT, RUN_CONFIG,
                                 RUN_ENV, eval_file, read_train_log, reuse_or_compute)
from llmcourse.config import CourseConfig
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.evaluation.cases import cases_from_split  # re-exported: the Day 3 notebooks import it here
from llmcourse.evaluation.scoring import auto_score
from llmcourse.errors import InputError

RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"
# README sections write_report fills (marker name -> the heading above it in day3/README.md).
README_SECTIONS = {"env": "环境", "launch": "启动方式", "showcase": "效果展示", "results": "结果"}
SHOWCASE_CASES = 3


def section_markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def evaluate_split(cfg: CourseConfig, adapter_dir: str | Path | None, split_file: str | Path,
                   out_path: str | Path, limit: int | None = None, engine=None) -> dict[str, Any]:
    """Answer a split's questions and score them like Day 2 (key facts, label, or ROUGE-L)."""
    from llmcourse.inference.engines import TransformersEngine

    cases = cases_from_split(split_file, limit)
    engine = engine or TransformersEngine(cfg, adapter_dir)
    answers = [g.text for g in engine.generate([c["messages"] for c in cases])]
    scores = [auto_score(case, answer) for case, answer in zip(cases, answers)]
    result = {"split_file": str(split_file), "adapter_dir": str(adapter_dir) if adapter_dir else None,
              "questions": len(cases), "mean_auto_score": round(statistics.fmean(scores), 4) if scores else None,
              "fully_correct": sum(score == 1.0 for score in scores),
              "rows": [{"case_id": c["case_id"], "question": c["messages"][-1]["content"], "answer": a, "auto_score": s}
                       for c, a, s in zip(cases, answers, scores)]}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def evaluate_splits_or_reuse(cfg: CourseConfig, adapter_dir: str | Path | None, splits: dict[str, str | Path],
                            run_dir: str | Path, limit: int | None = None) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_split` for each named split (one model load for all), saved as
    ``<run_dir>/eval_<name>.json``; under nbgrader the saved files are read instead: the grader scores
    the learner's answers (``check_split_eval`` recomputes their scores) and loads no model."""
    from llmcourse.inference.engines import TransformersEngine

    paths = {name: Path(run_dir) / eval_file(name) for name in splits}

    def compute():
        engine = TransformersEngine(cfg, adapter_dir)
        return {name: evaluate_split(cfg, adapter_dir, splits[name], path, limit, engine) for name, path in paths.items()}

    return reuse_or_compute("评估结果", paths.values(), compute=compute, hint="请在提交前运行评估单元格",
                            load=lambda: {name: json.loads(path.read_text(encoding="utf-8")) for name, path in paths.items()})


def save_conversation(turns, path: str | Path, base_url: str, model: str, served_by: str | None = None) -> Path:
    """Keep a multi-turn chat (``llmcourse.serving.chat.Turn`` objects or dicts) as evidence for grading.

    ``served_by`` is the ``owned_by`` the server reports for the model (``vllm``, or ``llmcourse`` for our app).
    """
    rows = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in turns]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"base_url": base_url, "model": model, "served_by": served_by, "turns": rows}
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


# Per data.scenario; the follow-up only makes sense after the first turn ("那生鲜商品呢？" asks the
# same thing about fresh food). deploy/client.py and 03_deploy ask these unless given others.
DEFAULT_QUESTIONS = {
    "faq": ["日用品不想要了，多少天内可以退？", "那生鲜商品呢？"],
    "intent": ["我昨天下的单怎么还没送到？", "那我不要了，能退款吗？"],
    "domain_qa": ["XN-5 可以装在户外吗？", "那卧室里呢？"],
}


def conversation_questions(cfg: CourseConfig) -> list[str]:
    """The two-turn conversation for ``cfg``'s scenario (the second question needs the first)."""
    return list(DEFAULT_QUESTIONS.get(cfg.data.scenario, DEFAULT_QUESTIONS["faq"]))


def conversation_or_reuse(server, chat, questions: list[str], path: str | Path = f"deploy/{CONVERSATION}") -> dict:
    """Run the learner's ``chat(base_url, api_key, model, questions)`` against the running server and save
    its turns as the rubric's evidence (:func:`save_conversation`); under nbgrader the saved conversation is
    read back instead (no server runs while grading). ``server`` is a callable returning the running
    server, called only when chatting (while grading the notebook never starts one)."""
    path = Path(path)

    def compute() -> dict:
        from openai import OpenAI

        running = server()
        turns = chat(running.base_url, running.api_key, running.model, questions)
        # owned_by tells vLLM's server from the course's fallback (the README's 环境 section shows it)
        listed = OpenAI(base_url=running.base_url, api_key=running.api_key).models.list().data
        served_by = next((m.owned_by for m in listed if m.id == running.model), None)
        save_conversation(turns, path, running.base_url, running.model, served_by=served_by)
        return json.loads(path.read_text(encoding="utf-8"))

    return reuse_or_compute("多轮对话记录", path, compute=compute, hint="请在提交前运行多轮对话的单元格",
                            load=lambda: json.loads(path.read_text(encoding="utf-8")))


def config_with_lora(cfg: CourseConfig, lora_config) -> CourseConfig:
    """``cfg`` with its ``lora`` section taken from a PEFT ``LoraConfig`` (the section's field names are PEFT's);
    validated like the file, so a value left as ``...`` gets the config's fix-it message."""
    from llmcourse.config import build_config

    fields = cfg.lora.model_dump()
    for name in fields:
        value = getattr(lora_config, name, fields[name])
        fields[name] = sorted(value) if isinstance(value, set) else value  # PEFT keeps target_modules as a set
    data = cfg.model_dump()
    data["lora"] = fields
    return build_config(data, base_dir=Path.cwd())


def data_minimums(rubric_path: str | Path | None = None) -> dict[str, int]:
    """The rows per split the grader asks for (``grading/rubric.yaml``, ``day3`` evidence ``data``)."""
    from llmcourse.grading.rubric import RUBRIC_FILE, RubricError, load_rubric

    path = rubric_path or RUBRIC_FILE
    settings = load_rubric(path).settings("day3", "data")
    missing = [f"min_{name}" for name in ("train", "val", "test") if f"min_{name}" not in settings]
    if missing:
        raise RubricError(f"{path}: assignments.day3.evidence.data 缺少 {', '.join(missing)}")
    return {name: int(settings[f"min_{name}"]) for name in ("train", "val", "test")}


def sizes_vs_minimums(splits: dict[str, int], cfg: CourseConfig | None = None, rubric_path: str | Path | None = None):
    """A table of built rows vs the grader's minimums; with ``cfg``, also how many cleaned rows its ratios need."""
    import math

    import pandas as pd

    from llmcourse.grading.rubric import RubricError

    try:
        minimums = data_minimums(rubric_path)
    except RubricError as exc:  # e.g. a copy of the course without grading/: show the sizes, say why no minimums
        print(f"{exc}：这里只列出条数，评分要求的最少条数请看课程仓库的 grading/rubric.yaml")
        return pd.DataFrame([{"划分": name, "条数": count} for name, count in splits.items()]).set_index("划分")
    table = pd.DataFrame([{"划分": name, "条数": splits.get(name, 0), "评分要求至少": need,
                           "够不够": "够" if splits.get(name, 0) >= need else "不够"}
                          for name, need in minimums.items()]).set_index("划分")
    if cfg is not None:
        shares = {"train": 1 - cfg.data.val_ratio - cfg.data.test_ratio, "val": cfg.data.val_ratio,
                  "test": cfg.data.test_ratio}
        ratios = f"按 val_ratio={cfg.data.val_ratio}、test_ratio={cfg.data.test_ratio} 划分，"
        if any(shares[name] <= 0 for name in minimums):
            print(ratios + "有一个划分是空的，达不到评分要求：val_ratio 和 test_ratio 都要大于 0")
        else:
            needed = max(math.ceil(need / shares[name]) for name, need in minimums.items())
            print(ratios + f"清洗、去重之后至少要剩约 {needed} 条问题（现在 {sum(splits.values())} 条）")
    return table


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _count_lines(path: Path) -> int | None:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else None


def _section_data(project: Path, cfg: CourseConfig) -> list[str]:
    lines = ["## 1. 数据", "", "| 划分 | 条数 |", "|---|---|"]
    for name, file in (("训练 train", cfg.data.train_file), ("验证 val", cfg.data.eval_file),
                       ("测试 test", getattr(cfg.data, "test_file", None))):
        count = _count_lines(Path(file)) if file else None
        lines.append(f"| {name} | {'—' if count is None else count} |")
    built = Path(cfg.data.train_file).parent
    if (built / DATA_REPORT_MD).exists():
        lines += ["", f"清洗过程（丢弃了哪些行、为什么、个人信息脱敏、跨划分近重复检查）见 "
                      f"[数据报告]({_relative(built / 'data_report.md', project)})。"]
    return lines


def _relative(path: Path, project: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(project.resolve()))
    except ValueError:
        return str(path)


def _section_training(project: Path, run_dir: Path) -> list[str]:
    lines = ["", "## 2. 微调", ""]
    log = read_train_log(run_dir)
    losses = [row["loss"] for row in log if row.get("loss") is not None]
    if losses:
        lines.append(f"训练 {len(losses)} 步，loss {losses[0]:.3f} → {losses[-1]:.3f}。")
    if (run_dir / LOSS_CURVE).exists():
        lines += ["", f"![loss 曲线]({_relative(run_dir / 'loss_curve.png', project)})"]
    splits = [(name, _read_json(run_dir / f"eval_{name}.json")) for name in ("val", "test")]
    if any(result for _, result in splits):
        lines += ["", "| 微调模型在 | 问题数 | 平均自动分 | 完全正确 |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['questions']} | {r['mean_auto_score']} | {r['fully_correct']} |"
                  for name, r in splits if r]
    return lines


def _section_verification(project: Path, verify_dir: Path) -> list[str]:
    lines = ["", "## 3. 验证：基座 vs 微调（测试集）", ""]
    summary = verify_dir / BENCHMARK_SUMMARY
    if summary.exists():
        lines.append(summary.read_text(encoding="utf-8").strip())
    from llmcourse.evaluation.arms import ARMS_MD
    if (verify_dir / ARMS_MD).exists():  # the retrieval arms (04_verify with a retriever)
        lines += ["", "四组对比（原始模型 / 原始模型 + 检索 / 微调模型 / 微调模型 + 检索）：", "",
                  (verify_dir / ARMS_MD).read_text(encoding="utf-8").strip()]
    for name, title in (("quality.png", "质量"), ("latency.png", "延迟"), ("memory.png", "内存")):
        if (verify_dir / name).exists():
            lines += ["", f"![{title}]({_relative(verify_dir / name, project)})"]
    human = verify_dir / HUMAN_SCORES
    if human.exists():
        import pandas as pd
        sheet = pd.read_csv(human, encoding="utf-8-sig")
        if "human_score" in sheet:
            means = sheet.groupby("model").human_score.mean().round(2).to_dict()
            lines += ["", "人工打分（1–5，平均）：" + "，".join(f"{k} {v}" for k, v in means.items())]
    return lines


def _section_deployment(project: Path) -> list[str]:
    lines = ["", "## 4. 部署与调用", ""]
    conversation = _read_json(project / "deploy" / CONVERSATION)
    if conversation:
        lines.append(f"OpenAI 兼容接口 `{conversation['base_url']}`，模型名 `{conversation['model']}`，多轮对话：")
        lines.append("")
        for number, turn in enumerate(conversation["turns"], 1):
            # latency_s: deploy/client.py times each turn; a learner's own chat() in 03_deploy need not
            latency = f"{turn['latency_s']} 秒，" if turn.get("latency_s") is not None else ""
            lines.append(f"{number}. 用户：{turn['question']}  \n   模型：{turn['answer']}  "
                         f"（{latency}带 {turn['messages_sent']} 条消息）")
    table = project / "deploy" / "loadtest" / LOADTEST_MD
    if table.exists():
        lines += ["", "压测（aiperf，流式）：", "", table.read_text(encoding="utf-8").strip()]
    return lines


# What the server says it is (``owned_by`` of GET /v1/models) -> how the README names the engine.
SERVED_BY = {"vllm": "vLLM（OpenAI 兼容服务，适配器不合并）", "llmcourse": "transformers（课程自带的 FastAPI 服务，适配器合并进权重）"}


def _cell(text: Any, limit: int | None = None) -> str:
    """Text safe inside one Markdown table cell (no line breaks, no column separators)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _benchmark_rows(verify_dir: Path) -> list[dict]:
    import csv

    if not (verify_dir / BENCHMARK_CSV).exists():
        return []
    with (verify_dir / BENCHMARK_CSV).open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _section_env(project: Path, cfg: CourseConfig, config_label: str, run_dir: Path, verify_dir: Path) -> str:
    from llmcourse.config import load_config
    from llmcourse.env.models import get_model

    env = _read_json(run_dir / RUN_ENV)
    conversation = _read_json(project / "deploy" / CONVERSATION) or {}
    # What the run really used (the notebook may have overridden steps or samples), else the project config.
    run_cfg = load_config(run_dir / RUN_CONFIG) if (run_dir / RUN_CONFIG).exists() else cfg
    steps = len(read_train_log(run_dir)) or run_cfg.train.max_steps
    spec = get_model(run_cfg.model.name)
    kind = "CPU 替身模型" if spec.is_stand_in else (spec.hf_id or "")
    rows = [("配置文件", f"`{config_label}`（场景 {cfg.data.scenario}）"),
            ("模型", f"`{run_cfg.model.name}`（{kind + '，' if kind else ''}来源 {run_cfg.model.source}）"),
            ("LoRA", (f"r={run_cfg.lora.r}，lora_alpha={run_cfg.lora.lora_alpha}，训练 {steps} 步，"
                      f"学习率 {run_cfg.train.learning_rate:g}"))]
    env_file = _relative(run_dir / RUN_ENV, project)
    if env:
        hardware = env.get("hardware") or {}
        where = (f"GPU {hardware['gpu']}（{hardware.get('gpu_memory_gb')} GB）" if hardware.get("gpu")
                 else f"CPU {hardware.get('cpu_cores')} 核，内存 {hardware.get('ram_gb')} GB")
        rows += [("训练设备", f"{env.get('device')}（{where}）"), ("训练引擎", env.get("engine") or "—")]
    served_by = conversation.get("served_by")
    if served_by or conversation:
        rows.append(("部署引擎", SERVED_BY.get(served_by, served_by or "—")))
    engines = list(dict.fromkeys(row["engine"] for row in _benchmark_rows(verify_dir)))
    if engines:
        rows.append(("验证引擎", "、".join(engines)))
    if env:
        hardware = env.get("hardware") or {}
        rows.append(("Python / 系统", f"{hardware.get('python')}，{hardware.get('platform')}"))
        rows.append(("库版本（训练时）", "，".join(f"{name} {version}" for name, version in
                                            (env.get("versions") or {}).items() if version)))
    lines = ["| 项目 | 值 |", "|---|---|"] + [f"| {name} | {_cell(value)} |" for name, value in rows]
    lines += ["", f"训练环境来自 `{env_file}`，部署引擎来自 `deploy/conversation.json`。" if env
              else f"还没有 `{env_file}`：先运行 02_train.ipynb（训练会写下设备、引擎和库版本）。"]
    return "\n".join(lines)


def _display_width(text: str) -> int:
    """Columns a monospace font gives ``text`` (Chinese characters take two), to line up comments."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _section_launch(project: Path, cfg: CourseConfig, config_label: str) -> str:
    built, run = _relative(Path(cfg.data.built_dir or Path(cfg.data.train_file).parent), project), \
        _relative(Path(cfg.train.output_dir), project)
    name, url = cfg.serve.served_model_name, f"http://{cfg.serve.host}:{cfg.serve.port}/v1"
    tests = load_chat_jsonl(cfg.data.test_file)[:1] if cfg.data.test_file and Path(cfg.data.test_file).exists() else []
    question = tests[0].question if tests else "你好"
    body = json.dumps({"model": name, "messages": [{"role": "user", "content": question}],
                       "max_tokens": cfg.infer.max_tokens}, ensure_ascii=False).replace("'", "'\\''")  # shell quoting
    config = f'"{config_label}"' if " " in config_label else config_label
    commands = [(f"llmcourse data build {config}", f"1. 数据 → {built}/"), (f"llmcourse train {config}", f"2. 训练 → {run}/"),
                ("export LLMCOURSE_API_KEY=sk-换成你自己的密钥", "   密钥只放在环境变量里，不写进代码"),
                (f"llmcourse serve {config}", f"3. 部署（另开一个终端）：{url}，模型名 {name}"),
                (f"python deploy/client.py --config {config}", "   多轮对话（官方 openai 客户端）")]
    width = max(_display_width(command) for command, _ in commands) + 2
    return "\n".join([
        f"在项目文件夹里（`day3/` 或你复制出来的文件夹）运行；这次用的配置是 `{config_label}`：", "",
        "```bash", *[command + " " * (width - _display_width(command)) + f"# {comment}" for command, comment in commands],
        "```", "",
        "任何 OpenAI 兼容的客户端都能调用，例如：", "",
        "```bash",
        f'curl {url}/chat/completions -H "Authorization: Bearer $LLMCOURSE_API_KEY" \\',
        f"  -H 'Content-Type: application/json' -d '{body}'",
        "```", "",
        ('也可以按顺序运行 `01_data.ipynb` → `02_train.ipynb` → `03_deploy.ipynb` → `04_verify.ipynb`，'
         f'每本的参数单元格里都写 `config_path = "{config_label}"`。')])


def _section_showcase(project: Path, verify_dir: Path, count: int = SHOWCASE_CASES) -> str:
    rows = _benchmark_rows(verify_dir)
    answers = {(g["model"], g["engine"], g["case_id"]): g for g in _read_jsonl(verify_dir / GENERATIONS)}
    cases = {c["case_id"]: c for c in _read_jsonl(verify_dir / "cases.jsonl")}
    if not rows or not answers:
        return f"还没有 `{_relative(verify_dir, project)}/benchmark.csv`：先运行 04_verify.ipynb 的“基座 vs 微调”。"
    engine = rows[0]["engine"]
    scores = {(r["model"], r["case_id"]): float(r["auto_score"]) for r in rows if r["engine"] == engine}
    order = list(dict.fromkeys(r["case_id"] for r in rows if r["engine"] == engine))
    gain = {case_id: scores.get(("fine_tuned", case_id), 0.0) - scores.get(("base", case_id), 0.0) for case_id in order}
    chosen = sorted(order, key=lambda case_id: (-gain[case_id], order.index(case_id)))[:count]
    lines = [(f"测试集上的 {len(chosen)} 道题（共 {len(order)} 道，挑的是微调后自动分提高最多的），引擎 {engine}；"
              f"全部回答在 `{_relative(verify_dir / 'generations.jsonl', project)}`。")]
    for number, case_id in enumerate(chosen, 1):
        case = cases.get(case_id, {})
        question = (answers.get(("base", engine, case_id)) or {}).get("question") or case_id
        lines += ["", f"**{number}. {_cell(question)}**", "", "| | 回答 | 自动分 |", "|---|---|---|"]
        if case.get("reference"):
            lines.append(f"| 参考答案 | {_cell(case['reference'], 160)} | |")
        for model, title in (("base", "基座"), ("fine_tuned", "微调后")):
            text = (answers.get((model, engine, case_id)) or {}).get("text", "")
            score = scores.get((model, case_id))
            lines.append(f"| {title} | {_cell(text, 160) or '（空）'} | {'—' if score is None else f'{score:.2f}'} |")
    return "\n".join(lines)


def write_report(project_dir: str | Path, conclusions: str, config_path: str | Path = "config.yaml",
                 verify_dir: str | Path = "verify") -> Path:
    """Write ``report.md`` from the project's files and fill the README's sections (:data:`README_SECTIONS`).

    ``config_path`` is the project config the notebooks ran with, relative to ``project_dir`` (or absolute).
    """
    from llmcourse.config import load_config

    project = Path(project_dir).resolve()
    config_file = Path(config_path) if Path(config_path).is_absolute() else project / config_path
    cfg = load_config(config_file)
    config_label = _relative(config_file, project)
    run_dir = Path(cfg.train.output_dir)
    lines = ["# 项目报告", "", f"模型 `{cfg.model.name}` + LoRA（r={cfg.lora.r}，alpha={cfg.lora.lora_alpha}）。", ""]
    lines += _section_data(project, cfg) + _section_training(project, run_dir)
    lines += _section_verification(project, project / verify_dir) + _section_deployment(project)
    lines += ["", "## 5. 结论与改进方向", "", conclusions.strip(), ""]
    report = project / PROJECT_REPORT
    report.write_text("\n".join(lines), encoding="utf-8")
    readme = project / "README.md"
    if readme.exists():
        fill_sections(readme, {"env": _section_env(project, cfg, config_label, run_dir, project / verify_dir),
                               "launch": _section_launch(project, cfg, config_label),
                               "showcase": _section_showcase(project, project / verify_dir),
                               "results": "\n".join(lines[2:])})
    return report


def fill_sections(readme: str | Path, sections: dict[str, str]) -> Path:
    """Replace what is between each section's markers (``<!-- NAME:start -->`` … ``<!-- NAME:end -->``).

    Every marker is looked for before anything is written: a README missing one is left as it was.
    """
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    broken = [name for name in sections
              if not 0 <= text.find(section_markers(name)[0]) < text.find(section_markers(name)[1])]
    if broken:
        markers = "、".join(marker for name in broken for marker in section_markers(name))
        titles = "、".join(f"“{README_SECTIONS.get(name, name)}”" for name in broken)
        raise InputError(f"{readme} 里找不到 {markers}（或两行顺序颠倒了）："
                         f"请把这两行标记放回 {titles} 一节（可以从 day3/README.md 复制）")
    for name, markdown in sections.items():
        start, end = section_markers(name)
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = f"{head}{start}\n{markdown.strip()}\n{end}{tail}"
    readme.write_text(text, encoding="utf-8")
    return readme


def fill_results(readme: str | Path, markdown: str) -> Path:
    """Replace what is between the results markers of a README (the markers stay)."""
    return fill_sections(readme, {"results": markdown})
