"""SenML-CBOR, content format 112 (RFC 8428 §6; LwM2M-TS-Core 1.2 §7.4.5).

The SenML-JSON pack with integer labels (RFC 8428 Table 4: bn -2, bt -3,
n 0, v 2, vs 3, vb 4, t 6, vd 8) and Opaque as a CBOR byte string; ``vlo``
keeps its string key. Encoded with cbor2 (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cbor2

from lwm2m.codec.base import ContentFormat, cbor_loads
from lwm2m.codec.senml import CBOR_LABELS, PackDecoder, decode_pack, encode_pack
from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry

_SLOTS = CBOR_LABELS.slots()


def _same(data: bytes) -> bytes:
    return data


def _opaque(raw: object) -> bytes:
    if type(raw) is not bytes:
        raise CodecError(f"an opaque value (vd) must be a byte string, got {type(raw).__name__}")
    return raw


class SenMLCBORCodec:
    content_format = ContentFormat.SENML_CBOR
    name = "senml-cbor"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        return cbor2.dumps(encode_pack(records, base, models, CBOR_LABELS, _same, False))

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        return decode_pack(cbor_loads(data), base, models, _SLOTS, _opaque)

    def decoder(self, base: Path, models: ObjectRegistry | None = None) -> Callable[[bytes], list[Record]]:
        """``decode`` for many payloads under ``base`` (the notifications of one observation),
        faster from the second on: see :class:`~lwm2m.codec.senml.PackDecoder`."""
        pack = PackDecoder(base, models, _SLOTS, _opaque).decode

        def decode(data: bytes) -> list[Record]:
            return pack(cbor_loads(data))

        return decode


SENML_CBOR = SenMLCBORCodec()
