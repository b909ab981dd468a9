"""LwM2M data types and their Python values (LwM2M-TS-Core 1.2 Appendix C).

| LwM2M type        | Python value            |
|-------------------|-------------------------|
| String, Corelnk   | ``str``                 |
| Integer, Time     | ``int`` (Time: Unix s)  |
| Unsigned Integer  | ``int`` (>= 0)          |
| Float             | ``float``               |
| Boolean           | ``bool``                |
| Opaque            | ``bytes``               |
| Objlnk            | :class:`ObjLink`        |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from lwm2m.errors import ModelError


class ResourceType(Enum):
    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED_INTEGER = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "none"

    @classmethod
    def parse(cls, text: str | None) -> ResourceType:
        """Parse the ``<Type>`` of a DDF file; empty means ``none`` (executables)."""
        t = (text or "").strip()
        if not t:
            return cls.NONE
        for member in cls:
            if member.value.lower() == t.lower():
                return member
        raise ModelError(f"unknown resource type {text!r}")


@dataclass(frozen=True, slots=True, order=True)
class ObjLink:
    """An object link ``object_id:instance_id`` (65535:65535 is the null link)."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for v in (self.object_id, self.instance_id):
            if type(v) is not int or not 0 <= v <= 0xFFFF:
                raise ModelError(f"invalid object link part {v!r}: must be 0..65535")

    @classmethod
    def parse(cls, text: str) -> ObjLink:
        parts = text.strip().split(":")
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 5 for p in parts):
            raise ModelError(f"invalid object link {text!r}: expected OBJECT:INSTANCE like 3:0")
        return cls(int(parts[0]), int(parts[1]))

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"


class UntypedBytes(bytes):
    """The bytes of a value whose LwM2M type is unknown: TLV carries no type (LwM2M-TS-Core 1.2
    §7.4.3), so without the object's model a decoder cannot tell an Integer from a String.

    A ``bytes`` (Opaque to everything that takes bytes); the JSON form shows it with the
    readings that fit (:func:`lwm2m.model.jsonform.readings`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"UntypedBytes({bytes(self)!r})"


Value = str | int | float | bool | bytes | ObjLink

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


def check_value(value: Value, type_: ResourceType) -> Value:
    """Return ``value`` coerced to the Python value of ``type_``; raise ModelError if it cannot be."""
    if type_ in (ResourceType.STRING, ResourceType.CORELNK):
        if isinstance(value, str):
            return value
    elif type_ in (ResourceType.INTEGER, ResourceType.TIME):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return value
    elif type_ is ResourceType.UNSIGNED_INTEGER:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is int and 0 <= value <= UINT64_MAX:
            return value
    elif type_ is ResourceType.FLOAT:
        if type(value) is float:
            return value
        if type(value) is int:
            try:
                return float(value)
            except OverflowError:  # beyond a double's range: not a Float value (below)
                pass
    elif type_ is ResourceType.BOOLEAN:
        if type(value) is bool:
            return value
    elif type_ is ResourceType.OPAQUE:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
    elif type_ is ResourceType.OBJLNK:
        if isinstance(value, ObjLink):
            return value
        if isinstance(value, str):
            return ObjLink.parse(value)
    elif type_ is ResourceType.NONE:
        return value
    raise ModelError(f"{value!r:.60} is not a valid {type_.value} value")


def infer_type(value: Value) -> ResourceType:
    """The LwM2M type a Python value naturally has (for values without a model)."""
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, bytes | bytearray):
        return ResourceType.OPAQUE
    if isinstance(value, ObjLink):
        return ResourceType.OBJLNK
    raise ModelError(f"{value!r} is not an LwM2M value")


def values_equal(a: Value, b: Value) -> bool:
    """Equality that treats NaN as equal to NaN (for round-trip checks)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b
