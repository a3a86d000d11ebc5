"""The lean CPU LM head: same log-probabilities, entropy, top-1 and gradients as the reference."""

import pytest
import torch

from llmcourse.training import lm_head

VOCAB, WIDTH, ROWS = 3000, 32, 50


def reference(hidden, weight, targets):
    """float64, straight from the definitions: log softmax at the label, entropy, argmax."""
    hidden = hidden.detach().double().requires_grad_()
    logits = hidden @ weight.double().t()
    log_softmax = logits.log_softmax(-1)
    log_probs = log_softmax.gather(-1, targets[:, None]).squeeze(-1)
    entropy = -(log_softmax.exp() * log_softmax).sum(-1)
    return log_probs, entropy, logits.argmax(-1) == targets, hidden


def inputs(dtype=torch.float32, scale=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(VOCAB, WIDTH, generator=generator) * 0.3).to(dtype)
    hidden = (torch.randn(ROWS, WIDTH, generator=generator) * scale).to(dtype)
    targets = torch.randint(0, VOCAB, (ROWS,), generator=generator)
    return hidden, weight, targets


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 7 rows, so the 50 rows take several blocks and a short last one."""
    monkeypatch.setattr(lm_head, "BLOCK_ELEMENTS", 7 * VOCAB)


def test_fp32_matches_the_definitions_across_blocks(small_blocks):
    hidden, weight, targets = inputs()
    upstream = torch.linspace(0.5, 2.0, ROWS, dtype=torch.float64)  # a weighted loss, not just a sum
    ref_lp, ref_entropy, ref_top1, ref_hidden = reference(hidden, weight, targets)
    (ref_lp * upstream).sum().backward()

    hidden = hidden.clone().requires_grad_()
    log_probs, entropy, sq, mean, is_top1 = lm_head.lean_log_probs(hidden, weight, targets)
    (log_probs * upstream.float()).sum().backward()

    assert sq is None and mean is None
    torch.testing.assert_close(log_probs.double(), ref_lp.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy.detach(), atol=1e-4, rtol=1e-5)
    assert torch.equal(is_top1, ref_top1)
    torch.testing.assert_close(hidden.grad.double(), ref_hidden.grad, atol=1e-5, rtol=1e-4)
    assert not entropy.requires_grad and not is_top1.requires_grad


def test_bf16_under_autocast_matches_the_definitions_within_bf16_rounding(small_blocks):
    hidden, weight, targets = inputs(torch.bfloat16)
    ref_lp, ref_entropy, _, ref_hidden = reference(hidden, weight, targets)
    (-ref_lp.sum()).backward()

    hidden = hidden.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, entropy, _, _, _ = lm_head.lean_log_probs(hidden, weight, targets)
    (-log_probs.sum()).backward()

    assert log_probs.dtype == torch.float32 and hidden.grad.dtype == torch.bfloat16
    # the logits themselves are rounded to bf16 (8 bits), as in every bf16 LM head
    torch.testing.assert_close(log_probs.double(), ref_lp.detach(), atol=0.05, rtol=0.02)
    torch.testing.assert_close(entropy.double(), ref_entropy.detach(), atol=0.05, rtol=0.02)
    scale = ref_hidden.grad.abs().max()
    assert (hidden.grad.double() - ref_hidden.grad).abs().max() < 0.02 * scale


def test_confident_rows_keep_their_digits():
    """A label far ahead of the rest: log p close to 0 but not rounded to it, no NaN, tiny gradient."""
    hidden, weight, targets = inputs(scale=40.0, seed=3)
    targets[::2] = (hidden @ weight.t()).argmax(-1)[::2]  # half the rows: the label is the runaway winner
    ref_lp, _, ref_top1, ref_hidden = reference(hidden, weight, targets)
    (-ref_lp.sum()).backward()
    hidden = hidden.clone().requires_grad_()
    log_probs, entropy, _, _, is_top1 = lm_head.lean_log_probs(hidden, weight, targets)
    (-log_probs.sum()).backward()
    assert torch.isfinite(log_probs).all() and torch.isfinite(entropy).all() and torch.isfinite(hidden.grad).all()
    # float64 resolves log p down to ~1e-13; 1 - p(label) computed as a difference would lose it at ~1e-7
    confident = (ref_lp.detach() > -1e-4) & (ref_lp.detach() < -1e-12)
    assert confident.sum() >= 3, "the test needs rows whose label wins by a wide margin"
    torch.testing.assert_close(log_probs.double()[confident], ref_lp.detach()[confident], atol=0, rtol=1e-3)
    assert torch.equal(is_top1, ref_top1)
    torch.testing.assert_close(hidden.grad.double(), ref_hidden.grad, atol=1e-4, rtol=1e-3)


def test_no_rows_still_backpropagates():
    hidden, weight, targets = inputs()
    hidden = hidden[:0].clone().requires_grad_()
    log_probs, entropy, _, _, is_top1 = lm_head.lean_log_probs(hidden, weight, targets[:0])
    assert log_probs.shape == entropy.shape == is_top1.shape == (0,)
    log_probs.sum().backward()
    assert hidden.grad.shape == (0, WIDTH)


def test_outputs_not_asked_for_are_none():
    hidden, weight, targets = inputs()
    log_probs, entropy, sq, mean, is_top1 = lm_head.lean_log_probs(hidden, weight, targets, outputs=("log_probs",))
    assert log_probs.shape == (ROWS,) and entropy is None and is_top1 is None and sq is None and mean is None


class RecordingKernel:
    """Stands for the implementation installed before (Unsloth's CPU one or TRL's Triton kernel)."""
    calls = []

    @staticmethod
    def apply(*args):
        RecordingKernel.calls.append(args)
        return "previous"


@pytest.fixture
def trl_utils(monkeypatch):
    from trl.trainer import utils

    RecordingKernel.calls = []
    monkeypatch.setattr(utils, "_ChunkedLogProbFunction", RecordingKernel)
    return utils


def test_dispatch_takes_the_plain_case_and_passes_the_rest_on(trl_utils):
    hidden, weight, targets = inputs()
    assert lm_head.use_lean_cpu_lm_head()
    assert lm_head.use_lean_cpu_lm_head()  # again: not wrapped twice
    dispatch = trl_utils._ChunkedLogProbFunction
    assert dispatch.replaced is RecordingKernel

    plain = dispatch.apply(hidden, weight, None, targets, 1.0, 4096, None, 1.0, ("log_probs", "entropy", "is_top1"))
    assert plain[0].shape == (ROWS,) and RecordingKernel.calls == []

    other_cases = [dict(bias=torch.zeros(VOCAB)), dict(temperature=0.7), dict(softcap=30.0), dict(logit_scale=0.5),
                   dict(outputs=("log_probs", "mean_logits")), dict(weight=weight.requires_grad_(True)),
                   dict(weight=weight.detach().half(), hidden=hidden.half())]
    for case in other_cases:
        args = dict(hidden=hidden, weight=weight.detach(), bias=None, targets=targets, temperature=1.0,
                    chunk_size=4096, softcap=None, logit_scale=1.0, outputs=("log_probs", "entropy"))
        args.update(case)
        assert dispatch.apply(*args.values()) == "previous", case
    assert len(RecordingKernel.calls) == len(other_cases)


def test_same_figures_as_unsloths_cpu_head():
    """Where both apply, ours and the one Unsloth installs agree (fp32: to rounding)."""
    import unsloth  # noqa: F401  (unsloth_zoo refuses to load without it)
    from unsloth_zoo.cpu.ops import cpu_chunked_log_probs

    hidden, weight, targets = inputs(seed=5)
    results = []
    for implementation in (cpu_chunked_log_probs, None):
        h = hidden.clone().requires_grad_()
        if implementation is None:
            out = lm_head.lean_log_probs(h, weight, targets)
        else:
            out = implementation(h, weight, None, targets, 1.0, 4096, None, 1.0, ("entropy", "is_top1"))
        (-out[0].sum()).backward()
        results.append((out[0].detach(), out[1].detach(), out[4], h.grad))
    (lp_u, ent_u, top_u, grad_u), (lp, ent, top, grad) = results
    torch.testing.assert_close(lp, lp_u, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ent_u, atol=1e-4, rtol=1e-5)
    assert torch.equal(top, top_u)
    torch.testing.assert_close(grad, grad_u, atol=1e-5, rtol=1e-4)
