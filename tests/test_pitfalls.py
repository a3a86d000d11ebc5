"""The pitfall lab: labels and prompt formats, saved results, vLLM rank rules, and (slow) tiny runs
on the stand-in that must show the pitfalls they are meant to show."""
import json

import numpy as np
import pytest
from conftest import CPU_CONFIG, TRAIN_FILE
from llmcourse.env import lane
from llmcourse.notebooks import pitfalls
from llmcourse.config import load_config
from llmcourse.data.jsonl import load_chat_jsonl


@pytest.fixture(scope="module")
def cfg():
    return load_config(CPU_CONFIG, **{"infer.max_tokens": 4, "model.device": "cpu"})


@pytest.fixture(scope="module")
def tokenizer(cfg):
    return pitfalls.Lab(cfg).tokenizer


@pytest.fixture(scope="module")
def example():
    return load_chat_jsonl(TRAIN_FILE, 1)[0]


def test_logged_points_average_each_full_window_and_drop_the_tail():
    log = [{"step": s, "loss": float(s)} for s in range(1, 8)]
    assert pitfalls.logged_points(log, 3) == [{"step": 3, "loss": 2.0}, {"step": 6, "loss": 5.0}]
    assert len(pitfalls.logged_points(log, 1)) == 7
    assert pitfalls.logged_points(log, 500) == []  # the Trainer's default on a short run: an empty plot
    with pytest.raises(ValueError):
        pitfalls.logged_points(log, 0)


def test_encode_puts_the_loss_where_it_is_asked(tokenizer, cfg, example):
    completion = pitfalls.encode(tokenizer, cfg, example, "completion")
    answer = pitfalls.encode(tokenizer, cfg, example, "answer")
    everything = pitfalls.encode(tokenizer, cfg, example, "all")
    assert everything["labels"] == everything["input_ids"]
    trained = [t for t in answer["labels"] if t != -100]
    assert tokenizer.decode(trained) == example.answer
    tail = [t for t in completion["labels"] if t != -100]
    assert tokenizer.decode(tail).startswith(example.answer) and "<end_of_turn>" in tokenizer.decode(tail)
    first = completion["labels"].index(tail[0])
    assert all(label == -100 for label in completion["labels"][:first])  # nothing of the prompt is trained


def test_every_prompt_format_scores_the_same_answer_tokens(tokenizer, cfg, example):
    answers = {fmt: tokenizer.decode([t for t in pitfalls.encode(tokenizer, cfg, example, "answer", fmt)["labels"]
                                      if t != -100]) for fmt in pitfalls.FORMATS}
    assert answers["course"] == answers["plain"] == example.answer
    # Gemma's tokenizer merges the last "。" with ChatML's "<|im_end|>": that straddling token is left out.
    assert example.answer.startswith(answers["other"]) and len(answers["other"]) >= len(example.answer) - 2
    other = pitfalls.render(tokenizer, cfg, example.prompt_messages, True, "other")
    assert "<|im_start|>assistant" in other and "<start_of_turn>" not in other
    with pytest.raises(ValueError, match="未知的提示格式"):
        pitfalls.render(tokenizer, cfg, example.prompt_messages, True, "llama")


def test_mask_preview_brackets_exactly_the_trained_part(tokenizer, cfg, example):
    preview = pitfalls.mask_preview(tokenizer, cfg, example, "answer")
    assert preview.count("【") == 1 and f"【{example.answer}】" in preview
    assert pitfalls.mask_preview(tokenizer, cfg, example, "all").startswith("【")


def test_collator_pads_right_without_loss_on_padding():
    batch = pitfalls.Collator(pad_id=0, pad_to=5)([{"input_ids": [7, 8], "labels": [-100, 8]},
                                                   {"input_ids": [7, 8, 9], "labels": [7, 8, 9]}])
    assert batch["input_ids"].tolist() == [[7, 8, 0, 0, 0], [7, 8, 9, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 8, -100, -100, -100], [7, 8, 9, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]


def test_saved_results_are_reused_under_grading(tmp_path, monkeypatch):
    calls = []
    path = tmp_path / "result.json"
    assert pitfalls.saved_result(path, lambda: calls.append(1) or {"x": 1}) == {"x": 1}
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert pitfalls.saved_result(path, lambda: calls.append(1) or {"x": 2}) == {"x": 1}
    assert calls == [1]
    with pytest.raises(FileNotFoundError, match="评分模式"):
        pitfalls.saved_result(tmp_path / "missing.json", dict)


@pytest.mark.parametrize("rank,flag", [(1, 1), (4, 8), (16, 16), (17, 32), (48, 64), (512, 512)])
def test_max_lora_rank_rounds_up_to_a_value_vllm_accepts(rank, flag):
    assert pitfalls.vllm_max_lora_rank(rank) == flag


def test_too_large_ranks_fail_like_vllm():
    with pytest.raises(ValueError, match="超过了 vLLM 支持的最大值"):
        pitfalls.vllm_max_lora_rank(513)
    with pytest.raises(ValueError, match="LoRA rank 32 is greater than max_lora_rank 16"):
        pitfalls.check_vllm_rank(32)
    pitfalls.check_vllm_rank(16)
    pitfalls.check_vllm_rank(32, max_lora_rank=32)


def test_vllm_plan_reads_the_adapter_rank(tmp_path, cfg):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 32}))
    plan = pitfalls.vllm_lora_plan(cfg, tmp_path)
    assert plan["r"] == 32 and plan["max_lora_rank"] == 32 and not plan["default_is_enough"]
    assert "--enable-lora" in plan["command"] and "--max-lora-rank 32" in plan["command"]
    assert f"course-lora={tmp_path}" in plan["command"]
    with pytest.raises(FileNotFoundError, match="不是一个 LoRA 适配器"):
        pitfalls.adapter_rank(tmp_path / "nowhere")


def test_gpu_only_demonstrations_skip_on_a_cpu_and_say_so(tmp_path, cfg, monkeypatch, capsys):
    monkeypatch.setattr(lane, "cuda_available", lambda: False)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    assert pitfalls.thinking_mode_prompts() is None
    assert pitfalls.serve_with_vllm(cfg, tmp_path, ["退货期多久？"]) is None
    out = capsys.readouterr().out
    assert out.count("本机没有 NVIDIA GPU") == 2
    assert "enable_thinking=False" in out and "max_lora_rank=8" in out and "LoRARequest" in out


def test_peak_memory_sees_a_fresh_allocation_after_a_reset():
    before = pitfalls.reset_peak_memory("cpu")
    if before is None:
        pytest.skip("/proc/self/clear_refs is not writable here")
    block = np.ones(200 * 2**20 // 8)
    assert pitfalls.peak_memory("cpu") - before > 180
    del block
    again = pitfalls.reset_peak_memory("cpu")
    assert pitfalls.peak_memory("cpu") - again < 50  # the reset forgot the old peak


@pytest.fixture(scope="module")
def lab(cfg, tmp_path_factory):
    import torch
    threads = torch.get_num_threads()
    # One thread: on a shared 2-core machine two OpenMP threads mostly wait for each other.
    yield pitfalls.Lab(cfg, tmp_path_factory.mktemp("lab"), probe_count=2,
                       **{"train.max_steps": 4, "data.max_samples": 8, "train.per_device_train_batch_size": 2,
                          "train.num_threads": 1})
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def training(lab):
    table = lab.compare_training({"ok": {}, "too_low_lr": {"train.learning_rate": 1e-9}})
    return table, json.loads((lab.out_dir / "training_variants.json").read_text())


@pytest.mark.slow
def test_tiny_runs_show_the_pitfalls_and_leave_the_base_clean(lab, training):
    table, result = training
    base, runs = result["base"]["answer_loss"], result["variants"]
    assert len(table) == 3 and set(runs) == {"ok", "too_low_lr"}
    assert runs["ok"]["answer_loss"] < 0.8 * base  # 4 steps at lr 1e-3 move the held-out answers
    assert abs(runs["too_low_lr"]["answer_loss"] - base) < 0.01  # trained, yet unchanged
    assert [row["step"] for row in runs["ok"]["log"]] == [1, 2, 3, 4]
    assert not any("lora" in name for name, _ in lab._model.named_modules())


@pytest.mark.slow
def test_logged_points_match_what_the_trainer_logs(lab, training):
    every_step = training[1]["variants"]["ok"]["log"]  # the same run, logged at every step
    every_other = lab.train_tiny({"train.max_steps": 4, "train.logging_steps": 2})["log"]
    expected = pitfalls.logged_points(every_step, 2)
    assert [p["step"] for p in expected] == [row["step"] for row in every_other] == [2, 4]
    assert np.allclose([p["loss"] for p in expected], [row["loss"] for row in every_other], atol=2e-3)


@pytest.fixture(scope="module")
def random_adapter(lab, tmp_path_factory):
    """An adapter with non-zero B (so merging changes the weights), saved like a trained one."""
    from peft import LoraConfig, get_peft_model
    folder = tmp_path_factory.mktemp("adapter")
    model, _ = lab._load()
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(folder)
    lab._model = peft_model.unload()
    return folder


@pytest.mark.slow
def test_merged_fp32_agrees_with_the_adapter_and_bf16_does_not_exactly(lab, random_adapter):
    table = lab.adapter_vs_merged(random_adapter)
    result = lab.results["merge"]
    assert result["merged_fp32"]["max_abs_logit_diff"] < 1e-2 and result["merged_fp32"]["same_answers"]
    assert result["merged_bf16"]["max_abs_logit_diff"] > 10 * result["merged_fp32"]["max_abs_logit_diff"]
    assert list(table["版本"]) == ["适配器（未合并）", "合并后（fp32）", "合并后再转 bf16"]


@pytest.mark.slow
def test_template_mismatch_scores_every_format(lab, random_adapter):
    table = lab.template_mismatch(random_adapter)
    assert list(table["格式"]) == list(pitfalls.FORMATS.values())
    assert (table["回答部分的 loss"] > 0).all()
    assert table["提示结尾"].iloc[0].endswith("<start_of_turn>model\n")


@pytest.mark.slow
def test_memory_levers_measure_batch_size_and_skip_4bit_on_cpu(lab):
    base = {"train.per_device_train_batch_size": 2, "train.max_length": 64}
    table = lab.memory_levers({"base": base, "batch 1": {**base, "train.per_device_train_batch_size": 1},
                               "4-bit": {**base, "model.load_in_4bit": True}})
    rows = {row["lever"]: row for row in lab.results["memory"]["rows"]}
    assert rows["base"]["extra_mb"] > rows["batch 1"]["extra_mb"] > 0
    assert rows["4-bit"]["status"].startswith("跳过") and "peak_mb" not in rows["4-bit"]
    assert len(table) == 3
