"""Reproduce the classic LoRA fine-tuning pitfalls on the stand-in, each next to its fix.

Usage::

    from llmcourse.notebooks.pitfalls import Lab, logged_points, vllm_lora_plan
    lab = Lab(cfg, out_dir="runs/troubleshooting", **{"train.max_steps": 15})  # cfg: Day 1 config.yaml
    lab.compare_training({"对照": {}, "学习率太低": {"train.learning_rate": 1e-6}})  # tiny runs + probe
    lab.template_mismatch(adapter_dir)     # the same questions in three prompt formats
    lab.adapter_vs_merged(adapter_dir)     # max |Δlogit| and greedy answers, merged in fp32 and bf16
    lab.memory_levers({"基线": {}, "批大小 1": {"train.per_device_train_batch_size": 1}})
    logged_points(log, logging_steps=10)   # what the Trainer would have logged (and plotted)
    vllm_lora_plan(cfg, adapter_dir)       # the --max-lora-rank an adapter needs

Tiny runs share one loaded base model: each puts a fresh LoRA on it with PEFT, trains with the
transformers ``Trainer`` (its ``TrainingArguments`` take the config's SFTConfig field names),
probes, and unloads the LoRA again, so a dozen runs cost one model load. Labels are built here
from the chat template, which makes "loss on the answer only" vs "on everything" one switch
(``train.assistant_only_loss``). The probe is the loss on the *answer tokens* of held-out
questions: a number that moves even when a few steps do not yet change the greedy answer.

Memory is measured around the training steps only, after one token has gone through the model (so
memory-mapped weights are already resident): on CPU the peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs`` after handing freed heap back with ``malloc_trim``), on CUDA torch's peak
allocation. A number that cannot be measured is reported as ``None``, never as 0.

Every result is saved as JSON in ``out_dir``; under nbgrader (``NBGRADER_EXECUTION`` set) the
saved results are read back instead of recomputed, as Day 1 does with training.

GPU-only demonstrations (Qwen3 thinking mode, vLLM serving an unmerged adapter, 4-bit loading)
check the lane themselves and, on a CPU, print what they skipped, why, and the code they would run.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmcourse.config import CourseConfig, build_config
from llmcourse.data.jsonl import ChatExample, load_chat_jsonl
from llmcourse.evaluation.scoring import keyfact_hits
from llmcourse.training.gpu_memory import estimate_training_memory
from llmcourse.env.lane import library_version, resolve_device
from llmcourse.env.models import get_model
from llmcourse.env.vllm_lane import VLLM_LORA_RANKS, lora_rank
from llmcourse.artifacts import ADAPTER_CONFIG, in_grading
from llmcourse.env.loading import apply_template, torch_dtype
from llmcourse.training.run import gradient_checkpointing, lora_config
from llmcourse.errors import InputError, RunMissing

# Prompt formats a learner ends up with by mistake: another model family's turn markers, or none.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TURN_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}")
FORMATS = {"course": "训练时的模板（正确）", "other": "别的模型家族的模板", "plain": "不用模板（纯文本）"}

# vllm.config.lora.MaxLoRARanks (vLLM 0.26+) and LoRAConfig.max_lora_rank's default.
VLLM_MAX_LORA_RANKS = VLLM_LORA_RANKS  # one list, in llmcourse.env.vllm_lane
VLLM_DEFAULT_MAX_LORA_RANK = 16

THINKING_CODE = """\
tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen3-8B")
on = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)   # 默认 enable_thinking=True
off = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
# vLLM：llm.chat(messages, params, chat_template_kwargs={"enable_thinking": False})
# OpenAI 接口：extra_body={"chat_template_kwargs": {"enable_thinking": False}}"""

VLLM_CODE = """\
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest
llm = LLM(model=基座模型, enable_lora=True, max_lora_rank={rank})
outputs = llm.chat(prompts, SamplingParams(temperature=0, max_tokens=64),
                   lora_request=LoRARequest("course-lora", 1, "{adapter}"))"""

FOUR_BIT_CODE = """\
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
model = AutoModelForCausalLM.from_pretrained(基座模型, quantization_config=quant, device_map={"": 0})
# 课程配置里只需：model.load_in_4bit: true"""


# ---------------------------------------------------------------- saved results


def saved_result(path: str | Path, compute: Callable[[], Any]) -> Any:
    """``compute()`` and save it as JSON; under nbgrader, read the saved result back instead."""
    path = Path(path)
    if in_grading():
        if not path.is_file():
            raise RunMissing(f"评分模式：没有找到已保存的结果 {path}；请在提交前完整运行本笔记本")
        print(f"评分模式：复用已保存的结果 {path}")
        return json.loads(path.read_text(encoding="utf-8"))
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def gpu_lane(what: str, code: str) -> bool:
    """True on a CUDA machine; otherwise say what is skipped and show the code a GPU would run."""
    if resolve_device("auto") == "cuda":
        return True
    print(f"本机没有 NVIDIA GPU：跳过「{what}」（它只能在 GPU 上运行）。在 GPU 上，这一步运行的是：\n\n{code}")
    return False


# ---------------------------------------------------------------- prompts, labels, batches


def render(tokenizer, cfg: CourseConfig, messages: list[dict], generation_prompt: bool, fmt: str = "course") -> str:
    """The prompt text in one of :data:`FORMATS`: the course's template, another family's, or none."""
    if fmt == "course":
        return apply_template(tokenizer, messages, cfg, generation_prompt)
    if fmt not in FORMATS:
        raise InputError(f"未知的提示格式 {fmt!r}；可选：{' | '.join(FORMATS)}")
    other = CHATML_TEMPLATE if get_model(cfg.model.name).chat_format != "chatml" else TURN_TEMPLATE
    template = other if fmt == "other" else PLAIN_TEMPLATE
    # tokenizer(text) would add the BOS token a hand-written prompt lacks; keep it, so only the markers differ.
    return (tokenizer.bos_token or "") + tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                               add_generation_prompt=generation_prompt)


def encode(tokenizer, cfg: CourseConfig, example: ChatExample, loss_on: str = "completion",
           fmt: str = "course", max_length: int | None = None) -> dict[str, list[int]]:
    """Token ids and labels of one example; tokens outside ``loss_on`` get label -100 (no loss).

    ``loss_on``: ``all`` (the whole conversation), ``completion`` (everything after the prompt:
    the answer and its end-of-turn marker, what ``assistant_only_loss`` trains on) or ``answer``
    (the answer text only: what the probes score).
    """
    prompt = render(tokenizer, cfg, example.prompt_messages, True, fmt)
    full = render(tokenizer, cfg, example.messages, False, fmt)
    if not full.startswith(prompt):
        raise InputError(f"第 {example.line} 行：对话模板渲染出的完整对话不以提示开头，无法只在回答上计算 loss")
    start = len(prompt)
    end = full.find(example.answer.strip(), start)
    end = len(full) if end < 0 else end + len(example.answer.strip())
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True,
                        truncation=max_length is not None, max_length=max_length)
    # A token that straddles the end of the answer (e.g. "。<" before a foreign end marker) is left out.
    keep = {"all": lambda s, e: True, "completion": lambda s, e: s >= start,
            "answer": lambda s, e: start <= s and e <= end}[loss_on]
    labels = [token if keep(s, e) else -100 for token, (s, e) in zip(encoded["input_ids"], encoded["offset_mapping"])]
    return {"input_ids": list(encoded["input_ids"]), "labels": labels}


def mask_preview(tokenizer, cfg: CourseConfig, example: ChatExample, loss_on: str = "completion") -> str:
    """The rendered conversation with the tokens that carry loss wrapped in 【】."""
    row = encode(tokenizer, cfg, example, loss_on)
    pieces, inside = [], False
    for token, label in zip(row["input_ids"], row["labels"]):
        if (label != -100) != inside:
            pieces.append("【" if not inside else "】")
            inside = not inside
        pieces.append(tokenizer.decode([token]))
    return "".join(pieces) + ("】" if inside else "")


class Collator:
    """Right-pads a list of :func:`encode` rows into tensors (to ``pad_to`` when given)."""

    def __init__(self, pad_id: int, pad_to: int | None = None):
        self.pad_id, self.pad_to = pad_id, pad_to

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = self.pad_to or max(len(r["input_ids"]) for r in rows)
        fill = [width - len(r["input_ids"]) for r in rows]
        return {"input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * n for r, n in zip(rows, fill)]),
                "labels": torch.tensor([r["labels"] + [-100] * n for r, n in zip(rows, fill)]),
                "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * n for r, n in zip(rows, fill)])}


def with_overrides(cfg: CourseConfig, overrides: dict[str, Any]) -> CourseConfig:
    """A copy of ``cfg`` with ``section.field`` overrides, validated like any config."""
    return build_config(cfg.to_dict(), overrides, source="覆盖参数") if overrides else cfg


def describe(overrides: dict[str, Any]) -> str:
    return "，".join(f"{key}={value}" for key, value in overrides.items()) or "（不改）"


# ---------------------------------------------------------------- memory measurement


def _proc_status(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        return None
    return None


def reset_peak_memory(device: str) -> float | None:
    """Start a peak measurement; return the memory in use now (MiB), or None where unmeasurable."""
    gc.collect()
    if device == "cuda":
        import torch
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the next peak starts low
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        return None
    return _proc_status("VmRSS")


def peak_memory(device: str) -> float | None:
    """Peak memory (MiB) since :func:`reset_peak_memory`: CUDA allocation or the process's VmHWM."""
    if device == "cuda":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    return _proc_status("VmHWM")


def figure_image(figure):
    """The figure, laid out, as a PNG the notebook can display."""
    from llmcourse.notebooks.display import figure_png

    figure.tight_layout()
    return figure_png(figure)


# ---------------------------------------------------------------- the lab


class Lab:
    """One base model, many tiny experiments. ``overrides`` apply to every experiment."""

    def __init__(self, cfg: CourseConfig, out_dir: str | Path = "runs/troubleshooting", probe_count: int = 4,
                 **overrides: Any):
        self.cfg = with_overrides(cfg, {k: v for k, v in overrides.items() if v is not None})
        self.out_dir = Path(out_dir)
        self.device = resolve_device(self.cfg.model.device)
        self.probe_count = probe_count
        self.results: dict[str, Any] = {}
        self._model = self._tokenizer = None

    # -- data and model

    @property
    def train_examples(self) -> list[ChatExample]:
        return load_chat_jsonl(self.cfg.data.train_file, self.cfg.data.max_samples)

    @property
    def probes(self) -> list[ChatExample]:
        """Held-out paraphrases of facts the tiny runs train on (training rows if there is no eval file)."""
        trained = self.train_examples
        if not self.cfg.data.eval_file:
            return trained[: self.probe_count]
        facts = {e.meta.get("fact_id") for e in trained}
        held_out = [e for e in load_chat_jsonl(self.cfg.data.eval_file) if e.meta.get("fact_id") in facts]
        return (held_out or trained)[: self.probe_count]

    def _load(self):
        if self._model is None:
            from llmcourse.env.models import guard_model_load
            guard_model_load(f"加载模型 {self.cfg.model.name}")
            from transformers import AutoModelForCausalLM

            from llmcourse.env.loading import resolve_model_path
            if self.device == "cpu" and self.cfg.train.num_threads:  # as train() does
                import torch
                torch.set_num_threads(self.cfg.train.num_threads)
            self._model = AutoModelForCausalLM.from_pretrained(
                resolve_model_path(self.cfg), dtype=torch_dtype(self.cfg, self.device)).to(self.device).eval()
        return self._model, self.tokenizer

    @property
    def tokenizer(self):
        """The course tokenizer (with its chat template); loading it does not load the model."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from llmcourse.env.loading import resolve_model_path, use_course_template
            self._tokenizer = use_course_template(AutoTokenizer.from_pretrained(resolve_model_path(self.cfg)), self.cfg)
        return self._tokenizer

    @contextlib.contextmanager
    def adapter(self, adapter_dir: str | Path):
        """The base model with a saved LoRA adapter on top; the adapter is taken off again afterwards."""
        from peft import PeftModel

        model, _ = self._load()
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
        try:
            yield peft_model
        finally:
            self._model = peft_model.unload()

    # -- probes

    def _batch(self, model, rows: list[dict]) -> dict:
        return {k: v.to(model.device) for k, v in Collator(self.tokenizer.pad_token_id)(rows).items()}

    def answer_loss(self, model, examples: list[ChatExample], fmt: str = "course") -> float:
        """Mean loss on the answer tokens of ``examples`` (lower: the model expects those answers)."""
        import torch

        batch = self._batch(model, [encode(self.tokenizer, self.cfg, e, "answer", fmt) for e in examples])
        with torch.inference_mode():
            return round(float(model(**batch).loss), 4)

    def greedy_answers(self, model, examples: list[ChatExample], fmt: str = "course") -> list[str]:
        import torch

        tokenizer = self.tokenizer
        tokenizer.padding_side = "left"
        texts = [render(tokenizer, self.cfg, e.prompt_messages, True, fmt) for e in examples]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        spec = get_model(self.cfg.model.name)
        stop = sorted({tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(s) for s in spec.stop_strings)} - {None})
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=self.cfg.infer.max_tokens, do_sample=False,
                                    eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
        new = output[:, encoded["input_ids"].shape[1]:]
        return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    def _probe(self, model, fmt: str = "course") -> dict[str, Any]:
        """Answer loss and greedy answers on the held-out probes; key facts hit over all of them."""
        probes = self.probes
        answers = self.greedy_answers(model, probes, fmt)
        hits = sum(keyfact_hits(a, e.key_facts) for a, e in zip(answers, probes))
        return {"answer_loss": self.answer_loss(model, probes, fmt), "answer": answers[0],
                "key_facts": f"{hits}/{sum(len(e.key_facts) for e in probes)}"}

    # -- tiny training runs

    def training_arguments(self, cfg: CourseConfig, output_dir: str | Path):
        """transformers ``TrainingArguments`` from the config (the field names are the same)."""
        from transformers import TrainingArguments

        t, half = cfg.train, torch_dtype(cfg, self.device)
        import torch
        return TrainingArguments(
            output_dir=str(output_dir), max_steps=t.max_steps, per_device_train_batch_size=t.per_device_train_batch_size,
            gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
            lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
            logging_steps=t.logging_steps, seed=t.seed, optim=t.optim,
            gradient_checkpointing=gradient_checkpointing(cfg, self.device),
            gradient_checkpointing_kwargs={"use_reentrant": False},  # the frozen embeddings need no grad
            bf16=self.device == "cuda" and half == torch.bfloat16, fp16=self.device == "cuda" and half == torch.float16,
            use_cpu=self.device == "cpu", save_strategy="no", report_to="none", disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0)

    def _trainer(self, cfg: CourseConfig, model, rows: list[dict], pad_to: int | None, output_dir: str):
        from peft import get_peft_model
        from transformers import PrinterCallback, ProgressCallback, Trainer, set_seed

        set_seed(cfg.train.seed)  # the LoRA A matrices are drawn here: same seed, same run
        peft_model = get_peft_model(model, lora_config(cfg))
        trainer = Trainer(model=peft_model, args=self.training_arguments(cfg, output_dir), train_dataset=rows,
                          data_collator=Collator(self.tokenizer.pad_token_id, pad_to))
        for noisy in (PrinterCallback, ProgressCallback):  # one summary line per run instead
            trainer.remove_callback(noisy)
        return trainer, peft_model

    def train_tiny(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Train a fresh LoRA with ``overrides`` on the shared base, probe it, take it off again."""
        cfg = with_overrides(self.cfg, overrides)
        model, tokenizer = self._load()
        loss_on = "completion" if cfg.train.assistant_only_loss else "all"
        rows = [encode(tokenizer, cfg, e, loss_on, max_length=cfg.train.max_length) for e in self.train_examples]
        with tempfile.TemporaryDirectory() as scratch:
            trainer, peft_model = self._trainer(cfg, model, rows, None, scratch)
            started = time.perf_counter()
            try:
                trainer.train()
                seconds = round(time.perf_counter() - started, 1)
                peft_model.eval()
                log = [{"step": h["step"], "loss": round(h["loss"], 4)} for h in trainer.state.log_history if "loss" in h]
                probe = self._probe(peft_model)
            finally:
                self._model = peft_model.unload()
                self._model.eval()
        print(f"{describe(overrides)}：{cfg.train.max_steps} 步，{seconds} 秒")
        return {"overrides": overrides, "steps": cfg.train.max_steps, "seconds": seconds, "log": log, **probe}

    def compare_training(self, variants: dict[str, dict[str, Any]]):
        """Base model vs one tiny run per variant (config overrides); returns a table."""
        def compute():
            model, _ = self._load()
            return {"base": self._probe(model), "variants": {name: self.train_tiny(o) for name, o in variants.items()}}

        result = self.results["training"] = saved_result(self.out_dir / "training_variants.json", compute)
        return training_table(result)

    # -- chat templates

    def template_mismatch(self, adapter_dir: str | Path):
        """The fine-tuned model asked in each prompt format: answer loss, answer, key facts."""
        def compute():
            first = self.probes[0].prompt_messages
            rows = []
            with self.adapter(adapter_dir) as model:
                for fmt, label in FORMATS.items():
                    probe = self._probe(model, fmt)
                    rows.append({"格式": label, "回答部分的 loss": probe["answer_loss"], "关键事实": probe["key_facts"],
                                 "第一个问题的回答": probe["answer"][:60],
                                 "提示结尾": render(self.tokenizer, self.cfg, first, True, fmt)[-40:]})
            return rows

        return _table(self.results.setdefault("template", saved_result(self.out_dir / "template_mismatch.json", compute)))

    # -- adapter vs merged

    def adapter_vs_merged(self, adapter_dir: str | Path):
        """Adapter on top vs ``merge_and_unload`` (kept in fp32, then cast to bf16): logits and answers."""
        def compute():
            import torch

            probes = self.probes
            rows = [encode(self.tokenizer, self.cfg, e, "answer") for e in probes]
            with self.adapter(adapter_dir) as model:
                batch = self._batch(model, rows)
                mask = batch["attention_mask"].bool()
                with torch.inference_mode():
                    reference = model(**batch).logits[mask].float()
                answers = self.greedy_answers(model, probes[:1])
                result = {"adapter": {"answers": answers}}
                merged = copy.deepcopy(model).merge_and_unload()
                for name, dtype in (("merged_fp32", torch.float32), ("merged_bf16", torch.bfloat16)):
                    merged.to(dtype)
                    with torch.inference_mode():
                        logits = merged(**batch).logits[mask].float()
                    merged_answers = self.greedy_answers(merged, probes[:1])
                    result[name] = {"max_abs_logit_diff": float((logits - reference).abs().max()),
                                    "top1_agreement": float((logits.argmax(-1) == reference.argmax(-1)).float().mean()),
                                    "same_answers": merged_answers == answers, "answers": merged_answers}
                del merged
            return result

        result = self.results["merge"] = saved_result(self.out_dir / "adapter_vs_merged.json", compute)
        return merge_table(result)

    # -- memory levers

    def _measure(self, cfg: CourseConfig, steps: int) -> dict[str, Any]:
        if cfg.model.load_in_4bit:
            if not gpu_lane("4-bit 加载（QLoRA）", FOUR_BIT_CODE):
                return {"status": "跳过：4-bit 需要 NVIDIA GPU（bitsandbytes CUDA）"}
            self._model = None  # free the 16-bit copy first, or the peak would count both
            gc.collect()
            model = _load_4bit(cfg)
        else:
            model = self._load()[0]
        cfg = with_overrides(cfg, {"train.max_steps": steps, "train.logging_steps": steps})
        length = cfg.train.max_length
        # Loss on every token: the memory is the same (all logits are computed anyway), and a short
        # max_length that cuts off the answer cannot leave a batch without labels.
        rows = [encode(self.tokenizer, cfg, e, "all", max_length=length) for e in self.train_examples]
        with tempfile.TemporaryDirectory() as scratch:
            trainer, peft_model = self._trainer(cfg, model, rows, length, scratch)
            _read_every_weight(peft_model)
            before = reset_peak_memory(self.device)
            started = time.perf_counter()
            try:
                trainer.train()
                seconds = (time.perf_counter() - started) / steps
                peak = peak_memory(self.device)
            finally:
                base = peft_model.unload()
                if hasattr(base, "gradient_checkpointing_disable"):
                    base.gradient_checkpointing_disable()
                if not cfg.model.load_in_4bit:
                    self._model = base.eval()
        del trainer, peft_model, base, model
        gc.collect()
        return {"status": "已测量", "peak_mb": None if peak is None else round(peak),
                "extra_mb": None if peak is None or before is None else round(peak - before),
                "seconds_per_step": round(seconds, 2)}

    def memory_levers(self, levers: dict[str, dict[str, Any]], steps: int = 1):
        """Peak memory of ``steps`` training steps per lever (config overrides), next to the estimate."""
        def compute():
            rows = []
            for name, overrides in levers.items():
                cfg = with_overrides(self.cfg, overrides)
                t = cfg.train
                estimate = estimate_training_memory(
                    cfg.model.name, r=cfg.lora.r, max_length=t.max_length, batch_size=t.per_device_train_batch_size,
                    load_in_4bit=cfg.model.load_in_4bit, gradient_checkpointing=gradient_checkpointing(cfg, self.device),
                    dtype="float32" if self.device == "cpu" else "bfloat16")
                rows.append({"lever": name, "overrides": overrides, "batch": t.per_device_train_batch_size,
                             "accumulation": t.gradient_accumulation_steps, "max_length": t.max_length,
                             "checkpointing": gradient_checkpointing(cfg, self.device), "r": cfg.lora.r,
                             # The LoRA weights exist before the measurement starts; a step adds their
                             # gradients and AdamW moments: 12 of the 16 bytes per LoRA parameter.
                             "estimated_extra_mb": round(1024 * (estimate["activations"] + estimate["logits"]
                                                                 + estimate["lora_and_optimizer"] * 12 / 16)),
                             **self._measure(cfg, steps)})
                print(f"{name}：{rows[-1]['status']}")
            return {"device": self.device, "memory_kind": "cuda_peak_allocated" if self.device == "cuda" else "cpu_peak_rss",
                    "rows": rows}

        result = self.results["memory"] = saved_result(self.out_dir / "memory_levers.json", compute)
        return memory_table(result)


def _read_every_weight(model) -> None:
    """One token through the model: weights loaded from a memory-mapped file count in RSS only once
    read, and the first step must not be charged for them."""
    import torch

    with torch.inference_mode():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=model.device))


def _load_4bit(cfg: CourseConfig):
    """The base model in 4-bit NF4 on the GPU (QLoRA), as ``model.load_in_4bit: true`` does."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from llmcourse.env.loading import resolve_model_path
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg), quantization_config=quant, device_map={"": 0})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(cfg.train.gradient_checkpointing))


# ---------------------------------------------------------------- tables and plots


def _table(rows):
    import pandas as pd
    return pd.DataFrame(rows)


def training_table(result: dict[str, Any]):
    """One row for the base model and one per tiny run: what changed, and whether the model did."""
    base = result["base"]
    rows = [{"设置": "基座（没训练）", "改了什么": "—", "步数": 0, "训练 loss 首→末": "—",
             "没见过的问题：回答 loss": base["answer_loss"], "比基座降低": "—", "关键事实": base["key_facts"],
             "回答": base["answer"][:60]}]
    for name, run in result["variants"].items():
        losses = [row["loss"] for row in run["log"]]
        drop = (base["answer_loss"] - run["answer_loss"]) / base["answer_loss"]
        rows.append({"设置": name, "改了什么": describe(run["overrides"]), "步数": run["steps"],
                     "训练 loss 首→末": f"{losses[0]:.2f} → {losses[-1]:.2f}" if losses else "（没有记录）",
                     "没见过的问题：回答 loss": run["answer_loss"], "比基座降低": f"{drop:.0%}",
                     "关键事实": run["key_facts"], "回答": run["answer"][:60]})
    return _table(rows)


def plot_training(result: dict[str, Any]):
    """The training loss of every tiny run on one chart."""
    from matplotlib.figure import Figure

    ax = Figure(figsize=(6, 3.5)).subplots()
    for name, run in result["variants"].items():
        # the legend names the override, in ASCII: no CJK font is assumed (see llmcourse.data.report)
        label = ", ".join(f"{key}={value}" for key, value in run["overrides"].items()) or "defaults"
        ax.plot([r["step"] for r in run["log"]], [r["loss"] for r in run["log"]], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return figure_image(ax.figure)


def merge_table(result: dict[str, Any]):
    rows = [{"版本": "适配器（未合并）", "最大 |Δlogit|": 0.0, "top-1 一致": 1.0, "贪心回答与适配器相同": True,
             "回答": result["adapter"]["answers"][0][:60]}]
    for name, label in (("merged_fp32", "合并后（fp32）"), ("merged_bf16", "合并后再转 bf16")):
        row = result[name]
        rows.append({"版本": label, "最大 |Δlogit|": round(row["max_abs_logit_diff"], 6),
                     "top-1 一致": round(row["top1_agreement"], 4), "贪心回答与适配器相同": row["same_answers"],
                     "回答": row["answers"][0][:60]})
    return _table(rows)


def memory_table(result: dict[str, Any]):
    kind = "峰值显存 MB" if result["device"] == "cuda" else "峰值内存（RSS）MB"
    rows = []
    for row in result["rows"]:
        rows.append({"设置": row["lever"], "batch": row["batch"], "累积": row["accumulation"],
                     "max_length": row["max_length"], "检查点": "开" if row["checkpointing"] else "关", "r": row["r"],
                     kind: row.get("peak_mb", "—"), "训练额外 MB（实测）": row.get("extra_mb", "—"),
                     "训练额外 MB（估算）": row["estimated_extra_mb"],
                     "每步秒数": row.get("seconds_per_step", "—"), "状态": row["status"]})
    return _table(rows).fillna("不可用")


# ---------------------------------------------------------------- loss plots


def logged_points(log: list[dict], logging_steps: int) -> list[dict]:
    """What the transformers Trainer logs with ``logging_steps`` from a per-step log.

    The Trainer logs at every multiple of ``logging_steps`` the mean loss since its last log,
    and nothing for a last, incomplete window: fewer steps than ``logging_steps``, no point at all.
    """
    if logging_steps < 1:
        raise InputError("logging_steps 必须大于或等于 1")
    by_step = {row["step"]: row["loss"] for row in log}
    points = []
    for end in range(logging_steps, max(by_step, default=0) + 1, logging_steps):
        window = [by_step[s] for s in range(end - logging_steps + 1, end + 1) if s in by_step]
        if window:
            points.append({"step": end, "loss": sum(window) / len(window)})
    return points


def plot_logging(log: list[dict], choices=(1, 10, 500)):
    """The same run as the Trainer would have plotted it with each ``logging_steps`` in ``choices``."""
    from matplotlib.figure import Figure

    axes = Figure(figsize=(3.2 * len(choices), 3)).subplots(1, len(choices), sharey=True)
    last = max((row["step"] for row in log), default=0)
    for ax, steps in zip(axes, choices):
        points = logged_points(log, steps)
        ax.plot([p["step"] for p in points], [p["loss"] for p in points], marker="o")
        ax.set_xlim(0, max(last, 1))
        ax.set_title(f"logging_steps={steps}: {len(points)} points")
        ax.set_xlabel("step")
        if not points:
            ax.text(0.5, 0.5, f"empty: {last} steps < {steps}", ha="center", transform=ax.transAxes)
    axes[0].set_ylabel("logged loss")
    return figure_image(axes[0].figure)


# ---------------------------------------------------------------- vLLM and Qwen3 (GPU)


def adapter_rank(adapter_dir: str | Path) -> int:
    config = Path(adapter_dir) / ADAPTER_CONFIG
    if not config.is_file():
        raise RunMissing(f"找不到 {config}：这不是一个 LoRA 适配器文件夹")
    return int(json.loads(config.read_text(encoding="utf-8"))["r"])


def vllm_max_lora_rank(r: int) -> int:
    """The smallest value vLLM accepts for ``--max-lora-rank`` that still holds rank ``r`` (:func:`llmcourse.env.vllm_lane.lora_rank`)."""
    return lora_rank(r)


def check_vllm_rank(r: int, max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK) -> None:
    """Raise what vLLM raises when an adapter is loaded with too small a ``max_lora_rank``."""
    if r > max_lora_rank:
        raise ValueError(f"LoRA rank {r} is greater than max_lora_rank {max_lora_rank}.")


def vllm_lora_plan(cfg: CourseConfig, adapter_dir: str | Path) -> dict[str, Any]:
    """How to serve this adapter unmerged with vLLM: its rank, the flag it needs, the command."""
    r = adapter_rank(adapter_dir)
    spec = get_model(cfg.model.name)
    if spec.is_stand_in:
        from llmcourse.env.prepare import prepared_dir
        base = str(prepared_dir(spec.name))
    else:
        base = spec.hub_id("modelscope" if cfg.model.source == "modelscope" else "hf")
    rank = vllm_max_lora_rank(r)
    command = (f"vllm serve {base} --enable-lora --lora-modules {cfg.serve.served_model_name}={Path(adapter_dir).resolve()} "
               f"--max-lora-rank {rank} --api-key $LLMCOURSE_API_KEY")
    return {"r": r, "max_lora_rank": rank, "default_is_enough": r <= VLLM_DEFAULT_MAX_LORA_RANK, "command": command}


def serve_with_vllm(cfg: CourseConfig, adapter_dir: str | Path, questions: list[str]) -> list[str] | None:
    """Answer ``questions`` with vLLM and the adapter unmerged (``LoRARequest``); GPU only."""
    if in_grading():
        print("评分模式：跳过 vLLM 演示（评分时不启动推理引擎）")
        return None
    rank = vllm_max_lora_rank(adapter_rank(adapter_dir))
    if not gpu_lane("用 vLLM 挂载未合并的适配器", VLLM_CODE.format(rank=rank, adapter=adapter_dir)):
        return None
    if library_version("vllm") is None:
        print("本机有 GPU 但没有安装 vLLM：pip install -e '.[gpu]'")
        return None
    from llmcourse.inference.engines import load_engine
    engine = load_engine(with_overrides(cfg, {"infer.max_lora_rank": rank}), adapter_dir, engine="vllm")
    answers = [g.text for g in engine.generate([[{"role": "user", "content": q}] for q in questions])]
    for question, answer in zip(questions, answers):
        print(f"问：{question}\nvLLM + 未合并的适配器（max_lora_rank={rank}）答：{answer}")
    return answers


def thinking_mode_prompts(model_name: str = "qwen3-8b", question: str = "退货期是多久？",
                          source: str = "hf") -> dict[str, str] | None:
    """Qwen3's prompt with thinking on (its default) and off; GPU lane only (needs the hub or ModelScope;
    ``source`` ``local`` falls back to the hub)."""
    if not gpu_lane("Qwen3 思考模式的对比", THINKING_CODE):
        return None
    from transformers import AutoTokenizer

    from llmcourse.env.loading import resolve_model_path
    if not get_model(model_name).thinking:
        raise InputError(f"{model_name} 没有思考模式；请用 qwen3-8b")
    cfg = build_config({"model": {"name": model_name, "source": "modelscope" if source == "modelscope" else "hf"}})
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg))
    messages = [{"role": "user", "content": question}]
    prompts = {f"enable_thinking={flag}": tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=flag) for flag in (True, False)}
    for label, prompt in prompts.items():
        print(f"{label}，提示的结尾：{prompt[-60:]!r}")
    return prompts
