"""Imports point down the pipeline and there are no cycles.

``mskseg_lib``'s packages follow the pipeline data -> models -> evaluation -> finetuning -> stats
-> biomarkers -> autolabel -> video3d -> plots: a module imports from its own package, from
earlier packages and from the top-level utilities, never from a later package. The edges (the
CLI, the notebook runner, reporting, the companion, ``from_profile``) may import anything; no
package imports an edge. Lazy imports inside functions count too.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "mskseg_lib"
PIPELINE = ("data", "models", "evaluation", "finetuning", "stats", "biomarkers", "autolabel", "video3d", "plots")
UTILITIES = {"errors", "atomic", "provenance", "settings", "config", "distributed", "reference", "logging_setup",
             "workload", "run_progress", "ledger", "run_lock"}
EDGES = {"cli", "__main__", "envcheck", "notebook_runner", "reporting", "companion", "browser_check", "notebook_files",
         "from_profile"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the mskseg_lib modules it imports (relative imports resolved)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in mods and t != mod:
                    edges[mod].add(t)
    return edges


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _imports(_modules())


def test_every_top_level_name_is_classified() -> None:
    tops = {_top(m) for m in _modules()} - {""}
    assert tops <= set(PIPELINE) | UTILITIES | EDGES, tops - set(PIPELINE) - UTILITIES - EDGES


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert _cycles(graph) == []


def test_imports_point_down_the_pipeline(graph: dict[str, set[str]]) -> None:
    wrong = []
    for a, targets in graph.items():
        ta = _top(a)
        for b in targets:
            tb = _top(b)
            if tb in EDGES and ta not in EDGES:
                wrong.append(f"{a} -> {b} (an edge)")
            elif ta in UTILITIES and tb in PIPELINE:
                wrong.append(f"{a} -> {b} (a utility importing a stage)")
            elif ta in PIPELINE and tb in PIPELINE and PIPELINE.index(tb) > PIPELINE.index(ta):
                wrong.append(f"{a} -> {b} (upward)")
    assert sorted(wrong) == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    edges = {"mskseg_lib.data.a": {"mskseg_lib.data.b"}, "mskseg_lib.data.b": {"mskseg_lib.data.a"}}
    assert _cycles(edges) == [["mskseg_lib.data.a", "mskseg_lib.data.b"]]
