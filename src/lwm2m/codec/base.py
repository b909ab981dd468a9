"""What every content-format codec shares: its error type, format numbers, the interface."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol

from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ResourceType


class CodecError(ValueError):
    """Content that cannot be encoded or decoded in the asked format."""


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
