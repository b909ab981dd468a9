"""The layer rule of DESIGN.md, checked by reading every module's imports.

A module imports from its own layer's lower neighbours or below, never up,
never sideways between server/client/bootstrap. ``codec`` may also use the
RFC 6690 link-format parser of ``coap`` (both are stdlib-only bottom layers)
for content format 40.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lwm2m"

LOW = {"coap", "model", "codec", "protocol", "transport", "storage"}
ALLOWED: dict[str, set[str]] = {
    "coap": {"coap"},
    "model": {"model"},
    "codec": {"codec", "model", "coap"},
    "protocol": {"protocol", "coap", "model", "codec"},
    "transport": {"transport", "coap"},
    "storage": {"storage", "protocol", "model", "codec", "coap"},
    "server": LOW | {"server"},
    "client": LOW | {"client"},
    "bootstrap": LOW | {"bootstrap"},
    "web": LOW | {"server", "client", "bootstrap", "web"},
    "simulator": LOW | {"client", "simulator"},
    "cli": set(),  # anything
}
THIRD_PARTY: dict[str, set[str]] = {"coap": set(), "model": {"defusedxml"}}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = path.relative_to(SRC).parts[0]
                found.append((f"lwm2m.{pkg}", node.lineno))
            elif node.module:
                found.append((node.module, node.lineno))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if len(p.relative_to(SRC).parts) > 1)


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_layers(module: Path) -> None:
    package = module.relative_to(SRC).parts[0]
    assert package in ALLOWED, f"{package} is not a layer of DESIGN.md"
    for name, line in _imports(module):
        top = name.split(".")[0]
        where = f"{module.relative_to(SRC)}:{line} imports {name}"
        if top == "lwm2m":
            parts = name.split(".")
            if package == "cli" or len(parts) == 1 or parts[1] == "errors":
                continue  # lwm2m.errors, the one exception tree, is below every layer
            assert parts[1] in ALLOWED[package], f"layer rule broken: {where}"
        elif package in THIRD_PARTY and top not in STDLIB:
            assert top in THIRD_PARTY[package], f"{package} must not depend on {top}: {where}"


def test_every_layer_exists() -> None:
    for package in ALLOWED:
        assert (SRC / package / "__init__.py").is_file(), package
