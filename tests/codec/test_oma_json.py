"""OMA LwM2M JSON (11543): the examples of LwM2M-TS 1.0 §6.4.4 / TS-Core 1.1 §7.4.5, errors."""

from __future__ import annotations

import json

import pytest
from tests.helpers.codec_examples import DEVICE

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.oma_json import OMA_JSON
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T

P = Path.parse
S, N = T.STRING, T.INTEGER
MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            3,
            "Device",
            {
                rid: ResourceDefinition(rid, f"R{rid}", t, multiple=rid in (6, 7, 8, 11))
                for rid, t in {
                    0: S, 1: S, 2: S, 3: S, 6: N, 7: N, 8: N, 9: N, 10: N, 11: N,
                    13: T.TIME, 14: S, 16: S, 20: T.OPAQUE, 21: T.OBJLNK, 22: T.BOOLEAN,
                }.items()
            },
        ),
        ObjectDefinition(3303, "Temperature", {5700: ResourceDefinition(5700, "Value", T.FLOAT)}),
    ]
)  # fmt: skip

# LwM2M-TS 1.0 §6.4.4: the Device object instance read as JSON.
DEVICE_JSON = """{"bn":"/3/0/",
"e":[
 {"n":"0","sv":"Open Mobile Alliance"},
 {"n":"1","sv":"Lightweight M2M Client"},
 {"n":"2","sv":"345000123"},
 {"n":"3","sv":"1.0"},
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
 {"n":"14","sv":"+02:00"},
 {"n":"16","sv":"U"}]
}"""


def test_identity() -> None:
    assert OMA_JSON.content_format is ContentFormat.OMA_JSON == 11543
    assert OMA_JSON.name == "oma-json"


@pytest.mark.parametrize("models", [MODELS, None])
def test_device_example(models: ObjectRegistry | None) -> None:
    assert OMA_JSON.decode(DEVICE_JSON.encode(), P("/3/0"), models) == DEVICE
    compact = json.dumps(json.loads(DEVICE_JSON), separators=(",", ":")).encode()
    assert OMA_JSON.encode(DEVICE, P("/3/0"), models) == compact


def test_boolean_objlnk_opaque() -> None:
    recs = [
        Record(P("/3/0/20"), b"\x01\xff"),
        Record(P("/3/0/21"), ObjLink(3, 0)),
        Record(P("/3/0/22"), True),
    ]
    data = OMA_JSON.encode(recs, P("/3/0"), MODELS)
    assert data == b'{"bn":"/3/0/","e":[{"n":"20","sv":"Af8="},{"n":"21","ov":"3:0"},{"n":"22","bv":true}]}'
    assert OMA_JSON.decode(data, P("/3/0"), MODELS) == recs
    # Without a model an Opaque value cannot be told from a String.
    assert OMA_JSON.decode(data, P("/3/0"))[0].value == "Af8="


def test_historical_values() -> None:
    # Timestamped entries of one resource under a base time (notification storing).
    data = (
        b'{"bn":"/3303/0/5700","bt":1700000000,"e":[{"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24,"t":-50}]}'
    )
    got = OMA_JSON.decode(data, P("/3303/0/5700"), MODELS)
    assert got == [
        Record(P("/3303/0/5700"), 24.0, 1699999950),
        Record(P("/3303/0/5700"), 22.9, 1699999970),
        Record(P("/3303/0/5700"), 22.4, 1699999995),
    ]
    enc = OMA_JSON.encode(got, P("/3303/0/5700"), MODELS)
    assert enc == (
        b'{"bn":"/3303/0/5700","e":[{"v":24.0,"t":1699999950},{"v":22.9,"t":1699999970},'
        b'{"v":22.4,"t":1699999995}]}'
    )
    assert OMA_JSON.decode(enc, P("/3303/0/5700"), MODELS) == got


def test_names_relative_to_any_base_name() -> None:
    data = b'{"bn":"/","e":[{"n":"3/0/9","v":1},{"n":"3303/0/5700","v":2}]}'
    assert OMA_JSON.decode(data, P("/"), MODELS) == [Record(P("/3/0/9"), 1), Record(P("/3303/0/5700"), 2.0)]
    data = b'{"e":[{"n":"/3/0/9","v":1}]}'
    assert OMA_JSON.decode(data, P("/3/0/9"), MODELS) == [Record(P("/3/0/9"), 1)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"bn":"/3/0/"}',
        b'{"bn":3,"e":[]}',
        b'{"bn":"/3/0/","e":{}}',
        b'{"bn":"/3/0/","e":[1]}',
        b'{"bn":"/3/0/","e":[{"n":9,"v":1}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","v":"1"}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"1"}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","bv":1}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","ov":"x"}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","v":1,"t":"x"}]}',
        b'{"bn":"/3/0/","bt":"x","e":[]}',
        b'{"bn":"/4/0/","e":[{"n":"9","v":1}]}',
        b'{"bn":"/3/","e":[{"n":"0","v":1}]}',
        b'{"bn":"/3/0/","e":[{"n":"x","v":1}]}',
        b'{"bn":"/3/0/","e":[{"n":"9","sv":"x"}]}',  # a String for an Integer resource
        b'{"bn":"/3/0/","e":[{"n":"20","sv":"!!"}]}',  # bad base64 for an Opaque resource
        b"{" * 10000,
    ],
)
def test_bad_input_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        OMA_JSON.decode(data, P("/3"), MODELS)


def test_encode_errors() -> None:
    with pytest.raises(CodecError):
        OMA_JSON.encode([Record(P("/4/0/0"), 1)], P("/3"))
    with pytest.raises(CodecError):
        OMA_JSON.encode([Record(P("/3303/0/5700"), float("inf"))], P("/3303"), MODELS)


def test_historical_example_with_base_time_after_the_entries() -> None:
    # LwM2M-TS-Core 1.0 §6.4.4 timestamped values: bt may follow "e" in the object (spec values
    # bt 25462634, t -5/-30/-50; text written out here).
    data = (
        b'{"bn":"/3303/0/5700","e":[{"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24.1,"t":-50}],"bt":25462634}'
    )
    assert OMA_JSON.decode(data, P("/3303/0/5700"), MODELS) == [
        Record(P("/3303/0/5700"), 24.1, 25462584),
        Record(P("/3303/0/5700"), 22.9, 25462604),
        Record(P("/3303/0/5700"), 22.4, 25462629),
    ]
