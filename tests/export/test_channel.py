"""The channel between the server and its export worker: frames cut anywhere come out whole, every
kind of event comes back equal (a notification of one path and one record in its compact form,
whether it comes in a run of such notifications, encoded at once, or among other events), any
other bytes are an ExportChannelError (fuzzed), and a worker refuses a server of another version
of the channel."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import ExportChannelError
from lwm2m.export.channel import (
    EVENT_KINDS,
    FLAT_NOTIFICATION,
    KIND_OF,
    WIRE_VERSION,
    Ack,
    Batch,
    Command,
    Counters,
    FrameReader,
    Hooks,
    Setup,
    check_version,
    decode_events,
    encode_events,
    encode_wanted,
    frame,
)
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.value import ObjLink
from lwm2m.protocol.registration import ObjectLink, Registration
from lwm2m.server.events import (
    ClientAwake,
    ClientDeregistered,
    ClientRegistered,
    ClientSleeping,
    ClientUpdated,
    NotificationReceived,
    ObservationEnded,
    RegistrationExpired,
    SendReceived,
    ServerEvent,
)

P = Path((3303, 0, 5700))
REG = Registration(
    "dev-1",
    "r1",
    ("::1", 5683),
    lifetime=60,
    queue_mode=True,
    objects=(ObjectLink(3, 0), ObjectLink(3303, None, "1.1")),
    registered_at=1.5,
    extra=(("x", "1"), ("flag", None)),
)
EVENTS: list[ServerEvent] = [
    NotificationReceived(
        "dev-1",
        b"\x01\x02",
        (P,),
        (
            Record(P, 21.5),
            Record(P, -3),
            Record(P, True, 1700000000.0),
            Record(P, "text"),
            Record(P, b"\x00\xff"),
            Record(P, ObjLink(1, 2)),
            Record(Path((3303, 1))),
        ),
    ),
    ClientRegistered(REG),
    ClientRegistered(REG, replaced=REG),
    ClientUpdated(REG, REG),
    ClientDeregistered(REG),
    RegistrationExpired(REG),
    ClientAwake("dev-1"),
    ClientSleeping("dev-1"),
    SendReceived("dev-1", (Record(P, 1.0),)),
    ObservationEnded("dev-1", b"\xaa", "cancelled"),
]
G = Path((3303, 0), "dev1")  # an end device's path behind a gateway
SINGLE: list[ServerEvent] = [  # one path, one record each: the compact form
    NotificationReceived("dev-1", b"\x01", (P,), (Record(P, 21.5),)),
    NotificationReceived("dev-1", b"", (P,), (Record(P, 7, 1700000000.5),)),
    NotificationReceived("dev-2", b"\x02", (P,), (Record(P, True),)),
    NotificationReceived("dev-2", b"\x02", (P,), (Record(P, b"\x00"),)),
    NotificationReceived("dev-2", b"\x02", (P,), (Record(P, "t"),)),
    NotificationReceived("dev-2", b"\x02", (Path((3303, 0)),), (Record(P, ObjLink(1, 2)),)),
    NotificationReceived("gw", b"\x03", (G,), (Record(Path((3303, 0, 5700), "dev1"), 1.0),)),
    NotificationReceived("gw", b"\x03", (G,), (Record(G),)),
]


def test_every_kind_of_event_comes_back_equal() -> None:
    back = decode_events(encode_events(EVENTS))
    assert back == EVENTS
    # bool, int and float stay apart (their JSON differs)
    values = [r.value for r in back[0].records]  # type: ignore[union-attr]
    assert [type(v) for v in values[:3]] == [float, int, bool]


def test_a_notification_of_one_record_travels_compact_and_comes_back_equal() -> None:
    data = encode_events(SINGLE + EVENTS)
    kinds = msgspec.msgpack.decode(data)[0]
    assert kinds == bytes([FLAT_NOTIFICATION] * len(SINGLE) + [KIND_OF[type(e)] for e in EVENTS])
    back = decode_events(data)
    assert back == SINGLE + EVENTS
    values = [e.records[0].value for e in back[:5]]  # type: ignore[union-attr]
    assert [type(v) for v in values] == [float, int, bool, bytes, str]
    assert back[6].paths[0].prefix == "dev1"  # type: ignore[union-attr]
    as_maps = msgspec.msgpack.encode((bytes([KIND_OF[NotificationReceived]] * len(SINGLE)), SINGLE))
    assert len(encode_events(SINGLE)) < len(as_maps) / 2


def test_only_the_wanted_kinds_are_encoded_in_one_pass_and_the_ended_observations_are_kept() -> None:
    events = SINGLE[:2] + EVENTS
    data, count = encode_wanted(events, frozenset({NotificationReceived, ClientAwake}))
    assert count == 4 and decode_events(data) == [*SINGLE[:2], EVENTS[0], ClientAwake("dev-1")]
    ended: list[ObservationEnded] = []
    data, count = encode_wanted(events, frozenset({ObservationEnded, SendReceived}), ended)
    assert count == 2 and decode_events(data) == EVENTS[-2:]
    assert ended == [EVENTS[-1]]
    data, count = encode_wanted(events, None, ended)
    assert count == len(events) and data == encode_events(events) and len(ended) == 2
    assert encode_wanted(SINGLE, frozenset({ClientAwake})) == (encode_events([]), 0)


@pytest.mark.parametrize(
    "form",
    [
        ["dev", b"", [3303, 0, 5700, 1, 2], "", [3303], "", 1, None],  # 5 levels
        ["dev", b"", [3303, 70000], "", [3303], "", 1, None],  # an ID too large
        ["dev", b"", [3303], "", [3303], "", [1, 2], None],  # a value of no record type
        ["dev", b"", [3303], "bad prefix!", [3303], "", 1, None],
        ["dev", b"", [3303], "", [3303], ""],  # too short
        {"endpoint": "dev"},
    ],
)
def test_a_bad_compact_notification_is_a_channel_error(form: object) -> None:
    with pytest.raises(ExportChannelError):
        decode_events(msgspec.msgpack.encode([bytes([FLAT_NOTIFICATION]), [form]]))


def test_a_worker_refuses_a_server_of_another_version() -> None:
    check_version(Setup(None, None, None, version=WIRE_VERSION))
    with pytest.raises(ExportChannelError, match="version 1"):
        check_version(Setup(None, None, None))  # a server from before versions


def test_frames_cut_anywhere_come_out_whole() -> None:
    messages = [
        Setup("sqlite:///x.db", {"flush_delay": 0.1}, None),
        Hooks([b"{}"]),
        Batch("0" * 16, 7, 1.5, 2, encode_events(EVENTS[:2])),
        Ack(7),
        Counters(events=3, mqtt_connected=True),
        Command("dev-1", b'{"id":1}'),
    ]
    data = b"".join(frame(m) for m in messages)
    for cut in (1, 3, 7, len(data)):
        reader = FrameReader()
        out = []
        for i in range(0, len(data), cut):
            out += reader.feed(data[i : i + cut])
        assert out == messages


def test_a_frame_too_long_or_undecodable_is_refused() -> None:
    with pytest.raises(ExportChannelError, match="at most 100"):
        FrameReader(max_frame=100).feed(b"\x00\x00\x01\x00")
    with pytest.raises(ExportChannelError, match="undecodable"):
        FrameReader().feed(b"\x00\x00\x00\x02\x91\x00")
    with pytest.raises(ExportChannelError, match="unknown kind"):
        decode_events(b"\x92\xc4\x01\x63\x91\x80")  # [b"\x63", [{}]]: kind 99
    with pytest.raises(ExportChannelError, match="undecodable"):
        decode_events(b"\x92\xc4\x01\x06\x91\x80")  # a notification without its fields
    with pytest.raises(ExportChannelError, match="2 kinds for 1 events"):
        decode_events(b"\x92\xc4\x02\x06\x06\x91\x80")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_are_frames_or_a_channel_error(data: bytes) -> None:
    with contextlib.suppress(ExportChannelError):
        FrameReader(max_frame=1 << 16).feed(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_batches_are_events_or_a_channel_error(data: bytes) -> None:
    with contextlib.suppress(ExportChannelError):
        decode_events(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(encode_events(SINGLE + EVENTS)) - 1), st.integers(0, 255))
def test_a_batch_with_one_byte_changed_is_events_or_a_channel_error(where: int, byte: int) -> None:
    data = bytearray(encode_events(SINGLE + EVENTS))
    data[where] = byte
    with contextlib.suppress(ExportChannelError):
        decode_events(bytes(data))


# Notifications that have not one path and one record: the events map form, as other kinds.
NOT_FLAT: list[ServerEvent] = [
    NotificationReceived("dev-3", b"\x04", (P,), ()),
    NotificationReceived("dev-3", b"\x04", (), (Record(P, 1.0),)),
    NotificationReceived("dev-3", b"\x04", (P, G), (Record(P, 1.0),)),
    NotificationReceived("dev-3", b"\x04", (P,), (Record(P, 1.0), Record(P, 2.0))),
]
POOL = SINGLE + EVENTS + NOT_FLAT


def test_only_notifications_have_paths() -> None:
    # The compact runs (channel._flat_forms) tell a notification from the other kinds by its
    # paths: no other kind may have a field of that name.
    assert [cls for cls in EVENT_KINDS if "paths" in cls.__struct_fields__] == [NotificationReceived]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(POOL))), max_size=60),
    st.one_of(st.none(), st.frozensets(st.sampled_from(EVENT_KINDS))),
)
def test_runs_of_any_mix_encode_as_each_event_alone_would(
    picks: list[int], wanted: frozenset[type] | None
) -> None:
    # Long runs of compact notifications (most of them, as a fleet sends), cut anywhere by the
    # other events, filtered by any set of wanted kinds: each event that is wanted comes back
    # equal, in order, the compact ones as FLAT_NOTIFICATION, and the ended observations are kept.
    events = [POOL[i] for i in picks for _ in range(1 + 20 * (i < len(SINGLE)))]
    ended: list[ObservationEnded] = []
    data, count = encode_wanted(events, wanted, ended)
    expected = [e for e in events if wanted is None or type(e) in wanted]
    kinds = bytes(
        FLAT_NOTIFICATION
        if isinstance(e, NotificationReceived) and len(e.paths) == 1 and len(e.records) == 1
        else KIND_OF[type(e)]
        for e in expected
    )
    assert count == len(expected)
    assert msgspec.msgpack.decode(data)[0] == kinds
    assert decode_events(data) == expected
    assert ended == [e for e in expected if isinstance(e, ObservationEnded)]
