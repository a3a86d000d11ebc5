"""Shared fixtures: repository paths, the stand-in config, and a runner for the CLI of either lane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:  # Unsloth patches transformers/TRL/PEFT on import, so it must come first, as in the notebooks.
    import unsloth  # noqa: F401
except ImportError:  # the plain-TRL lane
    pass

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIG = ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"
GPU_CONFIG = ROOT / "day1" / "configs" / "qwen3-4b_lora_sft.yaml"
TRAIN_FILE = ROOT / "day1" / "data" / "faq_train.jsonl"
TEST_FILE = ROOT / "day1" / "data" / "faq_test.jsonl"
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def run_cli(*args: str, python: str | Path = sys.executable, timeout: int = 900, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m llmcourse.cli ARGS`` and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(python), "-m", "llmcourse.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, **popen)


@pytest.fixture
def trl_python() -> Path:
    if not TRL_PYTHON.exists():
        pytest.fail(f"{TRL_PYTHON} is missing: run `make test`, which builds the plain-TRL lane")
    return TRL_PYTHON
