"""Answer held-out questions with the base or the fine-tuned model and count key-fact hits.

Usage::

    from llmcourse.evaluate import load_for_generation, generate_answers, evaluate_run
    model, tokenizer = load_for_generation(cfg, adapter_dir="runs/day1/adapter")
    answers = generate_answers(model, tokenizer, cfg, [e.prompt_messages for e in examples])
    report = evaluate_run("runs/day1", include_base=True)   # writes eval.json / eval_generations.jsonl

An answer is *correct* when every key fact of its question appears verbatim in it.
Generation is greedy, batched with left padding, with the transformers engine on CPU or GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llmcourse.config import CourseConfig, load_config
from llmcourse.data import all_facts_present, keyfact_hits, load_chat_jsonl
from llmcourse.lane import resolve_device
from llmcourse.models import get_model
from llmcourse.train import _torch_dtype, apply_template, resolve_model_path, use_course_template


def load_for_generation(cfg: CourseConfig, adapter_dir: str | Path | None = None):
    """The base model (plus the LoRA adapter when given), in eval mode, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(cfg.model.device)
    path = resolve_model_path(cfg)
    tokenizer = use_course_template(AutoTokenizer.from_pretrained(adapter_dir or path), cfg)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(cfg, device)).to(device)
    if adapter_dir:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    return model.eval(), tokenizer


def generate_answers(model, tokenizer, cfg: CourseConfig, prompts: list[list[dict]],
                     batch_size: int | None = None, progress: bool = True) -> list[str]:
    """Greedy answers to chat prompts (lists of messages), ``cfg.infer.max_tokens`` new tokens at most."""
    import torch

    spec = get_model(cfg.model.name)
    stop_ids = [tokenizer.convert_tokens_to_ids(s) for s in spec.stop_strings]
    eos = sorted({tokenizer.eos_token_id, *stop_ids} - {None})
    batch_size = batch_size or cfg.infer.batch_size
    answers: list[str] = []
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc="生成回答", disable=not progress, leave=False):
        texts = [apply_template(tokenizer, m, cfg, generation_prompt=True) for m in prompts[start:start + batch_size]]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=cfg.infer.max_tokens, do_sample=False,
                                    eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def score(examples, answers: list[str]) -> dict[str, Any]:
    correct = [all_facts_present(a, e.key_facts) for e, a in zip(examples, answers)]
    hits = sum(keyfact_hits(a, e.key_facts) for e, a in zip(examples, answers))
    facts = sum(len(e.key_facts) for e in examples)
    return {"questions": len(examples), "correct": sum(correct), "accuracy": round(sum(correct) / len(examples), 4),
            "keyfact_hit_rate": round(hits / facts, 4) if facts else None}


def evaluate_run(run_dir: str | Path, include_base: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Evaluate a training run's adapter (and optionally the base model) on the config's eval file."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    if not cfg.data.eval_file:
        raise ValueError("配置里没有 data.eval_file，无法评估")
    examples = load_chat_jsonl(cfg.data.eval_file)[:limit]
    prompts = [e.prompt_messages for e in examples]
    variants = {"fine_tuned": run_dir / "adapter"}
    if include_base:
        variants = {"base": None, **variants}
    summary, rows = {}, {}
    for name, adapter in variants.items():
        model, tokenizer = load_for_generation(cfg, adapter)
        rows[name] = generate_answers(model, tokenizer, cfg, prompts)
        summary[name] = score(examples, rows[name])
        del model
    with (run_dir / "eval_generations.jsonl").open("w", encoding="utf-8") as handle:
        for index, example in enumerate(examples):
            record = {"id": example.meta.get("id"), "question": example.question, "key_facts": example.key_facts,
                      **{name: rows[name][index] for name in rows}}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    report = {"summary": summary, "eval_file": cfg.data.eval_file}
    (run_dir / "eval.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return report


def ask(cfg: CourseConfig, question: str, adapter_dir: str | Path | None = None, system: str | None = None) -> str:
    """One greedy answer to one question (base model, or with the adapter), for before/after demos."""
    model, tokenizer = load_for_generation(cfg, adapter_dir)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return generate_answers(model, tokenizer, cfg, [messages], batch_size=1, progress=False)[0]
