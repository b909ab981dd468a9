"""OMA LwM2M JSON, content format 11543 (LwM2M-TS 1.0 §6.4.4, LwM2M-TS-Core 1.1 §7.4.5 "JSON").

The LwM2M 1.0/1.1 format, built on an early SenML draft: one object with a
base name and an array of entries::

    {"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"7/0","v":3800}]}

``v`` carries Integer, Unsigned Integer, Float and Time; ``sv`` String,
Corelnk and Opaque (base64, LwM2M-TS 1.0 §6.4.4 Table 20); ``bv`` Boolean;
``ov`` Objlnk (``"3:0"``). An entry's time is ``bt + t`` as given; like the
SenML codecs, relative times are not resolved against a clock (codecs are pure).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

import msgspec

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.senml import TypeLookup, b64_decode, base_name, check_number, parse_name, wire_value
from lwm2m.codec.senml_json import json_loads
from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record, sort_records
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, Value, check_value

_encode = msgspec.json.Encoder().encode

# Entry value fields; more than one in an entry is an error.
_VALUE_FIELDS = ("v", "sv", "bv", "ov")


def _finite(x: int | float, what: str) -> int | float:
    if type(x) is float and not math.isfinite(x):
        raise CodecError(f"{what} cannot be written in JSON")
    return x


class OMAJSONCodec:
    content_format = ContentFormat.OMA_JSON
    name = "oma-json"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        base_ids = base.ids
        nbase = len(base_ids)
        # One bn for the whole payload: the base path, with "/" when entries lie below it.
        below = any(len(r.path.ids) > nbase for r in records)
        # LwM2M-TS-Gateway 1.1: on an end device, bn starts with its prefix (/dev1/3303/0/).
        bn = base_name(base_ids, base.prefix) if below else str(base)
        types = TypeLookup(models)
        entries: list[dict[str, object]] = []
        for r in records:
            ids = r.path.ids
            if ids[:nbase] != base_ids or r.path.prefix != base.prefix:
                raise CodecError(f"{r.path} is not under the request path {base}")
            e: dict[str, object] = {}
            if below:
                e["n"] = "/".join([str(i) for i in ids[nbase:]])
            value = r.value
            if value is not None:
                if len(ids) < 3:
                    raise CodecError(f"{r.path} carries a value but is not a resource path")
                rtype, value = wire_value(value, types(ids))
                if rtype is ResourceType.STRING or rtype is ResourceType.CORELNK:
                    e["sv"] = value
                elif rtype is ResourceType.BOOLEAN:
                    e["bv"] = value
                elif rtype is ResourceType.OPAQUE:
                    e["sv"] = base64.b64encode(value).decode("ascii")  # type: ignore[arg-type]
                elif rtype is ResourceType.OBJLNK:
                    e["ov"] = str(value)
                else:
                    e["v"] = _finite(value, f"{r.path}: {value!s}")  # type: ignore[arg-type]
            if r.time is not None:
                e["t"] = _finite(r.time, f"{r.path}: time {r.time}")
            entries.append(e)
        return _encode({"bn": bn, "e": entries})

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        doc = json_loads(data)
        if type(doc) is not dict:
            raise CodecError(f"OMA JSON content must be an object, got {type(doc).__name__}")
        bn = doc.get("bn", "")
        if type(bn) is not str:
            raise CodecError("the base name (bn) must be a string")
        time: int | float | None
        bt = doc.get("bt")
        if bt is not None:
            bt = check_number(bt, "the base time (bt)")
        entries = doc.get("e")
        if type(entries) is not list:
            raise CodecError('OMA JSON content needs an array of entries ("e")')
        base_ids = base.ids
        nbase = len(base_ids)
        types = TypeLookup(models)
        out: list[Record] = []
        for e in entries:
            if type(e) is not dict:
                raise CodecError(f"an OMA JSON entry must be an object, got {type(e).__name__}")
            n = e.get("n", "")
            if type(n) is not str:
                raise CodecError("an entry name (n) must be a string")
            path = parse_name(bn + n)
            ids = path.ids
            if ids[:nbase] != base_ids or (path.prefix != base.prefix and not path.within(base)):
                raise CodecError(f"{path} is not under the request path {base}")
            t = e.get("t")
            if t is not None:
                t = check_number(t, "an entry time (t)")
                time = t if bt is None else bt + t
                if not math.isfinite(time):
                    raise CodecError("an entry time must be finite")
            else:
                time = bt
            fields = [f for f in _VALUE_FIELDS if f in e]
            if not fields:
                out.append(Record(path, None, time))
                continue
            if len(fields) > 1:
                raise CodecError(f"an entry carries more than one value field: {fields}")
            if len(ids) < 3:
                raise CodecError(f"{path} carries a value but is not a resource path")
            field = fields[0]
            raw = e[field]
            rtype = types(ids)
            value: Value
            if field == "v":
                value = check_number(raw, "a value (v)")
            elif field == "bv":
                if type(raw) is not bool:
                    raise CodecError("a boolean value (bv) must be true or false")
                value = raw
            elif field == "ov":
                if type(raw) is not str:
                    raise CodecError("an object link value (ov) must be a string such as 3:0")
                try:
                    value = ObjLink.parse(raw)
                except ValueError as exc:
                    raise CodecError(str(exc)) from None
            else:
                if type(raw) is not str:
                    raise CodecError("a string value (sv) must be a string")
                # Opaque travels as base64 in sv; only the model can tell it from a String.
                value = b64_decode(raw) if rtype is ResourceType.OPAQUE else raw
            if rtype is not None:
                try:
                    value = check_value(value, rtype)
                except ValueError as exc:
                    raise CodecError(f"{path}: {exc}") from None
            out.append(Record(path, value, time))
        return sort_records(out)


OMA_JSON = OMAJSONCodec()
