"""The public surface (DESIGN.md, "Public surface"): a flat ``lwm2m`` namespace, subpackage
facades that export their public names, one meaning per name, module paths that don't
stutter."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import lwm2m

SRC = Path(__file__).resolve().parents[1] / "src" / "lwm2m"
PACKAGES = sorted(
    ".".join(("lwm2m", *p.parent.relative_to(SRC).parts)) for p in SRC.rglob("__init__.py") if p.parent != SRC
)


def test_the_names_of_the_issue_import_from_the_top() -> None:
    from lwm2m import (  # noqa: F401
        BootstrapServer,
        Client,
        ClientRegistered,
        Code,
        ContentFormat,
        Fleet,
        LwM2MError,
        NotificationReceived,
        Path,
        Record,
        Server,
    )

    assert Server.__module__ == "lwm2m.server.role"
    assert issubclass(lwm2m.NotRegistered, LwM2MError)


def test_every_exported_name_resolves() -> None:
    for name in lwm2m.__all__:
        assert getattr(lwm2m, name) is not None, name
    assert set(dir(lwm2m)) >= set(lwm2m.__all__)
    with pytest.raises(AttributeError):
        _ = lwm2m.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.parametrize("package", [p for p in PACKAGES if not p.startswith("lwm2m.cli")])
def test_each_facade_exports_what_it_names(package: str) -> None:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names, f"{package} has no __all__: a subpackage exports its public names"
    for name in names:
        # A name is an attribute of the facade, or (for a package of modules) one of its modules.
        found = hasattr(module, name) or importlib.util.find_spec(f"{package}.{name}") is not None
        assert found, f"{package}.__all__ names {name}, which it does not have"


def test_a_public_name_means_one_thing() -> None:
    seen: dict[str, tuple[str, object]] = {}
    for package in ["lwm2m", *PACKAGES]:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            if hasattr(module, name):
                value = getattr(module, name)
            else:
                value = importlib.import_module(f"{package}.{name}")
            if name in seen and name != "__version__":
                first, other = seen[name]
                assert other is value, f"{name} of {package} is not {name} of {first}"
            seen.setdefault(name, (package, value))


def test_module_paths_do_not_stutter() -> None:
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        assert len(parts) < 2 or parts[-1] != parts[-2], f"lwm2m.{'.'.join(parts)} stutters"


def test_the_sans_io_layer_does_not_load_the_roles() -> None:
    # The names of the top package are imported when first used: ``import lwm2m.coap``
    # stays the sans-IO layer alone.
    code = (
        "import sys, lwm2m.coap, lwm2m.codec; "
        "assert not any(m.startswith(('lwm2m.server', 'lwm2m.client', 'asyncio')) for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('lwm2m'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_class_name_is_defined_once() -> None:
    # web/bodies.py is the exception: its structs are the JSON shapes of the same things
    # (a Record, a Registration), named as the OpenAPI document shows them.
    defined: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        where = str(path.relative_to(SRC))
        if where == "web/bodies.py":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("class ") and not line.startswith("class _"):
                name = line[6:].split("(")[0].split(":")[0].strip()
                assert name not in defined, f"{name} is defined in {defined[name]} and in {where}"
                defined[name] = where
