"""SenML-JSON, content format 110 (RFC 8428 §5; LwM2M-TS-Core 1.2 §7.4.4).

``[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"7/0","v":3800}]``;
``vd`` (Opaque) is base64url without padding. JSON goes through msgspec
(DESIGN.md: several times faster than the stdlib on SenML packs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import msgspec

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.senml import JSON_LABELS, PackDecoder, b64_decode, b64url_encode, decode_pack, encode_pack
from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry

_SLOTS = JSON_LABELS.slots()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def json_loads(data: bytes) -> object:
    """Parse JSON; any failure (syntax, nesting too deep, bad UTF-8) is a CodecError.

    So is an object with a repeated member name: parsed into a dict it would keep
    only the last value (RFC 8259 §4 leaves the outcome open), so a record, or in
    OMA-JSON a whole ``"e"`` array, would be lost without a word.
    """
    try:
        doc = _decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError, TypeError) as exc:
        raise CodecError(f"invalid JSON: {exc}") from None
    # Every member of every object has its own ":" in the text, so as many colons as
    # members in the decoded objects means no name was repeated: one C-speed count settles
    # the usual payload. Colons inside strings ("3:0", URLs) leave it open; then the
    # stdlib parser, which can show every member, decides.
    colons = data.count(b":")
    if colons and colons != _shallow_members(doc) and colons > _members(doc):
        _check_repeats(data)
    return doc


def _shallow_members(doc: object) -> int:
    """The members of the objects a SenML pack or an OMA-JSON document holds at the top and
    in the arrays right below it; the same as ``_members`` when nothing lies deeper, and cheap.
    (Were anything deeper, its colons would make the count differ.)"""
    if type(doc) is list:
        return sum([len(x) for x in doc if type(x) is dict])
    if type(doc) is dict:
        n = len(doc)
        for v in doc.values():
            if type(v) is list:
                n += sum([len(x) for x in v if type(x) is dict])
        return n
    return 0


def _members(doc: object) -> int:
    """The number of members of all the objects in ``doc``."""
    if type(doc) is list:
        stack = list(doc)
    elif type(doc) is dict:
        stack = [doc]
    else:
        return 0
    n = 0
    pop, extend = stack.pop, stack.extend
    while stack:
        x = pop()
        tx = type(x)
        if tx is dict:
            n += len(x)
            extend(x.values())
        elif tx is list:
            extend(x)
    return n


def _no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise CodecError(f"invalid JSON: member {name[:20]!r} is repeated in an object")
            seen.add(name)
    return obj


def _check_repeats(data: bytes) -> None:
    try:
        json.loads(data, object_pairs_hook=_no_repeats)
    except CodecError:
        raise
    except (ValueError, RecursionError) as exc:  # msgspec took it: should not happen
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
