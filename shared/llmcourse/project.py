"""The Day 3 project's evidence: split evaluation, test cases, the conversation log and ``report.md``.

Usage::

    from llmcourse.project import evaluate_split, cases_from_split, write_report
    evaluate_split(cfg, "train/run/adapter", cfg.data.test_file, "train/run/eval_test.json", limit=30)
    cases = cases_from_split(cfg.data.test_file, limit=30)        # Day 2's case format
    report = write_report(".", conclusions="……")                  # report.md + README results section

Files (relative to the project folder, ``day3/`` or a learner's copy of it):
``train/run/eval_val.json`` and ``eval_test.json`` (fine-tuned model on each split),
``deploy/conversation.json`` (a multi-turn chat through the API), ``deploy/loadtest/loadtest.md``,
``verify/`` (Day 2's benchmark files on the test split), ``report.md``, and the README's results
section between ``<!-- results:start -->`` and ``<!-- results:end -->``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from llmcourse.config import CourseConfig
from llmcourse.data import load_chat_jsonl
from llmcourse.scoring import auto_score

RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def cases_from_split(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a built split as Day 2 cases (``case_id``, ``kind``, ``messages`` without the answer, ...)."""
    cases = []
    for number, example in enumerate(load_chat_jsonl(path)[:limit], 1):
        case = {"case_id": example.meta.get("id") or f"test-{number}",
                "kind": example.meta.get("topic") or ("intent" if example.meta.get("label") else "faq"),
                "messages": example.prompt_messages, "reference": example.answer}
        if example.key_facts:
            case["key_facts"] = example.key_facts
        if example.meta.get("label"):
            case["label"] = example.meta["label"]
        cases.append(case)
    return cases


def evaluate_split(cfg: CourseConfig, adapter_dir: str | Path | None, split_file: str | Path,
                   out_path: str | Path, limit: int | None = None, engine=None) -> dict[str, Any]:
    """Answer a split's questions and score them like Day 2 (key facts, label, or ROUGE-L)."""
    from llmcourse.infer import TransformersEngine

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


def save_conversation(turns, path: str | Path, base_url: str, model: str) -> Path:
    """Keep a multi-turn chat (``llmcourse.chat.Turn`` objects or dicts) as evidence for grading."""
    rows = [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in turns]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"base_url": base_url, "model": model, "turns": rows}, ensure_ascii=False, indent=2),
                    encoding="utf-8")
    return path


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
    if (built / "data_report.md").exists():
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
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
           if line.strip()] if (run_dir / "train_log.jsonl").exists() else []
    losses = [row["loss"] for row in log if row.get("loss") is not None]
    if losses:
        lines.append(f"训练 {len(losses)} 步，loss {losses[0]:.3f} → {losses[-1]:.3f}。")
    if (run_dir / "loss_curve.png").exists():
        lines += ["", f"![loss 曲线]({_relative(run_dir / 'loss_curve.png', project)})"]
    splits = [(name, _read_json(run_dir / f"eval_{name}.json")) for name in ("val", "test")]
    if any(result for _, result in splits):
        lines += ["", "| 微调模型在 | 问题数 | 平均自动分 | 完全正确 |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['questions']} | {r['mean_auto_score']} | {r['fully_correct']} |"
                  for name, r in splits if r]
    return lines


def _section_verification(project: Path, verify_dir: Path) -> list[str]:
    lines = ["", "## 3. 验证：基座 vs 微调（测试集）", ""]
    summary = verify_dir / "summary.md"
    if summary.exists():
        lines.append(summary.read_text(encoding="utf-8").strip())
    for name, title in (("quality.png", "质量"), ("latency.png", "延迟"), ("memory.png", "内存")):
        if (verify_dir / name).exists():
            lines += ["", f"![{title}]({_relative(verify_dir / name, project)})"]
    human = verify_dir / "human_scores.csv"
    if human.exists():
        import pandas as pd
        sheet = pd.read_csv(human, encoding="utf-8-sig")
        if "human_score" in sheet:
            means = sheet.groupby("model").human_score.mean().round(2).to_dict()
            lines += ["", "人工打分（1–5，平均）：" + "，".join(f"{k} {v}" for k, v in means.items())]
    return lines


def _section_deployment(project: Path) -> list[str]:
    lines = ["", "## 4. 部署与调用", ""]
    conversation = _read_json(project / "deploy" / "conversation.json")
    if conversation:
        lines.append(f"OpenAI 兼容接口 `{conversation['base_url']}`，模型名 `{conversation['model']}`，多轮对话：")
        lines.append("")
        for number, turn in enumerate(conversation["turns"], 1):
            lines.append(f"{number}. 用户：{turn['question']}  \n   模型：{turn['answer']}  "
                         f"（{turn['latency_s']} 秒，带 {turn['messages_sent']} 条消息）")
    table = project / "deploy" / "loadtest" / "loadtest.md"
    if table.exists():
        lines += ["", "压测（aiperf，流式）：", "", table.read_text(encoding="utf-8").strip()]
    return lines


def write_report(project_dir: str | Path, conclusions: str, config_path: str | Path = "config.yaml",
                 verify_dir: str | Path = "verify") -> Path:
    """Write ``report.md`` from the project's files and copy its results into the README template."""
    from llmcourse.config import load_config

    project = Path(project_dir).resolve()
    cfg = load_config(project / config_path)
    run_dir = Path(cfg.train.output_dir)
    lines = ["# 项目报告", "", f"模型 `{cfg.model.name}` + LoRA（r={cfg.lora.r}，alpha={cfg.lora.lora_alpha}）。", ""]
    lines += _section_data(project, cfg) + _section_training(project, run_dir)
    lines += _section_verification(project, project / verify_dir) + _section_deployment(project)
    lines += ["", "## 5. 结论与改进方向", "", conclusions.strip(), ""]
    report = project / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    readme = project / "README.md"
    if readme.exists():
        fill_results(readme, "\n".join(lines[2:]))
    return report


def fill_results(readme: str | Path, markdown: str) -> Path:
    """Replace what is between the results markers of a README (the markers stay)."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if RESULTS_START not in text or RESULTS_END not in text:
        raise ValueError(f"{readme} 里找不到 {RESULTS_START} 和 {RESULTS_END}：请把这两行放回结果一节")
    head, _, rest = text.partition(RESULTS_START)
    _, _, tail = rest.partition(RESULTS_END)
    readme.write_text(f"{head}{RESULTS_START}\n{markdown.strip()}\n{RESULTS_END}{tail}", encoding="utf-8")
    return readme
