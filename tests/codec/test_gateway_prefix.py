"""Content of end devices behind an LwM2M Gateway: the prefix in SenML, LwM2M-CBOR, and the
formats that cannot carry it (LwM2M-TS-Gateway 1.1)."""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError
from lwm2m.model import ROOT, Path, Record, sort_records
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.value import values_equal

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = load_catalogue()  # 3303/5700 is a Float, 5701 a String
TEMP = Path((3303, 0, 5700), "dev1")


def same(a: list[Record], b: list[Record]) -> bool:
    return len(a) == len(b) and all(
        x.path == y.path
        and x.time == y.time
        and (
            x.value is y.value
            or (x.value is not None and y.value is not None and values_equal(x.value, y.value))
        )
        for x, y in zip(a, b, strict=True)
    )


# --- SenML: the prefix is the first segment of the name -----------------------------------------


def test_senml_json_send_with_the_gateway_and_two_end_devices() -> None:
    # A Send (LwM2M-TS-Core 1.2 §6.4.6) at the root: the gateway's own value and two end devices'.
    pack = [
        {"bn": "/3/0/", "n": "9", "v": 87},
        {"bn": "/dev1/3303/0/", "n": "5700", "v": 21.5},
        {"bn": "/dev2/3303/0/5700", "v": 19.0},
    ]
    records = get_codec("senml-json").decode(json.dumps(pack).encode(), ROOT)
    assert [r.path for r in records] == [Path((3, 0, 9)), TEMP, Path((3303, 0, 5700), "dev2")]
    assert [r.value for r in records] == [87, 21.5, 19.0]


def test_senml_json_encodes_the_prefix_in_the_base_name() -> None:
    records = [Record(Path((3, 0, 9)), 87), Record(TEMP, 21.5), Record(Path((3303, 0, 5701), "dev1"), "Cel")]
    pack = json.loads(get_codec("senml-json").encode(records, ROOT))
    assert pack == [
        {"bn": "/3/0/", "n": "9", "v": 87},
        {"bn": "/dev1/3303/0/", "n": "5700", "v": 21.5},
        {"n": "5701", "vs": "Cel"},
    ]
    # a Read of an end device's instance answers with names under its prefix
    pack = json.loads(get_codec("senml-json").encode(records[1:], Path((3303, 0), "dev1")))
    assert pack[0]["bn"] == "/dev1/3303/0/"


@pytest.mark.parametrize("fmt", ["senml-json", "senml-cbor"])
def test_senml_keeps_each_device_under_its_request_path(fmt: str) -> None:
    codec = get_codec(fmt)
    other = Record(Path((3303, 0, 5700), "dev2"), 1.0)
    own = Record(Path((3303, 0, 5700)), 1.0)
    for rec, base in [(other, Path((3303,), "dev1")), (own, Path((3303,), "dev1")), (other, Path((3303,)))]:
        with pytest.raises(CodecError, match="not under the request path"):
            codec.encode([rec], base)
        payload = codec.encode([rec], ROOT)
        with pytest.raises(CodecError, match="not under the request path"):
            codec.decode(payload, base)


@pytest.mark.parametrize("name", ["/.x/3/0/1", "/a b/3", "/dev1/dev2/3", "/dev1/3/0/1/2/3"])
def test_senml_refuses_bad_prefixed_names(name: str) -> None:
    with pytest.raises(CodecError):
        get_codec("senml-json").decode(json.dumps([{"n": name, "v": 1}]).encode(), ROOT)


# --- LwM2M-CBOR: the prefix is a text-string key, first in a path -------------------------------


def test_lwm2m_cbor_prefix_as_a_key_or_first_in_an_array_key() -> None:
    codec = get_codec("lwm2m-cbor")
    nested = cbor2.dumps({"dev1": {3303: {0: {5700: 21.5}}}, 3: {0: {9: 87}}})
    flat = cbor2.dumps({("dev1", 3303, 0): {5700: 21.5}, (3, 0, 9): 87})
    for data in (nested, flat):
        assert codec.decode(data, ROOT) == [Record(Path((3, 0, 9)), 87), Record(TEMP, 21.5)]
    assert cbor2.loads(codec.encode([Record(TEMP, 21.5)], ROOT)) == {("dev1", 3303, 0, 5700): 21.5}


def test_lwm2m_cbor_under_a_prefixed_request_path() -> None:
    codec = get_codec("lwm2m-cbor")
    data = cbor2.dumps({("dev1", 3303, 0): {5700: 21.5, 5701: "Cel"}})
    assert codec.decode(data, Path((3303, 0), "dev1")) == [
        Record(TEMP, 21.5),
        Record(TEMP.parent.child(5701), "Cel"),
    ]
    for base in (Path((3303, 0), "dev2"), Path((3303, 0))):
        with pytest.raises(CodecError, match="not under the request path"):
            codec.decode(data, base)
    with pytest.raises(CodecError, match="not under the request path"):
        codec.encode([Record(TEMP, 1.0)], Path((3303,), "dev2"))


@pytest.mark.parametrize(
    "top",
    [
        {"dev1": {"dev2": {3: {0: {1: 1}}}}},  # a prefix below the top
        {(3, "dev1"): 1},  # a prefix after an ID
        {("dev1", "x"): 1},
        {".x": {3: {0: {1: 1}}}},
        {"": {3: {0: {1: 1}}}},
        {("dev1", 3, 0, 1, 2, 3): 1},
    ],
)
def test_lwm2m_cbor_refuses_misplaced_or_bad_prefixes(top: dict[object, object]) -> None:
    with pytest.raises(CodecError):
        get_codec("lwm2m-cbor").decode(cbor2.dumps(top), ROOT)


# --- formats that name no path: the prefix is the request's ---------------------------------------


def test_tlv_holds_one_device_whose_prefix_is_in_the_uri() -> None:
    codec = get_codec("tlv")
    base = Path((3303, 0), "dev1")
    records = [Record(TEMP, 21.5), Record(base.child(5701), "Cel")]
    data = codec.encode(records, base, MODELS)
    plain = [Record(r.path.without_prefix(), r.value) for r in records]
    assert data == codec.encode(plain, base.without_prefix(), MODELS)
    assert codec.decode(data, base, MODELS) == records
    with pytest.raises(CodecError, match="TLV cannot carry"):
        codec.encode([Record(Path((3303, 0, 5700), "dev2"), 1.0)], base)
    with pytest.raises(CodecError, match="TLV cannot carry"):
        codec.encode([Record(TEMP, 1.0)], base.without_prefix())


@pytest.mark.parametrize("fmt", ["text", "cbor", "opaque"])
def test_single_value_formats_under_a_prefixed_path(fmt: str) -> None:
    codec = get_codec(fmt)
    value: object = b"\x01" if fmt == "opaque" else 21.5
    path, models = (TEMP, MODELS) if fmt != "opaque" else (Path((5, 0, 0), "dev1"), MODELS)
    data = codec.encode([Record(path, value)], path, models)  # type: ignore[arg-type]
    assert codec.decode(data, path, models) == [Record(path, value)]  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        codec.encode([Record(path.without_prefix(), value)], path)  # type: ignore[arg-type]


def test_oma_json_names_carry_the_prefix() -> None:
    codec = get_codec("oma-json")
    base = Path((3303, 0), "dev1")
    data = codec.encode([Record(TEMP, 21.5)], base)
    assert json.loads(data)["bn"] == "/dev1/3303/0/"
    assert codec.decode(data, base) == [Record(TEMP, 21.5)]
    with pytest.raises(CodecError, match="not under the request path"):
        codec.decode(data, Path((3303, 0), "dev2"))


def test_discover_links_of_an_end_device() -> None:
    codec = get_codec("link")
    base = Path((3303,), "dev1")
    data = codec.encode([Record(base), Record(base.child(0)), Record(TEMP)], base)
    assert data == b"</dev1/3303>,</dev1/3303/0>,</dev1/3303/0/5700>"
    assert [r.path for r in codec.decode(data, base)] == [base, base.child(0), TEMP]


# --- round trips, fuzzed --------------------------------------------------------------------------

devices = st.sampled_from(["", "dev1", "dev-2", "lora_0A1B"])
values = (
    st.text(max_size=6)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.binary(max_size=6)
)


@st.composite
def device_records(draw: st.DrawFn) -> list[Record]:
    """Resource values of the gateway and its end devices, a tree per device."""
    keys = draw(
        st.lists(
            st.tuples(devices, st.sampled_from([3, 3303, 3424]), st.integers(0, 2), st.integers(0, 3)),
            min_size=1,
            max_size=10,
            unique=True,
        )
    )
    return sort_records(Record(Path(tuple(ids), dev), draw(values)) for dev, *ids in keys)


@FUZZ
@given(device_records(), st.sampled_from(["senml-json", "senml-cbor", "lwm2m-cbor"]))
def test_round_trip_at_the_root(records: list[Record], fmt: str) -> None:
    codec = get_codec(fmt)
    assert same(codec.decode(codec.encode(records, ROOT), ROOT), records)


@FUZZ
@given(device_records(), st.sampled_from(["senml-json", "senml-cbor", "lwm2m-cbor"]))
def test_round_trip_under_one_device(records: list[Record], fmt: str) -> None:
    codec = get_codec(fmt)
    first = records[0].path
    base = Path(first.ids[:1], first.prefix)
    mine = [r for r in records if r.path.startswith(base)]
    assert same(codec.decode(codec.encode(mine, base), base), mine)


names = st.builds(
    lambda dev, ids: "/" + "/".join([d for d in (dev,) if d] + ids),
    st.text(alphabet="abz019._~-/ é", max_size=6),
    st.lists(st.sampled_from(["0", "3", "3303", "65535", "x", "", "01"]), max_size=5),
)


@FUZZ
@given(st.lists(st.fixed_dictionaries({"n": names}, optional={"v": st.integers(0, 9)}), max_size=4))
def test_senml_prefixed_names_decode_or_raise_codec_error(pack: list[dict[str, object]]) -> None:
    for fmt, data in (("senml-json", json.dumps(pack).encode()), ("senml-cbor", cbor2.dumps(pack))):
        try:
            records = get_codec(fmt).decode(data, ROOT)
        except CodecError:
            continue
        assert all(r.path.within(ROOT) for r in records)


cbor_keys = st.recursive(
    st.integers(-1, 70000) | st.text(alphabet="dev1.-/ ", max_size=4),
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(tuple),
    max_leaves=5,
)
trees = st.recursive(
    st.integers(0, 9) | st.text(max_size=3),
    lambda inner: st.dictionaries(cbor_keys, inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(st.dictionaries(cbor_keys, trees, max_size=4), devices)
def test_lwm2m_cbor_prefixed_keys_decode_or_raise_codec_error(top: dict[object, object], dev: str) -> None:
    try:
        data = cbor2.dumps(top)
    except (TypeError, ValueError, cbor2.CBOREncodeError):
        return
    base = Path((), dev)
    try:
        records = get_codec("lwm2m-cbor").decode(data, base)
    except CodecError:
        return
    assert all(r.path.within(base) for r in records)
