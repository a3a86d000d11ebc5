"""How a config's base model is found and read: its folder, its dtype, its chat template.

Usage::

    from llmcourse.env.loading import resolve_model_path, torch_dtype, apply_template
    path = resolve_model_path(cfg)          # prepared stand-in, local folder or hub id
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(cfg, "cpu"))

Training, inference and serving all load the base model through these, so they agree on it.
"""
from __future__ import annotations

from llmcourse.config import CourseConfig
from llmcourse.env.lane import cpu_has_native_bf16
from llmcourse.env.models import get_model
from llmcourse.errors import InputError


def resolve_model_path(cfg: CourseConfig) -> str:
    """Where to load the base model from: a prepared stand-in, a local folder or a hub id."""
    spec = get_model(cfg.model.name)
    if cfg.model.path:
        return cfg.model.path
    if spec.is_stand_in:
        from llmcourse.env.prepare import prepare_model
        return str(prepare_model(spec.name))
    if cfg.model.source == "modelscope":
        from modelscope import snapshot_download  # GPU extra; downloads once into its cache
        return snapshot_download(spec.hub_id("modelscope"))
    if cfg.model.source == "local":
        raise InputError(f"模型 {spec.name} 设置了 model.source: local，但没有给 model.path（本地模型文件夹）")
    return spec.hub_id("hf")


def torch_dtype(cfg: CourseConfig, device: str):
    import torch
    if cfg.model.dtype != "auto":
        return getattr(torch, cfg.model.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # no native bf16 on our CPUs: emulated bf16 is slow


def training_dtype(cfg: CourseConfig, device: str):
    """The dtype training computes in: as configured; ``auto`` = bf16 (fp16 where it is missing) on a GPU,
    and on a CPU bf16 where the CPU has it natively (AMX / AVX512-BF16, as Unsloth itself would pick:
    ``make bench`` measures it against fp32), else fp32. Inference keeps :func:`torch_dtype`."""
    import torch
    if cfg.model.dtype == "auto" and device == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch_dtype(cfg, device)


def use_course_template(tokenizer, cfg: CourseConfig):
    """Stand-ins whose weights carry no chat template get the registry's (the same for training and inference)."""
    template = get_model(cfg.model.name).chat_template
    if template:
        tokenizer.chat_template = template
    return tokenizer


def apply_template(tokenizer, messages: list[dict], cfg: CourseConfig, generation_prompt: bool = False) -> str:
    kwargs = {"enable_thinking": cfg.model.enable_thinking} if get_model(cfg.model.name).thinking else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         **kwargs)
