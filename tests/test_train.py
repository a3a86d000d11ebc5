import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from llmcourse.training import run as training
from llmcourse.config import load_config
from llmcourse.data.jsonl import DataError
from llmcourse.env.lane import library_version
from conftest import CPU_CONFIG, ROOT, run_cli

# The example config trains 8 rows a step; the tests keep 4 (half the time, the same code paths).
SMALL = {"train.max_steps": 4, "data.max_samples": 16, "train.save_steps": 2, "train.logging_steps": 1,
         "train.per_device_train_batch_size": 4}
LOG_FIELDS = {"step", "loss", "learning_rate", "grad_norm", "tokens_per_s", "memory_mb", "memory_kind", "elapsed_s"}


def test_engine_selection(monkeypatch):
    monkeypatch.setattr(training, "unsloth_installed", lambda: True)
    assert training.choose_engine("auto") == "unsloth"
    monkeypatch.setattr(training, "unsloth_installed", lambda: False)
    assert training.choose_engine("auto") == "trl"
    with pytest.raises(RuntimeError, match="没有安装 Unsloth"):
        training.choose_engine("unsloth")
    monkeypatch.setattr(training, "_trl_can_train_here", lambda: False)
    with pytest.raises(RuntimeError, match="Triton"):
        training.choose_engine("trl")


@pytest.mark.skipif(library_version("trl") != "1.15.0", reason="only the Unsloth lane pins TRL 1.15")
def test_trl_1_15_is_refused_on_cpu_with_a_way_out():
    with pytest.raises(RuntimeError, match=".venv-trl"):
        training.choose_engine("trl")


class FrozenBaseProbe(TrainerCallback):
    """Snapshot one base weight and one LoRA weight before training and compare after."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        named = dict(model.named_parameters())
        self.trainable = sorted(n for n, p in named.items() if p.requires_grad)
        self.base_name = next(n for n in named if "q_proj.base_layer.weight" in n)
        self.lora_name = next(n for n in named if "q_proj.lora_B" in n)
        self.before = {n: named[n].detach().clone() for n in (self.base_name, self.lora_name)}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        named = dict(model.named_parameters())
        self.after = {n: named[n].detach().clone() for n in self.before}


@pytest.fixture(scope="module")
def unsloth_run(tmp_path_factory):
    if library_version("unsloth") is None:
        pytest.skip("Unsloth lane only")
    out = tmp_path_factory.mktemp("unsloth_run")
    cfg = load_config(CPU_CONFIG, **SMALL, **{"train.output_dir": str(out), "train.engine": "unsloth"})
    probe, seen = FrozenBaseProbe(), []
    result = training.train(cfg, on_log=seen.append, callbacks=[probe])
    return result, probe, seen


def test_run_writes_every_artifact(unsloth_run):
    result, _, seen = unsloth_run
    out = result.output_dir
    resolved = load_config(out / "config.yaml")
    assert resolved.train.engine == "unsloth" and resolved.model.device == "cpu" and resolved.lora.r == 32
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4] and log == seen
    assert all(LOG_FIELDS <= set(row) for row in log)
    assert all(row["memory_kind"] == "cpu_rss" and row["memory_mb"] > 100 for row in log)
    assert all(row["tokens_per_s"] and row["tokens_per_s"] > 0 for row in log)
    evaluated = [row for row in log if "eval_loss" in row]  # 4 steps: points EVAL_MIN_GAP apart, and the last
    assert [row["step"] for row in evaluated] == [4] and all(row["eval_rows"] == training.EVAL_ROWS for row in evaluated)
    assert all(0 < row["eval_loss"] < 20 and row["eval_s"] > 0 for row in evaluated)
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 32 and adapter["lora_alpha"] == 64
    assert set(adapter["target_modules"]) == set(training.get_model("gemma3-270m").target_modules)
    from llmcourse.training.lora_math import adapter_sizes
    expected_mb = adapter_sizes(["gemma3-270m"], r=32)[0]["adapter_mb"]  # what Day 1 tells learners
    assert abs((out / "adapter" / "adapter_model.safetensors").stat().st_size / 1e6 - expected_mb) < 0.05 * expected_mb
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    env = json.loads((out / "env.json").read_text())
    assert env["engine"] == "unsloth" and env["versions"]["unsloth"]
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_adapter_changes_while_base_stays_frozen(unsloth_run):
    _, probe, _ = unsloth_run
    assert probe.trainable and all("lora_" in name for name in probe.trainable)
    assert (probe.before[probe.base_name] == probe.after[probe.base_name]).all()
    assert not (probe.before[probe.lora_name] == probe.after[probe.lora_name]).all()


def unsloth_answer_only_trainer(**overrides):
    """Our Unsloth trainer on 4 Day 1 rows, labels masked to the answers; (trainer, model, tokenizer, examples)."""
    from trl import SFTTrainer
    from unsloth.chat_templates import train_on_responses_only

    cfg = load_config(CPU_CONFIG, **{"data.max_samples": 4, **overrides})
    model, tokenizer = training._load_unsloth(cfg, training.resolve_model_path(cfg), "cpu")
    examples = training.load_chat_jsonl(cfg.data.train_file, 4)
    trainer = SFTTrainer(model=model, processing_class=tokenizer,
                         train_dataset=training.build_dataset(examples, "unsloth", tokenizer, cfg),
                         args=training._sft_args(cfg, "cpu", Path(cfg.train.output_dir), dataset_text_field="text"))
    spec = training.get_model(cfg.model.name)
    trainer = train_on_responses_only(trainer, instruction_part=spec.instruction_part, response_part=spec.response_part)
    return trainer, model, tokenizer, examples


def test_unsloth_loss_covers_the_answer_only():
    trainer, _, tokenizer, examples = unsloth_answer_only_trainer(**{"train.output_dir": "/tmp/llmcourse-mask-probe"})
    row = trainer.train_dataset[0]
    learned = tokenizer.decode([i for i, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert learned.startswith(examples[0].answer) and examples[0].question not in learned
    assert row["input_ids"].count(tokenizer.bos_token_id) == 1


@pytest.mark.slow
def test_plain_trl_engine_trains_and_masks_the_prompt(trl_python, tmp_path):
    done = run_cli("train", str(CPU_CONFIG), "train.engine=trl", "train.max_steps=3", "data.max_samples=12",
                   "train.per_device_train_batch_size=4", f"train.output_dir={tmp_path}", python=trl_python)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "env.json").read_text())["engine"] == "trl"
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3]
    evaluated = [row for row in log if "eval_loss" in row]  # the TRL lane scores the validation rows too
    assert [row["step"] for row in evaluated] == [3] and 0 < evaluated[0]["eval_loss"] < 20
    assert evaluated[0]["eval_rows"] == training.EVAL_ROWS
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    probe = subprocess.run([str(trl_python), str(Path(__file__).parent / "trl_mask_probe.py"), str(CPU_CONFIG)],
                           capture_output=True, text=True, timeout=600)
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["learned"].startswith(result["answer"]) and result["question"] not in result["learned"]


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    args = [sys.executable, "-m", "llmcourse.cli", "train", str(CPU_CONFIG), "train.max_steps=6",
            "train.save_steps=2", "data.max_samples=16", "train.per_device_train_batch_size=4",
            f"train.output_dir={tmp_path}"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 600
    while not (tmp_path / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert process.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "adapter").exists()

    resumed = subprocess.run(args + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "从检查点继续训练" in resumed.stdout
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    from peft import PeftConfig
    assert PeftConfig.from_pretrained(str(tmp_path / "adapter")).r == 32


def test_validation_points_and_rows_are_fixed_and_few(tmp_path):
    cfg = load_config(CPU_CONFIG)
    assert training.eval_interval(cfg, 135) == 20  # 80 steps: 20, 40, 60, 80
    assert training.eval_interval(load_config(CPU_CONFIG, **{"train.max_steps": 8}), 135) == 4  # 4 and 8
    assert training.eval_interval(load_config(CPU_CONFIG, **{"train.max_steps": 4, "train.logging_steps": 2}), 9) == 4
    assert training.eval_interval(load_config(CPU_CONFIG, **{"train.max_steps": 200, "train.logging_steps": 5}), 9) == 50
    assert training.eval_interval(load_config(CPU_CONFIG, **{"train.eval_steps": 0}), 135) == 0
    rows = training.evaluation_examples(cfg)
    assert len(rows) == training.EVAL_ROWS and rows == training.evaluation_examples(cfg)
    assert len({row.meta.get("fact_id") for row in rows}) == len(rows)  # spread over the file, not its first fact
    assert training.evaluation_examples(load_config(CPU_CONFIG, **{"data.eval_file": str(tmp_path / "none.jsonl")})) == []


def test_the_loss_plot_draws_the_validation_points(tmp_path):
    log = [{"step": s, "loss": 3 - s / 10} for s in range(1, 9)]
    for row in log[1::2]:
        row.update(eval_loss=3.5 - row["step"] / 20, eval_rows=8)
    ax = training.plot_loss(log, tmp_path / "curve.png")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["validation loss (8 rows)"].get_xdata()) == [2, 4, 6, 8]
    assert (tmp_path / "curve.png").stat().st_size > 5000


def test_model_location_per_source(tmp_path):
    cfg = load_config(CPU_CONFIG, **{"model.name": "qwen3-4b-instruct-2507", "model.source": "hf"})
    assert training.resolve_model_path(cfg) == "Qwen/Qwen3-4B-Instruct-2507"
    local = load_config(CPU_CONFIG, **{"model.name": "qwen3-8b", "model.source": "local"})
    with pytest.raises(ValueError, match="model.path"):
        training.resolve_model_path(local)
    given = load_config(CPU_CONFIG, **{"model.name": "qwen3-8b", "model.path": str(tmp_path)})
    assert training.resolve_model_path(given) == str(tmp_path)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_cpu_training_avoids_checkpointing_and_uses_bf16_only_where_native(monkeypatch, native_bf16):
    import torch

    from llmcourse.env import loading
    from llmcourse.env.lane import cpu_has_native_bf16
    if native_bf16 and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    monkeypatch.setenv("LLMCOURSE_CPU_BF16", "1" if native_bf16 else "0")
    cfg = load_config(CPU_CONFIG)
    args = training._sft_args(cfg, "cpu", Path("/tmp/cpu-args"))
    assert args.use_cpu and args.bf16 == native_bf16 and not args.fp16 and not args.gradient_checkpointing
    assert loading.training_dtype(cfg, "cpu") == (torch.bfloat16 if native_bf16 else torch.float32)
    assert loading.torch_dtype(cfg, "cpu") == torch.float32  # inference stays fp32
    fixed = load_config(CPU_CONFIG, **{"model.dtype": "float32"})
    assert not training._sft_args(fixed, "cpu", Path("/tmp/cpu-args")).bf16


def test_padding_free_batches_give_the_padded_loss():
    trainer, model, _, _ = unsloth_answer_only_trainer(**{"model.dtype": "float32",
                                                          "train.output_dir": "/tmp/llmcourse-packing-probe"})
    rows = [trainer.train_dataset[i] for i in range(4)]
    padded, packed = trainer.data_collator(rows), training.PaddingFreeCollator()(rows)
    real = sum(len(r["input_ids"]) for r in rows)
    assert tuple(packed["input_ids"].shape) == (1, real) and real <= padded["input_ids"].numel()
    assert "attention_mask" not in packed and packed["position_ids"][0, :3].tolist() == [0, 1, 2]
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"] != -100).sum())
    import torch
    model.eval()
    with torch.no_grad():
        losses = [float(trainer.compute_loss(model, dict(batch))) for batch in (padded, packed)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_bad_data_fails_before_any_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n', encoding="utf-8")
    cfg = load_config(CPU_CONFIG, **{"data.train_file": str(bad), "train.output_dir": str(tmp_path / "run")})
    with pytest.raises(DataError, match="bad.jsonl:1"):
        training.train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lean_lm_head_gives_the_same_loss_gradients_and_metrics(monkeypatch, dtype):
    """One batch through our trainer with the LM head Unsloth installs, then with llmcourse.training.lm_head."""
    import torch
    from trl.trainer import utils as trl_utils
    from llmcourse.env.lane import cpu_has_native_bf16
    from llmcourse.training import lm_head

    if dtype == "bfloat16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    trainer, model, _, _ = unsloth_answer_only_trainer(**{"model.dtype": dtype,
                                                          "train.output_dir": "/tmp/llmcourse-head-probe"})
    batch = training.PaddingFreeCollator()([trainer.train_dataset[i] for i in range(4)])
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", trl_utils._ChunkedLogProbFunction)
    figures = []
    for lean in (False, True):
        if lean:
            assert lm_head.use_lean_cpu_lm_head()
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.requires_grad])
        metrics = {name: trainer._metrics["train"][name][-1] for name in ("entropy", "mean_token_accuracy")}
        figures.append((loss.item(), grads, metrics))
    (loss_before, grads_before, metrics_before), (loss_lean, grads_lean, metrics_lean) = figures
    close = 1e-5 if dtype == "float32" else 1e-3
    assert loss_lean == pytest.approx(loss_before, rel=close)
    assert float((grads_lean - grads_before).norm() / grads_before.norm()) < (1e-4 if dtype == "float32" else 2e-2)
    # Unsloth's entropy sums in another order; ours is checked against the definition in test_lm_head.py
    assert metrics_lean["entropy"] == pytest.approx(metrics_before["entropy"], rel=1e-3)
    assert metrics_lean["mean_token_accuracy"] == pytest.approx(metrics_before["mean_token_accuracy"], abs=0.02)


def test_compiling_is_on_by_default_only_where_it_pays(tmp_path):
    cfg = load_config(CPU_CONFIG, **{"train.max_steps": 60})
    assert training.planned_steps(cfg, 1000) == 60
    assert not training._torch_compile(cfg, "unsloth", "cpu", 1000)
    long_run = load_config(CPU_CONFIG, **{"train.max_steps": training.COMPILE_MIN_STEPS})
    assert training._torch_compile(long_run, "unsloth", "cpu", 10)
    assert not training._torch_compile(long_run, "unsloth", "cuda", 10)  # Unsloth compiles on a GPU itself
    assert not training._torch_compile(long_run, "trl", "cpu", 10)
    by_epochs = load_config(CPU_CONFIG, **{"train.max_steps": -1, "train.num_train_epochs": 3,
                                           "train.per_device_train_batch_size": 4})
    assert training.planned_steps(by_epochs, 270) == 3 * 68
    assert training._torch_compile(by_epochs, "unsloth", "cpu", 270)
    assert not training._torch_compile(by_epochs, "unsloth", "cpu", 260)
    for setting in (True, False):
        forced = load_config(CPU_CONFIG, **{"train.torch_compile": setting})
        assert training._torch_compile(forced, "unsloth", "cpu", 4) is setting
        assert training._sft_args(forced, "cpu", tmp_path, torch_compile=setting).torch_compile is setting


class ModelProbe(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.compiled = sum(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


@pytest.mark.slow
def test_compiled_cpu_training(tmp_path):
    """train.torch_compile=true: Unsloth compiles the decoder layers and the run trains as usual."""
    if library_version("unsloth") is None:
        pytest.skip("Unsloth lane only")
    cfg = load_config(CPU_CONFIG, **{**SMALL, "train.max_steps": 3, "train.torch_compile": True,
                                     "train.output_dir": str(tmp_path), "train.engine": "unsloth"})
    probe = ModelProbe()
    result = training.train(cfg, callbacks=[probe])
    assert probe.compiled == training.get_model(cfg.model.name).shape.num_hidden_layers
    assert result.steps == 3 and all(row["loss"] > 0 for row in result.log)
    assert load_config(tmp_path / "config.yaml").train.torch_compile is True
    plain = load_config(CPU_CONFIG, **{**SMALL, "train.output_dir": str(tmp_path / "plain")})
    assert training._torch_compile(plain, "unsloth", "cpu", 16) is False


def test_a_run_started_while_grading_refuses_to_train_and_writes_nothing(tmp_path, monkeypatch):
    """nbgrader's validator runs the skip-when-grading cells too: starting a run there must not overwrite the
    learner's saved one."""
    from llmcourse.artifacts import GRADING_ENV, RecomputeRefused

    monkeypatch.setenv(GRADING_ENV, "1")
    cfg = load_config(CPU_CONFIG, **{"train.output_dir": str(tmp_path / "run")})
    with pytest.raises(RecomputeRefused, match="不重新训练"):
        training.TrainingRun.start(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_run_that_rank_0_writes(trl_python, tmp_path):
    """`torchrun --nproc_per_node 2 -m llmcourse.cli train` (gloo on the CPU): the same files as one process,
    one log row per step saying 2 processes, token counts summed over both, one summary line."""
    common = (str(CPU_CONFIG), "train.engine=trl", "train.max_steps=2", "data.max_samples=8", "train.logging_steps=1",
              "train.per_device_train_batch_size=4")  # 8 rows: 4 a step for one process, 4 + 4 for two
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_cli("train", *common, f"train.output_dir={one}", python=trl_python)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = Path(trl_python).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "llmcourse.cli", "train",
                           *common, f"train.output_dir={two}"], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("训练完成") == 1 and "2 个进程" in done.stdout, done.stdout

    def files(run):
        return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "checkpoints" not in p.parts)

    assert files(two) == files(one)
    assert json.loads((two / "env.json").read_text())["processes"] == 2
    assert json.loads((one / "env.json").read_text())["processes"] == 1
    logs = {run: [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()] for run in (one, two)}
    assert [row["step"] for row in logs[two]] == [1, 2] and {row["processes"] for row in logs[two]} == {2}
    # each step trains twice the rows: the counts of both processes are in the log, not rank 0's alone
    assert logs[two][0]["real_tokens_seen"] > 1.5 * logs[one][0]["real_tokens_seen"]
    assert logs[two][-1]["eval_rows"] == training.EVAL_ROWS and 0 < logs[two][-1]["eval_loss"] < 20
