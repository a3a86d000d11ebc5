"""LoRA supervised fine-tuning with Unsloth or plain PEFT + TRL, on CPU or GPU.

Usage::

    llmcourse train day1/configs/gemma3-270m_lora_sft.yaml train.max_steps=20 [--resume]

    from llmcourse.config import load_config
    from llmcourse.training.run import train
    result = train(load_config("day1/configs/gemma3-270m_lora_sft.yaml"), on_log=print)

``train.engine``: ``unsloth`` = ``FastLanguageModel`` + TRL ``SFTTrainer`` (Unsloth has a CPU
mode); ``trl`` = ``AutoModelForCausalLM`` + PEFT ``LoraConfig`` + TRL ``SFTTrainer``;
``auto`` = Unsloth when installed, else TRL.

On a CPU the Unsloth engine, by default, computes in bf16 where the CPU has it natively, joins each
batch's rows without padding (:class:`PaddingFreeCollator`), scores the answers through a lean LM
head (:mod:`llmcourse.training.lm_head`) and, in runs of at least ``COMPILE_MIN_STEPS`` steps, compiles its
decoder layers (``train.torch_compile``). ``make bench`` measures what each of these is worth.
On every lane SFTTrainer prepares the datasets without ``datasets``' fingerprint hashing
(:func:`unhashed_datasets`: ~3 s a dataset on 2 cores, which paid for the validation curve below).

Every run writes into ``train.output_dir`` (the artifact contract graders and later steps read):

==================  =============================================================
``config.yaml``     the resolved config (absolute paths, engine and device filled in)
``train_log.jsonl`` one line per logged step: step, loss, learning_rate, grad_norm,
                    tokens_per_s, memory_mb, memory_kind, elapsed_s; at the evaluation
                    points also eval_loss, eval_rows and eval_s (see below)
``adapter/``        the LoRA adapter (PEFT format) and the tokenizer
``loss_curve.png``  the training loss and, where evaluated, the validation loss
``env.json``        versions, device, engine, hardware; ``launch``: the config file and overrides
``checkpoints/``    periodic checkpoints; ``resume=True`` continues from the last one
==================  =============================================================

Validation loss: when ``data.eval_file`` exists, a fixed subset of it (``EVAL_ROWS`` rows spread over
the file) is scored with the training loss (answer tokens only) at about ``EVAL_POINTS`` logged steps
of the run (``train.eval_steps`` sets the interval; 0 turns it off). Its seconds are kept out of
``elapsed_s`` and ``tokens_per_s`` (which measure training) and logged as ``eval_s``.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# in_grading and read_train_log are re-exported: released notebooks import them from here.
from llmcourse.artifacts import (ADAPTER_CONFIG, ADAPTER_DIR, CHECKPOINT_DIR, LOSS_CURVE, RUN_CONFIG, RUN_ENV,
                                 TRAIN_LOG, in_grading, read_train_log, reuse_or_compute)  # noqa: F401
from llmcourse.config import CourseConfig, load_config
from llmcourse.data.jsonl import ChatExample, load_chat_jsonl
from llmcourse.env.lane import environment_report, library_version, resolve_device, unsloth_installed
# apply_template and resolve_model_path are re-exported: notebooks released earlier import them from here.
from llmcourse.env.loading import apply_template, resolve_model_path, training_dtype, use_course_template
from llmcourse.env.models import get_model, guard_model_load

# The validation curve: this many rows of data.eval_file, scored at about this many points of a run.
# Small on purpose: one forward pass of 8 rows costs about a training step on the CPU stand-in.
# Points at least EVAL_MIN_GAP steps apart, so Day 1's 8-step CI run scores 2 points (steps 4 and 8, ~6 % of
# its time on 2 cores) and the 60-step run 4 (15, 30, 45, 60; ~4 %).
EVAL_ROWS = 8
EVAL_POINTS = 4
EVAL_MIN_GAP = 4


@dataclass
class TrainResult:
    output_dir: Path
    engine: str
    device: str
    steps: int
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / ADAPTER_DIR

    @property
    def losses(self) -> list[float]:
        return [row["loss"] for row in self.log if "loss" in row]


def choose_engine(requested: str) -> str:
    """``auto`` -> ``unsloth`` if it is installed, else ``trl``; an unavailable choice is an error."""
    if requested == "auto":
        return "unsloth" if unsloth_installed() else "trl"
    if requested == "unsloth" and not unsloth_installed():
        raise RuntimeError("train.engine: unsloth，但本环境没有安装 Unsloth；改用 engine: trl 或 auto，"
                           "或 pip install -e .[unsloth]")
    if requested == "trl" and not _trl_can_train_here():
        raise RuntimeError(f"TRL {library_version('trl')} 的 SFTTrainer 只能在 GPU 上计算损失（Triton 内核）；"
                           "在 CPU 上请用 engine: unsloth，或在装有 TRL ≥ 1.16 的环境（make 建的 .venv-trl）中运行")
    return requested


def _trl_can_train_here() -> bool:
    from packaging.version import Version
    version = library_version("trl")
    return version is not None and (Version(version) >= Version("1.16") or resolve_device("auto") == "cuda")








def _memory_mb(device: str) -> tuple[float | None, str]:
    if device == "cuda":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_peak_allocated"
    import psutil
    return psutil.Process().memory_info().rss / 2**20, "cpu_rss"


class TokenCounter:
    """Tokens the optimiser has seen since this process started: real (not padding) and answer
    tokens (those with a label, i.e. the ones the loss is computed on)."""

    def __init__(self):
        self.real_tokens = self.answer_tokens = 0

    def watch(self, trainer) -> None:
        """Count each batch as ``trainer.training_step`` consumes it (the data loader reads ahead)."""
        step = trainer.training_step

        def counted_training_step(model, inputs, *args, **kwargs):
            mask = inputs.get("attention_mask")
            self.real_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            if inputs.get("labels") is not None:
                self.answer_tokens += int((inputs["labels"][..., 1:] != -100).sum())
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted_training_step


def _make_log_callback(log_path: Path, device: str, on_log: Callable[[dict], None] | None,
                       counter: TokenCounter | None = None):
    from transformers import TrainerCallback

    counter = counter or TokenCounter()

    class JsonlLogCallback(TrainerCallback):
        """Append each logged step to train_log.jsonl (and hand it to ``on_log``).

        Set ``evaluate`` (a function returning the validation loss) and ``eval_at`` (step -> bool)
        to add ``eval_loss`` to the rows of those steps.
        """

        evaluate: Callable[[], float | None] | None = None
        eval_at: Callable[[int], bool] = staticmethod(lambda step: False)
        eval_rows: int = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = self.last_time = time.perf_counter()
            self.paused = 0.0  # evaluation seconds, kept out of the training clock
            self.last_tokens = state.num_input_tokens_seen or 0
            self.last_answer = counter.answer_tokens

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen
            rate = answer_rate = None
            if now > self.last_time:
                if tokens:
                    rate = round((tokens - self.last_tokens) / (now - self.last_time), 1)
                answer_rate = round((counter.answer_tokens - self.last_answer) / (now - self.last_time), 1)
            self.last_time, self.last_tokens, self.last_answer = now, tokens, counter.answer_tokens
            memory, kind = _memory_mb(device)
            record = {"step": state.global_step, "loss": round(float(logs["loss"]), 5),
                      "learning_rate": logs.get("learning_rate"), "grad_norm": _float(logs.get("grad_norm")),
                      "tokens_seen": tokens, "tokens_per_s": rate,
                      "real_tokens_seen": counter.real_tokens, "answer_tokens_seen": counter.answer_tokens,
                      "answer_tokens_per_s": answer_rate,
                      "memory_mb": None if memory is None else round(memory, 1), "memory_kind": kind,
                      "elapsed_s": round(now - self.started - self.paused, 2), "epoch": logs.get("epoch")}
            if self.evaluate is not None and self.eval_at(state.global_step):
                loss = self.evaluate()
                seconds = time.perf_counter() - now
                if loss is not None and math.isfinite(loss):
                    record["eval_loss"], record["eval_rows"] = round(loss, 5), self.eval_rows
                    record["eval_s"] = round(seconds, 2)
                self.paused += seconds
                self.last_time += seconds
            with log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            if on_log:
                on_log(record)

    return JsonlLogCallback()


def _float(value: Any) -> float | None:
    try:
        return None if value is None else round(float(value), 5)
    except (TypeError, ValueError):
        return None


def gradient_checkpointing(cfg: CourseConfig, device: str) -> bool:
    """As configured; by default on for GPU (saves memory) and off for CPU (it only costs time)."""
    setting = cfg.train.gradient_checkpointing
    return setting if setting is not None else device == "cuda"


# Below this many steps compiling costs more than it saves on a CPU (make bench: the first step takes
# ~30-45 s longer, each later one ~0.2-0.3 s less for the course's model and batch).
COMPILE_MIN_STEPS = 200


def planned_steps(cfg: CourseConfig, rows: int) -> int:
    """Optimizer steps the run will take over ``rows`` training rows."""
    t = cfg.train
    if t.max_steps > 0:
        return t.max_steps
    per_epoch = -(-rows // (t.per_device_train_batch_size * t.gradient_accumulation_steps))
    return int(per_epoch * t.num_train_epochs)


def eval_interval(cfg: CourseConfig, rows: int) -> int:
    """Steps between validation-loss points: ``train.eval_steps``, else about ``EVAL_POINTS`` a run and at
    least ``EVAL_MIN_GAP`` steps apart, on logged steps (a multiple of ``logging_steps``); 0 = none. The last
    step is always a point."""
    t = cfg.train
    if t.eval_steps is not None:
        return t.eval_steps
    per_point = planned_steps(cfg, rows) / EVAL_POINTS / t.logging_steps
    return t.logging_steps * max(1, round(per_point), -(-EVAL_MIN_GAP // t.logging_steps))


def evaluation_examples(cfg: CourseConfig) -> list[ChatExample]:
    """The fixed validation subset: ``EVAL_ROWS`` rows spread evenly over ``data.eval_file``
    (every topic, not just the first), the same in every run; none without an eval file."""
    path = cfg.data.eval_file
    if not path or cfg.train.eval_steps == 0:
        return []
    if not Path(path).is_file():
        print(f"没有找到 data.eval_file（{path}）：这次训练不画验证集 loss")
        return []
    rows = load_chat_jsonl(path)
    return rows[::max(1, len(rows) // EVAL_ROWS)][:EVAL_ROWS]


def evaluation_loss(trainer, batches: list | None = None) -> float | None:
    """The training loss (answer tokens only, same collator and loss code) on ``trainer.eval_dataset``
    (or on ``batches`` already collated from it), without gradients, as a mean over its answer tokens."""
    import torch

    model = trainer.model
    training = model.training
    model.eval()
    total = tokens = 0.0
    try:
        with torch.no_grad():
            for batch in batches if batches is not None else trainer.get_eval_dataloader():
                batch = trainer._prepare_inputs(batch)
                count = int((batch["labels"][..., 1:] != -100).sum())
                total += float(trainer.compute_loss(model, batch)) * count
                tokens += count
    finally:
        model.train(training)
    return total / tokens if tokens else None


def _torch_compile(cfg: CourseConfig, engine: str, device: str, rows: int) -> bool:
    """As configured; by default on for Unsloth on a CPU when the run is long enough to pay for compiling."""
    setting = cfg.train.torch_compile
    if setting is not None:
        return setting
    return engine == "unsloth" and device == "cpu" and planned_steps(cfg, rows) >= COMPILE_MIN_STEPS


def _sft_args(cfg: CourseConfig, device: str, output_dir: Path, **extra):
    from trl import SFTConfig

    t = cfg.train
    checkpointing = gradient_checkpointing(cfg, device)
    half = training_dtype(cfg, device)
    import torch
    return SFTConfig(
        output_dir=str(output_dir / CHECKPOINT_DIR), max_steps=t.max_steps, num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        max_length=t.max_length, logging_steps=t.logging_steps, save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, seed=t.seed, optim=t.optim,
        gradient_checkpointing=checkpointing,
        # bf16 autocast also on a CPU when asked for (native on AMX / AVX512-BF16 CPUs); fp16 only on a GPU.
        bf16=half == torch.bfloat16, fp16=device == "cuda" and half == torch.float16,
        use_cpu=device == "cpu", report_to="none", packing=False, dataloader_num_workers=0,
        include_num_input_tokens_seen=True, disable_tqdm=False, **extra)


def _prepare_output(cfg: CourseConfig, resume: bool) -> tuple[Path, str | None]:
    """Create the run folder; on resume find the last checkpoint and trim the log to it."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / TRAIN_LOG
    checkpoint = None
    if resume and (out / CHECKPOINT_DIR).is_dir():
        checkpoint = get_last_checkpoint(str(out / CHECKPOINT_DIR))
    if checkpoint:
        done = int(Path(checkpoint).name.split("-")[-1])
        kept = [line for line in log_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= done] if log_path.exists() else []
        log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        print(f"从检查点继续训练：{checkpoint}（已完成 {done} 步）")
    else:
        if resume:
            print("没有找到检查点，从头开始训练")
        log_path.write_text("", encoding="utf-8")
    return out, checkpoint


def _load_unsloth(cfg: CourseConfig, model_path: str, device: str, compile_layers: bool = False):
    """``compile_layers``: on a CPU, Unsloth compiles each decoder layer (torch.compile, Inductor C++);
    where no C++ compiler is found it says so and trains eagerly. On a GPU Unsloth decides itself."""
    from unsloth import FastLanguageModel

    spec = get_model(cfg.model.name)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path, max_seq_length=cfg.model.max_seq_length, dtype=training_dtype(cfg, device),
        load_in_4bit=cfg.model.load_in_4bit, full_finetuning=False)
    lora = cfg.lora
    checkpointing = gradient_checkpointing(cfg, device)
    # Unsloth reads its CPU compile switch from the environment when it prepares the LoRA model.
    previous = os.environ.get("UNSLOTH_CPU_COMPILE")
    if device == "cpu":
        os.environ["UNSLOTH_CPU_COMPILE"] = "1" if compile_layers else "0"
    try:
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias=lora.bias,
            target_modules=lora.target_modules or list(spec.target_modules), use_rslora=lora.use_rslora,
            use_gradient_checkpointing="unsloth" if checkpointing else False, random_state=cfg.train.seed)
    finally:
        if previous is None:
            os.environ.pop("UNSLOTH_CPU_COMPILE", None)
        else:
            os.environ["UNSLOTH_CPU_COMPILE"] = previous
    return model, use_course_template(tokenizer, cfg)


def _load_trl(cfg: CourseConfig, model_path: str, device: str, compile_layers: bool = False):
    """``compile_layers`` is handled by the trainer here (``SFTConfig.torch_compile``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=training_dtype(cfg, device),
                                                 device_map="auto" if device == "cuda" else None)
    return model, use_course_template(tokenizer, cfg)


def lora_config(cfg: CourseConfig):
    """The PEFT ``LoraConfig`` the config describes (field names are PEFT's)."""
    from peft import LoraConfig

    lora = cfg.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias=lora.bias,
                      target_modules=lora.target_modules or list(get_model(cfg.model.name).target_modules),
                      use_rslora=lora.use_rslora, task_type="CAUSAL_LM")






class PaddingFreeCollator:
    """Join a batch's tokenized rows into one row whose ``position_ids`` restart at each row: no padding.

    transformers turns restarting position ids (with no attention mask) into a block-diagonal causal
    mask, for SDPA and eager attention alike, so rows never see each other and the loss is the padded
    batch's (``tests/test_train.py`` checks it). Each row's first label is ignored, so no row learns
    to predict the next row's first token. Unsloth's CPU mode turns TRL's ``padding_free`` off (it
    predates that mask), hence this collator.
    """

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids, labels, positions = [], [], []
        for row in features:
            row_labels = list(row["labels"])
            row_labels[0] = -100
            ids += list(row["input_ids"])
            labels += row_labels
            positions += range(len(row["input_ids"]))
        return {name: torch.tensor([values], dtype=torch.long)
                for name, values in (("input_ids", ids), ("labels", labels), ("position_ids", positions))}


def _padding_free(cfg: CourseConfig, engine: str, device: str) -> bool:
    """As configured; by default on for Unsloth on CPU, where padding is pure waste (measured in make bench)."""
    setting = cfg.train.padding_free
    return setting if setting is not None else engine == "unsloth" and device == "cpu"


def build_dataset(examples: list[ChatExample], engine: str, tokenizer, cfg: CourseConfig):
    """Unsloth: chat-formatted ``text`` (answers unmasked later); TRL: ``prompt``/``completion``."""
    from datasets import Dataset

    if engine == "unsloth":
        texts = [apply_template(tokenizer, e.messages, cfg) for e in examples]
        if tokenizer.bos_token and all(t.startswith(tokenizer.bos_token) for t in texts):
            # SFTTrainer adds BOS when it tokenizes; the template must not add a second one.
            texts = [t[len(tokenizer.bos_token):] for t in texts]
        return Dataset.from_dict({"text": texts})
    return Dataset.from_dict({"prompt": [e.prompt_messages for e in examples],
                              "completion": [[e.messages[-1]] for e in examples]})


@contextmanager
def unhashed_datasets():
    """Skip ``datasets``' fingerprint hashing while SFTTrainer prepares our datasets.

    Every ``map`` fingerprints its arguments by pickling them, here the tokenizer (Gemma's 262k
    vocabulary): about 0.35 s a map and 3.5 s a dataset on 2 cores, more than the tokenizing. The
    fingerprint only names cache files, and in-memory datasets (ours: ``Dataset.from_dict``) write
    none, so a random fingerprint (what ``datasets`` itself uses when hashing fails) changes nothing else.
    """
    from datasets import arrow_dataset, fingerprint

    original = fingerprint.update_fingerprint
    unhashed = lambda *args, **kwargs: fingerprint.generate_random_fingerprint()  # noqa: E731
    fingerprint.update_fingerprint = arrow_dataset.update_fingerprint = unhashed
    try:
        yield
    finally:
        fingerprint.update_fingerprint = arrow_dataset.update_fingerprint = original


def train(cfg: CourseConfig, resume: bool = False, on_log: Callable[[dict], None] | None = None,
          callbacks: list | None = None) -> TrainResult:
    """Fine-tune ``cfg.model`` with LoRA on ``cfg.data.train_file``; write the artifact contract."""
    guard_model_load(f"训练 {cfg.model.name}")
    engine = choose_engine(cfg.train.engine)
    if engine == "unsloth":
        import unsloth  # noqa: F401  (before transformers/trl/peft, so its patches apply)
    device = resolve_device(cfg.model.device)
    examples = load_chat_jsonl(cfg.data.train_file, cfg.data.max_samples)  # fail before loading a model
    interval = eval_interval(cfg, len(examples))
    eval_examples = evaluation_examples(cfg) if interval else []
    if device == "cpu" and cfg.train.num_threads:
        import torch
        torch.set_num_threads(cfg.train.num_threads)
    out, checkpoint = _prepare_output(cfg, resume)
    compile_layers = _torch_compile(cfg, engine, device, len(examples))
    resolved = cfg.model_copy(deep=True)
    resolved.train.engine, resolved.model.device = engine, device
    resolved.train.torch_compile = compile_layers
    resolved.save(out / RUN_CONFIG)
    # "launch": the config file and overrides this run came from, so a grader can match run and submitted config.
    env = environment_report(device, engine) | {"launch": cfg.origin}
    (out / RUN_ENV).write_text(json.dumps(env, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    model_path = resolve_model_path(cfg)
    loader = _load_unsloth if engine == "unsloth" else _load_trl
    model, tokenizer = loader(cfg, model_path, device, compile_layers=compile_layers)
    from trl import SFTTrainer

    dataset = build_dataset(examples, engine, tokenizer, cfg)
    extra = {"dataset_text_field": "text"} if engine == "unsloth" else \
        {"completion_only_loss": cfg.train.assistant_only_loss, "torch_compile": compile_layers}
    counter = TokenCounter()
    eval_dataset = build_dataset(eval_examples, engine, tokenizer, cfg) if eval_examples else None
    if eval_examples:
        extra["per_device_eval_batch_size"] = len(eval_examples)  # one forward pass per point
    log_callback = _make_log_callback(out / TRAIN_LOG, device, on_log, counter)
    with unhashed_datasets():
        trainer = SFTTrainer(
            model=model, processing_class=tokenizer, train_dataset=dataset, eval_dataset=eval_dataset,
            args=_sft_args(cfg, device, out, **extra), peft_config=None if engine == "unsloth" else lora_config(cfg),
            callbacks=[log_callback, *(callbacks or [])])
        if engine == "unsloth" and cfg.train.assistant_only_loss:
            from unsloth.chat_templates import train_on_responses_only
            spec = get_model(cfg.model.name)
            trainer = train_on_responses_only(trainer, instruction_part=spec.instruction_part,
                                              response_part=spec.response_part)
    if _padding_free(cfg, engine, device) and "labels" in trainer.train_dataset.column_names:
        trainer.data_collator = PaddingFreeCollator()
    counter.watch(trainer)
    if eval_dataset is not None and len(trainer.eval_dataset):  # Unsloth drops rows with no answer left
        last = planned_steps(cfg, len(examples))
        batches = list(trainer.get_eval_dataloader())  # collated once: every point scores the same tensors
        log_callback.evaluate = lambda: evaluation_loss(trainer, batches)
        log_callback.eval_at = lambda step: step % interval == 0 or step == last
        log_callback.eval_rows = len(trainer.eval_dataset)
    lean_head = engine == "unsloth" and device == "cpu" and os.environ.get("LLMCOURSE_LEAN_LM_HEAD", "1") != "0"
    if lean_head:
        from llmcourse.training.lm_head import use_lean_cpu_lm_head
        use_lean_cpu_lm_head()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        if lean_head:
            from llmcourse.training.lm_head import release_buffers
            release_buffers()

    trainer.model.save_pretrained(out / ADAPTER_DIR)
    tokenizer.save_pretrained(out / ADAPTER_DIR)
    log = read_train_log(out)
    plot_loss(log, out / LOSS_CURVE)
    return TrainResult(output_dir=out, engine=engine, device=device, steps=trainer.state.global_step, log=log)


def train_or_reuse(cfg: CourseConfig, **kwargs) -> TrainResult:
    """:func:`train`, except under nbgrader, where the learner's saved run is reused as it is."""
    out = Path(cfg.train.output_dir)

    def saved_run() -> TrainResult:
        saved, log = load_config(out / RUN_CONFIG), read_train_log(out)
        return TrainResult(output_dir=out, engine=saved.train.engine, device=saved.model.device,
                           steps=log[-1]["step"] if log else 0, log=log)

    return reuse_or_compute("训练产物", out / ADAPTER_DIR / ADAPTER_CONFIG, compute=lambda: train(cfg, **kwargs),
                            load=saved_run, hint="请在提交前完整运行训练单元格")


def plot_loss(log: list[dict[str, Any]], path: str | Path | None = None, ax=None):
    """Draw loss per step (raw and moving average) and the validation loss where the log has it,
    on ``ax`` or a new figure; save it to ``path``."""
    from matplotlib.figure import Figure  # no pyplot: works headless and in threads

    if ax is None:
        ax = Figure(figsize=(6, 3.5)).subplots()
    steps = [row["step"] for row in log]
    losses = [row["loss"] for row in log]
    ax.clear()
    ax.plot(steps, losses, color="#9ab", label="loss")
    if len(losses) >= 5:
        window = max(3, len(losses) // 10)
        smooth = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, color="#c33", label=f"moving average ({window})")
    evaluated = [row for row in log if row.get("eval_loss") is not None]
    if evaluated:
        ax.plot([row["step"] for row in evaluated], [row["eval_loss"] for row in evaluated], "o-",
                color="#27c", label=f"validation loss ({evaluated[-1].get('eval_rows', '?')} rows)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=100)
    return ax
