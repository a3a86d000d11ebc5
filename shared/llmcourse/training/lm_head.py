"""A lean CPU version of the fused LM head that TRL's SFTTrainer computes its loss through.

Usage::

    from llmcourse.training.lm_head import use_lean_cpu_lm_head
    use_lean_cpu_lm_head()        # llmcourse.training.run.train() calls it before CPU training

TRL 1.x scores only the positions that carry a label, in row chunks, and asks for three things per
position: the log-probability of the label (the loss), the entropy and whether the label is the
top-1 token (both only logged). On a CPU that work is routed to Unsloth's torch version, which makes
a dozen passes over each ``(rows, vocabulary)`` block and allocates a fresh one for most of them; for
Gemma 3's 262k vocabulary that costs more than the two matrix products themselves (``make bench``).
This version does the same sums in place, in buffers kept between steps (a fresh 64 MB tensor costs
its page faults every time), and forms the gradient during the forward pass, so backward is one
multiply. Differences from the reference, all tested in ``tests/test_lm_head.py``:

* ``is_top1`` is "the label's logit equals the largest logit": where logits tie, ``argmax`` would
  pick the first; here every tied label counts;
* entropy is a logged metric here, so it carries no gradient (TRL's SFT loss never uses one).

Anything else (a trainable or biased head, temperature, soft-capping, logit scaling, other outputs,
a GPU) goes to the implementation that was installed before, unchanged.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

SUPPORTED_OUTPUTS = {"log_probs", "entropy", "is_top1"}
# Elements per (rows, vocabulary) block, as in Unsloth: about 64 MB of fp32 logits.
BLOCK_ELEMENTS = int(os.environ.get("UNSLOTH_CPU_CE_CHUNK_ELEMENTS", 16 * 1024 * 1024))

_buffers: dict[tuple, torch.Tensor] = {}


def _buffer(name: str, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """A ``(rows, cols)`` scratch tensor reused across calls (grown when a bigger one is asked for)."""
    key = (name, cols, dtype)
    kept = _buffers.get(key)
    if kept is None or kept.shape[0] < rows:
        kept = _buffers[key] = torch.empty(rows, cols, dtype=dtype)
    return kept[:rows]


def release_buffers() -> None:
    """Free the scratch blocks (train() calls it when training ends)."""
    _buffers.clear()


class LeanLogProbs(torch.autograd.Function):
    """Per labelled position: log p(label), entropy, label is top-1; d log p / d hidden formed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, block_rows):
        rows = hidden.shape[0]
        log_probs, entropy = torch.empty(rows), torch.empty(rows)
        is_top1 = torch.empty(rows, dtype=torch.bool)
        need_grad = ctx.needs_input_grad[0]
        grad = torch.empty(hidden.shape, dtype=torch.float32) if need_grad else None
        low_precision = weight.dtype != torch.float32
        for start in range(0, rows, block_rows):
            end = min(start + block_rows, rows)
            n, label = end - start, targets[start:end].unsqueeze(-1)
            z = _buffer("logits", n, weight.shape[0], torch.float32)
            if low_precision:  # the product in the weights' dtype, then widened in place
                product = _buffer("product", n, weight.shape[0], weight.dtype)
                torch.mm(hidden[start:end], weight.t(), out=product)
                z.copy_(product)
            else:
                torch.mm(hidden[start:end], weight.t(), out=z)
            z.sub_(z.amax(-1, keepdim=True))  # largest logit is now exactly 0
            label_logit = z.gather(-1, label)
            p = _buffer("probs", n, weight.shape[0], torch.float32)
            torch.exp(z, out=p)
            # Sum the other tokens apart from the label: 1 - p(label) keeps its digits near p(label) = 1.
            p.scatter_(-1, label, 0.0)
            others = p.sum(-1, keepdim=True)
            label_weight = torch.exp(label_logit)
            total = others + label_weight
            log_probs[start:end] = (-F.softplus(torch.log(others) - label_logit)).squeeze(-1)
            # H = log total - sum p z / total; the label's term is added apart (its column is zero in p)
            weighted = torch.linalg.vecdot(p, z).unsqueeze(-1) + label_weight * label_logit
            entropy[start:end] = (torch.log(total) - weighted / total).squeeze(-1)
            is_top1[start:end] = label_logit.squeeze(-1) == 0
            if need_grad:
                # d log p(label) / d logits = onehot - softmax; normalised before the bf16 cast, which
                # halves its rounding error (tests/test_lm_head.py)
                p.div_(total).scatter_(-1, label, -others / total)
                if low_precision:
                    product.copy_(p)
                    scores = torch.mm(product, weight).float()
                else:
                    scores = torch.mm(p, weight)
                grad[start:end] = scores.neg_()
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(entropy, is_top1)
        return log_probs, entropy, is_top1

    @staticmethod
    def backward(ctx, d_log_probs, _d_entropy, _d_top1):
        (grad,) = ctx.saved_tensors
        if grad is None or d_log_probs is None:
            return None, None, None, None
        return grad * d_log_probs.unsqueeze(-1), None, None, None


def lean_log_probs(hidden, weight, targets, outputs=("log_probs", "entropy", "is_top1")):
    """TRL's fused-head outputs ``(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)`` for a
    frozen, bias-free head at temperature 1; the ones not in ``outputs`` are None."""
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    elif hidden.dtype != weight.dtype:
        hidden = hidden.to(weight.dtype)
    block_rows = max(1, BLOCK_ELEMENTS // weight.shape[0])
    with torch.autocast("cpu", enabled=False):
        log_probs, entropy, is_top1 = LeanLogProbs.apply(hidden, weight.detach(), targets, block_rows)
    return (log_probs, entropy if "entropy" in outputs else None, None, None,
            is_top1 if "is_top1" in outputs else None)


def handles(hidden, weight, bias, temperature, softcap, logit_scale, outputs) -> bool:
    """Whether the lean version computes this call exactly as the reference would."""
    return (hidden.device.type == "cpu" and bias is None and not weight.requires_grad and temperature == 1.0
            and softcap is None and logit_scale == 1.0 and set(outputs) <= SUPPORTED_OUTPUTS
            and weight.dtype in (torch.bfloat16, torch.float32))


def use_lean_cpu_lm_head() -> bool:
    """Route TRL's fused LM head to :func:`lean_log_probs` where :func:`handles` says so, and to the
    implementation installed before (Unsloth's CPU one, or TRL's Triton kernel) otherwise.
    Returns False where this TRL has no fused head. Calling it again changes nothing."""
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        return False
    previous = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if previous is None and not hasattr(trl_utils, "add_fused_lm_head"):
        return False
    if getattr(previous, "llmcourse_lean", False):
        return True

    class LeanDispatch:
        llmcourse_lean = True
        _unsloth_cpu_dispatch = True  # Unsloth's own routing sees it as done and does not wrap it again
        replaced = previous

        @staticmethod
        def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0,
                  outputs=("log_probs",)):
            if handles(hidden, weight, bias, temperature, softcap, logit_scale, outputs):
                return lean_log_probs(hidden, weight, targets, outputs)
            if previous is None:
                raise RuntimeError("TRL's fused LM head has no kernel for this device or setting (it needs Triton); "
                                   "train with train.engine=unsloth on a CPU")
            return previous.apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale,
                                  outputs)

    trl_utils._ChunkedLogProbFunction = LeanDispatch
    return True
