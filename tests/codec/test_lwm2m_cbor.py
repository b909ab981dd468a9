"""LwM2M-CBOR (11544): nested maps keyed by IDs or arrays of IDs (LwM2M-TS-Core 1.2 §7.4.7)."""

from __future__ import annotations

import cbor2
import pytest
from tests.helpers.codec_examples import DEVICE

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.lwm2m_cbor import LWM2M_CBOR
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
                    0: S, 1: S, 7: N, 9: N, 13: T.TIME, 20: T.OPAQUE, 21: T.OBJLNK, 22: T.BOOLEAN,
                }.items()
            },
        ),
        ObjectDefinition(3303, "Temperature", {5700: ResourceDefinition(5700, "Value", T.FLOAT)}),
    ]
)  # fmt: skip

OMA = b"Open Mobile Alliance".hex()
RECS = [
    Record(P("/3/0/0"), "Open Mobile Alliance"),
    Record(P("/3/0/7/0"), 3800),
    Record(P("/3/0/7/1"), 5000),
]


def test_identity() -> None:
    assert LWM2M_CBOR.content_format is ContentFormat.LWM2M_CBOR == 11544
    assert LWM2M_CBOR.name == "lwm2m-cbor"


def test_nested_maps() -> None:
    # {3: {0: {0: "Open Mobile Alliance", 7: {0: 3800, 1: 5000}}}}
    data = bytes.fromhex("a103a100a20074" + OMA + "07a200190ed8011913" + "88")
    assert LWM2M_CBOR.decode(data, P("/3/0"), MODELS) == RECS
    assert LWM2M_CBOR.decode(data, P("/"), None) == RECS


def test_encoder_collapses_single_child_chains_into_array_keys() -> None:
    # {[3, 0]: {0: "Open Mobile Alliance", 7: {0: 3800, 1: 5000}}}
    want = bytes.fromhex("a1820300a20074" + OMA + "07a200190ed801191388")
    assert LWM2M_CBOR.encode(RECS, P("/3/0"), MODELS) == want
    # A single resource: {[3, 0, 9]: 100}
    assert LWM2M_CBOR.encode([Record(P("/3/0/9"), 100)], P("/3/0/9")) == bytes.fromhex("a183030009" + "1864")


@pytest.mark.parametrize(
    "data",
    [
        {(3, 0, 0): "Open Mobile Alliance", (3, 0, 7): {0: 3800, 1: 5000}},
        {(3,): {(0,): {0: "Open Mobile Alliance", (7, 0): 3800, (7, 1): 5000}}},
        {(3, 0): {0: "Open Mobile Alliance"}, (3, 0, 7, 0): 3800, 3: {0: {7: {1: 5000}}}},
    ],
)
def test_any_split_of_keys(data: dict[object, object]) -> None:
    assert LWM2M_CBOR.decode(cbor2.dumps(data), P("/3/0"), MODELS) == RECS


def test_indefinite_lengths() -> None:
    # {_ [_ 3, 0, 9]: 100}
    data = bytes.fromhex("bf9f030009ff1864ff")
    assert LWM2M_CBOR.decode(data, P("/3"), MODELS) == [Record(P("/3/0/9"), 100)]


def test_types() -> None:
    recs = [
        Record(P("/3/0/13"), 1700000000),
        Record(P("/3/0/20"), b"\x00\xff"),
        Record(P("/3/0/21"), ObjLink(3, 1)),
        Record(P("/3/0/22"), False),
        Record(P("/3303/0/5700"), 21.5),
    ]
    data = LWM2M_CBOR.encode(recs, P("/"), MODELS)
    assert cbor2.loads(data) == {
        (3, 0): {13: 1700000000, 20: b"\x00\xff", 21: "3:1", 22: False},
        (3303, 0, 5700): 21.5,
    }
    assert LWM2M_CBOR.decode(data, P("/"), MODELS) == recs
    # Tag 1 on a Time value, a decimal fraction (tag 4) for a Float, an integer for a Float.
    data = cbor2.dumps(
        {(3, 0, 13): cbor2.CBORTag(1, 1700000000), (3303, 0, 5700): cbor2.CBORTag(4, [-1, 215])}
    )
    assert LWM2M_CBOR.decode(data, P("/"), MODELS) == [Record(P("/3/0/13"), 1700000000), recs[-1]]
    got = LWM2M_CBOR.decode(cbor2.dumps({(3303, 0, 5700): 21}), P("/"), MODELS)
    assert got == [Record(P("/3303/0/5700"), 21.0)] and type(got[0].value) is float


def test_empty_nodes() -> None:
    recs = [Record(P("/3/0/7")), Record(P("/3303/0")), Record(P("/3303/1/5700"), 1.0)]
    data = LWM2M_CBOR.encode(recs, P("/"), MODELS)
    assert cbor2.loads(data) == {(3, 0, 7): {}, 3303: {0: {}, (1, 5700): 1.0}}
    assert LWM2M_CBOR.decode(data, P("/"), MODELS) == recs
    assert LWM2M_CBOR.decode(cbor2.dumps({(3, 0, 7): None}), P("/3"), MODELS) == [Record(P("/3/0/7"))]


def test_no_timestamps() -> None:
    with pytest.raises(CodecError):
        LWM2M_CBOR.encode([Record(P("/3/0/9"), 1, 1700000000)], P("/"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        cbor2.dumps([1, 2]),
        cbor2.dumps(0),
        cbor2.dumps({(3, 0, 9): 1}) + b"\x00",
        cbor2.dumps({(3, 0, 65536): 1}),
        cbor2.dumps({(3, 0, -1): 1}),
        cbor2.dumps({(3, 0, 9, 1, 2): 1}),
        cbor2.dumps({(3, 0, 9): {1: {2: 3}}}),
        cbor2.dumps({(): 1}),
        cbor2.dumps({3: {(): {0: {9: 1}}}}),
        cbor2.dumps({"3": {0: {9: 1}}}),
        cbor2.dumps({3.0: {0: {9: 1}}}),
        cbor2.dumps({(3, "0"): {9: 1}}),
        cbor2.dumps({3: {0: [1]}}),
        cbor2.dumps({(3, 0): 1}),
        cbor2.dumps({(3, 0, 9): "x"}),
        cbor2.dumps({(3, 0, 9): 2**64}),
        cbor2.dumps({(3, 0, 21): "3"}),
        cbor2.dumps({(3, 0, 20): "AQ"}),
        cbor2.dumps({(3, 0, 9): cbor2.CBORTag(99, 1)}),
        cbor2.dumps({(4, 0, 9): 1}),
        cbor2.dumps({3: {}}),  # an empty node above the request path
        b"\xa1" * 1000,
        b"\xd8\x1c\xa1\x01\xd8\x1d\x00",  # a map that contains itself
    ],
)
def test_bad_input_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        LWM2M_CBOR.decode(data, P("/3/0"), MODELS)


def test_encode_errors() -> None:
    with pytest.raises(CodecError):
        LWM2M_CBOR.encode([Record(P("/4/0/0"), 1)], P("/3"))
    with pytest.raises(CodecError):
        LWM2M_CBOR.encode([Record(P("/3/0/9"), 1), Record(P("/3/0/9"), 2)], P("/3"))
    with pytest.raises(CodecError):
        LWM2M_CBOR.encode([Record(P("/3/0/7"), 1), Record(P("/3/0/7/0"), 2)], P("/3"))
    with pytest.raises(CodecError):
        LWM2M_CBOR.encode([Record(P("/3/0"), 1)], P("/3"))


# LwM2M-TS-Core 1.2 §7.4.7 example: the Device object instance /3/0 (the values of the §7.4.4
# example) as nested LwM2M-CBOR maps, the instance addressed by one array key [3, 0]. Built here
# from the spec's structure and values with cbor2, not copied from the spec's bytes.
SPEC_DEVICE = {
    (3, 0): {
        0: "Open Mobile Alliance", 1: "Lightweight M2M Client", 2: "345000123", 3: "1.0",
        6: {0: 1, 1: 5}, 7: {0: 3800, 1: 5000}, 8: {0: 125, 1: 900}, 9: 100, 10: 15, 11: {0: 0},
        13: 1367491215, 14: "+02:00", 16: "U",
    }
}  # fmt: skip


@pytest.mark.parametrize("models", [MODELS, None])
def test_device_example_decodes(models: ObjectRegistry | None) -> None:
    assert LWM2M_CBOR.decode(cbor2.dumps(SPEC_DEVICE), P("/3/0"), models) == DEVICE
    # The same content with one map per level, {3: {0: {...}}}, is the same records.
    assert LWM2M_CBOR.decode(cbor2.dumps({3: {0: SPEC_DEVICE[(3, 0)]}}), P("/3"), models) == DEVICE


def test_device_example_round_trip_of_our_layout() -> None:
    # Our encoder also folds the single-instance resource 11 into an array key ([11, 0]: 0) where the
    # example writes 11: {0: 0}; both mean /3/0/11/0 = 0, so check our bytes decode back.
    data = LWM2M_CBOR.encode(DEVICE, P("/3/0"), MODELS)
    want = {(3, 0): {**SPEC_DEVICE[(3, 0)], (11, 0): 0}}
    del want[(3, 0)][11]
    assert cbor2.loads(data) == want
    assert LWM2M_CBOR.decode(data, P("/3/0"), MODELS) == DEVICE
    assert LWM2M_CBOR.decode(data, P("/3/0")) == DEVICE


def test_read_composite_response() -> None:
    # LwM2M-TS-Core 1.2 §7.4.7: a composite response spans objects from the root, e.g. Server
    # Lifetime /1/0/1 and Battery Level /3/0/9 ({1: {0: {1: 86400}}, 3: {0: {9: 95}}}).
    data = bytes.fromhex("a2" + "01a100a1011a00015180" + "03a100a109185f")
    assert cbor2.loads(data) == {1: {0: {1: 86400}}, 3: {0: {9: 95}}}
    want = [Record(P("/1/0/1"), 86400), Record(P("/3/0/9"), 95)]
    assert LWM2M_CBOR.decode(data, P("/"), MODELS) == want
    enc = LWM2M_CBOR.encode(want, P("/"), MODELS)
    assert cbor2.loads(enc) == {(1, 0, 1): 86400, (3, 0, 9): 95}
    assert LWM2M_CBOR.decode(enc, P("/"), MODELS) == want


def test_half_precision_float_and_null_resource_instance() -> None:
    # RFC 8949 lets a Float travel as a half-precision float (f9 4100 = 2.5); null marks an empty node.
    data = bytes.fromhex("a1" + "8319 0ce7 00 19 1644".replace(" ", "") + "f94100")
    assert LWM2M_CBOR.decode(data, P("/3303"), MODELS) == [Record(P("/3303/0/5700"), 2.5)]
    data = cbor2.dumps({(3, 0, 7): {0: None, 1: 5000}})
    assert LWM2M_CBOR.decode(data, P("/3/0"), MODELS) == [Record(P("/3/0/7/0")), Record(P("/3/0/7/1"), 5000)]


# --- repeated keys: one tree, nothing dropped ---------------------------------------------------

# A Send seen from a client: top-level key 3 twice, around 3303 (four values).
REPEATED_TOP_KEY = (
    "bf03bf00bf0065616e6a61790d1a6b15b279ffff190ce7bf00bf191644fa41100000ffff03bf00bf07bf00197eebffffffff"
)


@pytest.mark.parametrize("models", [MODELS, None], ids=["model", "no-model"])
def test_repeated_top_level_key_merges_into_one_tree(models: ObjectRegistry | None) -> None:
    records = LWM2M_CBOR.decode(bytes.fromhex(REPEATED_TOP_KEY), Path(()), models)
    assert [str(r.path) for r in records] == ["/3/0/0", "/3/0/7/0", "/3/0/13", "/3303/0/5700"]
    values = {str(r.path): r.value for r in records}
    assert values["/3/0/0"] == "anjay"
    assert values["/3/0/7/0"] == 32491
    assert values["/3/0/13"] == 1796584057
    assert values["/3303/0/5700"] == 9.0


def _pairs_map(*pairs: tuple[bytes, bytes]) -> bytes:
    """An indefinite-length CBOR map from encoded (key, value) pairs, repeats kept."""
    return b"\xbf" + b"".join(k + v for k, v in pairs) + b"\xff"


D = cbor2.dumps


def test_repeated_keys_at_every_level_merge() -> None:
    inner = _pairs_map((D(0), D("a")), (D(0), D("a")), (D(1), D("b")))  # /3/0/0 twice, same value
    data = _pairs_map((D(3), _pairs_map((D(0), inner), (D(0), D({9: 5})))), (D([3, 0, 7]), D({0: 1})))
    records = LWM2M_CBOR.decode(data, Path(()))
    assert records == [
        Record(P("/3/0/0"), "a"),
        Record(P("/3/0/1"), "b"),
        Record(P("/3/0/7/0"), 1),
        Record(P("/3/0/9"), 5),
    ]


def test_array_keys_that_name_the_same_path_merge() -> None:
    # No repeated CBOR key, yet the same path twice: [3, 0] and 3 -> 0.
    data = D({(3, 0): {0: "a", 1: "b"}, 3: {0: {0: "a"}}})
    assert LWM2M_CBOR.decode(data, Path(())) == [Record(P("/3/0/0"), "a"), Record(P("/3/0/1"), "b")]


def test_empty_node_merges_with_content_given_under_a_repeat() -> None:
    data = _pairs_map((D(3), D({0: {}})), (D(3), D({0: {1: "x"}})), (D(4), D({})), (D(4), D({})))
    assert LWM2M_CBOR.decode(data, Path(())) == [Record(P("/3/0/1"), "x"), Record(P("/4"))]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_pairs_map((D(3), D({0: {0: "a"}})), (D(3), D({0: {0: "b"}}))), "given twice with different values"),
        (D({(3, 0, 0): "a", 3: {0: {0: "b"}}}), "given twice with different values"),
        (D({(3, 0, 7): 5, (3, 0, 7, 0): 1}), "has a value and also children"),
        (_pairs_map((D(3), D({0: {7: 5}})), (D(3), D({0: {7: {}}}))), "both with a value and as a node"),
        (_pairs_map((D(3), D({0: {0: "a"}})), (D(3), D({0: {1: "bb"}})))[:-1], "ends inside"),
        (_pairs_map((D(3), D({0: {0: "a"}})), (D(3), b"\x1c")), "reserved initial byte"),
        (_pairs_map((D(3), D({0: {0: "a"}})), (D(3), D({}))) + b"\x00", "after the data item"),
    ],
    ids=["same-key", "array-key", "value-and-children", "value-and-node", "cut", "reserved", "trailing"],
)
def test_what_cannot_be_read_whole_is_a_codec_error_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        LWM2M_CBOR.decode(data, Path(()))
