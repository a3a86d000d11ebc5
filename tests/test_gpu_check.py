"""benchmarks/gpu_check.py (make gpu-check): a clear stop without CUDA, tiny sizes on a GPU."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_stops_at_once_with_a_clear_message_without_cuda():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, str(SCRIPT)], check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2
    assert "CUDA" in done.stderr and "make gpu-check" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.gpu
@pytest.mark.slow
def test_tiny_check_reports_ratios_and_peak_vram(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--model-name", "gemma3-270m", "--steps", "3",
                           "--prompts", "4", "--max-tokens", "8", "--budget", "540", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1].removeprefix("RESULT ")) == result
    phases = result["phases"]
    assert {p: phases[p]["status"] for p in phases} == dict.fromkeys(phases, "ok")
    assert result["unsloth_vs_trl_train"] > 0 and result["vllm_vs_transformers_generate"] > 0
    for phase in phases.values():
        assert phase["nvml_peak_mb"] > 0 or phase["torch_peak_allocated_mb"] > 0
    assert phases["generate-vllm"]["adapter"] and phases["generate-transformers"]["output_tokens"] > 0
