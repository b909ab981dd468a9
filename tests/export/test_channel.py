"""The channel between the server and its export worker: frames cut anywhere come out whole, every
kind of event comes back equal, and any other bytes are an ExportChannelError (fuzzed)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import ExportChannelError
from lwm2m.export.channel import (
    Ack,
    Batch,
    Command,
    Counters,
    FrameReader,
    Hooks,
    Setup,
    decode_events,
    encode_events,
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


def test_every_kind_of_event_comes_back_equal() -> None:
    back = decode_events(encode_events(EVENTS))
    assert back == EVENTS
    # bool, int and float stay apart (their JSON differs)
    values = [r.value for r in back[0].records]  # type: ignore[union-attr]
    assert [type(v) for v in values[:3]] == [float, int, bool]


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
@given(st.integers(0, len(encode_events(EVENTS)) - 1), st.integers(0, 255))
def test_a_batch_with_one_byte_changed_is_events_or_a_channel_error(where: int, byte: int) -> None:
    data = bytearray(encode_events(EVENTS))
    data[where] = byte
    with contextlib.suppress(ExportChannelError):
        decode_events(bytes(data))
