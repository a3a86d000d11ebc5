from llmcourse.notebooks.display import LiveLossPlot, save_text, show_log_excerpt


def test_live_plot_records_each_step():
    plot = LiveLossPlot()
    for step, loss in enumerate([3.0, 2.5, 2.0, 1.8, 1.2, 1.0], start=1):
        plot.update({"step": step, "loss": loss})
    lines = plot.axes.get_lines()
    assert len(plot.records) == 6 and len(lines) == 2  # raw and moving average
    assert list(lines[0].get_ydata()) == [3.0, 2.5, 2.0, 1.8, 1.2, 1.0]


def test_live_plot_adds_the_validation_points():
    plot = LiveLossPlot()
    for step, loss in enumerate([3.0, 2.5, 2.0, 1.8, 1.2, 1.0], start=1):
        plot.update({"step": step, "loss": loss, **({"eval_loss": loss + 1, "eval_rows": 8} if step % 3 == 0 else {})})
    validation = [line for line in plot.axes.get_lines() if line.get_label().startswith("validation")]
    assert len(validation) == 1 and list(validation[0].get_ydata()) == [3.0, 2.0]


def test_log_excerpt_keeps_head_and_tail(tmp_path):
    import json
    rows = [{"step": i, "loss": 1.0 / i, "learning_rate": 1e-3} for i in range(1, 11)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["step"] for r in show_log_excerpt(tmp_path)] == [1, 2, 3, 8, 9, 10]


def test_save_text_writes_utf8(tmp_path):
    path = save_text(tmp_path / "a" / "c.yaml", "\nlora: {r: 8}  # 秩\n")
    assert path.read_text(encoding="utf-8") == "lora: {r: 8}  # 秩\n"
