"""The JSON form for values without a model: ``type`` on written values, and untyped bytes
(TLV without a model) shown with their raw bytes and readings, alike everywhere."""

from __future__ import annotations

import math

import pytest

from lwm2m.codec.tlv import TLV
from lwm2m.errors import JsonFormError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.jsonform import (
    TYPE_NAMES,
    readings,
    record_from_json,
    record_to_json,
    records_from_json,
    records_to_json,
)
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.value import ObjLink, ResourceType, UntypedBytes
from lwm2m.storage.base import record_from_row, record_row

P = Path.parse
MODELS = load_catalogue()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x2a", {"integer": 42, "string": "*"}),
        (b"\x00", {"integer": 0, "boolean": False}),
        (b"\x01", {"integer": 1, "boolean": True}),
        (b"\xff\xfe", {"integer": -2, "unsigned": 65534}),
        (b"\x41\xac\x00\x00", {"integer": 1101791232, "float": 21.5}),
        (b"\x40\x09\x21\xfb\x54\x44\x2d\x18", {"integer": 4614256656552045848, "float": math.pi}),
        (b"hello", {"string": "hello"}),
        (b"\x01\x02\xff", {}),
        (b"", {"string": ""}),
    ],
)
def test_readings_are_the_types_the_bytes_fit(raw: bytes, expected: dict[str, object]) -> None:
    assert readings(raw) == expected


def test_a_32_bit_float_reading_shows_the_digits_it_has() -> None:
    assert readings(b"\x40\x48\xf5\xc3")["float"] == 3.14  # not 3.140000104904175


def test_tlv_without_a_model_gives_untyped_bytes_shown_with_readings() -> None:
    payload = TLV.encode([Record(P("/32769/0/1"), 5), Record(P("/32769/0/2"), "ok")], P("/32769/0"), None)
    records = TLV.decode(payload, P("/32769/0"), MODELS)
    assert all(type(r.value) is UntypedBytes for r in records)
    assert records_to_json(records) == [
        {"path": "/32769/0/1", "value": "BQ==", "raw": "05", "readings": {"integer": 5}},
        {
            "path": "/32769/0/2",
            "value": "b2s=",
            "raw": "6f6b",
            "readings": {"integer": 28523, "string": "ok"},
        },
    ]
    # With a model the values are typed and shown plainly.
    typed = TLV.decode(TLV.encode([Record(P("/3/0/9"), 85)], P("/3/0"), MODELS), P("/3/0"), MODELS)
    assert records_to_json(typed) == [{"path": "/3/0/9", "value": 85}]


def test_untyped_bytes_keep_their_kind_through_a_store_row() -> None:
    record = Record(P("/32769/0/1"), UntypedBytes(b"\x05"), 1700000000)
    row, kind = record_row(record)
    back = record_from_row(row, kind)
    assert back == record and type(back.value) is UntypedBytes
    assert record_to_json(back)["readings"] == {"integer": 5}
    # An Opaque value stays Opaque.
    opaque = Record(P("/5/0/0"), b"\x05")
    again = record_from_row(*record_row(opaque))
    assert type(again.value) is bytes and "readings" not in record_to_json(again)


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ({"value": "AQID", "type": "opaque"}, b"\x01\x02\x03"),
        ({"value": 7, "type": "unsigned"}, 7),
        ({"value": -7, "type": "integer"}, -7),
        ({"value": 2, "type": "float"}, 2.0),
        ({"value": "nan", "type": "float"}, "nan"),
        ({"value": True, "type": "boolean"}, True),
        ({"value": "hi", "type": "string"}, "hi"),
        ({"value": 1700000000, "type": "time"}, 1700000000),
        ({"value": "2024-01-01T01:00:00+01:00", "type": "time"}, 1704067200),
        ({"value": "3:0", "type": "objlnk"}, ObjLink(3, 0)),
        ({"value": "</3/0>", "type": "corelnk"}, "</3/0>"),
    ],
)
def test_a_given_type_converts_a_value_without_a_model(item: dict[str, object], value: object) -> None:
    record = record_from_json({"path": "/32769/0/1", **item}, MODELS)
    if value == "nan":
        assert isinstance(record.value, float) and math.isnan(record.value)
    else:
        assert record.value == value and type(record.value) is type(value)


def test_without_a_type_and_a_model_values_stay_as_json_gave_them() -> None:
    (record,) = records_from_json([{"path": "/32769/0/1", "value": "AQID"}], MODELS)
    assert record.value == "AQID"


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ({"path": "/32769/0/1", "value": 1, "type": "blob"}, "type 'blob' is not one of string, integer"),
        ({"path": "/32769/0/1", "value": "***", "type": "opaque"}, "is not valid base64"),
        ({"path": "/32769/0/1", "value": "\u00e6\u00ca", "type": "opaque"}, "is not valid base64"),
        ({"path": "/32769/0/1", "value": -1, "type": "unsigned"}, "not a valid Unsigned Integer"),
        ({"path": "/32769/0/1", "value": "2024-01-01T00:00:00", "type": "time"}, "has no time zone"),
        ({"path": "/32769/0/1", "value": "soon", "type": "time"}, "neither Unix seconds nor an ISO 8601"),
        ({"path": "/32769/0/1", "type": "integer"}, "a type without a value"),
        (
            {"path": "/3/0/9", "value": 5, "type": "string"},
            "the model types this resource Integer, not string",
        ),
    ],
)
def test_bad_types_are_refused_with_the_reason(item: dict[str, object], error: str) -> None:
    with pytest.raises(JsonFormError, match=error.replace("(", r"\(")):
        record_from_json(item, MODELS)


def test_a_type_that_agrees_with_the_model_is_taken() -> None:
    assert record_from_json({"path": "/3/0/9", "value": 85, "type": "integer"}, MODELS).value == 85
    # Corelnk is a String on the wire: either name fits either model type.
    assert record_from_json({"path": "/3/0/0", "value": "x", "type": "corelnk"}, MODELS).value == "x"


def test_type_names_cover_every_value_type() -> None:
    assert set(TYPE_NAMES.values()) == set(ResourceType) - {ResourceType.NONE}
