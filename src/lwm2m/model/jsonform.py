"""The one JSON form of decoded values, shared by the CLI and the REST API.

A list of records in path order, one per resource or resource instance::

    [{"path": "/3/0/7/0", "value": 3800}, {"path": "/3/0/13", "value": 1700000000, "time": 1700000000}]

Opaque values are base64 strings, Objlnk values ``"3:0"``, ``time`` is Unix
seconds on timestamped values; an object or instance with no resources is
``{"path": "/3/0"}``.

A value whose type is unknown (TLV of an object without a model: the bytes do not say
whether they are an Integer or a String) keeps its base64 ``value`` and adds ``raw``, its
bytes in hex, and ``readings``, what the bytes read as under each type they fit::

    {"path": "/9999/0/1", "value": "AAAAKg==", "raw": "0000002a",
     "readings": {"integer": 42, "float": 5.885e-44}}

Written values may say their type, ``{"path": ..., "value": ..., "type": "opaque"}``
(one of :data:`TYPE_NAMES`), so that a resource without a model gets the right one:
an Opaque value from base64, a Time from Unix seconds or an ISO 8601 date-time. Where a
model types the resource, a ``type`` must agree with it.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from lwm2m.errors import InvalidPath, JsonFormError
from lwm2m.model.path import Path
from lwm2m.model.record import Record, sort_records
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, UntypedBytes, Value, check_value

# The ``type`` a written value may give, and the LwM2M type it names (LwM2M-TS-Core 1.2 Appendix C).
TYPE_NAMES: dict[str, ResourceType] = {
    "string": ResourceType.STRING,
    "integer": ResourceType.INTEGER,
    "unsigned": ResourceType.UNSIGNED_INTEGER,
    "float": ResourceType.FLOAT,
    "boolean": ResourceType.BOOLEAN,
    "opaque": ResourceType.OPAQUE,
    "time": ResourceType.TIME,
    "objlnk": ResourceType.OBJLNK,
    "corelnk": ResourceType.CORELNK,
}
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


def value_to_json(value: Value) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, ObjLink):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity: "nan", "inf", "-inf"
    return value


def readings(raw: bytes) -> dict[str, Any]:
    """What untyped bytes read as under each LwM2M type whose encoding they fit (TLV, LwM2M-TS-Core
    1.2 §7.4.3): integer for 1, 2, 4 or 8 bytes (and unsigned when that differs), float for 4
    or 8, boolean for one byte 0 or 1, string for printable UTF-8."""
    out: dict[str, Any] = {}
    n = len(raw)
    if n in (1, 2, 4, 8):
        signed = int.from_bytes(raw, "big", signed=True)
        out["integer"] = signed
        if signed < 0:
            out["unsigned"] = int.from_bytes(raw, "big")
    if n == 4:
        # A 32-bit float holds about 7 significant digits: show no more than it has.
        out["float"] = value_to_json(float(f"{_F32.unpack(raw)[0]:.7g}"))
    elif n == 8:
        out["float"] = value_to_json(_F64.unpack(raw)[0])
    if n == 1 and raw[0] in (0, 1):
        out["boolean"] = bool(raw[0])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if text.isprintable():
            out["string"] = text
    return out


def record_to_json(record: Record, *, untyped: bool = True) -> dict[str, Any]:
    """The JSON form of ``record``; ``untyped=False`` leaves out the readings of untyped bytes
    (for stores that keep the form and restore the value themselves)."""
    out: dict[str, Any] = {"path": str(record.path)}
    value = record.value
    if value is not None:
        out["value"] = value_to_json(value)
        if untyped and type(value) is UntypedBytes:
            out["raw"] = value.hex()
            out["readings"] = readings(value)
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


def type_from_json(name: Any, where: str = "type") -> ResourceType:
    """The LwM2M type a ``type`` field names."""
    found = TYPE_NAMES.get(name) if isinstance(name, str) else None
    if found is None:
        raise JsonFormError(f"{where}: type {name!r} is not one of {', '.join(TYPE_NAMES)}")
    return found


def typed_from_json(raw: Any, given: Any, model: ResourceType | None, where: str = "value") -> Value:
    """A value from its JSON form and the ``type`` it gave (None: none given), with the model's
    type of the resource (None: no model)."""
    if given is None:
        return value_from_json(raw, model, where)
    type_ = type_from_json(given, f"{where}: type")
    agree = model is None or model is ResourceType.NONE or model is type_
    if model is not None and not agree and {model, type_} != {ResourceType.STRING, ResourceType.CORELNK}:
        raise JsonFormError(f"{where}: the model types this resource {model.value}, not {given}")
    if type_ is ResourceType.TIME and isinstance(raw, str):
        try:
            stamp = datetime.fromisoformat(raw)
        except ValueError:
            raise JsonFormError(
                f"{where}: {raw!r} is neither Unix seconds nor an ISO 8601 date-time"
            ) from None
        if stamp.tzinfo is None:
            raise JsonFormError(f"{where}: {raw!r} has no time zone (add Z or +01:00)")
        return int(stamp.timestamp())
    return value_from_json(raw, type_, where)


def value_from_json(raw: Any, type_: ResourceType | None, where: str = "value") -> Value:
    """A JSON value typed by the resource type (or by its JSON type when unknown)."""
    if raw is None or isinstance(raw, list | dict):
        raise JsonFormError(f"{where}: {raw!r} is not a resource value")
    if type_ is None:
        untyped: Value = raw  # a JSON scalar, as it came
        return untyped
    try:
        if type_ is ResourceType.OPAQUE:
            if not isinstance(raw, str):
                raise JsonFormError(f"{where}: Opaque values are base64 strings, got {raw!r}")
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):  # ValueError: characters beyond ASCII
                raise JsonFormError(f"{where}: {raw!r} is not valid base64") from None
        if type_ is ResourceType.FLOAT and isinstance(raw, str) and raw in ("nan", "inf", "-inf"):
            return float(raw)
        if type_ in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.TIME) and isinstance(
            raw, bool
        ):
            raise JsonFormError(f"{raw!r} is not an integer")
        return check_value(raw, type_)
    except ValueError as exc:
        if isinstance(exc, JsonFormError):
            raise
        raise JsonFormError(f"{where}: {exc}") from None


def record_from_json(item: Any, models: ObjectRegistry | None = None, *, prefixed: bool = False) -> Record:
    """A record of the JSON form; ``prefixed``: its path may name an end device behind a gateway
    (``/dev1/3303/0/5700``, LwM2M-TS-Gateway 1.1, object 25), as stored records do."""
    if not isinstance(item, Mapping):
        raise JsonFormError(f"a record must be an object like {{'path': '/3/0/1', 'value': 1}}, got {item!r}")
    unknown = set(item) - {"path", "value", "time", "type"}
    if unknown:
        raise JsonFormError(f"unknown record keys {sorted(unknown)}: expected path, value, time, type")
    if "path" not in item:
        raise JsonFormError(f"record without 'path': {dict(item)!r}")
    try:
        path = Path.parse(item["path"], prefixed=prefixed)
    except InvalidPath as exc:
        raise JsonFormError(str(exc)) from None
    value = None
    if "value" in item:
        value = typed_from_json(item["value"], item.get("type"), _type_of(path, models), f"{path}")
    elif "type" in item:
        raise JsonFormError(f"{path}: a type without a value")
    time = item.get("time")
    if time is not None and (isinstance(time, bool) or not isinstance(time, int | float)):
        raise JsonFormError(f"{path}: time must be a number of Unix seconds, got {time!r}")
    return Record(path, value, time)


def records_from_json(
    data: Any, models: ObjectRegistry | None = None, *, prefixed: bool = False
) -> list[Record]:
    """Records from the JSON form (a list, or one record object); with ``prefixed``, a path may
    start with an end device's prefix."""
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise JsonFormError(f"expected a list of records, got {type(data).__name__}")
    return sort_records(record_from_json(item, models, prefixed=prefixed) for item in data)
