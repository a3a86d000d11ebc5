"""Run in the plain-TRL lane: print which tokens of one example TRL's SFTTrainer trains on (as JSON)."""
import json
import sys
from pathlib import Path

from trl import SFTTrainer

from llmcourse.training import run as training
from llmcourse.config import load_config

cfg = load_config(sys.argv[1], **{"data.max_samples": 2, "train.output_dir": "/tmp/llmcourse-trl-mask-probe"})
model, tokenizer = training._load_trl(cfg, training.resolve_model_path(cfg), "cpu")
examples = training.load_chat_jsonl(cfg.data.train_file, 2)
trainer = SFTTrainer(model=model, processing_class=tokenizer, peft_config=training.lora_config(cfg),
                     train_dataset=training.build_dataset(examples, "trl", tokenizer, cfg),
                     args=training._sft_args(cfg, "cpu", Path(cfg.train.output_dir), completion_only_loss=True))
batch = trainer.data_collator([trainer.train_dataset[0]])
ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
learned = tokenizer.decode([i for i, label in zip(ids, labels) if label != -100])
print(json.dumps({"learned": learned, "answer": examples[0].answer, "question": examples[0].question},
                 ensure_ascii=False))
