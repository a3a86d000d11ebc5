import json

import pytest
import torch
from safetensors.torch import save_file

from llmcourse.grading import checks
from llmcourse.grading.checks import CheckFailed
from llmcourse.config import load_config
from conftest import CPU_CONFIG


def _config(tmp_path, **overrides):
    cfg = load_config(CPU_CONFIG, **overrides)
    return cfg.save(tmp_path / "my.yaml")


def test_good_config_passes(tmp_path):
    assert checks.check_config(_config(tmp_path)).lora.r == 32


@pytest.mark.parametrize("overrides, words", [
    ({"lora.r": 256}, "lora.r"),
    ({"lora.lora_alpha": 200}, "lora_alpha"),
    ({"train.learning_rate": 0.1}, "learning_rate"),
    ({"train.max_steps": 2}, "max_steps"),
    ({"train.assistant_only_loss": False}, "assistant_only_loss"),
])
def test_config_out_of_sensible_range_says_what_to_change(tmp_path, overrides, words):
    with pytest.raises(CheckFailed, match=words):
        checks.check_config(_config(tmp_path, **overrides))


def test_missing_or_invalid_config(tmp_path):
    with pytest.raises(CheckFailed, match="找不到配置文件"):
        checks.check_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora:\n  r: -1\n", encoding="utf-8")
    with pytest.raises(CheckFailed, match="lora.r"):
        checks.check_config(bad)


def _log(tmp_path, losses):
    rows = [{"step": i + 1, "loss": loss, "learning_rate": 1e-3, "memory_mb": 100.0} for i, loss in enumerate(losses)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_noisy_but_falling_loss_passes(tmp_path):
    _log(tmp_path, [5.0, 4.2, 4.8, 3.1, 3.9, 2.5, 3.0, 2.0, 2.6, 1.9])
    assert len(checks.check_train_log(tmp_path)) == 10


@pytest.mark.parametrize("losses, message", [
    ([3.0, 3.1, 2.9, 3.0, 3.05, 2.95, 3.0, 3.0], "只下降了"),
    ([3.0, 2.0, 1.0], "至少需要 5 步"),
    ([3.0, float("nan"), 2.0, 1.0, 0.5, 0.4], "NaN"),
])
def test_bad_logs_fail_with_advice(tmp_path, losses, message):
    _log(tmp_path, losses)
    with pytest.raises(CheckFailed, match=message):
        checks.check_train_log(tmp_path)


def test_unordered_or_missing_log(tmp_path):
    with pytest.raises(CheckFailed, match="找不到训练日志"):
        checks.check_train_log(tmp_path)
    rows = [{"step": s, "loss": 1.0} for s in (1, 3, 2, 4, 5)]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CheckFailed, match="递增"):
        checks.check_train_log(tmp_path)


def _adapter(tmp_path, r=16, saved_r=None, trained=True):
    load_config(CPU_CONFIG, **{"lora.r": r, "lora.lora_alpha": 2 * r}).save(tmp_path / "config.yaml")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    saved_r = saved_r or r
    (adapter / "adapter_config.json").write_text(json.dumps({"r": saved_r, "lora_alpha": 2 * r,
                                                             "target_modules": ["q_proj", "v_proj"]}))
    b = torch.ones(64, saved_r) if trained else torch.zeros(64, saved_r)
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(saved_r, 32),
               "base_model.model.layers.0.q_proj.lora_B.weight": b}, str(adapter / "adapter_model.safetensors"))


def test_consistent_trained_adapter_passes(tmp_path):
    _adapter(tmp_path)
    assert checks.check_adapter(tmp_path)["r"] == 16


def test_adapter_rank_must_match_config(tmp_path):
    _adapter(tmp_path, r=16, saved_r=8)
    with pytest.raises(CheckFailed, match="不一致"):
        checks.check_adapter(tmp_path)


def test_untrained_adapter_fails(tmp_path):
    _adapter(tmp_path, trained=False)
    with pytest.raises(CheckFailed, match="lora_B 全为 0"):
        checks.check_adapter(tmp_path)


def test_missing_adapter(tmp_path):
    with pytest.raises(CheckFailed, match="找不到 LoRA 适配器"):
        checks.check_adapter(tmp_path)


def test_statement_length_ignores_spaces_and_punctuation():
    assert checks.check_statement("目标" * 50) == 100
    with pytest.raises(CheckFailed, match="至少需要 80"):
        checks.check_statement("太短了。" + " " * 200 + "！" * 100)
    with pytest.raises(CheckFailed, match="占位"):
        checks.check_statement("YOUR ANSWER HERE")
    with pytest.raises(CheckFailed, match="精简"):
        checks.check_statement("字" * 500, max_chars=300)


def test_quiz_format():
    checks.check_quiz_format({"q1": "a", "q2": "B"}, questions=2)
    with pytest.raises(CheckFailed, match="q2"):
        checks.check_quiz_format({"q1": "A"}, questions=2)
    with pytest.raises(CheckFailed, match="不是"):
        checks.check_quiz_format({"q1": "E"}, questions=1)


DAY1_ANSWER = ("model: {name: gemma3-270m}\ndata: {train_file: data/faq_train.jsonl, eval_file: data/faq_test.jsonl}\n"
               "lora: {r: 16, lora_alpha: 32, lora_dropout: 0.0}\n"
               "train: {output_dir: runs/my_first_lora, max_steps: 60, learning_rate: 1.0e-3, assistant_only_loss: true}\n")


@pytest.mark.parametrize("change, words", [
    (("r: 16, lora_alpha: 32", "r: 64, lora_alpha: 128"), "lora.r = 64"),     # sensible for LoRA, not this exercise
    (("lora_alpha: 32", "lora_alpha: 16"), "lora.lora_alpha = 16"),
    (("lora_dropout: 0.0", "lora_dropout: 0.15"), "lora.lora_dropout"),
    (("max_steps: 60", "max_steps: 20"), "train.max_steps = 20"),
    (("1.0e-3", "3.0e-3"), "train.learning_rate"),
])
def test_the_exercise_ranges_are_enforced_from_the_table_the_notebook_shows(tmp_path, change, words):
    path = tmp_path / "my_lora_sft.yaml"
    path.write_text(DAY1_ANSWER, encoding="utf-8")
    assert checks.check_config(path, exercise="day1").lora.r == 16
    path.write_text(DAY1_ANSWER.replace(*change), encoding="utf-8")
    checks.check_config(path)  # in LoRA's sensible ranges ...
    with pytest.raises(CheckFailed, match=words):  # ... but not in the exercise's
        checks.check_config(path, exercise="day1")
    table = checks.exercise_table("day1")
    assert list(table["字段"]) == [rule.field for rule in checks.EXERCISES["day1"]]
    assert "8 到 32" in set(table["要求"]) and "2 × lora.r" in set(table["要求"])


def test_the_notebook_shows_the_exercise_table_and_states_no_numbers_of_its_own():
    import nbformat
    from conftest import ROOT

    cells = nbformat.read(ROOT / "day1" / "02_lora_training.ipynb", as_version=4).cells
    assert any('exercise_table("day1")' in c.source for c in cells if c.cell_type == "code")
    exercise = next(c.source for c in cells if c.source.startswith("## 第 4 步：写配置文件"))
    for stated in ("8–32", "1e-4", "2e-3", "至少 30", "0–0.1"):
        assert stated not in exercise, stated


def test_a_run_counts_only_for_the_config_it_was_trained_with(tmp_path, monkeypatch):
    from llmcourse.grading.cohort import write_run

    monkeypatch.chdir(tmp_path)
    config = tmp_path / "my_lora_sft.yaml"
    config.write_text(DAY1_ANSWER, encoding="utf-8")
    run = write_run(tmp_path / "runs" / "my_first_lora", config=config)  # max_steps 8 recorded as an override
    assert checks.run_config_problems(config, run) == []
    checks.check_config(config, exercise="day1", run_dir=run)
    checks.check_adapter(run, config_path=config)
    checks.check_train_log(run, config_path=config)
    config.write_text(DAY1_ANSWER.replace("r: 16, lora_alpha: 32", "r: 32, lora_alpha: 64"), encoding="utf-8")
    for check in (lambda: checks.check_config(config, exercise="day1", run_dir=run),
                  lambda: checks.check_adapter(run, config_path=config),
                  lambda: checks.check_train_log(run, config_path=config)):
        with pytest.raises(checks.ConfigMismatch, match="lora.r：提交的配置是 32，被评分的运行用的是 16"):
            check()
    config.write_text(DAY1_ANSWER.replace("1.0e-3", "2.0e-3"), encoding="utf-8")
    assert checks.run_config_problems(config, run) == ["train.learning_rate：提交的配置是 0.002，被评分的运行用的是 0.001"]
    # Only the parameters cell's overrides are allowed; anything else recorded in env.json is a mismatch.
    config.write_text(DAY1_ANSWER, encoding="utf-8")
    env = json.loads((run / "env.json").read_text(encoding="utf-8"))
    env["launch"]["overrides"]["lora.r"] = 16
    (run / "env.json").write_text(json.dumps(env), encoding="utf-8")
    assert checks.run_config_problems(config, run) == ["训练时覆盖了 lora.r（只允许覆盖 model.name, model.device, "
                                                       "train.max_steps, train.output_dir, data.max_samples）"]
    # A run without a config file of its own (trained elsewhere, or a default) is nobody's.
    assert checks.run_config_problems(config, write_run(tmp_path / "runs" / "other"))
