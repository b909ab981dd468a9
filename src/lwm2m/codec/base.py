"""What every content-format codec shares: its error type, format numbers, the interface."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Protocol

import cbor2

from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ResourceType, Value, check_value, infer_type


class ContentFormat(IntEnum):
    """CoAP Content-Format numbers used by LwM2M (LwM2M-TS-Core 1.2 §7.1, Table 7.1.-1)."""

    TEXT = 0
    LINK = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    TLV = 11542
    OMA_JSON = 11543
    LWM2M_CBOR = 11544


class Codec(Protocol):
    """A content format: records in, bytes out, and back.

    ``base`` is the path of the request (the node the payload stands for);
    ``models`` types the values where the format does not carry types (TLV,
    text, CBOR). Decoders raise :class:`CodecError` and nothing else.
    """

    content_format: ContentFormat
    name: str

    def encode(
        self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None
    ) -> bytes: ...

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]: ...


def decoder_for(codec: Codec, base: Path, models: ObjectRegistry | None) -> Callable[[bytes], list[Record]]:
    """``codec.decode`` fixed to ``base`` and ``models``, for many payloads in a row (the
    notifications of one observation): codecs that can remember something between them
    (SenML's names) offer a ``decoder(base, models)`` method, the others decode each afresh."""
    make = getattr(codec, "decoder", None)
    if make is not None:
        return make(base, models)  # type: ignore[no-any-return]

    def decode(data: bytes) -> list[Record]:
        return codec.decode(data, base, models)

    return decode


def resource_type(path: Path, models: ObjectRegistry | None) -> ResourceType | None:
    """The type of the resource ``path`` (level 3 or 4) names, if the model knows it."""
    if models is None or path.level < 3:
        return None
    assert path.object_id is not None and path.resource_id is not None
    d = models.resource(path.object_id, path.resource_id)
    return d.type if d is not None else None


def is_multiple(path: Path, models: ObjectRegistry | None) -> bool | None:
    """Whether the resource ``path`` names is multi-instance, if the model knows it."""
    if models is None or path.level < 3:
        return None
    assert path.object_id is not None and path.resource_id is not None
    d = models.resource(path.object_id, path.resource_id)
    return d.multiple if d is not None else None


def check_under(records: Sequence[Record], base: Path) -> None:
    """Raise CodecError unless every record lies at or under ``base`` (the request path)."""
    n = len(base.ids)
    ids = base.ids
    for r in records:
        if r.path.ids[:n] != ids or (r.path.prefix != base.prefix and not r.path.within(base)):
            raise CodecError(f"record {r.path} is not under the request path {base}")


def wire_type(path: Path, value: object, models: ObjectRegistry | None) -> ResourceType:
    """The type to encode ``value`` as: the model's type of ``path``, else the value's own type.

    Executable resources (type ``none``) carry no value in the model; a value
    given for one is sent as its own Python type.
    """
    t = resource_type(path, models)
    if t is None or t is ResourceType.NONE:
        try:
            return infer_type(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise CodecError(f"{path}: {exc}") from None
    return t


def typed_value(path: Path, value: object, type_: ResourceType) -> Value:
    """``value`` checked against (and coerced to) ``type_``; CodecError if it does not fit."""
    try:
        return check_value(value, type_)  # type: ignore[arg-type]
    except ValueError as exc:
        raise CodecError(f"{path}: {exc}") from None


CBOR_MAX_DEPTH = 64  # far deeper than any LwM2M content; stops hostile nesting early


def cbor_loads(data: bytes) -> object:
    """Decode exactly one CBOR item; anything else (bad or trailing bytes, over-deep nesting) is a CodecError.

    A map with a repeated key is refused too: decoded into a dict it would keep
    only the last value and lose the others without a word (RFC 8949 §5.6 calls
    such a map invalid). cbor2 raises many exception types from its tag decoders
    (datetime, decimal, shared references, ...), so all of them become CodecError here.
    """
    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(fp, max_depth=CBOR_MAX_DEPTH, allow_duplicate_keys=False).decode()
    except Exception as exc:
        raise CodecError(f"invalid CBOR: {exc}") from None
    if fp.tell() != len(data):
        raise CodecError(f"invalid CBOR: {len(data) - fp.tell()} bytes after the data item")
    return obj
