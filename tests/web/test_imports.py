"""No import circle inside ``lwm2m.web``: every import between its modules, at the top or inside
a function, points one way (the app and the route table at the top, the views below them, the
pieces they share at the bottom)."""

from __future__ import annotations

import ast
from pathlib import Path

import lwm2m.web

ROOT = Path(lwm2m.web.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from lwm2m.web.views import clients`` imports the module lwm2m.web.views.clients
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            graph[name] |= {t for t in targets if t in modules and t != name and t != "lwm2m.web"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> list[str] | None:
        if name in stack:
            return [*stack[stack.index(name) :], name]
        if name in done:
            return None
        for target in sorted(graph[name]):
            found = visit(target, [*stack, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_no_import_circle_inside_web() -> None:
    graph = _graph()
    assert "lwm2m.web.app" in graph and "lwm2m.web.views.clients" in graph["lwm2m.web.routes"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert "lwm2m.web.app" not in graph["lwm2m.web.bootstrap_api"]


def test_the_check_sees_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
