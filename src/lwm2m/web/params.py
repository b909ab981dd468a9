"""The query parameters and JSON bodies of the REST API, checked before any work: a bad value
is a :class:`~lwm2m.web.errors.InvalidRequest` (400) naming it, even for a sleeping client whose
request would only go out later."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from lwm2m.codec.formats import get_codec
from lwm2m.errors import InvalidPath, InvalidRequest, UnsupportedMethod
from lwm2m.model.jsonform import records_from_json, typed_from_json
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.server.role import DEFAULT_TIMEOUT

__all__ = [
    "allow",
    "body_records",
    "flag",
    "json_body",
    "lwm2m_path",
    "number",
    "on_device",
    "query_format",
    "query_paths",
    "request_paths",
    "timeout",
    "write_records",
]


def timeout(request: Request) -> float:
    raw = request.query_params.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"timeout: {raw!r} is not a number of seconds") from None
    if not value > 0:
        raise InvalidRequest(f"timeout: {raw!r} must be positive")
    return value


def query_format(request: Request) -> int | str | None:
    raw = request.query_params.get("format")
    if raw is None or raw == "":
        return None
    fmt = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else raw  # else get_codec names it
    get_codec(fmt)  # an unknown format is a 400 now, not a failure once a sleeping client wakes
    return fmt


def flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"{name}: {raw!r} is not true or false")


def number(request: Request, name: str, kind: type[int] | type[float]) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: {raw!r} is not a number") from None


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # syntax, UTF-8, an over-long number, deep nesting
        raise InvalidRequest(f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def request_paths(body: dict[str, Any]) -> list[Path]:
    """``{"paths": [...]}`` of a composite request."""
    paths = body.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise InvalidRequest('the body needs "paths": ["/3/0/0", ...]')
    # An end device behind a gateway: its prefix first (``/dev1/3303/0/5700``, LwM2M-TS-Gateway 1.1).
    return [Path.parse(p, prefixed=True) for p in paths]


def on_end_device(paths: list[Path], prefix: str) -> list[Path]:
    """``paths`` of a composite request made on an end device's URL
    (``/api/clients/{gw}/devices/{prefix}/composite/...``): its own paths, which the gateway
    knows under its prefix (LwM2M-TS-Gateway 1.1: ``/dev1/3303/0/5700``). No prefix: as given."""
    if not prefix:
        return paths
    for path in paths:
        if path.prefix:
            raise InvalidRequest(f"{path}: an end device's composite takes its own paths, without a prefix")
    return [path.with_prefix(prefix) for path in paths]


def records_on_end_device(records: list[Record], prefix: str) -> list[Record]:
    """The records of a Write-Composite on an end device's URL, as :func:`on_end_device`."""
    if not prefix:
        return records
    paths = on_end_device([r.path for r in records], prefix)
    return [Record(path, r.value, r.time) for path, r in zip(paths, records, strict=True)]


def query_paths(request: Request) -> list[Path]:
    """``?paths=/3/0/9,/3303/0/5700`` (or the parameter repeated)."""
    given = [p for raw in request.query_params.getlist("paths") for p in raw.split(",") if p.strip()]
    if not given:
        raise InvalidRequest("give the observed paths: ?paths=/3/0/9,/3303/0/5700")
    return [Path.parse(p.strip(), prefixed=True) for p in given]


def lwm2m_path(segments: list[str]) -> Path:
    """The LwM2M path of URL segments, each a bare ID (Path.parse alone would forgive spaces)."""
    text = "/" + "/".join(segments)
    path = Path.parse(text)
    if str(path) != text:
        raise InvalidPath(f"invalid path {text[:40]!r}: IDs are decimal numbers, e.g. /3/0/1")
    return path


def allow(method: str, methods: tuple[str, ...], what: str) -> None:
    """405 with ``Allow`` unless ``method`` is one of ``methods`` (RFC 9110 §15.5.6)."""
    if method not in methods:
        raise UnsupportedMethod(method, methods, what)


def body_records(body: dict[str, Any], models: ObjectRegistry, *, prefixed: bool = False) -> list[Record]:
    """The records of a body; with ``prefixed``, paths may name end devices (a composite write)."""
    if "records" not in body:
        raise InvalidRequest('the body needs "records": [{"path": ..., "value": ...}, ...]')
    return records_from_json(body["records"], models, prefixed=prefixed)


def write_records(body: dict[str, Any], path: Path, models: ObjectRegistry) -> list[Record]:
    """``{"records": [...]}``, or ``{"value": v}`` for the one resource at ``path`` (with
    ``"type"``, its LwM2M type, for a resource without a model)."""
    if "value" in body:
        if "records" in body:
            raise InvalidRequest('give either "value" or "records", not both')
        if not (path.is_resource or path.is_resource_instance):
            raise InvalidRequest(f'"value" writes one resource; {path} is not a resource')
        assert path.object_id is not None and path.resource_id is not None
        definition = models.resource(path.object_id, path.resource_id)
        model = definition.type if definition else None
        value = typed_from_json(body["value"], body.get("type"), model, str(path))
        return [Record(path, value)]
    return on_device(body_records(body, models), path)


def on_device(records: list[Record], path: Path) -> list[Record]:
    """A body's records for a request at ``path``: on an end device behind a gateway, its paths
    are the device's own (``/3303/0/5700`` under ``/dev1``, LwM2M-TS-Gateway 1.1)."""
    if not path.prefix:
        return records
    return [Record(r.path.with_prefix(path.prefix), r.value, r.time) for r in records]
