"""Measure memory and utilisation while a block of code runs: GPU through NVML, else CPU.

Usage::

    from llmcourse.inference.monitor import ResourceMonitor
    with ResourceMonitor() as monitor:
        engine.generate(prompts)
    monitor.summary   # {"device": "cpu", "peak_memory_mb": 2710.4, "memory_kind": "cpu_rss", ...}

On CUDA: NVML (nvidia-ml-py) samples GPU memory in use and GPU utilisation, and torch's
``max_memory_allocated`` gives the peak of tensors. On CPU: psutil samples the process RSS and
CPU%. Anything that cannot be measured is reported as the string ``"unavailable"``, never as 0:
``torch.cuda.max_memory_allocated()`` silently returns 0 without a GPU, and NVML raises.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

UNAVAILABLE = "unavailable"


def _nvml_handle():
    """An NVML handle for GPU 0, or None where NVML cannot be used."""
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return None


class ResourceMonitor:
    """Context manager sampling memory and utilisation every ``interval`` seconds in a thread."""

    def __init__(self, device: str | None = None, interval: float = 0.1, include_children: bool = False):
        """``include_children``: RSS of this process plus all its descendants (vLLM runs its engine,
        and on a CPU also its worker, in processes of their own)."""
        from llmcourse.env.lane import resolve_device
        self.device = resolve_device(device or "auto")
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self.summary: dict[str, Any] = {}
        self._stop = threading.Event()
        self._process = psutil.Process()
        self.include_children = include_children
        self._nvml = _nvml_handle() if self.device == "cuda" else None

    def _sample(self) -> dict[str, float]:
        sample = {"t": time.perf_counter(), "rss_mb": self._rss() / 2**20,
                  "cpu_percent": self._process.cpu_percent(None)}
        if self._nvml is not None:
            import pynvml
            sample["gpu_memory_mb"] = pynvml.nvmlDeviceGetMemoryInfo(self._nvml).used / 2**20
            sample["gpu_util_percent"] = float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu)
        return sample

    def _rss(self) -> int:
        rss = self._process.memory_info().rss
        if self.include_children:
            for child in self._process.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:  # ended between listing and reading
                    pass
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "ResourceMonitor":
        if self.device == "cuda":
            import torch
            torch.cuda.reset_peak_memory_stats()
        self._process.cpu_percent(None)  # the first reading only starts the clock
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._sample())
        self.summary = self._summarise(time.perf_counter() - self._started)

    def _summarise(self, seconds: float) -> dict[str, Any]:
        cpu = [s["cpu_percent"] for s in self.samples[1:]] or [UNAVAILABLE]
        summary: dict[str, Any] = {
            "device": self.device, "seconds": round(seconds, 3), "samples": len(self.samples),
            "peak_rss_mb": round(max(s["rss_mb"] for s in self.samples), 1),
            "mean_cpu_percent": round(sum(cpu) / len(cpu), 1) if cpu[0] != UNAVAILABLE else UNAVAILABLE,
            "peak_gpu_memory_mb": UNAVAILABLE, "mean_gpu_util_percent": UNAVAILABLE,
            "torch_peak_allocated_mb": UNAVAILABLE,
        }
        if self.device == "cuda":
            import torch
            summary["torch_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if self._nvml is not None:
                summary["peak_gpu_memory_mb"] = round(max(s["gpu_memory_mb"] for s in self.samples), 1)
                utils = [s["gpu_util_percent"] for s in self.samples]
                summary["mean_gpu_util_percent"] = round(sum(utils) / len(utils), 1)
        summary["peak_memory_mb"] = (summary["torch_peak_allocated_mb"] if self.device == "cuda"
                                     else summary["peak_rss_mb"])
        summary["memory_kind"] = "cuda_peak_allocated" if self.device == "cuda" else "cpu_rss"
        return summary
