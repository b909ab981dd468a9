"""CBOR, content format 60 (LwM2M-TS-Core 1.2 §7.4.6): one value as one CBOR data item.

Values map to CBOR as integers (Integer, Unsigned, Time), floats, booleans,
byte strings (Opaque) and text strings (String, Corelnk, and Objlnk as
``"3:0"``). A Time may also arrive as tag 1 (epoch seconds, RFC 8949 §3.4.2).
Arrays, maps and other tags are not single values and are refused before
cbor2 sees them, so decoding never recurses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cbor2

from lwm2m.codec._single import check_single_base, single_value
from lwm2m.codec.base import ContentFormat, cbor_loads, resource_type, typed_value, wire_type
from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, Value

_TAG_EPOCH = 0xC1  # major type 6, tag 1
_SCALAR_MAJORS = (0, 1, 2, 3, 7)
_TIME_TYPES = (ResourceType.TIME, ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER)
_PLAIN = (bool, int, float, str, bytes)


class CborCodec:
    content_format = ContentFormat.CBOR
    name = "cbor"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        path, value = single_value(records, base, self.name)
        type_ = wire_type(path, value, models)
        v = typed_value(path, value, type_)
        if isinstance(v, ObjLink):
            v = str(v)
        try:
            # canonical: the shortest float encoding that keeps the value exactly.
            return cbor2.dumps(v, canonical=True)
        except (cbor2.CBOREncodeError, ValueError, OverflowError) as exc:
            raise CodecError(f"{path}: cannot encode {value!r} as CBOR: {exc}") from None

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        check_single_base(base, self.name)
        data = bytes(data)
        if not data:
            raise CodecError("empty CBOR payload")
        tagged = data[0] == _TAG_EPOCH
        if tagged:
            data = data[1:]
            if not data or data[0] >> 5 not in (0, 1, 7):
                raise CodecError("CBOR tag 1 (epoch time) must hold a number")
        elif data[0] >> 5 not in _SCALAR_MAJORS:
            raise CodecError("content format 60 holds one single value, not an array, a map or a tag")
        value: Any = cbor_loads(data)
        if type(value) not in _PLAIN:
            raise CodecError(f"CBOR value {value!r} is not an LwM2M value")
        type_ = resource_type(base, models)
        if tagged:
            if type(value) not in (int, float):
                raise CodecError("CBOR tag 1 (epoch time) must hold a number")
            if type_ is not None and type_ not in _TIME_TYPES:
                raise CodecError(f"{base}: a tagged time is not a {type_.value} value")
            if type_ is None:
                type_ = ResourceType.TIME
        return [Record(base, _typed(base, value, type_))]


def _typed(path: Path, value: Value, type_: ResourceType | None) -> Value:
    if type_ is None or type_ is ResourceType.NONE:
        return value
    if type_ is ResourceType.OBJLNK and not isinstance(value, str):
        raise CodecError(f'{path}: an Objlnk is a text string such as "3:0" in CBOR, got {value!r}')
    return typed_value(path, value, type_)


CBOR = CborCodec()
