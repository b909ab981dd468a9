"""CBOR (60): one value as one CBOR data item (LwM2M-TS-Core 1.2 §7.4.6), errors, round trips, fuzz."""

from __future__ import annotations

import contextlib
import time

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.codec.cbor import CBOR
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T
from lwm2m.model.value import INT64_MAX, INT64_MIN, UINT64_MAX, values_equal

TYPES = {
    0: T.STRING,
    1: T.INTEGER,
    2: T.UNSIGNED_INTEGER,
    3: T.FLOAT,
    4: T.BOOLEAN,
    5: T.OPAQUE,
    6: T.TIME,
    7: T.OBJLNK,
    8: T.CORELNK,
}
MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            9000, "Types", {rid: ResourceDefinition(rid, f"R{rid}", t) for rid, t in TYPES.items()}
        )
    ]
)


def path(rid: int) -> Path:
    return Path((9000, 0, rid))


@pytest.mark.parametrize(
    ("rid", "value", "wire"),
    [
        (0, "abc", "63 616263"),
        (1, -1, "20"),
        (1, 1000, "19 03E8"),
        (2, UINT64_MAX, "1B FFFFFFFFFFFFFFFF"),
        (3, 1.5, "F9 3E00"),  # the shortest exact float
        (3, 0.1, "FB 3FB999999999999A"),
        (4, True, "F5"),
        (5, b"\x01\x02", "42 0102"),
        (6, 1367491215, "1A 5182428F"),
        (7, ObjLink(3, 0), "63 333A30"),  # Objlnk as the text "3:0"
        (8, "</1>", "64 3C2F313E"),
    ],
)
def test_value_forms(rid: int, value: object, wire: str) -> None:
    records = [Record(path(rid), value)]
    assert CBOR.encode(records, path(rid), MODELS) == bytes.fromhex(wire)
    assert CBOR.decode(bytes.fromhex(wire), path(rid), MODELS) == records


def test_time_as_tag_1_and_other_number_forms() -> None:
    assert CBOR.decode(bytes.fromhex("C1 1A 5182428F"), path(6), MODELS) == [Record(path(6), 1367491215)]
    assert CBOR.decode(bytes.fromhex("C1 FB 41D46090A3C00000"), path(6), MODELS) == [
        Record(path(6), 1367491215)
    ]
    assert CBOR.decode(bytes.fromhex("C1 1A 5182428F"), path(6), None) == [Record(path(6), 1367491215)]
    assert CBOR.decode(bytes.fromhex("18 2A"), path(3), MODELS) == [Record(path(3), 42.0)]
    assert CBOR.decode(bytes.fromhex("F9 4200"), path(1), MODELS) == [Record(path(1), 3)]
    # indefinite-length text string in two chunks
    assert CBOR.decode(bytes.fromhex("7F 61 61 61 62 FF"), path(0), MODELS) == [Record(path(0), "ab")]


def test_model_less_decoding_keeps_the_cbor_type() -> None:
    assert CBOR.decode(bytes.fromhex("63 333A30"), path(7), None) == [Record(path(7), "3:0")]
    assert CBOR.decode(bytes.fromhex("F4"), path(9), None) == [Record(path(9), False)]


@pytest.mark.parametrize(
    ("rid", "wire"),
    [
        (0, ""),
        (0, "80"),  # an array
        (0, "A0"),  # a map
        (0, "C0 74 323031332D30332D32315432303A30343A35315A"),  # tag 0
        (0, "F6"),  # null
        (0, "F7"),  # undefined
        (0, "E0"),  # simple value 0
        (0, "61 61 00"),  # trailing byte
        (0, "62 FF FE"),  # text that is not UTF-8
        (0, "5A FFFFFFFF 00"),  # byte string far longer than the payload
        (1, "63 616263"),  # text for an Integer
        (1, "1B FFFFFFFFFFFFFFFF"),  # over int64
        (1, "F9 3E00"),  # 1.5 is not an Integer
        (2, "20"),  # negative Unsigned
        (3, "F5"),  # Boolean for a Float
        (4, "01"),  # 1 for a Boolean
        (5, "61 61"),  # text for Opaque
        (6, "C1 61 61"),  # tag 1 on text
        (6, "C1"),
        (6, "C1 F9 3E00"),  # fractional time
        (0, "C1 01"),  # tag 1 for a String
        (7, "43 000300"),  # bytes for an Objlnk
        (7, "63 333A78"),  # "3:x"
    ],
)
def test_decode_errors(rid: int, wire: str) -> None:
    with pytest.raises(CodecError):
        CBOR.decode(bytes.fromhex(wire), path(rid), MODELS)


def test_encode_errors() -> None:
    with pytest.raises(CodecError):
        CBOR.encode([Record(path(1), "x")], path(1), MODELS)
    with pytest.raises(CodecError):
        CBOR.encode([Record(path(1), 1)], Path((9000, 0)), MODELS)
    with pytest.raises(CodecError):
        CBOR.encode([Record(path(1), 1, time=2.0)], path(1), MODELS)


VALUES = {
    T.STRING: st.text(),
    T.CORELNK: st.text(),
    T.INTEGER: st.integers(INT64_MIN, INT64_MAX),
    T.TIME: st.integers(INT64_MIN, INT64_MAX),
    T.UNSIGNED_INTEGER: st.integers(0, UINT64_MAX),
    T.FLOAT: st.floats(),
    T.BOOLEAN: st.booleans(),
    T.OPAQUE: st.binary(),
    T.OBJLNK: st.builds(ObjLink, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
}


@given(st.data(), st.sampled_from(sorted(TYPES)))
@settings(max_examples=300)
def test_round_trip(data: st.DataObject, rid: int) -> None:
    value = data.draw(VALUES[TYPES[rid]])
    (r,) = CBOR.decode(CBOR.encode([Record(path(rid), value)], path(rid), MODELS), path(rid), MODELS)
    assert r.path == path(rid) and values_equal(r.value, value)  # type: ignore[arg-type]


def _decode(data: bytes, rid: int, with_model: bool) -> None:
    start = time.perf_counter()
    with contextlib.suppress(CodecError):
        CBOR.decode(data, path(rid), MODELS if with_model else None)
    assert time.perf_counter() - start < 0.5


@given(st.binary(max_size=64), st.sampled_from(sorted(TYPES)), st.booleans())
@settings(max_examples=500)
def test_fuzz_random_bytes(data: bytes, rid: int, with_model: bool) -> None:
    _decode(data, rid, with_model)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(), st.lists), st.data())
@settings(max_examples=300)
def test_fuzz_other_cbor_items(item: object, data: st.DataObject) -> None:
    raw = bytearray(cbor2.dumps(item))
    if raw and data.draw(st.booleans()):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _decode(bytes(raw), data.draw(st.sampled_from(sorted(TYPES))), data.draw(st.booleans()))
