"""Baseline for the training benchmark: TRL's quick-start, with TRL's own defaults.

Run in the plain-TRL lane:  .venv-trl/bin/python benchmarks/plain_trl_defaults.py CONFIG STEPS
Only what must match our runs is set (model, data, LoRA rank/targets, steps, batch, learning rate,
max length, seed), plus use_cpu, which TRL demands on a machine without a GPU; everything else
(full-sequence loss, gradient checkpointing, precision, padding) is TRL's default.
Prints one JSON line: training seconds (first step to last, model loading excluded) and each step's,
the process CPU time at the end of each step, real tokens
(not padding) and loss tokens (tokens with a label), TRL's resolved precision and checkpointing.
"""
import json
import sys
import tempfile
import time

from datasets import Dataset
from llmcourse.config import load_config
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.env.models import get_model
from llmcourse.training.run import TokenCounter
from llmcourse.env.loading import resolve_model_path
from peft import LoraConfig
from transformers import AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer


class Clock(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.ended = time.perf_counter()
        self.steps, self.cpu = [], []

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.steps.append(now - self.ended)
        self.cpu.append(time.process_time())
        self.ended = now


cfg = load_config(sys.argv[1])
steps = int(sys.argv[2])
examples = load_chat_jsonl(cfg.data.train_file, cfg.data.max_samples)
spec = get_model(cfg.model.name)
tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg))
tokenizer.chat_template = spec.chat_template or tokenizer.chat_template
clock, counter = Clock(), TokenCounter()
trainer = SFTTrainer(
    model=resolve_model_path(cfg), processing_class=tokenizer,
    train_dataset=Dataset.from_dict({"messages": [e.messages for e in examples]}),
    peft_config=LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.lora_alpha, target_modules=list(spec.target_modules),
                           task_type="CAUSAL_LM"),
    args=SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps, report_to="none",
                   per_device_train_batch_size=cfg.train.per_device_train_batch_size,
                   learning_rate=cfg.train.learning_rate, max_length=cfg.train.max_length,
                   save_strategy="no", seed=cfg.train.seed,
                   use_cpu=True),  # what the error message asks for on a machine without a GPU
    callbacks=[clock])
counter.watch(trainer)
trainer.train()
print(json.dumps({"seconds": clock.ended - clock.started, "steps": trainer.state.global_step,
                  "step_seconds": [round(t, 3) for t in clock.steps], "cpu_seconds": clock.cpu,
                  "real_tokens": counter.real_tokens, "loss_tokens": counter.answer_tokens,
                  "bf16": trainer.args.bf16, "gradient_checkpointing": trainer.args.gradient_checkpointing}))
