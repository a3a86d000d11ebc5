"""Old flat module names (``llmcourse.train``, ``llmcourse.lane`` …) keep importing after the regrouping.

Usage: nothing to call. ``import llmcourse`` installs :class:`MovedModules`, so a notebook released before
the package was grouped by stage, e.g. ``from llmcourse.train import train_or_reuse``, gets the module that
now lives at ``llmcourse.training.run`` (the same module object: patching one patches the other).
New code imports the new names; ``MOVED`` is the one table of what moved where.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

# old name under llmcourse. → new name under llmcourse. (a tuple: the old module was split; its names are
# looked up in each new module in turn). (``llmcourse.data`` is now a package that
# re-exports what ``llmcourse.data`` used to hold; see llmcourse/data/__init__.py)
MOVED = {
    "rawdata": "data.raw",
    "databuild": "data.build",
    "datareport": "data.report",
    "pii": "data.pii",
    "train": "training.run",
    "lora_math": "training.lora_math",
    "lm_head": "training.lm_head",
    "gpu_memory": "training.gpu_memory",
    "infer": "inference.engines",
    "monitor": "inference.monitor",
    "serve": "serving.server",
    "batcher": "serving.batcher",
    "chat": "serving.chat",
    "loadtest": "serving.loadtest",
    "api_checks": "serving.api_checks",
    "cases": "evaluation.cases",
    "scoring": "evaluation.scoring",
    "evaluate": "evaluation.ask",
    "benchmark": "evaluation.benchmark",
    "project": "evaluation.project",
    "checks": "grading.checks",
    "rubric": "grading.rubric",
    "recheck": "grading.recheck",
    "integrity": "grading.integrity",
    "cohort": "grading.cohort",
    "learner_edition": "grading.learner_edition",
    "nbgrader_plugins": "grading.nbgrader_plugins",
    "course": "notebooks.run",
    "notebook": "notebooks.display",
    "form": "notebooks.form_day1",
    "form_day2": "notebooks.form_day2",
    "pitfalls": "notebooks.pitfalls",
    "models": "env.models",
    "prepare": "env.prepare",
    "lane": ("env.lane", "env.doctor"),  # doctor() moved out of the lane module
    "vllm_lane": "env.vllm_lane",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        if isinstance(self.target, str):
            return importlib.import_module(self.target)
        module = types.ModuleType(spec.name, f"Moved to {', '.join(self.target)}.")
        module.__getattr__, module.__dir__ = _split_exports(spec.name, self.target)
        return module

    def exec_module(self, module):
        pass  # already executed under its new name


class MovedModules(importlib.abc.MetaPathFinder):
    """Resolves ``llmcourse.<old>`` to ``llmcourse.<new>`` for every entry of :data:`MOVED`."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.partition(".")
        if package != "llmcourse" or old not in MOVED:
            return None
        new = MOVED[old]
        target = f"llmcourse.{new}" if isinstance(new, str) else tuple(f"llmcourse.{n}" for n in new)
        return importlib.util.spec_from_loader(fullname, _Alias(target))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())


def lazy_exports(package: str, module: str):
    """``__getattr__`` / ``__dir__`` for a package that answers for a module it replaced (see data/)."""
    return _split_exports(package, (module,))


def _split_exports(name: str, modules: tuple[str, ...]):
    def __getattr__(attr: str):
        if not attr.startswith("__"):
            for module in modules:
                target = importlib.import_module(module)
                if hasattr(target, attr):
                    return getattr(target, attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    def __dir__():
        return sorted({attr for module in modules for attr in dir(importlib.import_module(module))})

    return __getattr__, __dir__
