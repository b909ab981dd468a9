"""Opaque (42): LwM2M-TS-Core 1.2 §7.4.2, raw bytes of an Opaque resource only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.codec.opaque import OPAQUE
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T

P = Path.parse
MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            5,
            "Firmware Update",
            {
                0: ResourceDefinition(0, "Package", T.OPAQUE),
                1: ResourceDefinition(1, "Package URI", T.STRING),
            },
        )
    ]
)
PACKAGE = P("/5/0/0")


def test_bytes_pass_through() -> None:
    assert OPAQUE.encode([Record(PACKAGE, b"\x00\xff")], PACKAGE, MODELS) == b"\x00\xff"
    assert OPAQUE.decode(b"\x00\xff", PACKAGE, MODELS) == [Record(PACKAGE, b"\x00\xff")]
    assert OPAQUE.decode(b"", PACKAGE, None) == [Record(PACKAGE, b"")]
    assert OPAQUE.decode(bytearray(b"ab"), P("/9/0/1/2"), None) == [Record(P("/9/0/1/2"), b"ab")]


@pytest.mark.parametrize(
    ("records", "base"),
    [
        ([Record(P("/5/0/1"), b"x")], P("/5/0/1")),  # a String resource
        ([Record(PACKAGE, "text")], PACKAGE),  # not bytes
        ([Record(PACKAGE, b"x")], P("/5/0")),  # not a resource path
        ([Record(PACKAGE, b"x", time=1.0)], PACKAGE),
        ([Record(PACKAGE, b"x"), Record(PACKAGE, b"y")], PACKAGE),
    ],
)
def test_encode_errors(records: list[Record], base: Path) -> None:
    with pytest.raises(CodecError):
        OPAQUE.encode(records, base, MODELS)


def test_decode_errors() -> None:
    with pytest.raises(CodecError):
        OPAQUE.decode(b"x", P("/5/0/1"), MODELS)
    with pytest.raises(CodecError):
        OPAQUE.decode(b"x", P("/5"), MODELS)


@given(st.binary())
def test_round_trip(data: bytes) -> None:
    assert OPAQUE.encode(OPAQUE.decode(data, PACKAGE, MODELS), PACKAGE, MODELS) == data
