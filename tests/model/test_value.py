"""LwM2M data types and their Python values (LwM2M-TS-Core 1.2 Appendix C)."""

from __future__ import annotations

import math

import pytest

from lwm2m.model.value import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    ObjLink,
    ResourceType,
    check_value,
    infer_type,
    values_equal,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("String", ResourceType.STRING),
        ("Integer", ResourceType.INTEGER),
        ("Unsigned Integer", ResourceType.UNSIGNED_INTEGER),
        ("Float", ResourceType.FLOAT),
        ("Boolean", ResourceType.BOOLEAN),
        ("Opaque", ResourceType.OPAQUE),
        ("Time", ResourceType.TIME),
        ("Objlnk", ResourceType.OBJLNK),
        ("Corelnk", ResourceType.CORELNK),
        ("none", ResourceType.NONE),
        ("", ResourceType.NONE),  # <Type/> on executable resources
        (None, ResourceType.NONE),
        ("  float ", ResourceType.FLOAT),
        ("unsigned integer", ResourceType.UNSIGNED_INTEGER),
    ],
)
def test_resource_type_parse(text: str | None, expected: ResourceType) -> None:
    assert ResourceType.parse(text) is expected


def test_resource_type_parse_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="'Double'"):
        ResourceType.parse("Double")


def test_objlink() -> None:
    link = ObjLink.parse(" 3:0 ")
    assert link == ObjLink(3, 0)
    assert str(link) == "3:0"
    assert str(ObjLink(65535, 65535)) == "65535:65535"  # the null link
    assert sorted([ObjLink(3, 1), ObjLink(1, 9), ObjLink(3, 0)]) == [
        ObjLink(1, 9),
        ObjLink(3, 0),
        ObjLink(3, 1),
    ]


@pytest.mark.parametrize("text", ["3", "3:", ":0", "3:0:1", "a:b", "-1:0", "3 0", ""])
def test_objlink_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid object link"):
        ObjLink.parse(text)


@pytest.mark.parametrize(("o", "i"), [(65536, 0), (0, -1), (True, 0), (1.0, 0)])
def test_objlink_parts_are_16_bit(o: object, i: object) -> None:
    with pytest.raises(ValueError):
        ObjLink(o, i)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "type_", "expected"),
    [
        ("abc", ResourceType.STRING, "abc"),
        ("</1/0>", ResourceType.CORELNK, "</1/0>"),
        (5, ResourceType.INTEGER, 5),
        (5.0, ResourceType.INTEGER, 5),
        (INT64_MIN, ResourceType.INTEGER, INT64_MIN),
        (INT64_MAX, ResourceType.INTEGER, INT64_MAX),
        (1700000000, ResourceType.TIME, 1700000000),
        (0, ResourceType.UNSIGNED_INTEGER, 0),
        (UINT64_MAX, ResourceType.UNSIGNED_INTEGER, UINT64_MAX),
        (1, ResourceType.FLOAT, 1.0),
        (1.5, ResourceType.FLOAT, 1.5),
        (True, ResourceType.BOOLEAN, True),
        (b"\x00\x01", ResourceType.OPAQUE, b"\x00\x01"),
        (bytearray(b"ab"), ResourceType.OPAQUE, b"ab"),
        (memoryview(b"ab"), ResourceType.OPAQUE, b"ab"),
        (ObjLink(3, 0), ResourceType.OBJLNK, ObjLink(3, 0)),
        ("3:0", ResourceType.OBJLNK, ObjLink(3, 0)),
        ("anything", ResourceType.NONE, "anything"),
    ],
)
def test_check_value_accepts(value: object, type_: ResourceType, expected: object) -> None:
    out = check_value(value, type_)  # type: ignore[arg-type]
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (1, ResourceType.STRING),
        (b"x", ResourceType.STRING),
        (True, ResourceType.INTEGER),  # bool is not an integer here
        (1.5, ResourceType.INTEGER),
        (INT64_MAX + 1, ResourceType.INTEGER),
        (INT64_MIN - 1, ResourceType.INTEGER),
        ("5", ResourceType.INTEGER),
        (-1, ResourceType.UNSIGNED_INTEGER),
        (UINT64_MAX + 1, ResourceType.UNSIGNED_INTEGER),
        (False, ResourceType.FLOAT),
        ("1.5", ResourceType.FLOAT),
        (1, ResourceType.BOOLEAN),
        ("true", ResourceType.BOOLEAN),
        ("AA==", ResourceType.OPAQUE),
        ("3", ResourceType.OBJLNK),
        (3, ResourceType.OBJLNK),
        (1.5, ResourceType.TIME),
    ],
)
def test_check_value_rejects(value: object, type_: ResourceType) -> None:
    with pytest.raises(ValueError):
        check_value(value, type_)  # type: ignore[arg-type]


def test_check_value_message_names_value_and_type() -> None:
    with pytest.raises(ValueError, match=r"'x' is not a valid Integer value"):
        check_value("x", ResourceType.INTEGER)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (True, ResourceType.BOOLEAN),
        (1, ResourceType.INTEGER),
        (1.0, ResourceType.FLOAT),
        ("s", ResourceType.STRING),
        (b"b", ResourceType.OPAQUE),
        (bytearray(b"b"), ResourceType.OPAQUE),
        (ObjLink(1, 2), ResourceType.OBJLNK),
    ],
)
def test_infer_type(value: object, type_: ResourceType) -> None:
    assert infer_type(value) is type_  # type: ignore[arg-type]


def test_infer_type_rejects_non_values() -> None:
    with pytest.raises(ValueError):
        infer_type(None)  # type: ignore[arg-type]


def test_values_equal() -> None:
    assert values_equal(math.nan, math.nan)
    assert values_equal(1.5, 1.5)
    assert not values_equal(1, 1.0)  # types differ
    assert not values_equal(True, 1)
    assert values_equal(ObjLink(1, 2), ObjLink(1, 2))
    assert not values_equal(b"a", "a")
