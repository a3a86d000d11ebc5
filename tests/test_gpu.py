"""CUDA lane: the same code with device cuda. Skipped without a GPU (see conftest)."""
import json
from pathlib import Path

import pytest

from llmcourse.training import run as training
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


def test_vllm_serves_the_adapter_unmerged(tmp_path):
    pytest.importorskip("vllm")
    from llmcourse.inference.engines import VLLMEngine, load_engine
    cfg = load_config(CPU_CONFIG, **{"model.device": "cuda", "train.max_steps": 2, "data.max_samples": 8,
                                     "train.output_dir": str(tmp_path), "infer.max_tokens": 16})
    training.train(cfg)
    engine = load_engine(cfg, tmp_path / "adapter", engine="auto")
    assert isinstance(engine, VLLMEngine)
    results = engine.generate([[{"role": "user", "content": "退货期多久？"}]] * 2)
    assert len(results) == 2 and all(r.output_tokens > 0 and r.tokens_per_s > 0 for r in results)


def test_monitor_reads_nvml_and_torch_on_cuda():
    import torch
    from llmcourse.inference.monitor import ResourceMonitor
    with ResourceMonitor("cuda") as monitor:
        block = torch.ones(256, 2**20, device="cuda")  # 1 GiB
        del block
    assert monitor.summary["torch_peak_allocated_mb"] >= 1024
    assert monitor.summary["memory_kind"] == "cuda_peak_allocated"
