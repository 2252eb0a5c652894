"""No import circles among the gateway's modules (issue #14): each module's imports,
deferred ones and those for type checking included, form a graph without cycles.

A circle is what a deferred import inside a function, or one behind TYPE_CHECKING,
usually hides; both count here. Tests and migrations are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

GATEWAY = Path(settings.BASE_DIR)
PACKAGES = ("gateway_svc", "identity", "proxy", "rpc", "storefront", "graphql_api", "statuspage")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (GATEWAY / package).rglob("*.py"):
            if {"tests", "migrations"} & set(path.relative_to(GATEWAY).parts):
                continue
            name = ".".join(path.relative_to(GATEWAY).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names & known


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while (member := stack.pop()) != module:
                component.append(member)
            if component:
                cycles.append(sorted([module, *component]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_the_finder_sees_a_cycle_hidden_in_a_deferred_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_the_gateways_modules_import_each_other_without_circles():
    modules = _modules()
    assert "proxy.app" in modules
    assert "identity.clients" in modules
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    assert import_cycles(graph) == []
