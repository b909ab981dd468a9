"""Object 25: the end devices a gateway's /25 tells (LwM2M-TS-Gateway 1.1, object 25)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.formats import get_codec
from lwm2m.errors import GatewayError, ResponseError
from lwm2m.model import Path, Record
from lwm2m.model.catalogue import load_catalogue
from lwm2m.protocol.gateway import GATEWAY_PATH, end_device_records, end_devices_from_records
from lwm2m.protocol.management import CreateRequest, decode_response
from lwm2m.protocol.registration import EndDevice, ObjectLink, Registration

# A gateway's /25 as Anjay's demo gateway answers it: two end devices, each a temperature
# sensor and a push button.
LINKS = "</19/0>,</3303>;ver=1.1,</3303/0>,</3347/0>"
OBJECTS = (ObjectLink(19, 0), ObjectLink(3303, None, "1.1"), ObjectLink(3303, 0), ObjectLink(3347, 0))


def r25(iid: int, rid: int, value: str) -> Record:
    return Record(Path((25, iid, rid)), value)


TWO = [
    r25(0, 0, "urn:dev:001234"),
    r25(0, 1, "dev0"),
    r25(0, 3, LINKS),
    r25(1, 0, "urn:dev:556789"),
    r25(1, 1, "dev1"),
    r25(1, 3, LINKS),
]


def test_two_end_devices() -> None:
    devices = end_devices_from_records(TWO)
    assert devices == (
        EndDevice("dev0", "urn:dev:001234", 0, OBJECTS),
        EndDevice("dev1", "urn:dev:556789", 1, OBJECTS),
    )
    assert devices[1].root == Path((), "dev1")
    assert devices[0].object_ids == (19, 3303, 3347)
    assert devices[0].instances(3303) == (0,)
    assert end_devices_from_records(end_device_records(devices)) == devices


@pytest.mark.parametrize("fmt", ["tlv", "senml-json", "senml-cbor", "lwm2m-cbor"])
def test_from_a_read_of_25_in_each_format(fmt: str) -> None:
    models = load_catalogue()
    codec = get_codec(fmt)
    records = codec.decode(codec.encode(TWO, GATEWAY_PATH, models), GATEWAY_PATH, models)
    assert [d.prefix for d in end_devices_from_records(records)] == ["dev0", "dev1"]


@pytest.mark.parametrize(
    ("records", "says"),
    [
        ([r25(0, 0, "a"), r25(0, 3, "</3/0>")], "/25/0/1 (Prefix) is missing"),
        ([r25(0, 1, "dev0"), r25(0, 3, "</3/0>")], "/25/0/0 (Device ID) is missing"),
        ([r25(0, 0, "a"), r25(0, 1, "dev0")], "/25/0/3 (IoT Device Objects) is missing"),
        ([r25(0, 0, "a"), r25(0, 1, "12"), r25(0, 3, "")], "/25/0/1: invalid prefix '12'"),
        ([r25(0, 0, "a"), r25(0, 1, "d/1"), r25(0, 3, "")], "invalid prefix"),
        ([r25(0, 0, "a"), r25(0, 1, "dev0"), r25(0, 3, "</x/y>")], "/25/0/3 (IoT Device Objects)"),
        ([*TWO, r25(2, 0, "b"), r25(2, 1, "dev1"), r25(2, 3, "")], "also the prefix of /25/1"),
        ([Record(Path((3, 0, 0)), "x")], "not in the gateway's object 25"),
        ([Record(Path((25, 0, 0), "dev1"), "x")], "not in the gateway's object 25"),
        ([r25(0, 0, "a" * 256), r25(0, 1, "dev0"), r25(0, 3, "")], "at most 255 characters"),
    ],
)
def test_bad_object_25_content_is_a_gateway_error_naming_the_resource(
    records: list[Record], says: str
) -> None:
    with pytest.raises(GatewayError) as err:
        end_devices_from_records(records)
    assert says in str(err.value)


def test_the_number_of_end_devices_is_bounded() -> None:
    records = [r for i in range(5) for r in (r25(i, 0, "x"), r25(i, 1, f"d{i}"), r25(i, 3, ""))]
    assert len(end_devices_from_records(records, max_devices=5)) == 5
    with pytest.raises(GatewayError, match="more than 4 end devices"):
        end_devices_from_records(records, max_devices=4)


def test_a_registration_keeps_its_end_devices_in_its_stored_form() -> None:
    devices = end_devices_from_records(TWO)
    reg = Registration("gw", "r1", ("192.0.2.1", 5683), objects=(ObjectLink(25, 0), ObjectLink(25, 1)))
    gw = Registration.from_dict({**reg.to_dict(), "end_devices": [d.to_dict() for d in devices]})
    assert gw.end_devices == devices
    assert Registration.from_dict(gw.to_dict()) == gw
    assert gw.end_device("dev1") == devices[1]
    assert gw.end_device("nope") is None
    assert Registration.from_dict({k: v for k, v in reg.to_dict().items() if k != "end_devices"}) == reg


prefixes = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(prefixes, st.text(max_size=10), max_size=6))
def test_records_round_trip(devices: dict[str, str]) -> None:
    ds = tuple(EndDevice(p, d, i, OBJECTS[: i % 4]) for i, (p, d) in enumerate(sorted(devices.items())))
    assert end_devices_from_records(end_device_records(ds)) == ds


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            Record,
            st.builds(Path, st.tuples(st.just(25), st.integers(0, 3), st.integers(0, 4))),
            st.text(alphabet="</>,;=.0123dev", max_size=12) | st.integers() | st.none(),
        ),
        max_size=10,
    )
)
def test_any_object_25_content_gives_devices_or_a_gateway_error(records: list[Record]) -> None:
    try:
        devices = end_devices_from_records(records)
    except GatewayError:
        return
    assert len({d.prefix for d in devices}) == len(devices)


def test_the_location_path_of_an_end_devices_new_instance() -> None:
    """A Create on an end device answers the new instance with its prefix first (``dev1/3303/1``),
    or its bare instance ID."""
    request = CreateRequest(Path((3303,), "dev1"), (), 110)
    created = Message.build(Type.ACK, Code.CREATED, location_path=["dev1", "3303", "1"])
    assert decode_response(request, created).location == Path((3303, 1), "dev1")
    short = Message.build(Type.ACK, Code.CREATED, location_path=["1"])
    assert decode_response(request, short).location == Path((3303, 1), "dev1")
    for bad in (
        ["dev2", "3303", "1"],
        ["3303", "1"],
        ["dev1", "3304", "1"],
        ["dev1", "3303"],
        ["..", "3303", "1"],
    ):
        message = Message.build(Type.ACK, Code.CREATED, location_path=bad)
        with pytest.raises(ResponseError, match="Location-Path"):
            decode_response(request, message)


@settings(max_examples=300, deadline=None)
@given(
    segments=st.lists(
        st.one_of(st.sampled_from(["dev1", "dev2", "3303", "1", "0", "", ".."]), st.text(max_size=12)),
        max_size=5,
    ),
    prefix=st.sampled_from(["", "dev1"]),
)
def test_any_location_path_of_a_create_is_a_location_or_a_response_error(
    segments: list[str], prefix: str
) -> None:
    request = CreateRequest(Path((3303,), prefix), (), 110)
    message = Message.build(Type.ACK, Code.CREATED, location_path=segments)
    try:
        location = decode_response(request, message).location
    except ResponseError:
        return
    assert location is None or (location.is_instance and location.startswith(request.path))
