"""LwM2M content formats, one module each, and a registry keyed by format number."""

from lwm2m.codec.base import Codec, ContentFormat
from lwm2m.errors import CodecError

__all__ = ["Codec", "CodecError", "ContentFormat"]
