"""SenML-JSON (110): worked examples of LwM2M-TS-Core 1.1/1.2 §7.4.4, base name and time rules, errors."""

from __future__ import annotations

import json

import pytest
from tests.helpers.codec_examples import DEVICE

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.senml_json import SENML_JSON
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T

P = Path.parse


def registry(spec: dict[int, dict[int, T]], multiple: dict[int, set[int]]) -> ObjectRegistry:
    """A small model: object ID -> resource ID -> type; ``multiple`` lists multi-instance resources."""
    return ObjectRegistry(
        ObjectDefinition(
            oid,
            f"Object {oid}",
            {
                rid: ResourceDefinition(rid, f"R{rid}", t, multiple=rid in multiple.get(oid, set()))
                for rid, t in res.items()
            },
        )
        for oid, res in spec.items()
    )


S, N = T.STRING, T.INTEGER
MODELS = registry(
    {
        1: {0: N, 1: N, 7: S},
        3: {0: S, 1: S, 2: S, 3: S, 6: N, 7: N, 8: N, 9: N, 10: N, 11: N, 13: T.TIME, 14: S, 15: S, 16: S}
        | {20: T.OPAQUE, 21: T.OBJLNK},
        3303: {5700: T.FLOAT, 5701: S},
    },
    {3: {6, 7, 8, 11}},
)


# LwM2M-TS-Core 1.1 §7.4.4, the Device object instance read as SenML-JSON.
DEVICE_JSON = """[
 {"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},
 {"n":"1","vs":"Lightweight M2M Client"},
 {"n":"2","vs":"345000123"},
 {"n":"3","vs":"1.0"},
 {"n":"6/0","v":1},
 {"n":"6/1","v":5},
 {"n":"7/0","v":3800},
 {"n":"7/1","v":5000},
 {"n":"8/0","v":125},
 {"n":"8/1","v":900},
 {"n":"9","v":100},
 {"n":"10","v":15},
 {"n":"11/0","v":0},
 {"n":"13","v":1367491215},
 {"n":"14","vs":"+02:00"},
 {"n":"16","vs":"U"}
]"""


def compact(text: str) -> bytes:
    return json.dumps(json.loads(text), separators=(",", ":")).encode()


def test_identity() -> None:
    assert SENML_JSON.content_format is ContentFormat.SENML_JSON == 110
    assert SENML_JSON.name == "senml-json"


@pytest.mark.parametrize("models", [MODELS, None])
def test_device_example_decodes(models: ObjectRegistry | None) -> None:
    assert SENML_JSON.decode(DEVICE_JSON.encode(), P("/3/0"), models) == DEVICE


def test_device_example_encodes_as_in_the_spec() -> None:
    assert SENML_JSON.encode(DEVICE, P("/3/0"), MODELS) == compact(DEVICE_JSON)


def test_decoder_accepts_any_split_of_base_name_and_name() -> None:
    variants = [
        '[{"n":"/3/0/0","vs":"a"},{"n":"/3/0/7/1","v":2}]',
        '[{"bn":"/3/0/0","vs":"a"},{"bn":"/3/0/7/","n":"1","v":2}]',
        '[{"bn":"/","n":"3/0/0","vs":"a"},{"n":"3/0/7/1","v":2}]',
        '[{"bn":"/3","n":"/0/0","vs":"a"},{"n":"/0/7/1","v":2}]',
        '[{"bn":"/3/0/7/","n":"1","v":2},{"bn":"/3/0/0","vs":"a"}]',
    ]
    want = [Record(P("/3/0/0"), "a"), Record(P("/3/0/7/1"), 2)]
    for text in variants:
        assert SENML_JSON.decode(text.encode(), P("/3/0"), MODELS) == want, text


def test_typing_by_model() -> None:
    data = b'[{"bn":"/3303/0/","n":"5700","v":5},{"bn":"/3/0/","n":"13","v":1.7e9},{"n":"9","v":7.0}]'
    got = SENML_JSON.decode(data, P("/"), MODELS)
    assert got == [Record(P("/3/0/9"), 7), Record(P("/3/0/13"), 1700000000), Record(P("/3303/0/5700"), 5.0)]
    assert [type(r.value) for r in got] == [int, int, float]
    # Without a model the value keeps its JSON type.
    assert [type(r.value) for r in SENML_JSON.decode(data, P("/"))] == [float, float, int]


def test_opaque_is_base64url_without_padding_and_objlnk_is_vlo() -> None:
    recs = [Record(P("/3/0/20"), b"\xfb\xff\x00"), Record(P("/3/0/21"), ObjLink(3, 0))]
    data = SENML_JSON.encode(recs, P("/3/0"), MODELS)
    assert data == b'[{"bn":"/3/0/","n":"20","vd":"-_8A"},{"n":"21","vlo":"3:0"}]'
    assert SENML_JSON.decode(data, P("/3/0"), MODELS) == recs
    assert SENML_JSON.decode(data, P("/3/0")) == recs  # vd and vlo are typed on the wire
    # Padded standard base64 from older senders is accepted too.
    assert SENML_JSON.decode(b'[{"n":"/3/0/20","vd":"+/8A"}]', P("/3/0"))[0].value == b"\xfb\xff\x00"
    assert SENML_JSON.decode(b'[{"n":"/3/0/20","vd":"AQ=="}]', P("/3/0"))[0].value == b"\x01"


def test_integer_and_float_stay_apart_without_model() -> None:
    recs = [Record(P("/9/0/1"), 5), Record(P("/9/0/2"), 5.0), Record(P("/9/0/3"), True)]
    data = SENML_JSON.encode(recs, P("/9/0"))
    assert data == b'[{"bn":"/9/0/","n":"1","v":5},{"n":"2","v":5.0},{"n":"3","vb":true}]'
    assert SENML_JSON.decode(data, P("/9/0")) == recs


def test_read_composite_request_paths() -> None:
    # A Read-Composite / Observe-Composite request: names only (LwM2M-TS-Core 1.2 §6.3.8).
    data = b'[{"n":"/3/0/9"},{"n":"/1/0"},{"n":"/3303"}]'
    want = [Record(P("/1/0")), Record(P("/3/0/9")), Record(P("/3303"))]
    assert SENML_JSON.decode(data, P("/"), MODELS) == want
    enc = SENML_JSON.encode(want, P("/"))
    assert enc == b'[{"bn":"/1/0"},{"bn":"/3/0/","n":"9"},{"bn":"/3303"}]'
    assert SENML_JSON.decode(enc, P("/")) == want


def test_read_composite_response_spanning_objects() -> None:
    data = (
        b'[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"9","v":95},'
        b'{"bn":"/1/0/","n":"1","v":86400}]'
    )
    want = [
        Record(P("/1/0/1"), 86400),
        Record(P("/3/0/0"), "Open Mobile Alliance"),
        Record(P("/3/0/9"), 95),
    ]
    assert SENML_JSON.decode(data, P("/"), MODELS) == want
    enc = SENML_JSON.encode(want, P("/"), MODELS)
    assert enc == (
        b'[{"bn":"/1/0/","n":"1","v":86400},'
        b'{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"9","v":95}]'
    )


def test_send_with_timestamps() -> None:
    # Historical values of one resource: one base time, relative times (Send / notification storing).
    data = (
        b'[{"bn":"/3303/0/5700","bt":1700000000,"v":24.1,"t":-50},'
        b'{"v":22.9,"t":-30},{"v":22.4,"t":-5},{"bn":"/3303/0/","n":"5701","vs":"Cel"}]'
    )
    got = SENML_JSON.decode(data, P("/"), MODELS)
    assert got == [
        Record(P("/3303/0/5700"), 24.1, 1699999950),
        Record(P("/3303/0/5700"), 22.9, 1699999970),
        Record(P("/3303/0/5700"), 22.4, 1699999995),
        Record(P("/3303/0/5701"), "Cel", 1700000000),  # bt carries over to later records
    ]
    enc = SENML_JSON.encode(got, P("/"), MODELS)
    assert SENML_JSON.decode(enc, P("/"), MODELS) == got


def test_times_are_kept_as_given_not_resolved_against_a_clock() -> None:
    # RFC 8428 reads t < 2**28 as relative to now; a pure codec keeps the number.
    got = SENML_JSON.decode(b'[{"n":"/3303/0/5700","v":1.5,"t":-10}]', P("/"), MODELS)
    assert got == [Record(P("/3303/0/5700"), 1.5, -10)]
    got = SENML_JSON.decode(b'[{"bt":5,"n":"/3303/0/5700","v":1.5}]', P("/"), MODELS)
    assert got[0].time == 5


def test_records_sorted_by_path_then_time() -> None:
    data = b'[{"n":"/1/0/1","v":2,"t":20},{"n":"/1/0/0","v":1},{"n":"/1/0/1","v":3,"t":10}]'
    got = SENML_JSON.decode(data, P("/"))
    assert [(str(r.path), r.time) for r in got] == [("/1/0/0", None), ("/1/0/1", 10), ("/1/0/1", 20)]


def test_single_resource_and_resource_instances() -> None:
    one = [Record(P("/3/0/0"), "x")]
    assert SENML_JSON.encode(one, P("/3/0/0"), MODELS) == b'[{"bn":"/3/0/0","vs":"x"}]'
    multi = [Record(P("/3/0/7/0"), 1), Record(P("/3/0/7/1"), 2)]
    data = SENML_JSON.encode(multi, P("/3/0/7"), MODELS)
    assert data == b'[{"bn":"/3/0/7/","n":"0","v":1},{"n":"1","v":2}]'
    assert SENML_JSON.decode(data, P("/3/0/7"), MODELS) == multi


def test_empty_instance() -> None:
    recs = [Record(P("/3303/0/5700"), 1.0), Record(P("/3303/1"))]
    data = SENML_JSON.encode(recs, P("/3303"), MODELS)
    assert data == b'[{"bn":"/3303/","n":"0/5700","v":1.0},{"n":"1"}]'
    assert SENML_JSON.decode(data, P("/3303"), MODELS) == recs


def test_base_value_is_added() -> None:
    got = SENML_JSON.decode(b'[{"bn":"/3303/0/","bv":20,"n":"5700","v":1.5}]', P("/"), MODELS)
    assert got == [Record(P("/3303/0/5700"), 21.5)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"{}",
        b"[1]",
        b'[{"n":5}]',
        b'[{"bn":1}]',
        b'[{"n":"/3/0/0","v":"x"}]',
        b'[{"n":"/3/0/0","vs":1}]',
        b'[{"n":"/3/0/0","vb":1}]',
        b'[{"n":"/3/0/0","vd":"@@"}]',
        b'[{"n":"/3/0/0","vd":"A"}]',
        b'[{"n":"/3/0/0","vlo":"3"}]',
        b'[{"n":"/3/0/0","vlo":"3:70000"}]',
        b'[{"n":"/3/0/0","v":1,"vs":"x"}]',
        b'[{"n":"/3/0/0","v":true}]',
        b'[{"n":"/3/0/0","v":1e400}]',
        b'[{"n":"/3/0/0","v":99999999999999999999999}]',
        b'[{"n":"/3/0/0","t":"now","v":1}]',
        b'[{"n":"/3/0","v":1}]',
        b'[{"n":"/3/0/a","v":1}]',
        b'[{"n":"/3/0/01","v":1}]',
        b'[{"n":"/3/0/65535","v":1}]',
        b'[{"n":"/3/0/1/2/3","v":1}]',
        b'[{"n":"3//0","v":1}]',
        b'[{"n":"/4/0/0","v":1}]',
        b'[{"n":"/3/0/0","v":1,"x_":1}]',
        b'[{"bver":11,"n":"/3/0/0","v":1}]',
        b"[" * 100000 + b"]" * 100000,
        b"\xff\xfe",
    ],
)
def test_bad_input_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        SENML_JSON.decode(data, P("/3"))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'[{"n":"/3/0/9","vs":"x"}]', "string for an Integer"),
        (b'[{"n":"/3/0/9","v":1.5}]', "fraction for an Integer"),
        (b'[{"n":"/3/0/20","vs":"AQ"}]', "vs for an Opaque"),
        (b'[{"n":"/3/0/0","v":1}]', "number for a String"),
    ],
)
def test_model_rejects_wrong_types(data: bytes, why: str) -> None:
    with pytest.raises(CodecError):
        SENML_JSON.decode(data, P("/3"), MODELS)


def test_encode_errors() -> None:
    with pytest.raises(CodecError):
        SENML_JSON.encode([Record(P("/4/0/0"), 1)], P("/3"))  # outside the base
    with pytest.raises(CodecError):
        SENML_JSON.encode([Record(P("/3/0"), 1)], P("/3"))  # a value on an instance
    with pytest.raises(CodecError):
        SENML_JSON.encode([Record(P("/3/0/9"), "x")], P("/3"), MODELS)  # not an Integer
    with pytest.raises(CodecError):
        SENML_JSON.encode([Record(P("/3303/0/5700"), float("nan"))], P("/3303"), MODELS)  # not in JSON
    with pytest.raises(CodecError):
        SENML_JSON.encode([Record(P("/9/0/0"), [1])], P("/9"))  # type: ignore[arg-type]


def test_historical_example_with_base_time() -> None:
    # LwM2M-TS-Core 1.1 §7.4.4 timestamped Temperature values (Send / notification storing): one bn
    # and bt on the first record, then times relative to bt. The spec's values (bt 25462634,
    # t -5/-30/-50); the JSON text is written out here. bt is under 2**28, so RFC 8428 would read it as
    # relative to "now": the codec keeps the sum as given (see the module docstring of senml.py).
    data = b'[{"bn":"/3303/0/5700","bt":25462634,"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24.1,"t":-50}]'
    want = [
        Record(P("/3303/0/5700"), 24.1, 25462584),
        Record(P("/3303/0/5700"), 22.9, 25462604),
        Record(P("/3303/0/5700"), 22.4, 25462629),
    ]
    assert SENML_JSON.decode(data, P("/3303/0/5700"), MODELS) == want
    assert SENML_JSON.decode(data, P("/"), MODELS) == want  # a Send carries its paths from the root
    enc = SENML_JSON.encode(want, P("/"), MODELS)
    assert enc == (
        b'[{"bn":"/3303/0/","n":"5700","t":25462584,"v":24.1},{"n":"5700","t":25462604,"v":22.9},'
        b'{"n":"5700","t":25462629,"v":22.4}]'
    )
    assert SENML_JSON.decode(enc, P("/"), MODELS) == want


def test_write_composite_example() -> None:
    # Write-Composite (LwM2M-TS-Core 1.1 §6.3): values for resources of several objects, each record
    # named from the root (spec-style values; text written out here).
    data = b'[{"n":"/3/0/14","vs":"+02:00"},{"n":"/1/0/1","v":86400}]'
    want = [Record(P("/1/0/1"), 86400), Record(P("/3/0/14"), "+02:00")]
    assert SENML_JSON.decode(data, P("/"), MODELS) == want
    assert SENML_JSON.decode(SENML_JSON.encode(want, P("/"), MODELS), P("/"), MODELS) == want
