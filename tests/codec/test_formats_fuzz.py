"""Every codec of the registry fuzzed at every request level, with and without a model: records or
a CodecError, nothing else; and what decodes holds no path twice without a time to tell them apart
where the format cannot carry one."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.base import decoder_for
from lwm2m.codec.formats import format_names, get_codec
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = sorted(format_names())
OID = 9000
TYPES = [
    T.STRING,
    T.INTEGER,
    T.UNSIGNED_INTEGER,
    T.FLOAT,
    T.BOOLEAN,
    T.OPAQUE,
    T.TIME,
    T.OBJLNK,
    T.CORELNK,
    T.NONE,
]
# Resource r has type TYPES[r % 10]; 10..19 are multi-instance.
MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            OID,
            "All types",
            {r: ResourceDefinition(r, f"R{r}", TYPES[r % 10], multiple=r >= 10) for r in range(20)},
        )
    ]
)
BASES = [
    Path(()),
    Path((OID,)),
    Path((OID, 0)),
    *(Path((OID, 0, r)) for r in range(20)),
    Path((OID, 0, 13, 1)),
]
# Formats that carry neither a time nor a second value for one path.
UNTIMED = {"text", "opaque", "cbor", "tlv", "lwm2m-cbor", "link"}


def decode_or_codec_error(name: str, data: bytes, base: Path, models: ObjectRegistry | None) -> None:
    codec = get_codec(name)
    for decode in (lambda: codec.decode(data, base, models), lambda: decoder_for(codec, base, models)(data)):
        try:
            out = decode()
        except CodecError as exc:
            assert str(exc)
            continue
        assert all(isinstance(r, Record) for r in out)
        if name in UNTIMED:
            paths = [r.path for r in out]
            assert len(paths) == len(set(paths)), out


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=120), base=st.sampled_from(BASES), typed=st.booleans())
def test_random_bytes_at_any_level(name: str, data: bytes, base: Path, typed: bool) -> None:
    decode_or_codec_error(name, data, base, MODELS if typed else None)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.integers(-3, 20) | st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize("name", ["cbor", "senml-cbor", "lwm2m-cbor"])
@FUZZ
@given(
    value=cbor_values,
    base=st.sampled_from(BASES),
    typed=st.booleans(),
    tag=st.sampled_from([None, 0, 1, 4, 2, 28]),
)
def test_valid_cbor_of_the_wrong_shape(
    name: str, value: object, base: Path, typed: bool, tag: int | None
) -> None:
    item = value if tag is None else cbor2.CBORTag(tag, value)
    try:
        data = cbor2.dumps(item)
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return
    decode_or_codec_error(name, data, base, MODELS if typed else None)


@FUZZ
@given(st.text(max_size=12) | st.integers(-(2**40), 2**40) | st.sampled_from(["9" * 5000, "\u0663", " 110 "]))
def test_get_codec_names_and_numbers(fmt: str | int) -> None:
    try:
        codec = get_codec(fmt)
    except CodecError:
        return
    assert codec.name in NAMES
