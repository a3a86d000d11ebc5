"""Data-parallel training: which process this is when a run is started by ``torchrun`` / ``accelerate launch``.

Usage::

    torchrun --standalone --nproc_per_node 2 -m llmcourse.cli train day1/configs/gemma3-270m_lora_sft.yaml
    accelerate launch --num_processes 2 -m llmcourse.cli train CONFIG      # GPUs; see docs/setup.md

    from llmcourse.training.parallel import processes, is_main_process
    if is_main_process(): ...                                              # rank 0 writes the run's files

Every process trains on its share of each step's batches (the Trainer's distributed sampler) and the
gradients are averaged (DDP; gloo on a CPU, NCCL on GPUs). The run folder is written by rank 0 alone, with
the same files as a one-process run; ``env.json`` and every ``train_log.jsonl`` row record ``processes``.
The launcher sets ``RANK`` / ``WORLD_SIZE``; a plain ``llmcourse train`` is one process of rank 0.
"""

from __future__ import annotations

import os


def processes() -> int:
    """How many processes train together (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (``RANK``; 0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0: the one process that writes the run folder and prints."""
    return rank() == 0


def summed(*values):
    """``values`` (ints or floats) summed over every process (a no-op in a one-process run): each process counts
    only the batches it trained on and scores only its share of the validation rows."""
    if processes() == 1:
        return list(values)
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return [type(v)(t) for v, t in zip(values, total.tolist())]


def wait_for_everyone() -> None:
    """A barrier, so that no process reads the run folder before rank 0 has written it."""
    if processes() > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.barrier()
