"""How many parameters LoRA trains, computed on a real model.

Usage::

    from llmcourse.lora_math import lora_parameter_table
    table = lora_parameter_table(model, target_modules=["q_proj", "v_proj"], ranks=[4, 8, 16, 64])

For a linear layer ``W`` of shape (out, in), LoRA adds ``B @ A`` with ``A``: (r, in) and
``B``: (out, r), so it trains ``r * (in + out)`` numbers instead of ``in * out``.
"""

from __future__ import annotations


def target_linear_shapes(model, target_modules: list[str]) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer LoRA would wrap."""
    import torch

    return [(module.in_features, module.out_features) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in target_modules]


def lora_parameter_count(shapes: list[tuple[int, int]], r: int) -> int:
    return sum(r * (fan_in + fan_out) for fan_in, fan_out in shapes)


def lora_parameter_table(model, target_modules: list[str], ranks: list[int]) -> list[dict]:
    """One row per rank: LoRA parameters, total parameters, and the trained share."""
    total = sum(p.numel() for p in model.parameters())
    shapes = target_linear_shapes(model, target_modules)
    return [{"r": r, "lora_params": (count := lora_parameter_count(shapes, r)), "total_params": total,
             "percent": round(100 * count / total, 3)} for r in ranks]
