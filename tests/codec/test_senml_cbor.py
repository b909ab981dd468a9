"""SenML-CBOR (112): RFC 8428 §6 integer labels, LwM2M-TS-Core 1.2 §7.4.5 examples, errors."""

from __future__ import annotations

import cbor2
import pytest

from lwm2m.codec.base import CodecError, ContentFormat
from lwm2m.codec.senml_cbor import SENML_CBOR
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
                    13: T.TIME, 14: S, 16: S, 20: T.OPAQUE, 21: T.OBJLNK,
                }.items()
            },
        ),
        ObjectDefinition(3303, "Temperature", {5700: ResourceDefinition(5700, "Value", T.FLOAT)}),
    ]
)  # fmt: skip

OMA = b"Open Mobile Alliance".hex()


def test_identity() -> None:
    assert SENML_CBOR.content_format is ContentFormat.SENML_CBOR == 112
    assert SENML_CBOR.name == "senml-cbor"


def test_labels_on_the_wire() -> None:
    # [{-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}, {0: "9", 2: 100}]
    data = bytes.fromhex(
        "82" + "a3" + "21" + "652f332f302f" + "006130" + "0374" + OMA + "a2" + "006139" + "021864"
    )
    recs = [Record(P("/3/0/0"), "Open Mobile Alliance"), Record(P("/3/0/9"), 100)]
    assert SENML_CBOR.decode(data, P("/3/0"), MODELS) == recs
    assert SENML_CBOR.encode(recs, P("/3/0"), MODELS) == data


def test_opaque_is_a_byte_string_and_objlnk_a_vlo_string_key() -> None:
    # [{0: "/3/0/20", 8: h'01ff'}, {0: "/3/0/21", "vlo": "3:0"}]
    data = bytes.fromhex("82a200672f332f302f3230084201ffa200672f332f302f323163766c6f63333a30")
    recs = [Record(P("/3/0/20"), b"\x01\xff"), Record(P("/3/0/21"), ObjLink(3, 0))]
    assert SENML_CBOR.decode(data, P("/"), MODELS) == recs
    assert SENML_CBOR.decode(data, P("/")) == recs
    enc = SENML_CBOR.encode(recs, P("/3/0"), MODELS)
    assert cbor2.loads(enc) == [{-2: "/3/0/", 0: "20", 8: b"\x01\xff"}, {0: "21", "vlo": "3:0"}]


def test_device_object() -> None:
    # LwM2M-TS-Core 1.1 §7.4.5: the Device object instance of §7.4.4 with CBOR labels.
    pack = [{-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}, {0: "1", 3: "Lightweight M2M Client"}]
    pack += [{0: "2", 3: "345000123"}, {0: "3", 3: "1.0"}, {0: "6/0", 2: 1}, {0: "6/1", 2: 5}]
    pack += [{0: "7/0", 2: 3800}, {0: "7/1", 2: 5000}, {0: "8/0", 2: 125}, {0: "8/1", 2: 900}]
    pack += [{0: "9", 2: 100}, {0: "10", 2: 15}, {0: "11/0", 2: 0}, {0: "13", 2: 1367491215}]
    pack += [{0: "14", 3: "+02:00"}, {0: "16", 3: "U"}]
    data = cbor2.dumps(pack)
    recs = SENML_CBOR.decode(data, P("/3/0"), MODELS)
    assert len(recs) == 16
    assert recs[0] == Record(P("/3/0/0"), "Open Mobile Alliance")
    assert Record(P("/3/0/7/1"), 5000) in recs
    assert SENML_CBOR.encode(recs, P("/3/0"), MODELS) == data


def test_timestamps_base_time_and_floats() -> None:
    pack = [{-2: "/3303/0/5700", -3: 1700000000, 2: 24.5, 6: -50}, {2: 22, 6: -30.5}]
    got = SENML_CBOR.decode(cbor2.dumps(pack), P("/3303"), MODELS)
    assert got == [
        Record(P("/3303/0/5700"), 24.5, 1699999950),
        Record(P("/3303/0/5700"), 22.0, 1699999969.5),
    ]
    assert type(got[1].value) is float  # typed by the model
    enc = SENML_CBOR.encode(got, P("/3303/0/5700"), MODELS)
    assert cbor2.loads(enc) == [{-2: "/3303/0/5700", 6: 1699999950, 2: 24.5}, {6: 1699999969.5, 2: 22.0}]
    assert SENML_CBOR.decode(enc, P("/3303/0/5700"), MODELS) == got


def test_nan_and_infinity_travel_in_cbor() -> None:
    recs = [Record(P("/3303/0/5700"), float("inf"))]
    assert SENML_CBOR.decode(SENML_CBOR.encode(recs, P("/"), MODELS), P("/"), MODELS) == recs
    got = SENML_CBOR.decode(SENML_CBOR.encode([Record(P("/3303/0/5700"), float("nan"))], P("/")), P("/"))
    assert got[0].value != got[0].value


def test_composite_request_names_only() -> None:
    data = cbor2.dumps([{0: "/3/0/9"}, {0: "/1/0"}])
    assert SENML_CBOR.decode(data, P("/")) == [Record(P("/1/0")), Record(P("/3/0/9"))]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00",  # trailing bytes
        cbor2.dumps({0: "/3/0/0"}),
        cbor2.dumps([[0, "/3/0/0"]]),
        cbor2.dumps([{0: 3}]),
        cbor2.dumps([{0: "/3/0/0", 2: "x"}]),
        cbor2.dumps([{0: "/3/0/0", 8: "AQ"}]),  # vd must be a byte string in CBOR
        cbor2.dumps([{0: "/3/0/0", 3: b"x"}]),
        cbor2.dumps([{0: "/3/0/0", 2: 2**70}]),
        cbor2.dumps([{0: "/3/0/0", 2: 1, 4: True}]),
        cbor2.dumps([{0: "/3/0/0", 2: cbor2.CBORTag(99, 1)}]),
        cbor2.dumps([{0: "/3/0/0", 6: float("nan"), 2: 1}]),
        cbor2.dumps([{0: "/4/0/0", 2: 1}]),
        b"\x81" * 1000,
        b"\x9f" * 1000,
        b"\xd8\x1c\x81\xd8\x1d\x00",  # a shared reference cycle
    ],
)
def test_bad_input_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        SENML_CBOR.decode(data, P("/3"))
