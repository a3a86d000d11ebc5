import json

import pytest
from conftest import ROOT, grade_ids
from llmcourse.grading.checks import (
    CheckFailed,
    check_no_code_submission,
    check_no_code_summary,
    count_chars,
)
from llmcourse.data.jsonl import DataError
from llmcourse.notebooks.form_day1 import TrainingForm, save_summary

SUMMARY = ("我理解的微调流程从数据开始：先明确目标，收集并清洗业务问答，整理成对话格式的训练集，留出测试集。" * 3
           + "然后用 LoRA 训练，看 loss 是否下降；再把适配器和基座模型一起部署成接口；最后用测试问题比较基座和微调模型。" * 2)


@pytest.fixture
def form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "faq_train.jsonl").write_bytes((ROOT / "day1" / "data" / "faq_train.jsonl").read_bytes())
    return TrainingForm(run_dir="runs/no_code", submission_dir="sub", max_samples=8)


def test_defaults_give_the_code_tracks_config(form):
    cfg = form.build_config()
    assert (cfg.model.name, cfg.lora.r, cfg.lora.lora_alpha, cfg.train.max_steps) == ("gemma3-270m", 32, 64, 80)
    assert cfg.train.assistant_only_loss and cfg.data.train_file.endswith("data/faq_train.jsonl")
    assert "配置有效" in form.message.value
    assert "lora.r=32" in form.cli_command() and "max_steps: 80" in form.yaml_text()


def test_changing_a_field_updates_preview_and_epochs_mode(form):
    form.rank.value = 8
    form.schedule.value = "按轮数"
    form.epochs.value = 2.0
    cfg = form.build_config()
    assert cfg.lora.r == 8 and cfg.train.max_steps == -1 and cfg.train.num_train_epochs == 2.0
    assert "r: 8" in form.preview.value and form.steps.layout.display == "none"


def test_bad_value_is_shown_in_chinese(form):
    form.alpha.max = 100000
    form.alpha.value = 5000
    assert "lora.lora_alpha" in form.message.value and "小于或等于" in form.message.value


def test_csv_upload_is_validated_and_converted(form, tmp_path):
    rows = "question,answer\n" + "".join(f"问题{i}？,回答{i}。\n" for i in range(6))
    saved = form.accept_upload("mine.csv", rows.encode("utf-8"))
    assert saved.name == "mine.jsonl" and form.build_config().data.train_file.endswith("uploads/mine.jsonl")
    assert json.loads(saved.read_text(encoding="utf-8").splitlines()[0])["messages"][1]["content"] == "回答0。"


@pytest.mark.parametrize("name, content, message", [
    ("bad.csv", b"q,a\n1,2\n", "question 和 answer"),
    ("bad.jsonl", b'{"messages": []}\n', "bad.jsonl:1: messages"),
    ("bad.jsonl", "问".encode("gbk") * 3, "UTF-8"),
    ("few.csv", "question,answer\n问,答\n".encode(), "至少需要 5 条"),
    ("notes.txt", b"hello", ".jsonl 或 .csv"),
])
def test_bad_uploads_get_clear_errors(form, name, content, message):
    with pytest.raises(DataError, match=message):
        form.accept_upload(name, content)


def test_the_summary_is_the_answer_cell_and_the_form_shows_its_length(form, capsys):
    assert not hasattr(form, "summary")  # one place to write it: the notebook's graded answer cell
    with pytest.raises(CheckFailed, match="我理解的大模型微调流程"):
        check_no_code_summary(form.submission)
    assert save_summary("\n\n", "sub") == 0 and "还是空的" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="还没有写总结"):
        check_no_code_summary("sub")
    save_summary("太短了。" * 20, "sub")
    with pytest.raises(CheckFailed, match="至少需要 200 个字"):
        check_no_code_summary("sub")
    assert save_summary(SUMMARY, "sub") == count_chars(SUMMARY) == check_no_code_summary("sub")
    assert f"<b>{count_chars(SUMMARY)}</b>" in TrainingForm(run_dir="runs/no_code", submission_dir="sub").count.value
    save_summary(SUMMARY * 3, "sub")
    with pytest.raises(CheckFailed, match="精简到 600 字以内"):
        check_no_code_summary("sub")


def test_the_notebook_grades_the_summary_by_hand_and_checks_its_length():
    import nbformat
    notebook = nbformat.read(ROOT / "day1" / "03_no_code.ipynb", as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells if "nbgrader" in c.metadata}
    answer = cells["no_code_summary"]
    assert answer.metadata["nbgrader"]["solution"] and answer.metadata["nbgrader"]["grade"]  # formgrader scores it
    assert "我理解的大模型微调流程" in answer.source and "save_summary(summary, submission_dir)" in answer.source.splitlines()[-1]
    assert answer.source.index('summary = """') < answer.source.index("### BEGIN SOLUTION")  # the skeleton comes first
    assert "check_no_code_summary(submission_dir)" in cells["check_no_code_summary"].source
    assert grade_ids(ROOT / "day1" / "03_no_code.ipynb") >= {"check_no_code", "no_code_summary", "check_no_code_summary"}


def test_start_training_writes_the_evidence(form):
    with pytest.raises(CheckFailed, match="配置快照"):
        check_no_code_submission(form.submission)
    save_summary(SUMMARY, form.submission)
    result = form.apply(steps=5, start=True)
    assert result.steps == 5 and form.progress.value == form.progress.max
    status = check_no_code_submission(form.submission)
    assert status["steps"] == 5 and status["started_at"] <= status["finished_at"]
    assert "训练完成" in form.status.value
    assert form.plot.value[:8] == b"\x89PNG\r\n\x1a\n"  # the live loss curve was drawn


def test_labels_tooltips_and_choices_come_from_the_schema(tmp_path, monkeypatch):
    from llmcourse.config_docs import field_help, field_info
    monkeypatch.chdir(tmp_path)
    info = field_info("lora.r")
    monkeypatch.setattr(info, "title", "秩（测试）")
    monkeypatch.setattr(info, "description", "换过的说明")
    monkeypatch.setattr(info, "json_schema_extra", {"suggested": [8, 16, 24]})
    form = TrainingForm(run_dir="runs/no_code", submission_dir="sub")
    assert form.rank.description == "秩（测试）" and form.rank.tooltip == field_help("lora.r")
    assert "换过的说明" in form.rank.tooltip
    # the example config's r (32) is off the patched list: it is added, and the form starts on it
    assert [value for _, value in form.rank.options] == [8, 16, 24, 32] and form.rank.value == 32
    assert form.alpha.max == field_info("lora.lora_alpha").metadata[-1].le  # the schema's range
    assert form.learning_rate.description == field_info("train.learning_rate").title


def test_the_form_starts_from_the_code_tracks_reference_answer(form):
    """Both Day 1 tracks train the same default run: the form's starting values are the example config's,
    and those are the settings of 02_lora_training's reference answer (its config_text)."""
    import nbformat
    import yaml
    from llmcourse.grading.cohort import solution

    notebook = nbformat.read(ROOT / "day1" / "02_lora_training.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code" and "config_text = " in c.source
                and "BEGIN SOLUTION" in c.source)
    answer = yaml.safe_load(solution(cell).split('"""')[1])
    cfg = form.build_config()
    assert {name: getattr(cfg.lora, name) for name in answer["lora"]} == answer["lora"]
    assert {name: getattr(cfg.train, name) for name in ("max_steps", "per_device_train_batch_size",
                                                        "learning_rate")} == \
        {name: answer["train"][name] for name in ("max_steps", "per_device_train_batch_size", "learning_rate")}
    assert (form.rank.value, form.alpha.value, form.steps.value) == (answer["lora"]["r"], answer["lora"]["lora_alpha"],
                                                                     answer["train"]["max_steps"])
