"""``llmcourse doctor``: the lane, the versions, the engines, the stand-in models, and what to fix.

Usage::

    from llmcourse.env.doctor import doctor
    todo = doctor()        # prints a report; returns the things to fix (empty: all good)
"""
from __future__ import annotations

import subprocess
import sys

from llmcourse.env.lane import (LIBRARIES, cache_dir, hardware, library_version, reinstall_command,
                                unsloth_installed, version_drift)
from llmcourse.env.models import STAND_INS
from llmcourse.env.prepare import is_prepared, prepared_dir
from llmcourse.env.vllm_lane import vllm_python  # vLLM may live in another venv (.venv-vllm on a CPU)


def engines_available() -> dict[str, bool]:
    return {"unsloth": unsloth_installed(), "trl": library_version("trl") is not None,
            "vllm": vllm_python() is not None}


def vllm_report() -> str | None:
    """"VERSION (PYTHON)" of the vLLM the course would use, read from that Python's metadata; None if none."""
    python = vllm_python()
    if python is None:
        return None
    if python == sys.executable:
        return f"{library_version('vllm')} ({python})"
    probe = "from llmcourse.env.lane import library_version; print(library_version('vllm') or '')"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"{done.stdout.strip()} ({python})" if done.returncode == 0 and done.stdout.strip() else None


def doctor() -> list[str]:
    """Print the lane, versions, engines and cache; return the list of things to fix."""
    hw = hardware()
    lane = "cuda" if "gpu" in hw else "cpu"
    print(f"通道 lane: {lane}")
    if lane == "cuda":
        print(f"  GPU: {hw['gpu']} × {hw['gpu_count']}，显存 {hw['gpu_memory_gb']} GB")
    print(f"  CPU: {hw['cpu_cores']} 核，内存 {hw['ram_gb']} GB，Python {hw['python']}")
    print("版本 versions:")
    for name in LIBRARIES:
        print(f"  {name:<13} {library_version(name) or '未安装 (not installed)'}")
    engines = engines_available()
    vllm = vllm_report()
    print(f"  vLLM 推理引擎  {vllm or '未找到 (not found)'}")
    if engines["vllm"] and vllm is None:
        engines["vllm"] = False
    print("训练/推理引擎 engines: " + ", ".join(f"{k}={'可用' if v else '不可用'}" for k, v in engines.items()))
    print(f"缓存目录 cache: {cache_dir()}")
    todo = []
    for name in STAND_INS:
        ready = is_prepared(name)
        print(f"  替身模型 {name}: {'已准备' if ready else '未准备'} ({prepared_dir(name)})")
        if not ready:
            todo.append(f"运行 llmcourse prepare-model {name} 以准备替身模型 {name}")
    if library_version("torch") is None:
        todo.append("未安装 torch：在 CPU 机器上运行 make run；GPU 机器见 environment.yml")
    if not engines["unsloth"]:
        todo.append("未安装 Unsloth：训练会退回 PEFT + TRL（可用 pip install -e .[unsloth] 安装）")
    if not engines["vllm"]:
        todo.append("没有找到 vLLM：" + ("pip install -e .[gpu]" if lane == "cuda" else
                                      "在仓库根目录运行 make setup（会建 .venv-vllm，vLLM 的 CPU 版）"))
    for item in version_drift():
        todo.append(f"{item['package']} 的版本是 {item['installed']}，课程固定为 {item['required']}（{item['source']}）："
                    f"在仓库根目录运行 {reinstall_command()} 恢复")
    for item in todo:
        print(f"待办 TODO: {item}")
    if not todo:
        print("一切就绪 all good")
    return todo
