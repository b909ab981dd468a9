"""SenML-CBOR (112): RFC 8428 §6 integer labels, LwM2M-TS-Core 1.2 §7.4.5 examples, errors."""

from __future__ import annotations

import cbor2
import pytest
from tests.helpers.codec_examples import DEVICE

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.senml_cbor import SENML_CBOR
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


# LwM2M-TS-Core 1.1 §7.4.5 example: the Device object instance /3/0 as SenML-CBOR. These are the
# spec's own bytes (checked byte for byte against an independent public implementation's copy of
# the example), not built here with cbor2.
SPEC_DEVICE_CBOR = bytes.fromhex(
    "90a321652f332f302f00613003744f70656e204d6f62696c6520416c6c69616e6365a200613103764c6967687477656967"
    "6874204d324d20436c69656e74a20061320369333435303030313233a20061330363312e30a20063362f300201a2006336"
    "2f310205a20063372f3002190ed8a20063372f3102191388a20063382f3002187da20063382f3102190384a20061390218"
    "64a200623130020fa2006431312f300200a200623133021a5182428fa20062313403662b30323a3030a200623136036155"
)


@pytest.mark.parametrize("models", [MODELS, None])
def test_device_example_spec_bytes(models: ObjectRegistry | None) -> None:
    assert SENML_CBOR.decode(SPEC_DEVICE_CBOR, P("/3/0"), models) == DEVICE
    # Our encoder writes the example exactly: bn on the first record, then n relative to it.
    assert SENML_CBOR.encode(DEVICE, P("/3/0"), models) == SPEC_DEVICE_CBOR


def test_read_composite_request_and_response() -> None:
    # LwM2M-TS-Core 1.1 §6.3.8 / §7.4.5 Read-Composite: the request names the paths, the response
    # carries their values (Manufacturer, Battery Level, Server Lifetime). Values are the spec
    # example's; the CBOR bytes are written out here from RFC 8428 Table 4 labels.
    request = bytes.fromhex("83" + "a100662f332f302f30" + "a100662f332f302f39" + "a100662f312f302f31")
    paths = [Record(P("/1/0/1")), Record(P("/3/0/0")), Record(P("/3/0/9"))]
    assert SENML_CBOR.decode(request, P("/"), MODELS) == paths
    # [{-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}, {0: "9", 2: 95}, {-2: "/1/0/", 0: "1", 2: 86400}]
    response = bytes.fromhex(
        "83" + "a321652f332f302f0061300374" + OMA + "a200613902185f" + "a321652f312f302f006131021a00015180"
    )
    want = [
        Record(P("/1/0/1"), 86400),
        Record(P("/3/0/0"), "Open Mobile Alliance"),
        Record(P("/3/0/9"), 95),
    ]
    assert SENML_CBOR.decode(response, P("/"), MODELS) == want
    assert SENML_CBOR.decode(SENML_CBOR.encode(want, P("/"), MODELS), P("/"), MODELS) == want


def test_send_historical_values_with_base_time() -> None:
    # LwM2M-TS-Core 1.1 §7.4.4/§7.4.5 timestamped Temperature values (bt 25462634, t -5/-30/-50),
    # as SenML-CBOR: [{-2: "/3303/0/5700", -3: 25462634, 2: 22.4, 6: -5}, {2: 22.9, 6: -30},
    # {2: 24.1, 6: -50}]. Built here from the spec's values, not the spec's bytes.
    data = bytes.fromhex(
        "83" + "a4" + "216c2f333330332f302f35373030" + "221a0184876a" + "02fb4036666666666666" + "0624"
        "a2" + "02fb4036e66666666666" + "06381d" + "a2" + "02fb403819999999999a" + "063831"
    )
    assert cbor2.loads(data) == [
        {-2: "/3303/0/5700", -3: 25462634, 2: 22.4, 6: -5},
        {2: 22.9, 6: -30},
        {2: 24.1, 6: -50},
    ]
    got = SENML_CBOR.decode(data, P("/3303/0/5700"), MODELS)
    assert got == [
        Record(P("/3303/0/5700"), 24.1, 25462584),
        Record(P("/3303/0/5700"), 22.9, 25462604),
        Record(P("/3303/0/5700"), 22.4, 25462629),
    ]
    assert SENML_CBOR.decode(SENML_CBOR.encode(got, P("/"), MODELS), P("/"), MODELS) == got


def test_a_record_with_a_repeated_label_is_refused() -> None:
    # [{0: "/3/0/1", 3: "a", 0: "/3/0/2", 3: "b"}]: as a dict it would keep one of two values.
    record = b"\xa4" + cbor2.dumps(0) + cbor2.dumps("/3/0/1") + cbor2.dumps(3) + cbor2.dumps("a")
    record += cbor2.dumps(0) + cbor2.dumps("/3/0/2") + cbor2.dumps(3) + cbor2.dumps("b")
    with pytest.raises(CodecError, match=r"[Dd]uplicate"):
        SENML_CBOR.decode(b"\x81" + record, Path(()))
