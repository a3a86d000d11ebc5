"""The package's shape: no import cycles, nothing private imported across modules, old names still import,
and README's Layout names every file (the rules a newcomer relies on to find the file for a step)."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "shared" / "llmcourse"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names taken from it, line) for every llmcourse import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("llmcourse")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmcourse"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:  # from llmcourse.grading import checks
                    found.append((sub, [], node.lineno))
                else:
                    found.append((node.module, [alias.name], node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in imported_modules(path):
            if target in MODULES and target != name and not MODULES[target].name == "__init__.py":
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycles():
    """Imports inside functions count too: a deferred import hides a cycle, it does not remove it."""
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    edges = graph()
    edges["llmcourse.config"] = edges["llmcourse.config"] | {"llmcourse.grading.workflow"}
    assert find_cycle(edges) is not None


def test_nothing_private_is_imported_across_modules():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name} from {target}"
                 for path in MODULES.values()
                 for target, names, line in imported_modules(path)
                 for name in names if name.startswith("_")]
    assert not offenders, "\n".join(offenders)


def test_every_module_opens_with_a_docstring():
    missing = [str(p.relative_to(ROOT)) for p in MODULES.values() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing


@pytest.mark.parametrize("old", sorted(importlib.import_module("llmcourse.legacy").MOVED))
def test_old_module_names_still_import_the_moved_module(old):
    from llmcourse.legacy import MOVED
    new = (MOVED[old],) if isinstance(MOVED[old], str) else MOVED[old]
    modules = [importlib.import_module(f"llmcourse.{name}") for name in new]
    old_module = importlib.import_module(f"llmcourse.{old}")
    if len(modules) == 1:
        assert old_module is modules[0]  # the same object: patching one patches the other
    for module in modules:  # a split module: every name of each part, first part first
        for name in [n for n in vars(module) if not n.startswith("_")]:
            owner = next(m for m in modules if hasattr(m, name))
            assert getattr(old_module, name) is getattr(owner, name), f"llmcourse.{old}.{name}"


def test_old_imports_in_released_notebooks_still_resolve():
    """The imports the notebooks had before the regrouping (kept in tests/data/released_imports.txt)."""
    lines = (ROOT / "tests" / "data" / "released_imports.txt").read_text(encoding="utf-8").split("\n")
    for line in filter(None, lines):
        match = re.fullmatch(r"from (llmcourse[\w.]*) import (.+)", line)
        module = importlib.import_module(match.group(1))
        for name in match.group(2).split(","):
            assert hasattr(module, name.strip()), line


def test_readme_layout_names_every_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = [str(p.relative_to(PACKAGE)) for p in MODULES.values()
               if p.name != "__init__.py" and not re.search(rf"\b{re.escape(p.name)}\b", layout)]
    assert not missing, f"README Layout does not name: {missing}"
