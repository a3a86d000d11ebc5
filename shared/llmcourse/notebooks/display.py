"""Small display helpers for the notebooks: tables, a live loss plot, log excerpts.

Usage::

    from llmcourse.notebooks.display import LiveLossPlot, show_models, show_examples, show_log_excerpt
    plot = LiveLossPlot()
    train(cfg, on_log=plot.update)        # the plot redraws at every logged step
    show_log_excerpt("runs/my_first_lora")

Outside Jupyter (papermill, tests) every helper still works: it prints instead of drawing live.
"""

from __future__ import annotations

from pathlib import Path

from llmcourse.env.models import REGISTRY
from llmcourse.training.run import plot_loss, read_train_log
from llmcourse.artifacts import GENERATIONS


def _display(obj, **kwargs):
    try:
        from IPython.display import display
    except ImportError:
        print(obj)
        return None
    return display(obj, **kwargs)


def _markdown(text: str):
    try:
        from IPython.display import Markdown
    except ImportError:
        print(text)
        return None
    return _display(Markdown(text))


def show_models() -> None:
    """The model registry as a table: which model for which lane."""
    rows = ["| 名称 | 说明 | 语言 | 需要 GPU | 许可 |", "|---|---|---|---|---|"]
    for spec in REGISTRY.values():
        rows.append(f"| `{spec.name}` | {spec.description} | {spec.language} | "
                    f"{'否（替身模型）' if spec.is_stand_in else '是'} | {spec.licence} |")
    _markdown("\n".join(rows))


def show_examples(examples, count: int = 3) -> None:
    """A few examples as question → answer (key facts) lines."""
    rows = ["| 问题 | 回答 | 关键事实 |", "|---|---|---|"]
    for example in examples[:count]:
        rows.append(f"| {example.question} | {example.answer} | {'、'.join(example.key_facts)} |")
    _markdown("\n".join(rows))


def show_log_excerpt(run_dir: str | Path, head: int = 3, tail: int = 3) -> list[dict]:
    """The first and last lines of a run's train_log.jsonl (a deliverable of Day 1)."""
    log = read_train_log(run_dir)
    excerpt = log[:head] + log[-tail:] if len(log) > head + tail else log
    rows = ["| step | loss | 验证集 loss | learning_rate | tokens/s | 内存 MB |", "|---|---|---|---|---|---|"]
    for row in excerpt:
        evaluated = f"{row['eval_loss']:.4f}" if row.get("eval_loss") is not None else "—"
        rows.append(f"| {row['step']} | {row['loss']:.4f} | {evaluated} | {row['learning_rate']:.2e} | "
                    f"{row.get('tokens_per_s') or '—'} | {row.get('memory_mb') or '不可用'} |")
    _markdown("\n".join(rows))
    return excerpt


class LiveLossPlot:
    """A loss curve that redraws at each logged training step (pass ``update`` as ``on_log``); rows that
    carry an ``eval_loss`` (the validation points, see :mod:`llmcourse.training.run`) add to the validation curve.

    By default it is a notebook output updated in place; give ``widget`` (an ``ipywidgets.Image``)
    to draw into a form instead.
    """

    def __init__(self, every: int = 1, widget=None):
        from matplotlib.figure import Figure

        self.records: list[dict] = []
        self.every = every
        self.widget = widget
        self.axes = Figure(figsize=(6, 3.5)).subplots()
        self.handle = None

    def update(self, record: dict) -> None:
        self.records.append(record)
        if len(self.records) % self.every:
            return
        plot_loss(self.records, ax=self.axes)
        image = self.png()
        if self.widget is not None:
            self.widget.value = image.data
        elif self.handle is None:
            self.handle = _display(image, display_id=True)
        elif hasattr(self.handle, "update"):
            self.handle.update(image)

    def png(self):
        """The current curve as a PNG image."""
        return figure_png(self.axes.figure)


def figure_png(figure):
    """A matplotlib Figure as a PNG image the notebook can display (a bare Figure has no rich display)."""
    import io

    from IPython.display import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return Image(data=buffer.getvalue(), format="png")


def save_text(path: str | Path, text: str) -> Path:
    """Write a learner's text file (UTF-8) and say where it went."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    print(f"已保存：{path.resolve()}")
    return path


def show_side_by_side(out_dir: str | Path, count: int = 8, engine: str = "transformers") -> None:
    """Base and fine-tuned answers to the same cases, next to each other (from generations.jsonl)."""
    import json

    rows = [json.loads(line) for line in (Path(out_dir) / GENERATIONS).read_text(encoding="utf-8").splitlines()]
    answers = {(r["model"], r["case_id"]): r for r in rows if r["engine"] == engine}
    cases = list(dict.fromkeys(r["case_id"] for r in rows))[:count]
    table = ["| 用例 | 问题 | 基座模型 | 微调后 |", "|---|---|---|---|"]
    for case in cases:
        base, tuned = answers.get(("base", case)), answers.get(("fine_tuned", case))
        clean = lambda text: (text or "").replace("\n", " ").replace("|", "｜")[:80]  # noqa: E731
        table.append(f"| {case} | {clean(base['question'])} | {clean(base['text'])} | {clean(tuned['text'])} |")
    _markdown("\n".join(table))
