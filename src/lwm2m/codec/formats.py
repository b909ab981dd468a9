"""The codec registry: a content format by number (``11542``) or name (``tlv``).

Codecs live one per module as module-level instances and are imported on
first use, so a format whose module is missing or broken only fails when it
is asked for.
"""

from __future__ import annotations

import importlib

from lwm2m.codec.base import Codec, ContentFormat
from lwm2m.errors import CodecError

# name -> (content format, module, attribute)
_FORMATS: dict[str, tuple[ContentFormat, str, str]] = {
    "text": (ContentFormat.TEXT, "lwm2m.codec.text", "TEXT"),
    "link": (ContentFormat.LINK, "lwm2m.codec.link", "LINK"),
    "opaque": (ContentFormat.OPAQUE, "lwm2m.codec.opaque", "OPAQUE"),
    "cbor": (ContentFormat.CBOR, "lwm2m.codec.cbor", "CBOR"),
    "senml-json": (ContentFormat.SENML_JSON, "lwm2m.codec.senml_json", "SENML_JSON"),
    "senml-cbor": (ContentFormat.SENML_CBOR, "lwm2m.codec.senml_cbor", "SENML_CBOR"),
    "tlv": (ContentFormat.TLV, "lwm2m.codec.tlv", "TLV"),
    "oma-json": (ContentFormat.OMA_JSON, "lwm2m.codec.oma_json", "OMA_JSON"),
    "lwm2m-cbor": (ContentFormat.LWM2M_CBOR, "lwm2m.codec.lwm2m_cbor", "LWM2M_CBOR"),
}
_BY_NUMBER: dict[int, str] = {int(fmt): name for name, (fmt, _, _) in _FORMATS.items()}
_CACHE: dict[str, Codec] = {}


def format_names() -> dict[str, int]:
    """Every known content format: name -> number."""
    return {name: int(fmt) for name, (fmt, _, _) in _FORMATS.items()}


def _known() -> str:
    return ", ".join(f"{name} ({int(fmt)})" for name, (fmt, _, _) in _FORMATS.items())


def _name_of(fmt: int | str) -> str:
    if isinstance(fmt, int) and not isinstance(fmt, bool):
        name = _BY_NUMBER.get(int(fmt))
        if name is None:
            raise CodecError(f"unknown content format {int(fmt)}; known formats: {_known()}")
        return name
    if isinstance(fmt, str):
        key = fmt.strip().lower().replace("_", "-")
        if key.isascii() and key.isdigit() and len(key) <= 9:
            return _name_of(int(key))
        if key in _FORMATS:
            return key
    raise CodecError(f"unknown content format {fmt!r:.40}; known formats: {_known()}")


def get_codec(fmt: int | str) -> Codec:
    """The codec of a content format, by number or name; CodecError if unknown or unavailable."""
    codec = _CACHE.get(fmt) if isinstance(fmt, str) else None
    if codec is not None:
        return codec
    name = _name_of(fmt)
    codec = _CACHE.get(name)
    if codec is None:
        _, module, attr = _FORMATS[name]
        try:
            codec = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise CodecError(f"content format {name} is not available: {exc}") from None
        _CACHE[name] = codec
    if isinstance(fmt, str):
        _CACHE[fmt] = codec
    return codec
