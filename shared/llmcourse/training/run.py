"""LoRA supervised fine-tuning with Unsloth or plain PEFT + TRL, on CPU or GPU.

Usage::

    llmcourse train day1/configs/gemma3-270m_lora_sft.yaml train.max_steps=20 [--resume]

    from llmcourse.config import load_config
    from llmcourse.training.run import train
    result = train(load_config("day1/configs/gemma3-270m_lora_sft.yaml"), on_log=print)

    # the same, step by step, with the library calls in view (Day 1's notebook): see TrainingRun
    run = TrainingRun.start(cfg)

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
                                 TRAIN_LOG, ArtifactMissing, RecomputeRefused, in_grading,
                                 read_train_log, reuse_or_compute)  # noqa: F401
from llmcourse.config import CourseConfig, load_config
from llmcourse.data.jsonl import ChatExample, load_chat_jsonl
from llmcourse.env.lane import environment_report, library_version, resolve_device, unsloth_installed
# apply_template and resolve_model_path are re-exported: notebooks released earlier import them from here.
from llmcourse.env.loading import apply_template, resolve_model_path, training_dtype, use_course_template
from llmcourse.env.models import get_model, guard_model_load
from llmcourse.training import parallel
from llmcourse.errors import SetupError

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
        raise SetupError("train.engine: unsloth，但本环境没有安装 Unsloth；改用 engine: trl 或 auto，"
                           "或 pip install -e .[unsloth]")
    if requested == "trl" and not _trl_can_train_here():
        raise SetupError(f"TRL {library_version('trl')} 的 SFTTrainer 只能在 GPU 上计算损失（Triton 内核）；"
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
            # every process counts its own batches and scores its share of the validation rows (TRL's loss
            # gathers across processes): all of them take part, then rank 0 alone writes the row
            real_tokens, answer_tokens = parallel.summed(counter.real_tokens, counter.answer_tokens)
            loss = seconds = None
            if self.evaluate is not None and self.eval_at(state.global_step):
                loss = self.evaluate()
                seconds = time.perf_counter() - now
            if not parallel.is_main_process():
                return
            tokens = state.num_input_tokens_seen
            rate = answer_rate = None
            if now > self.last_time:
                if tokens:
                    rate = round((tokens - self.last_tokens) / (now - self.last_time), 1)
                answer_rate = round((answer_tokens - self.last_answer) / (now - self.last_time), 1)
            self.last_time, self.last_tokens, self.last_answer = now, tokens, answer_tokens
            memory, kind = _memory_mb(device)
            record = {"step": state.global_step, "loss": round(float(logs["loss"]), 5),
                      "learning_rate": logs.get("learning_rate"), "grad_norm": _float(logs.get("grad_norm")),
                      "tokens_seen": tokens, "tokens_per_s": rate,
                      "real_tokens_seen": real_tokens, "answer_tokens_seen": answer_tokens,
                      "answer_tokens_per_s": answer_rate,
                      "memory_mb": None if memory is None else round(memory, 1), "memory_kind": kind,
                      "elapsed_s": round(now - self.started - self.paused, 2), "epoch": logs.get("epoch"),
                      "processes": parallel.processes()}
            if seconds is not None:
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
    total, tokens = parallel.summed(total, tokens)  # a data-parallel run shares the rows out among its processes
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
    if not parallel.is_main_process():
        return out, checkpoint  # rank 0 trims or starts the log
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


def model_args(cfg: CourseConfig, engine: str, device: str, model_path: str | None = None) -> dict[str, Any]:
    """The keyword arguments of the base-model load: Unsloth's ``FastLanguageModel.from_pretrained`` or
    transformers' ``AutoModelForCausalLM.from_pretrained`` (the names are theirs)."""
    model_path = model_path or resolve_model_path(cfg)
    dtype = training_dtype(cfg, device)
    if engine == "unsloth":
        return {"model_name": model_path, "max_seq_length": cfg.model.max_seq_length, "dtype": dtype,
                "load_in_4bit": cfg.model.load_in_4bit, "full_finetuning": False}
    return {"pretrained_model_name_or_path": model_path, "dtype": dtype,
            "device_map": "auto" if device == "cuda" else None}


def peft_lora_args(cfg: CourseConfig) -> dict[str, Any]:
    """The ``lora`` section as PEFT ``LoraConfig`` arguments (the config's field names are PEFT's)."""
    lora = cfg.lora
    return {"r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout, "bias": lora.bias,
            "target_modules": lora.target_modules or list(get_model(cfg.model.name).target_modules),
            "use_rslora": lora.use_rslora}


def unsloth_lora_args(cfg: CourseConfig, device: str) -> dict[str, Any]:
    """The keyword arguments of Unsloth's ``FastLanguageModel.get_peft_model`` (after the model)."""
    checkpointing = gradient_checkpointing(cfg, device)
    return peft_lora_args(cfg) | {"use_gradient_checkpointing": "unsloth" if checkpointing else False,
                                  "random_state": cfg.train.seed}


@contextmanager
def unsloth_compile_switch(device: str, compile_layers: bool):
    """Unsloth reads its CPU compile switch (``UNSLOTH_CPU_COMPILE``) from the environment when it prepares
    the LoRA model: set it for that call only."""
    previous = os.environ.get("UNSLOTH_CPU_COMPILE")
    if device == "cpu":
        os.environ["UNSLOTH_CPU_COMPILE"] = "1" if compile_layers else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("UNSLOTH_CPU_COMPILE", None)
        else:
            os.environ["UNSLOTH_CPU_COMPILE"] = previous


def _load_unsloth(cfg: CourseConfig, model_path: str, device: str, compile_layers: bool = False):
    """``compile_layers``: on a CPU, Unsloth compiles each decoder layer (torch.compile, Inductor C++);
    where no C++ compiler is found it says so and trains eagerly. On a GPU Unsloth decides itself."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(**model_args(cfg, "unsloth", device, model_path))
    with unsloth_compile_switch(device, compile_layers):
        model = FastLanguageModel.get_peft_model(model, **unsloth_lora_args(cfg, device))
    return model, use_course_template(tokenizer, cfg)


def _load_trl(cfg: CourseConfig, model_path: str, device: str, compile_layers: bool = False):
    """``compile_layers`` is handled by the trainer here (``SFTConfig.torch_compile``); the LoRA is added by
    ``SFTTrainer`` from ``peft_config``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(**model_args(cfg, "trl", device, model_path))
    return model, use_course_template(tokenizer, cfg)


def lora_config(cfg: CourseConfig):
    """The PEFT ``LoraConfig`` the config describes (field names are PEFT's)."""
    from peft import LoraConfig

    return LoraConfig(**peft_lora_args(cfg), task_type="CAUSAL_LM")


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


class TrainingRun:
    """One training run, step by step: the steps :func:`train` takes, in the order Day 1's notebook shows them.

    Usage (what :func:`train` does; ``day1/02_lora_training.ipynb`` runs the same calls in its cells)::

        run = TrainingRun.start(cfg, on_log=print)   # chores: engine, device, run folder, config.yaml, env.json
        from unsloth import FastLanguageModel
        model, tokenizer = FastLanguageModel.from_pretrained(**run.model_args())
        tokenizer = run.course_template(tokenizer)
        with run.compile_switch():
            model = FastLanguageModel.get_peft_model(model, **run.lora_args())
        with unhashed_datasets():
            trainer = SFTTrainer(model=model, processing_class=tokenizer, **run.trainer_args(tokenizer))
            trainer = train_on_responses_only(trainer, **run.response_parts())  # Unsloth lane
        run.attach(trainer)                           # chores: padding-free batches, token counts, validation
        trainer.train(resume_from_checkpoint=run.checkpoint)
        result = run.finish(trainer, tokenizer)       # adapter/, loss_curve.png -> TrainResult

    On the PEFT + TRL lane (``run.engine == "trl"``) the model loads with ``AutoModelForCausalLM`` and
    ``trainer_args`` carries the ``LoraConfig`` as ``peft_config``: SFTTrainer adds the LoRA itself.
    """

    def __init__(self, cfg: CourseConfig, engine: str, device: str, out: Path, checkpoint: str | None,
                 examples: list[ChatExample], on_log: Callable[[dict], None] | None = None,
                 callbacks: list | None = None):
        self.cfg, self.engine, self.device, self.out, self.checkpoint = cfg, engine, device, out, checkpoint
        self.examples, self.on_log, self.callbacks = examples, on_log, list(callbacks or [])
        self.interval = eval_interval(cfg, len(examples))
        self.eval_examples = evaluation_examples(cfg) if self.interval else []
        self.compile_layers = _torch_compile(cfg, engine, device, len(examples))
        self.model_path = resolve_model_path(cfg)
        self.counter = TokenCounter()
        self.log_callback = _make_log_callback(out / TRAIN_LOG, device, lambda row: self.on_log and self.on_log(row),
                                               self.counter)
        self.lean_head = False

    def __repr__(self) -> str:
        return (f"TrainingRun(engine={self.engine!r}, device={self.device!r}, model={self.model_path!r}, "
                f"rows={len(self.examples)}, output_dir={str(self.out)!r}, resume_from={self.checkpoint!r})")

    @classmethod
    def start(cls, cfg: CourseConfig, resume: bool = False, on_log: Callable[[dict], None] | None = None,
              callbacks: list | None = None) -> "TrainingRun":
        """Choose engine and device, read the training data (fails before any model load), create the run
        folder (on ``resume`` find the last checkpoint) and write ``config.yaml`` and ``env.json``."""
        if in_grading():
            raise RecomputeRefused(f"评分/验证模式下不重新训练（那会覆盖你保存的 {cfg.train.output_dir}）：训练的几个单元格"
                                   "在批改时跳过，批改读取你保存的训练产物")
        # bad data is reported first: before the model-load guard and before Unsloth's import prints anything
        examples = load_chat_jsonl(cfg.data.train_file, cfg.data.max_samples)
        guard_model_load(f"训练 {cfg.model.name}")
        engine = choose_engine(cfg.train.engine)
        if engine == "unsloth":
            import unsloth  # noqa: F401  (before transformers/trl/peft, so its patches apply)
        device = resolve_device(cfg.model.device)
        if device == "cpu" and cfg.train.num_threads:
            import torch
            torch.set_num_threads(cfg.train.num_threads)
        out, checkpoint = _prepare_output(cfg, resume)
        run = cls(cfg, engine, device, out, checkpoint, examples, on_log, callbacks)
        if not parallel.is_main_process():
            return run
        resolved = cfg.model_copy(deep=True)
        resolved.train.engine, resolved.model.device = engine, device
        resolved.train.torch_compile = run.compile_layers
        resolved.save(out / RUN_CONFIG)
        # "launch": the config file and overrides this run came from, so a grader can match run and submitted config.
        env = environment_report(device, engine) | {"launch": cfg.origin, "processes": parallel.processes()}
        (out / RUN_ENV).write_text(json.dumps(env, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        return run

    def model_args(self) -> dict[str, Any]:
        """Arguments of ``FastLanguageModel.from_pretrained`` (Unsloth) / ``AutoModelForCausalLM.from_pretrained``."""
        return model_args(self.cfg, self.engine, self.device, self.model_path)

    def course_template(self, tokenizer):
        """The tokenizer with the course's chat template where the model has none (a base model)."""
        return use_course_template(tokenizer, self.cfg)

    def compile_switch(self):
        """Context for Unsloth's ``get_peft_model``: whether it compiles the decoder layers on a CPU."""
        return unsloth_compile_switch(self.device, self.compile_layers)

    def lora_args(self) -> dict[str, Any]:
        """Arguments of Unsloth's ``FastLanguageModel.get_peft_model`` / PEFT's ``LoraConfig``."""
        return unsloth_lora_args(self.cfg, self.device) if self.engine == "unsloth" else \
            peft_lora_args(self.cfg) | {"task_type": "CAUSAL_LM"}

    def trainer_args(self, tokenizer) -> dict[str, Any]:
        """``SFTTrainer`` arguments besides model and tokenizer: the datasets, the ``SFTConfig`` built from the
        ``train`` section, the callback that writes ``train_log.jsonl`` and, on the TRL lane, ``peft_config``."""
        cfg = self.cfg
        extra = {"dataset_text_field": "text"} if self.engine == "unsloth" else \
            {"completion_only_loss": cfg.train.assistant_only_loss, "torch_compile": self.compile_layers}
        eval_dataset = build_dataset(self.eval_examples, self.engine, tokenizer, cfg) if self.eval_examples else None
        if self.eval_examples:
            extra["per_device_eval_batch_size"] = len(self.eval_examples)  # one forward pass per point
        return {"train_dataset": build_dataset(self.examples, self.engine, tokenizer, cfg),
                "eval_dataset": eval_dataset, "args": _sft_args(cfg, self.device, self.out, **extra),
                "peft_config": None if self.engine == "unsloth" else lora_config(cfg),
                "callbacks": [self.log_callback, *self.callbacks]}

    def response_parts(self) -> dict[str, str]:
        """``instruction_part`` / ``response_part`` for Unsloth's ``train_on_responses_only``: the chat
        template's markers of a user turn and of the model's answer."""
        spec = get_model(self.cfg.model.name)
        return {"instruction_part": spec.instruction_part, "response_part": spec.response_part}

    def attach(self, trainer) -> None:
        """The CPU speed-ups and the bookkeeping around ``trainer``: padding-free batches, token counts, the
        validation points of the log, the lean LM head (each measured in ``make bench``)."""
        cfg = self.cfg
        if _padding_free(cfg, self.engine, self.device) and "labels" in trainer.train_dataset.column_names:
            trainer.data_collator = PaddingFreeCollator()
        self.counter.watch(trainer)
        if trainer.eval_dataset is not None and len(trainer.eval_dataset):  # Unsloth drops rows with no answer left
            last, interval = planned_steps(cfg, len(self.examples)), self.interval
            batches = list(trainer.get_eval_dataloader())  # collated once: every point scores the same tensors
            self.log_callback.evaluate = lambda: evaluation_loss(trainer, batches)
            self.log_callback.eval_at = lambda step: step % interval == 0 or step == last
            self.log_callback.eval_rows = len(trainer.eval_dataset)
        self.lean_head = self.engine == "unsloth" and self.device == "cpu" and \
            os.environ.get("LLMCOURSE_LEAN_LM_HEAD", "1") != "0"
        if self.lean_head:
            from llmcourse.training.lm_head import use_lean_cpu_lm_head
            use_lean_cpu_lm_head()

    def release(self) -> None:
        """Free the lean LM head's buffers (after training, also after a failed one)."""
        if self.lean_head:
            from llmcourse.training.lm_head import release_buffers
            release_buffers()
            self.lean_head = False

    def finish(self, trainer, tokenizer) -> TrainResult:
        """Save the adapter and tokenizer, draw the loss curve; the run as a :class:`TrainResult`."""
        self.release()
        if parallel.is_main_process():
            trainer.model.save_pretrained(self.out / ADAPTER_DIR)
            tokenizer.save_pretrained(self.out / ADAPTER_DIR)
            plot_loss(read_train_log(self.out), self.out / LOSS_CURVE)
        parallel.wait_for_everyone()
        log = read_train_log(self.out)
        return TrainResult(output_dir=self.out, engine=self.engine, device=self.device,
                           steps=trainer.state.global_step, log=log)


def train(cfg: CourseConfig, resume: bool = False, on_log: Callable[[dict], None] | None = None,
          callbacks: list | None = None) -> TrainResult:
    """Fine-tune ``cfg.model`` with LoRA on ``cfg.data.train_file``; write the artifact contract.
    The steps of :class:`TrainingRun`, one after the other."""
    run = TrainingRun.start(cfg, resume=resume, on_log=on_log, callbacks=callbacks)
    from trl import SFTTrainer

    loader = _load_unsloth if run.engine == "unsloth" else _load_trl  # the notebook's cells, as functions
    model, tokenizer = loader(cfg, run.model_path, run.device, compile_layers=run.compile_layers)
    with unhashed_datasets():
        trainer = SFTTrainer(model=model, processing_class=tokenizer, **run.trainer_args(tokenizer))
        if run.engine == "unsloth" and cfg.train.assistant_only_loss:
            from unsloth.chat_templates import train_on_responses_only
            trainer = train_on_responses_only(trainer, **run.response_parts())
    run.attach(trainer)
    try:
        trainer.train(resume_from_checkpoint=run.checkpoint)
    finally:
        run.release()
    return run.finish(trainer, tokenizer)


def saved_run(cfg: CourseConfig) -> TrainResult:
    """The run saved in ``train.output_dir``, read back from its files (no model is loaded)."""
    out = Path(cfg.train.output_dir)
    if not (out / ADAPTER_DIR / ADAPTER_CONFIG).is_file():
        raise ArtifactMissing(f"没有找到训练产物：{out / ADAPTER_DIR / ADAPTER_CONFIG}；请先完整运行上面的训练单元格")
    saved, log = load_config(out / RUN_CONFIG), read_train_log(out)
    return TrainResult(output_dir=out, engine=saved.train.engine, device=saved.model.device,
                       steps=log[-1]["step"] if log else 0, log=log)


def train_or_reuse(cfg: CourseConfig, **kwargs) -> TrainResult:
    """:func:`train`, except under nbgrader, where the learner's saved run is reused as it is."""
    out = Path(cfg.train.output_dir)
    return reuse_or_compute("训练产物", out / ADAPTER_DIR / ADAPTER_CONFIG, compute=lambda: train(cfg, **kwargs),
                            load=lambda: saved_run(cfg), hint="请在提交前完整运行训练单元格")


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
