"""LwM2M content formats, one module each, and a registry keyed by format number."""

from lwm2m.codec.base import Codec, CodecError, ContentFormat

__all__ = ["Codec", "CodecError", "ContentFormat"]
