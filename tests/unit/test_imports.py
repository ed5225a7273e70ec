"""The package's import graph has no cycle, counting every import the source names:
module-level, inside functions (lazy) and under ``if TYPE_CHECKING:``."""

from __future__ import annotations

import ast
from pathlib import Path

import atlas_ci

PACKAGE = Path(atlas_ci.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["atlas_ci", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.AST, here: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules an ``import`` or ``from ... import`` node loads."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = here.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = {base}
        # ``from atlas_ci import plan`` loads the submodule atlas_ci.plan.
        names |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if name in known}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):  # every node: function bodies and TYPE_CHECKING blocks too
            edges |= _imported(node, name, is_package, known)
        edges.discard(name)
        # The package __init__ files run first; an edge to one's own parent is not a cycle.
        graph[name] = {target for target in edges if not name.startswith(target + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_walk_sees_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    # plan imports manifest only under TYPE_CHECKING; settings imports metadata in a function.
    assert "atlas_ci.manifest" in graph["atlas_ci.plan"]
    assert "atlas_ci.metadata" in graph["atlas_ci.settings"]
    assert "atlas_ci.registry.serve" in graph["atlas_ci.cli"]


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
