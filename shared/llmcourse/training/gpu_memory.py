"""Estimate the memory of a LoRA fine-tuning run from the model's shape, before renting a GPU.

Usage::

    from llmcourse.training.gpu_memory import estimate_training_memory, markdown_table
    parts = estimate_training_memory("qwen3-4b-instruct-2507", r=16, max_length=1024, batch_size=8,
                                     load_in_4bit=False, gradient_checkpointing=True)
    parts["total"]                     # GiB; also weights, lora_and_optimizer, activations, logits, runtime
    print(markdown_table())            # the table in docs/setup.md:  python -m llmcourse.training.gpu_memory

The estimate counts what stock transformers + PEFT keep in memory during one training step,
from the shapes in :mod:`llmcourse.env.models` (``config.json`` numbers, no download):

* ``weights``: every base parameter at the compute dtype (2 bytes in bf16). With
  ``load_in_4bit`` (bitsandbytes NF4, double quantisation) the decoder's linear layers take
  4.127 bits a parameter (4 bits + one 8-bit absmax per 64 weights + one fp32 per 256 absmax);
  embeddings, output head and norms stay in bf16.
* ``lora_and_optimizer``: LoRA parameters in fp32 (PEFT upcasts adapters), their gradients and
  AdamW's two moments: 16 bytes a parameter.
* ``activations``: what autograd saves for the backward pass, per token and layer: the input of
  every norm, the normed inputs of the q/k/v and gate/up projections, q/k (twice with q/k-norm),
  v and the attention output (SDPA keeps no attention matrix), and four intermediate-size tensors
  of the gated MLP (gate, act(gate), up, their product). With gradient checkpointing only each
  layer's input is kept, plus one layer recomputed during the backward pass.
* ``logits``: the output head's logits over the whole vocabulary for every token, their fp32
  copy for the loss, log-softmax and its gradient (12 bytes a vocabulary entry in fp32 compute,
  14 in bf16). With Qwen3's 151,936 or Gemma's 262,144 entries this is often the largest part;
  Unsloth's chunked loss avoids most of it, so on the Unsloth lane this column is an upper bound.
* ``runtime``: CUDA context, cuBLAS workspace and allocator slack, a fixed assumption
  (:data:`CUDA_RUNTIME_GIB`) that could not be measured without a GPU; 0 for a CPU estimate.

On the CPU stand-in the same formula (fp32, no runtime) is checked against a measured peak RSS
(``tests/test_gpu_memory.py``), and the GPU rows against published minimums.
"""

from __future__ import annotations

from llmcourse.env.models import ALL_LINEAR, ModelShape, get_model
from llmcourse.errors import InputError

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # weights + double-quantised absmax constants
LORA_BYTES_PER_PARAMETER = 4 + 4 + 8  # fp32 weight, gradient, AdamW exp_avg + exp_avg_sq
CUDA_RUNTIME_GIB = 0.75  # assumption (context + workspace + fragmentation), not a measurement here
GPU_SIZES_GIB = (16, 24, 40, 48, 80)

TABLE_MODELS = ("qwen3-4b-instruct-2507", "qwen3-8b", "llama3-8b-instruct")
# (r, max_length, batch_size, load_in_4bit): the settings learners ask about most.
TABLE_SETTINGS = ((16, 512, 1, True), (16, 1024, 8, True), (16, 512, 1, False), (16, 1024, 1, False),
                  (16, 1024, 8, False), (64, 1024, 8, False), (16, 2048, 4, False))


def _shape(model_name: str) -> ModelShape:
    spec = get_model(model_name)
    if spec.shape is None:
        raise InputError(f"模型 {model_name} 没有登记结构数字（models.py 里的 shape），无法估算显存")
    return spec.shape


def activation_elements_per_token(shape: ModelShape, gradient_checkpointing: bool) -> int:
    """Numbers autograd keeps per token for the whole decoder (see the module docstring)."""
    h, q, kv = shape.hidden_size, shape.q_dim, shape.kv_dim
    qk_norm_inputs = q + kv if shape.qk_norm else 0
    per_layer = shape.norms_per_layer * h + 2 * h + qk_norm_inputs + 2 * q + 2 * kv + 4 * shape.intermediate_size
    if gradient_checkpointing:
        return shape.num_hidden_layers * h + per_layer
    return shape.num_hidden_layers * per_layer


def estimate_training_memory(model_name: str, r: int = 16, max_length: int = 1024, batch_size: int = 1,
                             load_in_4bit: bool = False, gradient_checkpointing: bool = True,
                             dtype: str = "bfloat16", target_modules=None,
                             runtime_gib: float | None = None) -> dict[str, float]:
    """Memory of one LoRA training step in GiB, by part, plus ``total`` (see the module docstring).

    ``dtype`` is the compute dtype (``float32`` for the CPU lane); ``runtime_gib`` defaults to
    :data:`CUDA_RUNTIME_GIB` for 16-bit dtypes and 0 for ``float32`` (a CPU estimate).
    """
    if dtype not in DTYPE_BYTES:
        raise InputError(f"dtype 必须是 {' | '.join(DTYPE_BYTES)}，现在是 {dtype!r}")
    shape = _shape(model_name)
    width = DTYPE_BYTES[dtype]
    total_params = shape.parameter_count()
    linear_params = shape.num_hidden_layers * sum(i * o for i, o in shape.linear_shapes().values())
    if load_in_4bit:
        weights = linear_params * NF4_BITS / 8 + (total_params - linear_params) * width
    else:
        weights = total_params * width
    lora = shape.lora_parameter_count(r, target_modules or ALL_LINEAR) * LORA_BYTES_PER_PARAMETER
    tokens = batch_size * max_length
    activations = tokens * activation_elements_per_token(shape, gradient_checkpointing) * width
    logits = tokens * shape.vocab_size * (width + 8 + (4 if width < 4 else 0))
    runtime = (CUDA_RUNTIME_GIB if width < 4 else 0.0) if runtime_gib is None else runtime_gib
    parts = {"weights": weights / GIB, "lora_and_optimizer": lora / GIB, "activations": activations / GIB,
             "logits": logits / GIB, "runtime": runtime}
    parts["total"] = sum(parts.values())
    return {name: round(value, 3) for name, value in parts.items()}


def smallest_gpu(total_gib: float) -> int | None:
    """The smallest common GPU memory size (GiB) that holds ``total_gib``, or None."""
    return next((size for size in GPU_SIZES_GIB if total_gib <= size), None)


def table_rows(models=TABLE_MODELS, settings=TABLE_SETTINGS) -> list[dict]:
    rows = []
    for name in models:
        for r, length, batch, four_bit in settings:
            parts = estimate_training_memory(name, r=r, max_length=length, batch_size=batch,
                                             load_in_4bit=four_bit, gradient_checkpointing=True)
            rows.append({"model": name, "r": r, "max_length": length, "batch_size": batch,
                         "load_in_4bit": four_bit, **parts, "smallest_gpu_gib": smallest_gpu(parts["total"])})
    return rows


def markdown_table(models=TABLE_MODELS, settings=TABLE_SETTINGS) -> str:
    """The estimate as a Markdown table (GiB, gradient checkpointing on, bf16)."""
    lines = ["| 模型 | r | max_length | batch | 4-bit | 权重 | LoRA+优化器 | 激活 | logits/loss | 运行时 | 合计 | 够用的显卡 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table_rows(models, settings):
        gpu = f"{row['smallest_gpu_gib']} GB" if row["smallest_gpu_gib"] else "> 80 GB"
        lines.append(f"| `{row['model']}` | {row['r']} | {row['max_length']} | {row['batch_size']} | "
                     f"{'是' if row['load_in_4bit'] else '否'} | {row['weights']:.1f} | "
                     f"{row['lora_and_optimizer']:.2f} | {row['activations']:.1f} | {row['logits']:.1f} | "
                     f"{row['runtime']:.2f} | **{row['total']:.1f}** | {gpu} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
