"""CUDA lane: the same code with device cuda. Skipped without a GPU (see conftest)."""
import json
from pathlib import Path

import pytest

from llmcourse import train as training
from llmcourse.config import load_config
from conftest import CPU_CONFIG, GPU_CONFIG

pytestmark = pytest.mark.gpu


def test_stand_in_trains_on_cuda_with_the_default_engine(tmp_path):
    cfg = load_config(CPU_CONFIG, **{"model.device": "cuda", "train.max_steps": 3, "data.max_samples": 12,
                                     "train.output_dir": str(tmp_path)})
    result = training.train(cfg)
    assert result.device == "cuda"
    log = training.read_train_log(tmp_path)
    assert all(row["memory_kind"] == "cuda_peak_allocated" and row["memory_mb"] > 0 for row in log)
    assert json.loads((tmp_path / "env.json").read_text())["hardware"]["gpu"]


def test_qwen3_config_uses_bf16_and_checkpointing():
    cfg = load_config(GPU_CONFIG)
    args = training._sft_args(cfg, "cuda", Path("/tmp/qwen-args"))
    assert args.bf16 and args.gradient_checkpointing and not args.use_cpu
    assert args.output_dir.startswith("/tmp/qwen-args")
