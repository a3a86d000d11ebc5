"""Baseline for the training benchmark: TRL's quick-start, with TRL's own defaults.

Run in the plain-TRL lane:  .venv-trl/bin/python benchmarks/plain_trl_defaults.py CONFIG STEPS
Only what must match our runs is set (model, data, LoRA rank/targets, steps, batch, learning rate,
max length), plus use_cpu, which TRL demands on a machine without a GPU; everything else
(full-sequence loss, gradient checkpointing, precision) is TRL's default.
Prints one JSON line: tokens seen, training seconds.
"""
import json
import sys
import tempfile

from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

from llmcourse.config import load_config
from llmcourse.data import load_chat_jsonl
from llmcourse.models import get_model
from llmcourse.train import resolve_model_path

cfg = load_config(sys.argv[1])
steps = int(sys.argv[2])
examples = load_chat_jsonl(cfg.data.train_file, cfg.data.max_samples)
spec = get_model(cfg.model.name)
from transformers import AutoTokenizer  # noqa: E402

tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg))
tokenizer.chat_template = spec.chat_template or tokenizer.chat_template
trainer = SFTTrainer(
    model=resolve_model_path(cfg), processing_class=tokenizer,
    train_dataset=Dataset.from_dict({"messages": [e.messages for e in examples]}),
    peft_config=LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.lora_alpha, target_modules=list(spec.target_modules),
                           task_type="CAUSAL_LM"),
    args=SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps, report_to="none",
                   per_device_train_batch_size=cfg.train.per_device_train_batch_size,
                   learning_rate=cfg.train.learning_rate, max_length=cfg.train.max_length,
                   include_num_input_tokens_seen=True, save_strategy="no", seed=cfg.train.seed,
                   use_cpu=True))  # what the error message asks for on a machine without a GPU
metrics = trainer.train().metrics
print(json.dumps({"tokens": trainer.state.num_input_tokens_seen, "seconds": metrics["train_runtime"],
                  "bf16": trainer.args.bf16, "gradient_checkpointing": trainer.args.gradient_checkpointing}))
