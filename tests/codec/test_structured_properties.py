"""Property tests for SenML-JSON, SenML-CBOR, OMA-JSON and LwM2M-CBOR.

Round trips of typed records against a small model, and fuzzing: random and
mutated bytes, random JSON/CBOR documents. Decoders must return records or
raise CodecError, and nothing else, quickly.
"""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.base import Codec
from lwm2m.codec.lwm2m_cbor import LWM2M_CBOR
from lwm2m.codec.oma_json import OMA_JSON
from lwm2m.codec.senml_cbor import SENML_CBOR
from lwm2m.codec.senml_json import SENML_JSON
from lwm2m.errors import CodecError
from lwm2m.model import (
    ObjectDefinition,
    ObjectRegistry,
    ObjLink,
    Path,
    Record,
    ResourceDefinition,
    sort_records,
)
from lwm2m.model import ResourceType as T
from lwm2m.model.value import INT64_MAX, INT64_MIN, UINT64_MAX, values_equal

CODECS: list[Codec] = [SENML_JSON, SENML_CBOR, OMA_JSON, LWM2M_CBOR]
IDS = [c.name for c in CODECS]
TIMED = {SENML_JSON.name, SENML_CBOR.name, OMA_JSON.name}

OID = 9000
TYPES = [T.STRING, T.INTEGER, T.UNSIGNED_INTEGER, T.FLOAT, T.BOOLEAN, T.OPAQUE, T.TIME, T.OBJLNK, T.CORELNK]
# Resources 0..8 are single-instance, 10..18 multi-instance, one of each type.
MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            OID,
            "All types",
            {
                rid: ResourceDefinition(rid, f"R{rid}", TYPES[rid % 10], multiple=rid >= 10)
                for rid in [*range(9), *range(10, 19)]
            },
        )
    ]
)

finite = st.floats(allow_nan=False, allow_infinity=False)
VALUES = {
    T.STRING: st.text(max_size=20),
    T.CORELNK: st.text(max_size=20),
    T.INTEGER: st.integers(INT64_MIN, INT64_MAX),
    T.TIME: st.integers(INT64_MIN, INT64_MAX),
    T.UNSIGNED_INTEGER: st.integers(0, UINT64_MAX),
    T.FLOAT: finite,
    T.BOOLEAN: st.booleans(),
    T.OPAQUE: st.binary(max_size=20),
    T.OBJLNK: st.builds(ObjLink, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
}
ids_ = st.integers(0, 65534)
times = st.none() | st.integers(-(2**40), 2**40) | finite


@st.composite
def typed_records(draw: st.DrawFn, timed: bool) -> list[Record]:
    """Records of object OID, values of their resource's type, unique by (path, time)."""
    keys = draw(
        st.lists(
            st.tuples(
                st.integers(0, 3),
                st.sampled_from([*range(9), *range(10, 19)]),
                st.integers(0, 3),
                times if timed else st.none(),
            ),
            max_size=12,
            unique_by=lambda k: (k[0], k[1], k[2] if k[1] >= 10 else 0, k[3]),
        )
    )
    out = []
    for inst, rid, ri, time in keys:
        ids = (OID, inst, rid, ri) if rid >= 10 else (OID, inst, rid)
        out.append(Record(Path(ids), draw(VALUES[TYPES[rid % 10]]), time))
    return sort_records(out)


def same(a: list[Record], b: list[Record]) -> bool:
    return len(a) == len(b) and all(
        x.path == y.path and x.time == y.time and values_equal(x.value, y.value)  # type: ignore[arg-type]
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_typed_by_model(codec: Codec, data: st.DataObject) -> None:
    records = data.draw(typed_records(codec.name in TIMED))
    base = data.draw(st.sampled_from([Path(()), Path((OID,))]))
    encoded = codec.encode(records, base, MODELS)
    assert same(codec.decode(encoded, base, MODELS), records)


# Without a model the value's Python type picks the wire type; the formats that
# carry no type for a value cannot bring it back (OMA-JSON Opaque, LwM2M-CBOR Objlnk).
UNTYPED = {
    SENML_JSON.name: [T.STRING, T.INTEGER, T.FLOAT, T.BOOLEAN, T.OPAQUE, T.OBJLNK],
    SENML_CBOR.name: [T.STRING, T.INTEGER, T.FLOAT, T.BOOLEAN, T.OPAQUE, T.OBJLNK],
    OMA_JSON.name: [T.STRING, T.INTEGER, T.FLOAT, T.BOOLEAN, T.OBJLNK],
    LWM2M_CBOR.name: [T.STRING, T.INTEGER, T.FLOAT, T.BOOLEAN, T.OPAQUE],
}


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=100, deadline=1000)
@given(data=st.data())
def test_round_trip_without_model(codec: Codec, data: st.DataObject) -> None:
    paths = data.draw(st.lists(st.tuples(ids_, ids_, ids_), max_size=8, unique=True))
    kinds = UNTYPED[codec.name]
    records = sort_records(
        Record(Path(p), data.draw(st.sampled_from(kinds).flatmap(VALUES.__getitem__))) for p in paths
    )
    encoded = codec.encode(records, Path(()))
    assert same(codec.decode(encoded, Path(())), records)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_empty_content(codec: Codec) -> None:
    for base in (Path(()), Path((3, 0))):
        assert codec.decode(codec.encode([], base), base) == []


@pytest.mark.parametrize("codec", [SENML_JSON, SENML_CBOR], ids=["senml-json", "senml-cbor"])
@settings(max_examples=100, deadline=1000)
@given(paths=st.lists(st.lists(ids_, max_size=4).map(tuple), max_size=8, unique=True))
def test_name_only_records_round_trip(codec: Codec, paths: list[tuple[int, ...]]) -> None:
    # Read-Composite / Observe-Composite request paths, at any level, the root included.
    records = sort_records(Record(Path(p)) for p in paths)
    assert codec.decode(codec.encode(records, Path(())), Path(())) == records


# --- fuzzing ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def decode_or_codec_error(codec: Codec, data: bytes, models: ObjectRegistry | None = MODELS) -> None:
    try:
        out = codec.decode(data, Path(()), models)
    except CodecError:
        return
    assert isinstance(out, list)
    for r in out:
        assert isinstance(r, Record)
        assert isinstance(r.path, Path)
        assert r.time is None or (type(r.time) in (int, float) and not isinstance(r.time, bool))
        assert r.value is None or r.path.level >= 3


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(codec: Codec, data: bytes) -> None:
    decode_or_codec_error(codec, data)


@st.composite
def mutated(draw: st.DrawFn, codec: Codec) -> bytes:
    records = draw(typed_records(codec.name in TIMED))
    data = bytearray(codec.encode(records, Path(()), MODELS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_mutated_encodings(codec: Codec, data: st.DataObject) -> None:
    blob = data.draw(mutated(codec))
    decode_or_codec_error(codec, blob)
    decode_or_codec_error(codec, blob, None)


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["bn", "bt", "n", "t", "v", "vs", "vb", "vd", "vlo", "e", "sv", "ov"]), inner
        )
    ),
    max_leaves=20,
)
labels = st.sampled_from([-5, -3, -2, -1, 0, 2, 3, 4, 6, 8, "vlo", 3303, 65535, 70000])
cbor_keys = labels | st.lists(st.integers(-2, 70000), max_size=5).map(tuple)
cbor_docs = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(cbor_keys, inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("codec", [SENML_JSON, OMA_JSON], ids=["senml-json", "oma-json"])
@FUZZ
@given(doc=json_docs)
def test_random_json_documents(codec: Codec, doc: object) -> None:
    decode_or_codec_error(codec, json.dumps(doc).encode())
    if isinstance(doc, list):  # also wrapped as an OMA-JSON entry list
        decode_or_codec_error(codec, json.dumps({"bn": "/", "e": doc}).encode())


@pytest.mark.parametrize("codec", [SENML_CBOR, LWM2M_CBOR], ids=["senml-cbor", "lwm2m-cbor"])
@FUZZ
@given(doc=cbor_docs)
def test_random_cbor_documents(codec: Codec, doc: object) -> None:
    decode_or_codec_error(codec, cbor2.dumps(doc))
    decode_or_codec_error(codec, cbor2.dumps(doc), None)


def test_time_values_kept_finite() -> None:
    with pytest.raises(CodecError):
        SENML_JSON.encode([Record(Path((OID, 0, 3)), 1.0, float("nan"))], Path(()), MODELS)
    with pytest.raises(CodecError):
        OMA_JSON.encode([Record(Path((OID, 0, 3)), 1.0, float("inf"))], Path(()), MODELS)
