"""The one JSON form of decoded values, shared by the CLI and the REST API.

A list of records in path order, one per resource or resource instance::

    [{"path": "/3/0/7/0", "value": 3800}, {"path": "/3/0/13", "value": 1700000000, "time": 1700000000}]

Opaque values are base64 strings, Objlnk values ``"3:0"``, ``time`` is Unix
seconds on timestamped values; an object or instance with no resources is
``{"path": "/3/0"}``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from typing import Any

from lwm2m.model.path import InvalidPath, Path
from lwm2m.model.record import Record, sort_records
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, Value, check_value


class JsonFormError(ValueError):
    """JSON that is not a valid list of records."""


def value_to_json(value: Value) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, ObjLink):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity: "nan", "inf", "-inf"
    return value


def record_to_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(record.path)}
    if record.value is not None:
        out["value"] = value_to_json(record.value)
    if record.time is not None:
        t = record.time
        out["time"] = int(t) if float(t).is_integer() else t
    return out


def records_to_json(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [record_to_json(r) for r in sort_records(records)]


def _type_of(path: Path, models: ObjectRegistry | None) -> ResourceType | None:
    if models is None or path.level < 3:
        return None
    assert path.object_id is not None and path.resource_id is not None
    d = models.resource(path.object_id, path.resource_id)
    return d.type if d is not None else None


def value_from_json(raw: Any, type_: ResourceType | None, where: str = "value") -> Value:
    """A JSON value typed by the resource type (or by its JSON type when unknown)."""
    if raw is None or isinstance(raw, list | dict):
        raise JsonFormError(f"{where}: {raw!r} is not a resource value")
    if type_ is None:
        return raw
    try:
        if type_ is ResourceType.OPAQUE:
            if not isinstance(raw, str):
                raise JsonFormError(f"{where}: Opaque values are base64 strings, got {raw!r}")
            try:
                return base64.b64decode(raw, validate=True)
            except binascii.Error:
                raise JsonFormError(f"{where}: {raw!r} is not valid base64") from None
        if type_ is ResourceType.FLOAT and isinstance(raw, str) and raw in ("nan", "inf", "-inf"):
            return float(raw)
        if type_ in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.TIME) and isinstance(
            raw, bool
        ):
            raise ValueError(f"{raw!r} is not an integer")
        return check_value(raw, type_)
    except ValueError as exc:
        if isinstance(exc, JsonFormError):
            raise
        raise JsonFormError(f"{where}: {exc}") from None


def record_from_json(item: Any, models: ObjectRegistry | None = None) -> Record:
    if not isinstance(item, Mapping):
        raise JsonFormError(f"a record must be an object like {{'path': '/3/0/1', 'value': 1}}, got {item!r}")
    unknown = set(item) - {"path", "value", "time"}
    if unknown:
        raise JsonFormError(f"unknown record keys {sorted(unknown)}: expected path, value, time")
    if "path" not in item:
        raise JsonFormError(f"record without 'path': {dict(item)!r}")
    try:
        path = Path.parse(item["path"])
    except InvalidPath as exc:
        raise JsonFormError(str(exc)) from None
    value = None
    if "value" in item:
        value = value_from_json(item["value"], _type_of(path, models), f"{path}")
    time = item.get("time")
    if time is not None and (isinstance(time, bool) or not isinstance(time, int | float)):
        raise JsonFormError(f"{path}: time must be a number of Unix seconds, got {time!r}")
    return Record(path, value, time)


def records_from_json(data: Any, models: ObjectRegistry | None = None) -> list[Record]:
    """Records from the JSON form (a list, or one record object)."""
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise JsonFormError(f"expected a list of records, got {type(data).__name__}")
    return sort_records(record_from_json(item, models) for item in data)
