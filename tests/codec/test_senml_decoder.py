"""Decoders kept across payloads (``SenMLCBORCodec.decoder``, ``PackDecoder``): the notifications
of one observation. Whatever they remember between packs, they answer what a fresh decode answers."""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.base import decoder_for
from lwm2m.codec.senml import NAME_CACHE_SIZE
from lwm2m.codec.senml_cbor import SENML_CBOR
from lwm2m.codec.senml_json import SENML_JSON
from lwm2m.codec.text import TEXT
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T

P = Path.parse


def registry() -> ObjectRegistry:
    return ObjectRegistry(
        [
            ObjectDefinition(
                3303,
                "Temperature",
                {
                    5700: ResourceDefinition(5700, "Value", T.FLOAT),
                    5701: ResourceDefinition(5701, "Units", T.STRING),
                    5601: ResourceDefinition(5601, "Min", T.INTEGER),
                    5603: ResourceDefinition(5603, "Flag", T.BOOLEAN),
                },
            )
        ]
    )


MODELS = registry()


def _same(a: list[Record] | str, b: list[Record] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        nan = isinstance(x.value, float) and isinstance(y.value, float) and math.isnan(x.value)
        if x.path != y.path or x.time != y.time or type(x.value) is not type(y.value):
            return False
        if not nan and x.value != y.value:
            return False
    return True


def _fresh(data: bytes, base: Path, models: ObjectRegistry | None) -> list[Record] | str:
    try:
        return SENML_CBOR.decode(data, base, models)
    except CodecError as exc:
        return f"CodecError: {exc}"


def _kept(decode, data: bytes) -> list[Record] | str:  # type: ignore[no-untyped-def]
    try:
        return decode(data)
    except CodecError as exc:
        return f"CodecError: {exc}"


NAMES = ["/3303/0/5700", "/3303/0/5701", "/3303/0/5601", "/3303/0/5603", "/3303/0/", "/3303/0"]
NAMES += ["/3303/1/5700", "/3303/0/9", "/3/0/0", "/3303/x/1", "", "/3303/0/5700/0", "5700", "/3303/0/01"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.booleans(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.none(),
)
LABELS = st.sampled_from([-2, 0, 2, 3, 4, 8, -3, 6, -5, -1, "vlo", 99, "x_"])
ITEM = st.dictionaries(LABELS, st.one_of(st.sampled_from(NAMES), VALUES), max_size=4)
# Mostly the shapes notifications have, so that the remembered names are used.
USUAL = st.builds(
    lambda k, name, v: {k: name, 2: v},
    st.sampled_from([-2, 0]),
    st.sampled_from(NAMES),
    st.one_of(st.floats(), st.integers(min_value=-(2**64), max_value=2**65)),
)
PACK = st.lists(st.one_of(USUAL, ITEM), max_size=4)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PACK, min_size=1, max_size=12), st.sampled_from(["/3303", "/3303/0", "/"]), st.booleans())
def test_a_kept_decoder_answers_what_a_fresh_one_does(packs: list, base: str, typed: bool) -> None:
    models = MODELS if typed else None
    decode = SENML_CBOR.decoder(P(base), models)
    for pack in packs * 2:  # twice: the second round finds every name remembered
        data = cbor2.dumps(pack)
        assert _same(_kept(decode, data), _fresh(data, P(base), models)), pack


def test_the_usual_notification() -> None:
    decode = SENML_CBOR.decoder(P("/3303/0/5700"), MODELS)
    for value in (21.5, 22.0, 23):  # an integer for a Float resource becomes a float
        got = decode(cbor2.dumps([{-2: "/3303/0/5700", 2: value}]))
        assert got == [Record(P("/3303/0/5700"), float(value))]
        assert type(got[0].value) is float


def test_base_value_and_base_time_apply_to_remembered_names() -> None:
    decode = SENML_JSON.decoder(P("/3303/0"), MODELS)
    data = b'[{"bn":"/3303/0/","bt":1000,"bv":20,"n":"5700","v":1.5},{"n":"5601","v":2}]'
    for _ in range(2):
        assert decode(data) == [
            Record(P("/3303/0/5601"), 22, 1000),
            Record(P("/3303/0/5700"), 21.5, 1000),
        ]


def test_a_remembered_name_is_typed_again_when_the_model_changes() -> None:
    models = registry()
    decode = SENML_CBOR.decoder(P("/3303/0"), models)
    data = cbor2.dumps([{-2: "/3303/0/5601", 2: 1.5}])
    with pytest.raises(CodecError):
        decode(data)  # a fraction for an Integer
    models.add(ObjectDefinition(3303, "Temperature", {5601: ResourceDefinition(5601, "Min", T.FLOAT)}))
    assert decode(data) == [Record(P("/3303/0/5601"), 1.5)]


def test_errors_stay_errors_on_remembered_names() -> None:
    decode = SENML_CBOR.decoder(P("/3303/0/5700"), MODELS)
    decode(cbor2.dumps([{-2: "/3303/0/5700", 2: 1.0}]))
    for bad in (
        [{-2: "/3303/0/5700", 2: 2**70}],
        [{-2: "/3303/0/5700", 2: True}],
        [{-2: "/3303/0/5700", 2: "x"}],
        [{-2: "/3303/0/5700", 3: "x"}],
        [{-2: "/3303/1/5700", 2: 1.0}],
    ):
        with pytest.raises(CodecError):
            decode(cbor2.dumps(bad))
    with pytest.raises(CodecError):
        decode(cbor2.dumps([{-2: "/3303/0/5700", 2: 1.0}]) + b"\x00")  # trailing bytes


def test_what_a_decoder_remembers_is_bounded() -> None:
    decode = SENML_CBOR.decoder(P("/"), None)
    for i in range(3 * NAME_CACHE_SIZE):
        assert decode(cbor2.dumps([{-2: f"/3303/{i}/5700", 2: 1.0}])) == [Record(P(f"/3303/{i}/5700"), 1.0)]
    names = decode.__closure__  # the PackDecoder inside
    assert names is not None
    pack = next(c.cell_contents for c in names if hasattr(c.cell_contents, "__self__"))
    assert len(pack.__self__._names) <= NAME_CACHE_SIZE


def test_formats_without_a_kept_decoder_decode_afresh() -> None:
    decode = decoder_for(TEXT, P("/3303/0/5700"), MODELS)
    assert decode(b"21.5") == [Record(P("/3303/0/5700"), 21.5)]


def test_objlink_and_opaque_on_remembered_names() -> None:
    decode = SENML_CBOR.decoder(P("/"), None)
    data = cbor2.dumps([{-2: "/3/0/", 0: "1", "vlo": "3:0"}, {0: "2", 8: b"\x01"}])
    for _ in range(2):
        assert decode(data) == [Record(P("/3/0/1"), ObjLink(3, 0)), Record(P("/3/0/2"), b"\x01")]
