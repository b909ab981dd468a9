"""SenML-JSON, content format 110 (RFC 8428 §5; LwM2M-TS-Core 1.2 §7.4.4).

``[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"7/0","v":3800}]``;
``vd`` (Opaque) is base64url without padding. JSON goes through msgspec
(DESIGN.md: several times faster than the stdlib on SenML packs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from lwm2m.codec.base import CodecError, ContentFormat
from lwm2m.codec.senml import JSON_LABELS, PackDecoder, b64_decode, b64url_encode, decode_pack, encode_pack
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry

_SLOTS = JSON_LABELS.slots()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def json_loads(data: bytes) -> object:
    """Parse JSON; any failure (syntax, nesting too deep, bad UTF-8) is a CodecError."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError, TypeError) as exc:
        raise CodecError(f"invalid JSON: {exc}") from None


class SenMLJSONCodec:
    content_format = ContentFormat.SENML_JSON
    name = "senml-json"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        # JSON has no NaN or infinity (msgspec would write null): refuse them.
        return _encode(encode_pack(records, base, models, JSON_LABELS, b64url_encode, True))

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        return decode_pack(json_loads(data), base, models, _SLOTS, b64_decode)

    def decoder(self, base: Path, models: ObjectRegistry | None = None) -> Callable[[bytes], list[Record]]:
        """``decode`` for many payloads under ``base``: see :class:`~lwm2m.codec.senml.PackDecoder`."""
        pack = PackDecoder(base, models, _SLOTS, b64_decode).decode

        def decode(data: bytes) -> list[Record]:
            return pack(json_loads(data))

        return decode


SENML_JSON = SenMLJSONCodec()
