"""Plain text (0): LwM2M-TS-Core 1.2 §7.4.1 value forms, errors, round trips, fuzz."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.codec.text import TEXT
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T
from lwm2m.model.value import INT64_MAX, INT64_MIN, UINT64_MAX, values_equal

P = Path.parse
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
    9: T.NONE,
    10: T.INTEGER,  # multi-instance
}
MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            9000,
            "Types",
            {rid: ResourceDefinition(rid, f"R{rid}", t, multiple=rid == 10) for rid, t in TYPES.items()},
        )
    ]
)


def path(rid: int) -> Path:
    return Path((9000, 0, rid))


@pytest.mark.parametrize(
    ("rid", "value", "text"),
    [
        (0, "Open Mobile Alliance", "Open Mobile Alliance"),
        (0, "", ""),
        (0, "ünï ,;\n", "ünï ,;\n"),
        (1, -42, "-42"),
        (2, UINT64_MAX, str(UINT64_MAX)),
        (3, 21.5, "21.5"),
        (3, -0.001, "-0.001"),
        (4, True, "1"),
        (4, False, "0"),
        (5, b"\x01\x02\x03\x04\x05", "AQIDBAU="),  # LwM2M-TS-Core 1.2 §7.4.1: Opaque as base64
        (6, 1367491215, "1367491215"),
        (7, ObjLink(3, 0), "3:0"),
        (8, "</3/0>", "</3/0>"),
    ],
)
def test_value_forms(rid: int, value: object, text: str) -> None:
    records = [Record(path(rid), value)]
    assert TEXT.encode(records, path(rid), MODELS) == text.encode()
    assert TEXT.decode(text.encode(), path(rid), MODELS) == records


def test_resource_instance_and_model_less_decoding() -> None:
    p = P("/9000/0/10/3")
    assert TEXT.encode([Record(p, 7)], p, MODELS) == b"7"
    assert TEXT.decode(b"7", p, MODELS) == [Record(p, 7)]
    assert TEXT.decode(b"7", p, None) == [Record(p, "7")]
    assert TEXT.encode([Record(p, 2.0)], p, None) == b"2.0"
    assert TEXT.encode([Record(p, ObjLink(1, 2))], p, None) == b"1:2"


def test_lenient_number_forms() -> None:
    assert TEXT.decode(b"+5", path(1), MODELS) == [Record(path(1), 5)]
    assert TEXT.decode(b"5", path(3), MODELS) == [Record(path(3), 5.0)]
    assert TEXT.decode(b"1e3", path(3), MODELS) == [Record(path(3), 1000.0)]
    assert TEXT.decode(b".5", path(3), MODELS) == [Record(path(3), 0.5)]
    (r,) = TEXT.decode(b"nan", path(3), MODELS)
    assert isinstance(r.value, float) and math.isnan(r.value)


@pytest.mark.parametrize(
    ("rid", "text"),
    [
        (1, "4.5"),
        (1, " 4"),
        (1, "1_000"),
        (1, "9223372036854775808"),  # over int64
        (1, "9" * 5000),
        (1, ""),
        (2, "-1"),
        (3, "1,5"),
        (3, "1_0.0"),
        (3, "infinity!"),
        (4, "true"),
        (4, "2"),
        (5, "AQ="),  # bad padding
        (5, "not base64!"),
        (6, "12:00"),
        (7, "3"),
        (7, "70000:0"),
    ],
)
def test_decode_errors(rid: int, text: str) -> None:
    with pytest.raises(CodecError):
        TEXT.decode(text.encode(), path(rid), MODELS)


def test_decode_refuses_non_utf8_and_non_resource_paths() -> None:
    with pytest.raises(CodecError):
        TEXT.decode(b"\xff", path(0), MODELS)
    with pytest.raises(CodecError):
        TEXT.decode(b"1", P("/9000/0"), MODELS)


@pytest.mark.parametrize(
    ("records", "base"),
    [
        ([], path(1)),
        ([Record(path(1), 1), Record(path(2), 2)], path(1)),
        ([Record(path(1), 1)], path(2)),  # not the request path
        ([Record(P("/9000/0"))], P("/9000/0")),
        ([Record(path(1))], path(1)),  # no value
        ([Record(path(1), 1, time=5.0)], path(1)),  # no room for a timestamp
        ([Record(path(1), "x")], path(1)),  # wrong type for the model
        ([Record(path(4), 1)], path(4)),
    ],
)
def test_encode_errors(records: list[Record], base: Path) -> None:
    with pytest.raises(CodecError):
        TEXT.encode(records, base, MODELS)


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


@given(st.data(), st.sampled_from([rid for rid, t in TYPES.items() if t in VALUES and rid != 10]))
@settings(max_examples=300)
def test_round_trip(data: st.DataObject, rid: int) -> None:
    value = data.draw(VALUES[TYPES[rid]])
    (r,) = TEXT.decode(TEXT.encode([Record(path(rid), value)], path(rid), MODELS), path(rid), MODELS)
    assert r.path == path(rid) and values_equal(r.value, value)  # type: ignore[arg-type]


@given(st.binary(max_size=100), st.sampled_from(sorted(TYPES)), st.booleans())
@settings(max_examples=500)
def test_fuzz(data: bytes, rid: int, with_model: bool) -> None:
    with contextlib.suppress(CodecError):
        TEXT.decode(data, path(rid), MODELS if with_model else None)
