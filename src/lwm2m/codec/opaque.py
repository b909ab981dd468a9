"""Opaque, content format 42 (LwM2M-TS-Core 1.2 §7.4.2): the raw bytes of one Opaque resource."""

from __future__ import annotations

from collections.abc import Sequence

from lwm2m.codec._single import check_single_base, single_value
from lwm2m.codec.base import ContentFormat, resource_type
from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ResourceType

_FITS = (None, ResourceType.OPAQUE, ResourceType.NONE)


class OpaqueCodec:
    content_format = ContentFormat.OPAQUE
    name = "opaque"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        path, value = single_value(records, base, self.name)
        if resource_type(path, models) not in _FITS:
            raise CodecError(f"{path} is not an Opaque resource: use another content format")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise CodecError(f"{path}: the opaque format carries bytes, got {type(value).__name__}")
        return bytes(value)

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        check_single_base(base, self.name)
        if resource_type(base, models) not in _FITS:
            raise CodecError(f"{base} is not an Opaque resource: it cannot be read from opaque content")
        return [Record(base, bytes(data))]


OPAQUE = OpaqueCodec()
