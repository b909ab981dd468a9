"""The one error tree (DESIGN.md, "Errors"): every exception class of the package lives in
``lwm2m/errors.py`` under ``LwM2MError``, in a category a caller can catch."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from lwm2m import errors

SRC = Path(__file__).resolve().parents[1] / "src" / "lwm2m"
CATEGORIES = (
    errors.CodecError,
    errors.ModelError,
    errors.ProtocolError,
    errors.ConfigError,
    errors.DeviceError,
    errors.NotRegistered,
    errors.RequestTimeout,
    errors.TransportError,
    errors.SecurityError,
    errors.StoreError,
    errors.ApiError,
)
EXCEPTION_BASES = {"Exception", "BaseException", "ValueError", "LookupError", "RuntimeError", "TypeError"}
EXCEPTION_BASES |= {"TimeoutError", "ConnectionError", "ImportError", "KeyError", "OSError"}


def _classes() -> list[type[BaseException]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BaseException)]


def test_every_error_is_an_lwm2m_error_in_a_category() -> None:
    for cls in _classes():
        assert issubclass(cls, errors.LwM2MError), cls
        if cls is not errors.LwM2MError and cls not in CATEGORIES:
            assert issubclass(cls, CATEGORIES) or cls.__bases__ == (errors.LwM2MError,), cls


def test_the_categories_keep_their_builtin_meaning() -> None:
    # Code written against the builtins keeps working (``except ValueError`` around a decoder).
    assert issubclass(errors.CodecError, ValueError)
    assert issubclass(errors.ProtocolError, ValueError)
    assert issubclass(errors.RequestTimeout, TimeoutError)
    assert issubclass(errors.TransportError, ConnectionError)
    assert issubclass(errors.NotRegistered, LookupError)


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "errors.py" or p.parent != SRC)


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_exception_class_outside_the_error_module(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                assert name not in EXCEPTION_BASES and not name.endswith("Error"), (
                    f"{module.relative_to(SRC)}:{node.lineno} defines {node.name}({name}): "
                    "exceptions belong in lwm2m/errors.py"
                )


MODULES = sorted(
    ".".join(("lwm2m", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
    for p in SRC.rglob("*.py")
    if p.name != "__main__.py"
)


def test_every_exception_class_of_the_package_is_defined_in_the_error_module() -> None:
    # Importing every module also finds subclasses of our own errors defined elsewhere.
    for name in MODULES:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("lwm2m"):
                assert cls.__module__ == "lwm2m.errors", f"{cls.__module__}.{cls.__name__}"


def test_device_error_carries_its_code() -> None:
    assert errors.NotFound().code == 0x84
    assert errors.DeviceError("no", 0x80).code == 0x80
    assert errors.MethodNotAllowed("read-only").code == 0x85
