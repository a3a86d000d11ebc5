"""How many parameters LoRA trains, computed on a real model.

Usage::

    from llmcourse.training.lora_math import lora_parameter_table, adapter_sizes
    table = lora_parameter_table(model, target_modules=["q_proj", "v_proj"], ranks=[4, 8, 16, 64])
    adapter_sizes(["gemma3-270m", "qwen3-4b-instruct-2507"], r=16)   # from the registry's shapes, no download

For a linear layer ``W`` of shape (out, in), LoRA adds ``B @ A`` with ``A``: (r, in) and
``B``: (out, r), so it trains ``r * (in + out)`` numbers instead of ``in * out``. The saved adapter
holds exactly these numbers, in fp32 (PEFT keeps LoRA weights in fp32, also on a bf16 model), so its
file is about ``4 * lora_params`` bytes.

``model`` may also be a :class:`llmcourse.env.models.ModelOutline` (the shapes without weights, what
``llmcourse.inference.engines.load_model`` returns under nbgrader): the same counts, nothing imported or loaded.
"""

from __future__ import annotations


def target_linear_shapes(model, target_modules: list[str]) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer LoRA would wrap."""
    if hasattr(model, "target_linear_shapes"):  # a ModelOutline
        return model.target_linear_shapes(target_modules)
    import torch

    return [(module.in_features, module.out_features) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in target_modules]


def lora_parameter_count(shapes: list[tuple[int, int]], r: int) -> int:
    return sum(r * (fan_in + fan_out) for fan_in, fan_out in shapes)


ADAPTER_BYTES_PER_PARAMETER = 4  # fp32, as PEFT saves LoRA weights


def adapter_mb(lora_params: int) -> float:
    """Size of the saved adapter file in MB (10^6 bytes), from its parameter count."""
    return round(lora_params * ADAPTER_BYTES_PER_PARAMETER / 1e6, 1)


def lora_parameter_table(model, target_modules: list[str], ranks: list[int]) -> list[dict]:
    """One row per rank: LoRA parameters, the adapter file's size, total parameters, the trained share."""
    outline = hasattr(model, "target_linear_shapes")  # a ModelOutline: no weights to count
    total = model.num_parameters() if outline else sum(p.numel() for p in model.parameters())
    shapes = target_linear_shapes(model, target_modules)
    return [{"r": r, "lora_params": (count := lora_parameter_count(shapes, r)), "adapter_mb": adapter_mb(count),
             "total_params": total, "percent": round(100 * count / total, 3)} for r in ranks]


def adapter_sizes(model_names: list[str], r: int = 16, target_modules=None) -> list[dict]:
    """For registry models (real shapes from ``config.json``, no download): LoRA parameters at rank ``r``
    on ``target_modules`` (default: the model's), the adapter file in MB, and the base model's size."""
    from llmcourse.env.models import get_model

    rows = []
    for name in model_names:
        spec = get_model(name)
        count = spec.shape.lora_parameter_count(r, list(target_modules or spec.target_modules))
        total = spec.shape.parameter_count()
        rows.append({"model": name, "r": r, "lora_params": count, "adapter_mb": adapter_mb(count),
                     "base_params": total, "base_gb_bf16": round(total * 2 / 1e9, 2),
                     "percent": round(100 * count / total, 3)})
    return rows
