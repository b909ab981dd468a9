"""Plain text, content format 0 (LwM2M-TS-Core 1.2 §7.4.1).

One value of one resource or resource instance as UTF-8 text: numbers in
decimal, Boolean as ``0``/``1``, Objlnk as ``3:0``, Opaque as base64, Time
as integer Unix seconds. Without a model the type is unknown, so a decoded
value is the string itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from lwm2m.codec._single import check_single_base, single_value
from lwm2m.codec.base import ContentFormat, resource_type, typed_value, wire_type
from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, Value

_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"\+?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL_FLOATS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


class TextCodec:
    content_format = ContentFormat.TEXT
    name = "text"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        path, value = single_value(records, base, self.name)
        type_ = wire_type(path, value, models)
        return format_text(typed_value(path, value, type_), type_).encode("utf-8")

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        check_single_base(base, self.name)
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"text/plain payload is not UTF-8: {exc}") from None
        type_ = resource_type(base, models)
        return [Record(base, parse_text(text, type_, base))]


def format_text(value: Value, type_: ResourceType) -> str:
    """A checked value of ``type_`` in its plain-text form."""
    if type_ is ResourceType.BOOLEAN:
        return "1" if value else "0"
    if type_ is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return base64.b64encode(value).decode("ascii")
    if type_ is ResourceType.FLOAT:
        return repr(value)
    return str(value)  # str, int, ObjLink ("3:0")


def parse_text(text: str, type_: ResourceType | None, path: Path) -> Value:
    """The value of ``type_`` that ``text`` stands for; the text itself when the type is unknown."""
    if type_ is None or type_ in (ResourceType.STRING, ResourceType.CORELNK, ResourceType.NONE):
        return text
    if type_ in (ResourceType.INTEGER, ResourceType.TIME, ResourceType.UNSIGNED_INTEGER):
        pattern = _UINT if type_ is ResourceType.UNSIGNED_INTEGER else _INT
        if len(text) > 40 or not pattern.fullmatch(text):
            raise CodecError(f"{path}: {text[:40]!r} is not a {type_.value} value")
        return typed_value(path, int(text), type_)
    if type_ is ResourceType.FLOAT:
        special = _SPECIAL_FLOATS.get(text.lower())
        if special is not None:
            return special
        if len(text) > 400 or not _FLOAT.fullmatch(text):
            raise CodecError(f"{path}: {text[:40]!r} is not a Float value")
        return float(text)
    if type_ is ResourceType.BOOLEAN:
        if text == "1":
            return True
        if text == "0":
            return False
        raise CodecError(f"{path}: {text[:40]!r} is not a Boolean value (0 or 1)")
    if type_ is ResourceType.OPAQUE:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"{path}: Opaque values in text/plain are base64, got {text[:40]!r}") from None
    if type_ is ResourceType.OBJLNK:
        try:
            return ObjLink.parse(text)
        except ValueError as exc:
            raise CodecError(f"{path}: {exc}") from None
    raise CodecError(f"{path}: no text form for type {type_.value}")


TEXT = TextCodec()
