import json

import pytest

from llmcourse.checks import CheckFailed, check_no_code_submission
from llmcourse.course import SAMPLE_SUMMARY
from llmcourse.data import DataError
from llmcourse.form import TrainingForm
from conftest import ROOT


@pytest.fixture
def form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "faq_train.jsonl").write_bytes((ROOT / "day1" / "data" / "faq_train.jsonl").read_bytes())
    return TrainingForm(run_dir="runs/no_code", submission_dir="sub", max_samples=8)


def test_defaults_give_the_code_tracks_config(form):
    cfg = form.build_config()
    assert (cfg.model.name, cfg.lora.r, cfg.lora.lora_alpha, cfg.train.max_steps) == ("gemma3-270m", 16, 32, 60)
    assert cfg.train.assistant_only_loss and cfg.data.train_file.endswith("data/faq_train.jsonl")
    assert "配置有效" in form.message.value
    assert "lora.r=16" in form.cli_command() and "max_steps: 60" in form.yaml_text()


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
    ("bad.csv", "q,a\n1,2\n".encode(), "question 和 answer"),
    ("bad.jsonl", b'{"messages": []}\n', "bad.jsonl:1: messages"),
    ("bad.jsonl", "问".encode("gbk") * 3, "UTF-8"),
    ("few.csv", "question,answer\n问,答\n".encode(), "至少需要 5 条"),
    ("notes.txt", b"hello", ".jsonl 或 .csv"),
])
def test_bad_uploads_get_clear_errors(form, name, content, message):
    with pytest.raises(DataError, match=message):
        form.accept_upload(name, content)


def test_summary_is_saved_as_typed_and_survives_reopening(form):
    form.summary.value = "我的总结"
    assert (form.submission / "summary.txt").read_text(encoding="utf-8") == "我的总结"
    assert "4" in form.count.value
    again = TrainingForm(run_dir="runs/no_code", submission_dir="sub")
    assert again.summary.value == "我的总结"


def test_start_training_writes_the_evidence(form):
    with pytest.raises(CheckFailed, match="配置快照"):
        check_no_code_submission(form.submission)
    result = form.apply(steps=5, summary=SAMPLE_SUMMARY, start=True)
    assert result.steps == 5 and form.progress.value == form.progress.max
    status = check_no_code_submission(form.submission)
    assert status["steps"] == 5 and status["started_at"] <= status["finished_at"]
    assert "训练完成" in form.status.value
    assert form.plot.value[:8] == b"\x89PNG\r\n\x1a\n"  # the live loss curve was drawn
