"""OMA-TLV (11542): worked examples of LwM2M-TS-Core 1.2 §7.4.3, encoding rules, errors, round trips, fuzz."""

from __future__ import annotations

import math
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.codec_examples import DEVICE

from lwm2m.codec.tlv import TLV
from lwm2m.errors import CodecError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model import ResourceType as T
from lwm2m.model.value import INT64_MAX, INT64_MIN, UINT64_MAX, values_equal

P = Path.parse
S, INT = T.STRING, T.INTEGER


def registry(spec: dict[int, dict[int, T]], multiple: dict[int, set[int]]) -> ObjectRegistry:
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


MODELS = registry(
    {
        # LwM2M Access Control, Server, Device (the resources the examples use)
        2: {0: INT, 1: INT, 2: INT, 3: INT},
        1: {0: INT, 1: INT, 6: T.BOOLEAN, 7: S},
        3: {
            0: S,
            1: S,
            2: S,
            3: S,
            4: T.NONE,
            6: INT,
            7: INT,
            8: INT,
            9: INT,
            10: INT,
            11: INT,
            13: T.TIME,
            14: S,
            16: S,
        },
        # one resource of every type, single (0..9) and multiple (10..19), some with 16-bit IDs
        9000: {
            0: S,
            1: INT,
            2: T.UNSIGNED_INTEGER,
            3: T.FLOAT,
            4: T.BOOLEAN,
            5: T.OPAQUE,
            6: T.TIME,
            7: T.OBJLNK,
            8: T.CORELNK,
            300: S,
            10: S,
            11: INT,
            12: T.UNSIGNED_INTEGER,
            13: T.FLOAT,
            14: T.BOOLEAN,
            15: T.OPAQUE,
            16: T.TIME,
            17: T.OBJLNK,
            5700: INT,
        },
    },
    {2: {2}, 3: {6, 7, 8, 11}, 9000: {10, 11, 12, 13, 14, 15, 16, 17, 5700}},
)

# LwM2M-TS-Core 1.2 §7.4.3.2 A): Read /3/0, the Device object instance as resource TLVs.
DEVICE_TLV = bytes.fromhex(
    "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65"  # 0 Manufacturer
    "C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74"  # 1 Model Number
    "C8 02 09 33 34 35 30 30 30 31 32 33"  # 2 Serial Number
    "C3 03 31 2E 30"  # 3 Firmware Version
    "86 06 41 00 01 41 01 05"  # 6 Available Power Sources [0]=1 [1]=5
    "88 07 08 42 00 0E D8 42 01 13 88"  # 7 Power Source Voltage [0]=3800 [1]=5000
    "87 08 41 00 7D 42 01 03 84"  # 8 Power Source Current [0]=125 [1]=900
    "C1 09 64"  # 9 Battery Level 100
    "C1 0A 0F"  # 10 Memory Free 15
    "83 0B 41 00 00"  # 11 Error Code [0]=0
    "C4 0D 51 82 42 8F"  # 13 Current Time 1367491215
    "C6 0E 2B 30 32 3A 30 30"  # 14 UTC Offset "+02:00"
    "C1 10 55"  # 16 Supported Binding "U"
)

# LwM2M-TS-Core 1.2 §7.4.3.2 B): Read /2, two Access Control object instances.
ACL_TLV = bytes.fromhex(
    "08 00 0E"  # object instance 0, 14 bytes
    "C1 00 01  C1 01 00  83 02 41 7F 07  C1 03 7F"
    "08 02 12"  # object instance 2, 18 bytes
    "C1 00 03  C1 01 00  87 02 41 7F 07 61 01 36 01  C1 03 7F"  # ACL[310] has a 16-bit ID
)
ACL = [
    Record(P("/2/0/0"), 1),
    Record(P("/2/0/1"), 0),
    Record(P("/2/0/2/127"), 7),
    Record(P("/2/0/3"), 127),
    Record(P("/2/2/0"), 3),
    Record(P("/2/2/1"), 0),
    Record(P("/2/2/2/127"), 7),
    Record(P("/2/2/2/310"), 1),
    Record(P("/2/2/3"), 127),
]

# LwM2M-TS-Core 1.2 §7.4.3.2 C): Read /1, one Server object instance.
SERVER_TLV = bytes.fromhex("08 00 0F  C1 00 01  C4 01 00 01 51 80  C1 06 01  C1 07 55")
SERVER = [
    Record(P("/1/0/0"), 1),
    Record(P("/1/0/1"), 86400),
    Record(P("/1/0/6"), True),
    Record(P("/1/0/7"), "U"),
]


# -- the worked examples --------------------------------------------------------------------


def test_device_instance_decodes_and_encodes_as_resource_tlvs() -> None:
    assert TLV.decode(DEVICE_TLV, P("/3/0"), MODELS) == DEVICE
    assert TLV.encode(DEVICE, P("/3/0"), MODELS) == DEVICE_TLV


def test_device_instance_wrapped_in_its_object_instance_tlv() -> None:
    wrapped = bytes.fromhex("08 00 79") + DEVICE_TLV  # 121 bytes of resources
    assert TLV.decode(wrapped, P("/3/0"), MODELS) == DEVICE
    assert TLV.decode(wrapped, P("/3"), MODELS) == DEVICE
    assert TLV.encode(DEVICE, P("/3"), MODELS) == wrapped


def test_access_control_object_with_two_instances() -> None:
    assert TLV.decode(ACL_TLV, P("/2"), MODELS) == ACL
    assert TLV.encode(ACL, P("/2"), MODELS) == ACL_TLV


def test_server_object() -> None:
    assert TLV.decode(SERVER_TLV, P("/1"), MODELS) == SERVER
    assert TLV.encode(SERVER, P("/1"), MODELS) == SERVER_TLV


def test_single_resource_multiple_resource_and_resource_instance() -> None:
    manufacturer = bytes.fromhex("C8 00 14") + b"Open Mobile Alliance"
    assert TLV.encode([DEVICE[0]], P("/3/0/0"), MODELS) == manufacturer
    assert TLV.decode(manufacturer, P("/3/0/0"), MODELS) == [DEVICE[0]]
    voltage = bytes.fromhex("88 07 08 42 00 0E D8 42 01 13 88")
    assert TLV.encode(DEVICE[6:8], P("/3/0/7"), MODELS) == voltage
    assert TLV.decode(voltage, P("/3/0/7"), MODELS) == DEVICE[6:8]
    one = bytes.fromhex("42 01 13 88")  # LwM2M 1.1+: Read of a resource instance
    assert TLV.encode([DEVICE[7]], P("/3/0/7/1"), MODELS) == one
    assert TLV.decode(one, P("/3/0/7/1"), MODELS) == [DEVICE[7]]


def test_resource_instances_without_their_multiple_resource_tlv_are_accepted() -> None:
    assert TLV.decode(bytes.fromhex("42 00 0E D8 42 01 13 88"), P("/3/0/7"), MODELS) == DEVICE[6:8]


# -- value encodings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, "00"),
        (127, "7F"),
        (-128, "80"),
        (128, "0080"),
        (-129, "FF7F"),
        (32767, "7FFF"),
        (32768, "00008000"),
        (2**31 - 1, "7FFFFFFF"),
        (2**31, "0000000080000000"),
        (INT64_MIN, "8000000000000000"),
    ],
)
def test_integers_use_the_shortest_of_1_2_4_8_bytes(value: int, wire: str) -> None:
    path = P("/9000/0/1")
    body = bytes.fromhex(wire)
    data = TLV.encode([Record(path, value)], path, MODELS)
    assert data == (bytes((0xC0 | len(body), 1)) if len(body) < 8 else bytes((0xC8, 1, 8))) + body
    assert TLV.decode(data, path, MODELS) == [Record(path, value)]


@pytest.mark.parametrize(("value", "size"), [(255, 1), (256, 2), (65536, 4), (2**32, 8), (UINT64_MAX, 8)])
def test_unsigned_integers(value: int, size: int) -> None:
    path = P("/9000/0/2")
    data = TLV.encode([Record(path, value)], path, MODELS)
    assert data[-size:] == value.to_bytes(size, "big")
    assert TLV.decode(data, path, MODELS) == [Record(path, value)]


def test_floats_use_4_bytes_when_exact_else_8() -> None:
    path = P("/9000/0/3")
    assert TLV.encode([Record(path, 21.5)], path, MODELS) == bytes.fromhex("C4 03") + struct.pack(">f", 21.5)
    assert TLV.encode([Record(path, 0.1)], path, MODELS) == bytes.fromhex("C8 03 08") + struct.pack(">d", 0.1)
    assert TLV.encode([Record(path, 1e300)], path, MODELS)[3:] == struct.pack(">d", 1e300)
    assert TLV.decode(bytes.fromhex("C4 03 41 AC 00 00"), path, MODELS) == [Record(path, 21.5)]
    assert TLV.encode([Record(path, 3)], path, MODELS) == bytes.fromhex("C4 03 40 40 00 00")  # int -> Float


def test_boolean_time_objlnk_opaque_corelnk() -> None:
    base = P("/9000/0")
    records = [
        Record(P("/9000/0/4"), True),
        Record(P("/9000/0/5"), b"\x00\xff"),
        Record(P("/9000/0/6"), 1367491215),
        Record(P("/9000/0/7"), ObjLink(66, 1)),
        Record(P("/9000/0/8"), "</3/0>"),
    ]
    data = TLV.encode(records, base, MODELS)
    assert (
        data
        == bytes.fromhex("C1 04 01  C2 05 00 FF  C4 06 51 82 42 8F  C4 07 00 42 00 01  C6 08") + b"</3/0>"
    )
    assert TLV.decode(data, base, MODELS) == records


def test_lengths_of_8_16_and_24_bits_and_16_bit_ids() -> None:
    for n, header in ((7, "C7 00"), (8, "C8 00 08"), (300, "D0 00 01 2C"), (70000, "D8 00 01 11 70")):
        path = P("/9000/0/0")
        data = TLV.encode([Record(path, "x" * n)], path, MODELS)
        assert data[: len(bytes.fromhex(header))] == bytes.fromhex(header)
        assert TLV.decode(data, path, MODELS) == [Record(path, "x" * n)]
    path = P("/9000/0/300")
    assert TLV.encode([Record(path, "ab")], path, MODELS) == bytes.fromhex("E2 01 2C 61 62")
    path = P("/9000/300/5700/1000")
    data = TLV.encode([Record(path, 1)], P("/9000"), MODELS)
    assert data == bytes.fromhex("27 01 2C  A4 16 44  61 03 E8 01")
    assert TLV.decode(data, P("/9000"), MODELS) == [Record(path, 1)]


def test_empty_instances_and_resources() -> None:
    records = [Record(P("/9000/0")), Record(P("/9000/1/10")), Record(P("/9000/2/0"), "a")]
    data = TLV.encode(records, P("/9000"), MODELS)
    assert data == bytes.fromhex("00 00  02 01 80 0A  03 02 C1 00 61")
    assert TLV.decode(data, P("/9000"), MODELS) == records
    assert TLV.encode([Record(P("/9000/0"))], P("/9000/0"), MODELS) == b""
    assert TLV.decode(b"", P("/9000/0"), MODELS) == [Record(P("/9000/0"))]
    assert TLV.decode(b"", P("/9000"), MODELS) == [Record(P("/9000"))]


def test_without_a_model_values_are_opaque_and_encoded_by_their_python_type() -> None:
    records = [
        Record(P("/5/0/0"), "ab"),
        Record(P("/5/0/1"), 300),
        Record(P("/5/0/2"), True),
        Record(P("/5/0/3"), 1.5),
        Record(P("/5/0/4"), ObjLink(1, 2)),
        Record(P("/5/0/5/0"), b"\x01"),
    ]
    data = TLV.encode(records, P("/5/0"), None)
    assert data == bytes.fromhex(
        "C2 00 61 62  C2 01 01 2C  C1 02 01  C4 03 3F C0 00 00  C4 04 00 01 00 02  83 05 41 00 01"
    )
    assert TLV.decode(data, P("/5/0"), None) == [
        Record(P("/5/0/0"), b"ab"),
        Record(P("/5/0/1"), b"\x01\x2c"),
        Record(P("/5/0/2"), b"\x01"),
        Record(P("/5/0/3"), b"\x3f\xc0\x00\x00"),
        Record(P("/5/0/4"), b"\x00\x01\x00\x02"),
        Record(P("/5/0/5/0"), b"\x01"),
    ]


def test_decoded_records_come_in_path_order() -> None:
    data = bytes.fromhex("C1 09 64  C3 03 31 2E 30")
    assert [r.path for r in TLV.decode(data, P("/3/0"), MODELS)] == [P("/3/0/3"), P("/3/0/9")]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "base"),
    [
        ([Record(P("/3/0/9"), 100, time=1.0)], P("/3/0")),  # TLV has no timestamps
        ([Record(P("/3/1/9"), 100)], P("/3/0")),  # not under the request path
        ([Record(P("/3/0/9"), 100)], P("/")),  # TLV has no object level
        ([Record(P("/3/0/9"), "full")], P("/3/0")),  # wrong type for the model
        ([Record(P("/3/0/9"), 2**63)], P("/3/0")),  # out of int64
        ([Record(P("/9000/0/2"), -1)], P("/9000/0")),  # negative unsigned
        ([Record(P("/3/0/7"), 1)], P("/3/0")),  # value for a multi-instance resource
        ([Record(P("/3/0/9/0"), 1)], P("/3/0")),  # instance of a single resource
        ([Record(P("/3/0"), 1)], P("/3/0")),  # value for an instance
        ([Record(P("/3/0/7/0"), 1), Record(P("/3/0/7/0"), 2)], P("/3/0")),  # twice
        ([Record(P("/3/0/7/0"))], P("/3/0")),  # resource instance without value
        ([Record(P("/3/0/7/0"), 1), Record(P("/3/0/7/1"), 2)], P("/3/0/7/0")),
        ([], P("/3/0/7")),
        ([Record(P("/5/0/0"), None)], P("/5/0/0/1")),
        ([Record(P("/9000/0/0"), "x" * 0x1000000)], P("/9000/0/0")),  # over the 24-bit length
    ],
)
def test_encode_errors(records: list[Record], base: Path) -> None:
    with pytest.raises(CodecError):
        TLV.encode(records, base, MODELS)


@pytest.mark.parametrize(
    ("hex_", "base"),
    [
        ("C8 00 14 4F 70", "/3/0"),  # value cut short
        ("C8", "/3/0"),  # header cut short
        ("E1 00", "/3/0"),  # 16-bit identifier cut short
        ("D0 00 01", "/3/0"),  # 16-bit length cut short
        ("C1 09", "/3/0"),  # no value byte
        ("C3 09 00 00 01", "/3/0"),  # 3-byte integer
        ("C1 06 02", "/1/0"),  # Boolean 2
        ("C3 00 FF FE FD", "/3/0"),  # String that is not UTF-8
        ("C2 03 00 00", "/9000/0"),  # Float of 2 bytes
        ("C3 07 00 00 00", "/9000/0"),  # Objlnk of 3 bytes
        ("C1 09 64 C1 09 64", "/3/0"),  # resource given twice
        ("C1 09 64", "/3"),  # resource TLVs need an instance
        ("08 00 00 08 01 00", "/3/0"),  # two instances for one instance path
        ("08 01 03 C1 09 64", "/3/0"),  # instance ID does not match the path
        ("41 00 01", "/3/0"),  # resource instance directly in an instance
        ("08 00 03 08 00 00", "/3"),  # instance in an instance
        ("83 06 C1 00 01", "/3/0"),  # resource inside a multiple resource
        ("C1 07 01", "/3/0"),  # single TLV for a multi-instance resource
        ("83 09 41 00 64", "/3/0"),  # multiple TLV for a single resource
        ("C1 0A 0F", "/3/0/9"),  # resource ID does not match the path
        ("", "/3/0/9"),
        ("41 02 05", "/3/0/7/1"),  # resource instance ID does not match
        ("E1 FF FF 00", "/9000/0"),  # ID 65535 is reserved
        ("C1 09 64", "/"),
    ],
)
def test_decode_errors(hex_: str, base: str) -> None:
    with pytest.raises(CodecError):
        TLV.decode(bytes.fromhex(hex_), P(base), MODELS)


# -- round trips ----------------------------------------------------------------------------

VALUES = {
    S: st.text(max_size=20),
    T.CORELNK: st.text(max_size=20),
    INT: st.integers(INT64_MIN, INT64_MAX),
    T.TIME: st.integers(INT64_MIN, INT64_MAX),
    T.UNSIGNED_INTEGER: st.integers(0, UINT64_MAX),
    T.FLOAT: st.floats(allow_nan=True, allow_infinity=True),
    T.BOOLEAN: st.booleans(),
    T.OPAQUE: st.binary(max_size=300),
    T.OBJLNK: st.builds(ObjLink, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
}
IDS = st.integers(0, 65534)


@st.composite
def object_records(draw: st.DrawFn, oid: int = 9000) -> list[Record]:
    """Records of object ``oid``: a few instances, each with a few resources of the model."""
    objdef = MODELS.get(oid)
    assert objdef is not None
    records: list[Record] = []
    for iid in draw(st.sets(IDS, max_size=3)):
        rids = draw(st.sets(st.sampled_from(sorted(objdef.resources)), max_size=6))
        if not rids:
            records.append(Record(Path((oid, iid))))
        for rid in sorted(rids):
            rdef = objdef.resources[rid]
            if rdef.multiple:
                riids = draw(st.sets(IDS, max_size=3))
                if not riids:
                    records.append(Record(Path((oid, iid, rid))))
                for riid in sorted(riids):
                    records.append(Record(Path((oid, iid, rid, riid)), draw(VALUES[rdef.type])))
            else:
                records.append(Record(Path((oid, iid, rid)), draw(VALUES[rdef.type])))
    return records


def same(a: list[Record], b: list[Record]) -> bool:
    return len(a) == len(b) and all(
        x.path == y.path
        and x.time == y.time
        and (x.value is None) == (y.value is None)
        and (x.value is None or values_equal(x.value, y.value))
        for x, y in zip(a, b, strict=True)
    )


def sort(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.path.ids)


@given(object_records())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_object(records: list[Record]) -> None:
    base = P("/9000")
    decoded = TLV.decode(TLV.encode(records, base, MODELS), base, MODELS)
    assert same(decoded, sort(records) or [Record(base)])


@given(object_records(), st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_instance_resource_and_resource_instance(
    records: list[Record], data: st.DataObject
) -> None:
    leaves = [r for r in records if r.path.level >= 3]
    if not leaves:
        return
    pick = data.draw(st.sampled_from(leaves))
    for level in range(2, pick.path.level + 1):
        base = Path(pick.path.ids[:level])
        subset = sort([r for r in records if r.path.startswith(base)])
        decoded = TLV.decode(TLV.encode(subset, base, MODELS), base, MODELS)
        assert same(decoded, subset)


# -- fuzz -----------------------------------------------------------------------------------

SEEDS = [DEVICE_TLV, ACL_TLV, SERVER_TLV, TLV.encode(DEVICE, P("/3"), MODELS)]
BASES = st.sampled_from(["/", "/3", "/3/0", "/3/0/7", "/3/0/7/1", "/2", "/9000", "/9000/0", "/5/0"]).map(P)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def decode_only_codec_errors(data: bytes, base: Path, models: ObjectRegistry | None) -> None:
    start = time.perf_counter()
    try:
        records = TLV.decode(data, base, models)
    except CodecError:
        pass
    else:
        assert all(r.path.startswith(base) for r in records)
    assert time.perf_counter() - start < 0.5


@given(st.binary(max_size=200), BASES, st.booleans())
@settings(max_examples=500)
def test_fuzz_random_bytes(data: bytes, base: Path, with_model: bool) -> None:
    decode_only_codec_errors(data, base, MODELS if with_model else None)


@given(mutated(), BASES, st.booleans())
@settings(max_examples=500)
def test_fuzz_mutated_examples(data: bytes, base: Path, with_model: bool) -> None:
    decode_only_codec_errors(data, base, MODELS if with_model else None)


def test_large_declared_length_is_refused_quickly() -> None:
    with pytest.raises(CodecError):
        TLV.decode(bytes.fromhex("D8 00 FF FF FF") + b"x" * 10, P("/3/0"), MODELS)


def test_nan_survives() -> None:
    path = P("/9000/0/3")
    (r,) = TLV.decode(TLV.encode([Record(path, math.nan)], path, MODELS), path, MODELS)
    assert isinstance(r.value, float) and math.isnan(r.value)
