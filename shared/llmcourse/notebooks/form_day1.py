"""The no-code track: a LoRA fine-tuning form (ipywidgets) on the same config and training code.

Usage (one notebook cell)::

    from llmcourse.notebooks.form_day1 import TrainingForm
    form = TrainingForm(run_dir="runs/no_code", submission_dir="no_code_submission")
    form.show()

The form edits the fields of the course config (model, data, ``lora.r`` / ``lora_alpha`` /
``lora_dropout``, ``train.learning_rate``, steps or epochs, ``train.max_length``), validates them with
the same schema as the code track, shows the equivalent YAML and ``llmcourse train`` command, and
its 开始训练 button calls :func:`llmcourse.training.run.train_or_reuse`. Evidence for grading goes to
``submission_dir``: ``config.yaml``, ``run_card.png`` (config + loss curve), ``status.json``
(started / finished) and ``summary.txt``. The ~300-character summary ("我理解的大模型微调流程") is not a
form field: it is written in the notebook's answer cell, which the instructor grades in formgrader, and
that cell saves it with :func:`save_summary`; the form only points there and shows the saved length.
Everything the buttons do is also a method (``start_training``, ``accept_upload``, ``apply``) for tests.

Day 2's no-code form (test cases, base vs fine-tuned, human scores) is :mod:`llmcourse.notebooks.form_day2`.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from llmcourse.config import ConfigError, CourseConfig, build_config
from llmcourse.data.jsonl import DataError, parse_chat_lines
from llmcourse.env.models import MODEL_NAMES
from llmcourse.training.run import read_train_log, train_or_reuse
from llmcourse.artifacts import COURSE_ROOT

SAMPLE_DATA = "data/faq_train.jsonl"
# The code track's example config: the form starts from its values and trains on top of it.
EXAMPLE_CONFIG = COURSE_ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"


def example_config() -> dict:
    """The example config as a tree (its values are the form's starting values)."""
    import yaml
    return yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))


def _example_value(tree: dict, dotted: str):
    """``tree``'s value at ``section.field``, or None where the file leaves it to the schema's default."""
    section, name = dotted.split(".")
    return (tree.get(section) or {}).get(name)


def _field_widget(widget_type, dotted: str, value=None, options=None, **bounds):
    """A control for a config field: label, tooltip (the field's help) and choices from the schema.

    ``bounds`` (``min`` / ``max``) narrow the schema's range where the form wants less; the schema's
    range is the default, so a value the form accepts is one the config accepts.
    """
    from llmcourse.config_docs import bounds as schema_bounds
    from llmcourse.config_docs import (
        field_help,
        field_info,
        label,
        suggested,
        value_text,
    )

    info = field_info(dotted)
    kwargs = {"description": label(dotted), "tooltip": field_help(dotted),
              "style": {"description_width": "110px"}, "value": info.default if value is None else value}
    if options is not None or widget_type.__name__ == "Dropdown":
        # label as the YAML writes it (5e-5, not 5e-05), value as the config holds it
        kwargs["options"] = options if options is not None else [(value_text(v), v) for v in suggested(info)]
        # A starting value off the common list (the example config's) is still a choice, not a crash.
        if all((o[1] if isinstance(o, tuple) else o) != kwargs["value"] for o in kwargs["options"]):
            kwargs["options"] = [*kwargs["options"], (value_text(kwargs["value"]), kwargs["value"])]
    else:
        limits = schema_bounds(info)
        kwargs["min"] = bounds.get("min", limits.get("ge", limits.get("gt")))
        kwargs["max"] = bounds.get("max", limits.get("le", limits.get("lt")))
    return widget_type(**kwargs)


def csv_to_chat_lines(text: str) -> list[str]:
    """A CSV with columns ``question,answer`` (optional ``system``) as chat JSONL lines."""
    rows = list(csv.DictReader(io.StringIO(text)))
    lines = []
    for row in rows:
        messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        messages += [{"role": "user", "content": row.get("question") or ""},
                     {"role": "assistant", "content": row.get("answer") or ""}]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    return lines


class TrainingForm:
    def __init__(self, run_dir: str = "runs/no_code", submission_dir: str = "no_code_submission",
                 max_samples: int | None = None, upload_dir: str = "uploads"):
        import ipywidgets as w

        self.run_dir, self.submission = Path(run_dir), Path(submission_dir)
        self.upload_dir, self.max_samples = Path(upload_dir), max_samples
        self.data_file = SAMPLE_DATA
        style = {"description_width": "110px"}
        # Both tracks start from the same settings: the example config's, the code track's reference run.
        example = example_config()

        def field(widget_type, dotted, **kwargs):
            return _field_widget(widget_type, dotted, value=_example_value(example, dotted), **kwargs)

        self.model = field(w.Dropdown, "model.name", options=MODEL_NAMES)
        self.dataset = w.ToggleButtons(options=["课程示例数据", "上传我的数据"], description="数据集", style=style)
        self.upload = w.FileUpload(accept=".jsonl,.csv", multiple=False, description="上传 JSONL/CSV")
        self.rank = field(w.Dropdown, "lora.r")
        self.alpha = field(w.BoundedIntText, "lora.lora_alpha")
        # The schema allows dropout up to (not including) 1; the form keeps its old, narrower 0-0.5.
        self.dropout = field(w.BoundedFloatText, "lora.lora_dropout", max=0.5)
        self.dropout.step = 0.05
        self.learning_rate = field(w.Dropdown, "train.learning_rate")
        self.schedule = w.ToggleButtons(options=["按步数", "按轮数"], description="训练长度", style=style)
        # Steps mode needs a positive count (-1 is how epochs mode is written); a form run stays short.
        self.steps = field(w.BoundedIntText, "train.max_steps", min=1, max=5000)
        self.epochs = field(w.BoundedFloatText, "train.num_train_epochs", min=0.1, max=20)
        self.epochs.step = 0.5
        self.max_length = field(w.Dropdown, "train.max_length")
        self.start = w.Button(description="开始训练", button_style="success", icon="play")
        self.message = w.HTML()
        self.preview = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="进度")
        self.status = w.HTML("尚未开始")
        self.plot = w.Image(format="png", layout=w.Layout(width="540px"))
        self.count = w.HTML()
        for control in (self.model, self.dataset, self.rank, self.alpha, self.dropout, self.learning_rate,
                        self.schedule, self.steps, self.epochs, self.max_length):
            control.observe(lambda change: self.refresh(), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.start.on_click(lambda button: self.start_training())
        self._show_count()
        self.refresh()

    # ---- logic (testable without a browser) ----
    def overrides(self) -> dict:
        by_steps = self.schedule.value == "按步数"
        return {"model.name": self.model.value, "data.train_file": self.data_file, "data.eval_file": None,
                "data.max_samples": self.max_samples, "lora.r": self.rank.value, "lora.lora_alpha": self.alpha.value,
                "lora.lora_dropout": self.dropout.value, "train.learning_rate": self.learning_rate.value,
                "train.max_steps": self.steps.value if by_steps else -1,
                "train.num_train_epochs": 1.0 if by_steps else self.epochs.value,
                "train.max_length": self.max_length.value, "train.output_dir": str(self.run_dir)}

    def build_config(self) -> CourseConfig:
        """The same schema and defaults as the code track (its example config), plus the form's values."""
        base = example_config()
        base.pop("data", None)
        base["train"].pop("output_dir", None)
        return build_config(base, self.overrides(), source="表单")

    def yaml_text(self) -> str:
        return self.build_config().to_yaml()

    def cli_command(self) -> str:
        cfg = self.build_config()
        fields = {"lora.r": cfg.lora.r, "lora.lora_alpha": cfg.lora.lora_alpha, "lora.lora_dropout": cfg.lora.lora_dropout,
                  "train.learning_rate": cfg.train.learning_rate, "train.max_steps": cfg.train.max_steps,
                  "train.num_train_epochs": cfg.train.num_train_epochs, "train.max_length": cfg.train.max_length}
        return "llmcourse train " + str(self.submission / "config.yaml") + " " + " ".join(f"{k}={v}" for k, v in fields.items())

    def accept_upload(self, name: str, content: bytes) -> Path:
        """Validate an uploaded JSONL or CSV and keep it as JSONL in ``upload_dir``; raise DataError if bad."""
        path = Path(name)
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(path, [f"{name}: 编码错误：不是 UTF-8（第 {exc.start} 字节）；请用 UTF-8 另存"]) from None
        if path.suffix.lower() == ".csv":
            header = text.splitlines()[0] if text.strip() else ""
            if "question" not in header or "answer" not in header:
                raise DataError(path, [f"{name}:1: 表头: CSV 需要 question 和 answer 两列（可选 system）"])
            lines = csv_to_chat_lines(text)
        elif path.suffix.lower() == ".jsonl":
            lines = text.splitlines()
        else:
            raise DataError(path, [f"{name}: 只支持 .jsonl 或 .csv 文件"])
        examples, problems = parse_chat_lines(lines, path)
        if problems:
            raise DataError(path, problems)
        if len(examples) < 5:
            raise DataError(path, [f"{name}: 只有 {len(examples)} 条有效样本，至少需要 5 条"])
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        saved = self.upload_dir / (path.stem + ".jsonl")
        saved.write_text("".join(line + "\n" for line in lines if line.strip()), encoding="utf-8")
        self.data_file = str(saved)
        return saved

    def save_summary(self, text: str) -> int:
        """Save the summary as the answer cell does, and show its length in the form."""
        length = save_summary(text, self.submission)
        self._show_count()
        return length

    def _show_count(self) -> None:
        from llmcourse.grading.checks import count_chars
        path = self.submission / "summary.txt"
        length = count_chars(path.read_text(encoding="utf-8")) if path.is_file() else 0
        self.count.value = (f"总结写在笔记本“写总结”那一步的单元格里（不在表单里）。已保存 <b>{length}</b> 字"
                            "（建议约 300 字，至少 200 字）")

    def _write_status(self, **fields) -> None:
        path = self.submission / "status.json"
        status = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        status.update(fields)
        path.write_text(json.dumps(status, ensure_ascii=False, indent=2), encoding="utf-8")

    def start_training(self):
        """Validate, save the config, train (or reuse under nbgrader), save the run card."""
        try:
            cfg = self.build_config()
        except ConfigError as exc:
            self.message.value = f"<span style='color:#c00'>配置有误：{exc}</span>"
            return None
        self.submission.mkdir(parents=True, exist_ok=True)
        cfg.save(self.submission / "config.yaml")
        self._write_status(started_at=time.strftime("%Y-%m-%d %H:%M:%S"), finished_at=None)
        self.status.value = "训练中……"
        self.progress.max = max(cfg.train.max_steps, 1)
        from llmcourse.notebooks.display import LiveLossPlot
        plot = LiveLossPlot(widget=self.plot)

        def on_log(record):
            self.progress.value = min(record["step"], self.progress.max)
            self.status.value = f"第 {record['step']} 步，loss {record['loss']:.3f}"
            plot.update(record)

        result = train_or_reuse(cfg, on_log=on_log)
        for record in result.log if not plot.records else []:  # reused under nbgrader: draw the saved log
            plot.update(record)
        self.progress.value = self.progress.max
        self._write_status(finished_at=time.strftime("%Y-%m-%d %H:%M:%S"), steps=result.steps,
                           first_loss=result.losses[0], final_loss=result.losses[-1], run_dir=str(self.run_dir))
        save_run_card(cfg, read_train_log(self.run_dir), self.submission / "run_card.png")
        self.status.value = f"训练完成：{result.steps} 步，loss {result.losses[0]:.3f} → {result.losses[-1]:.3f}"
        return result

    def apply(self, steps: int | None = None, start: bool = False):
        """Set fields as a learner would (for papermill and tests); ``start`` presses 开始训练."""
        if steps:
            self.schedule.value, self.steps.value = "按步数", steps
        return self.start_training() if start else None

    # ---- widgets ----
    def refresh(self) -> None:
        self.steps.layout.display = None if self.schedule.value == "按步数" else "none"
        self.epochs.layout.display = "none" if self.schedule.value == "按步数" else None
        self.upload.layout.display = None if self.dataset.value == "上传我的数据" else "none"
        if self.dataset.value == "课程示例数据":
            self.data_file = SAMPLE_DATA
        try:
            yaml_text, command = self.yaml_text(), self.cli_command()
        except ConfigError as exc:
            self.message.value = f"<span style='color:#c00'>{exc}</span>"
            return
        self.message.value = "<span style='color:#080'>配置有效</span>"
        self.preview.value = (f"<details><summary>等价的 YAML 配置与命令行</summary><pre>{yaml_text}</pre>"
                              f"<pre>{command}</pre></details>")

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        try:
            saved = self.accept_upload(upload["name"], bytes(upload["content"]))
        except DataError as exc:
            self.message.value = "<pre style='color:#c00'>" + str(exc) + "</pre>"
            return
        self.message.value = f"<span style='color:#080'>已接收 {saved}</span>"
        self.refresh()

    def show(self):
        import ipywidgets as w
        from IPython.display import display

        display(w.VBox([
            w.HTML("<h3>LoRA 微调表单</h3>"), self.model, w.HBox([self.dataset, self.upload]),
            w.HBox([self.rank, self.alpha, self.dropout]), w.HBox([self.learning_rate, self.max_length]),
            w.HBox([self.schedule, self.steps, self.epochs]), self.message, self.preview,
            w.HBox([self.start, self.progress, self.status]), self.plot,
            w.HTML("<h4>训练总结（约 300 字）</h4>"), self.count]))


def save_summary(text: str, submission_dir: str | Path = "no_code_submission") -> int:
    """Save the no-code summary (the answer cell's text) as ``summary.txt``; print and return its length.

    What the cell holds is what gets graded, so the file always follows the cell, empty included.
    """
    from llmcourse.grading.checks import count_chars

    folder = Path(submission_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.txt").write_text((text or "").strip() + "\n", encoding="utf-8")
    length = count_chars(text)
    hint = ("还是空的：请在三引号之间写" if not length else "偏短：至少 200 字" if length < 200
            else "偏长：请精简到 600 字以内" if length > 600 else "长度合适")
    print(f"总结已保存到 {folder / 'summary.txt'}：{length} 字（建议约 300 字，{hint}）")
    return length


def save_run_card(cfg: CourseConfig, log: list[dict], path: str | Path) -> Path:
    """A PNG with the key config values and the loss curve: the no-code track's proof of training."""
    from matplotlib.figure import Figure

    from llmcourse.training.run import plot_loss

    figure = Figure(figsize=(9, 4))
    text_ax, loss_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    text_ax.axis("off")
    lines = [f"model: {cfg.model.name}", f"data: {Path(cfg.data.train_file).name}",
             f"lora.r: {cfg.lora.r}  lora_alpha: {cfg.lora.lora_alpha}", f"lora_dropout: {cfg.lora.lora_dropout}",
             f"learning_rate: {cfg.train.learning_rate}", f"max_steps: {cfg.train.max_steps}",
             f"max_length: {cfg.train.max_length}", f"steps logged: {len(log)}",
             f"loss: {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}" if log else "loss: -"]
    text_ax.text(0, 1, "LoRA run card\n\n" + "\n".join(lines), va="top", family="monospace", fontsize=10)
    plot_loss(log, ax=loss_ax)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return Path(path)
