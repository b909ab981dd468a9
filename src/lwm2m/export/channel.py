"""What the server and its export worker say to each other (:mod:`lwm2m.export.handoff`).

Frames on a byte stream: a 4-byte big-endian length, then that many bytes of MessagePack of
one message (a msgspec struct, tagged by its class). A frame longer than ``MAX_FRAME`` or
undecodable is an :class:`~lwm2m.errors.ExportChannelError`: the stream is given up.

Server events travel in batches: ``Batch.events`` is the MessagePack of ``[kinds, events]``,
``kinds`` a byte string with each event's class's place in ``EVENT_KINDS`` and ``events`` the
list of the dataclasses as msgspec writes them (maps of their fields). The server encodes a
batch once, in C, without building any JSON; the worker decodes it back to the same frozen
events (:func:`decode_events`) and makes their JSON forms.

Version 2 of the channel (``WIRE_VERSION``, sent in ``Setup``; a worker of another version
refuses to start) adds the compact form of the most frequent event, a notification of one path
with one record: kind ``FLAT_NOTIFICATION`` and the array ``[endpoint, token, path ids, path
prefix, record path ids, record path prefix, value, time]``, where msgspec would write a map for
the event, for each path and for the record (half the time to encode, 40 % of the bytes). The
server makes these arrays for a run of such notifications in one list comprehension, with no
test per event (:func:`encode_wanted`): 2,480 instructions per event with msgspec's, from 3,420.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from typing import Any

import msgspec

from lwm2m.errors import ExportChannelError, LwM2MError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.value import ObjLink, Value
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

__all__ = [
    "EVENT_KINDS",
    "FLAT_NOTIFICATION",
    "MAX_FRAME",
    "WIRE_VERSION",
    "Ack",
    "Batch",
    "Command",
    "Counters",
    "FrameReader",
    "Hooks",
    "Log",
    "Message",
    "Publish",
    "Ready",
    "Reply",
    "Setup",
    "Stop",
    "check_version",
    "decode_events",
    "encode_events",
    "encode_wanted",
    "frame",
]

MAX_FRAME = 64 << 20  # bytes of one message at most
_LENGTH = struct.Struct(">I")

EVENT_KINDS: tuple[type, ...] = (
    ClientRegistered,
    ClientUpdated,
    ClientDeregistered,
    RegistrationExpired,
    ClientAwake,
    ClientSleeping,
    NotificationReceived,
    SendReceived,
    ObservationEnded,
)
KIND_OF: dict[type, int] = {cls: i for i, cls in enumerate(EVENT_KINDS)}
FLAT_NOTIFICATION = len(EVENT_KINDS)  # a notification of one path with one record, as an array
WIRE_VERSION = 2  # 1: without FLAT_NOTIFICATION


# --- server -> worker ------------------------------------------------------------------------------


class Setup(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """The first message: the store whose webhook outbox the worker uses (None: one of its own,
    in memory), the webhooks' and the MQTT export's settings (their config dataclasses'
    fields; None: that export is off)."""

    store_url: str | None
    webhooks: dict[str, Any] | None
    mqtt: dict[str, Any] | None
    counters_every: float = 1.0
    log_level: int = 20
    version: int = 1  # WIRE_VERSION of the server (absent: 1)


def check_version(setup: Setup) -> None:
    """An ExportChannelError unless ``setup`` comes from a server of this channel's version
    (a worker started from a newer or older program than its server's)."""
    if setup.version != WIRE_VERSION:
        raise ExportChannelError(
            f"the server speaks version {setup.version} of the channel, this worker {WIRE_VERSION}"
        )


class Hooks(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """The registered webhooks now (each ``Webhook.to_json()``): sent at start and on change."""

    hooks: list[bytes]


class Batch(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """Events to export (``events``: :func:`encode_events`), ``at`` the Unix time they were
    handed over; acknowledged by ``Ack(seq)`` once written to the outbox and published. The
    delivery id of its event ``i`` is ``prefix`` (16 hex digits of the server's run), ``seq``
    and ``i`` in 8 hex digits each: the same when the batch is sent again."""

    prefix: str
    seq: int
    at: float
    count: int
    events: bytes


class Reply(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """The answer to an MQTT command, to publish on ``{prefix}/{ep}/reply``."""

    endpoint: str
    body: bytes


class Publish(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """An event of another part of the server for MQTT (``MqttExport.publish``)."""

    kind: str
    endpoint: str | None
    body: bytes


class Stop(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """Write what waits, then exit."""


# --- worker -> server ------------------------------------------------------------------------------


class Ready(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """The worker is set up and takes batches."""


class Ack(msgspec.Struct, tag=True, array_like=True, frozen=True):
    seq: int


class Counters(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """The worker's counters since it started (the server adds those of earlier workers)."""

    events: int = 0  # events taken from batches
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    hook_dropped: int = 0
    outbox: int = 0
    published: int = 0
    mqtt_dropped: int = 0
    mqtt_pending: int = 0
    mqtt_connected: bool = False
    mqtt_commands: int = 0


class Command(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """A command the worker took on ``{prefix}/{ep}/cmd``, for the server to carry out."""

    endpoint: str
    payload: bytes


class Log(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """A log record of the worker, for the server's logging."""

    logger: str
    level: int
    message: str


Message = Setup | Hooks | Batch | Reply | Publish | Stop | Ready | Ack | Counters | Command | Log

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def frame(message: Message) -> bytes:
    """``message`` as one frame: its length, then its MessagePack."""
    body = _encoder.encode(message)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Frames out of bytes as they come (sans-IO): :meth:`feed` the bytes read, take the whole
    messages from :meth:`messages`."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > self.max_frame:
                raise ExportChannelError(f"a frame of {length} bytes: at most {self.max_frame}")
            if len(buffer) - start - 4 < length:
                break
            body = bytes(buffer[start + 4 : start + 4 + length])
            start += 4 + length
            try:
                out.append(_decoder.decode(body))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ExportChannelError(f"an undecodable frame of {length} bytes: {exc}") from None
        del buffer[:start]
        return out


# --- events ----------------------------------------------------------------------------------------


def encode_events(events: Sequence[ServerEvent]) -> bytes:
    """The MessagePack of ``events`` for a :class:`Batch`: their kinds (one byte each) and the
    events (one C call for the whole batch), a notification of one path and one record in its
    compact form (the module's docstring)."""
    return encode_wanted(events)[0]


def encode_wanted(
    events: Sequence[ServerEvent],
    wanted: Collection[type] | None = None,
    ended: list[ObservationEnded] | None = None,
) -> tuple[bytes, int]:
    """:func:`encode_events` of those of ``events`` whose type is in ``wanted`` (all when
    None), and how many they are; ``ended``, when given, gets the ObservationEnded events met
    on the way (the MQTT commands forget their tokens).

    The events go in runs of ``_FLAT_RUN``: a run of notifications of one path and one record
    each (what a fleet's observations mostly send) takes one list comprehension, with no test
    per event in Python (:func:`_flat_forms`); a run with any other event in it is taken again
    by the loop that looks at each event (:func:`_wanted_forms`), so that such an event costs
    at most one run's comprehension more."""
    kinds = bytearray()
    forms: list[Any] = []
    if wanted is not None and NotificationReceived not in wanted:
        _wanted_forms(events, wanted, ended, kinds, forms)
        return _encoder.encode((kinds, forms)), len(forms)
    run = _FLAT_RUN
    for start in range(0, len(events), run):
        chunk = events[start : start + run]
        try:
            flat = _flat_forms(chunk)
        except (AttributeError, ValueError):  # some other event in it
            _wanted_forms(chunk, wanted, ended, kinds, forms)
        else:
            kinds += _FLAT_KIND * len(flat)
            forms += flat
    return _encoder.encode((kinds, forms)), len(forms)


_FLAT_RUN = 64  # events tried at once in the compact form (the work lost when one is not)
_FLAT_KIND = bytes((FLAT_NOTIFICATION,))


def _flat_forms(events: Sequence[Any]) -> list[Any]:
    """The compact forms of ``events``, every one a notification of one path with one record;
    else an AttributeError (an event without ``paths``: NotificationReceived is the one kind
    with them, ``test_channel`` checks it) or a ValueError (more paths or records than one,
    or none), raised by the unpacking."""
    return [
        (e.endpoint, e.token, o.ids, o.prefix, r.path.ids, r.path.prefix, r.value, r.time)
        for e in events
        for (o,) in (e.paths,)
        for (r,) in (e.records,)
    ]


def _wanted_forms(
    events: Sequence[ServerEvent],
    wanted: Collection[type] | None,
    ended: list[ObservationEnded] | None,
    kinds: bytearray,
    forms: list[Any],
) -> None:
    """The kinds and forms of those of ``events`` whose type is in ``wanted`` (all when None)
    added to ``kinds`` and ``forms``, one event after the other."""
    kind = kinds.append
    form = forms.append
    notification = NotificationReceived
    notifications = wanted is None or notification in wanted
    flat = FLAT_NOTIFICATION
    for event in events:
        if type(event) is notification:
            if not notifications:
                continue
            records = event.records
            paths = event.paths
            if len(records) == 1 and len(paths) == 1:
                (record,) = records
                (observed,) = paths
                path = record.path
                kind(flat)
                form(
                    (
                        event.endpoint,
                        event.token,
                        observed.ids,
                        observed.prefix,
                        path.ids,
                        path.prefix,
                        record.value,
                        record.time,
                    )
                )
                continue
        elif wanted is not None and type(event) not in wanted:
            continue
        elif ended is not None and type(event) is ObservationEnded:
            ended.append(event)
        kind(KIND_OF[type(event)])
        form(event)


class _RecordForm(msgspec.Struct, frozen=True):
    path: Path
    value: Any = None
    time: float | None = None


class _Notification(msgspec.Struct, frozen=True):
    endpoint: str
    token: bytes
    paths: tuple[Path, ...]
    records: tuple[_RecordForm, ...]


class _Send(msgspec.Struct, frozen=True):
    endpoint: str
    records: tuple[_RecordForm, ...]


def _value(raw: Any) -> Value | None:
    if raw is None or isinstance(raw, str | int | float | bytes):  # bool is an int
        return raw
    if isinstance(raw, dict) and set(raw) == {"object_id", "instance_id"}:
        return ObjLink(raw["object_id"], raw["instance_id"])
    raise ExportChannelError(f"a record value of type {type(raw).__name__}")


def _records(forms: tuple[_RecordForm, ...]) -> tuple[Record, ...]:
    return tuple(Record(f.path, _value(f.value), f.time) for f in forms)


_entries = msgspec.msgpack.Decoder(tuple[bytes, list[msgspec.Raw]])
_typed: dict[int, msgspec.msgpack.Decoder[Any]] = {
    KIND_OF[cls]: msgspec.msgpack.Decoder(cls)
    for cls in EVENT_KINDS
    if cls not in (NotificationReceived, SendReceived)
}
_notification = msgspec.msgpack.Decoder(_Notification)
_send = msgspec.msgpack.Decoder(_Send)
_NOTIFICATION = KIND_OF[NotificationReceived]
_flat = msgspec.msgpack.Decoder(
    tuple[str, bytes, tuple[int, ...], str, tuple[int, ...], str, Any, float | None]
)
_SEND = KIND_OF[SendReceived]


def decode_events(data: bytes) -> list[ServerEvent]:
    """The events of :func:`encode_events`; anything else is an ExportChannelError."""
    try:
        out: list[ServerEvent] = []
        kinds, raws = _entries.decode(data)
        if len(kinds) != len(raws):
            raise ExportChannelError(f"{len(kinds)} kinds for {len(raws)} events")
        for kind, raw in zip(kinds, raws, strict=True):
            if kind == FLAT_NOTIFICATION:
                endpoint, token, ids, prefix, record_ids, record_prefix, value, at = _flat.decode(raw)
                observed = Path(ids, prefix)
                path = (
                    observed
                    if (record_ids, record_prefix) == (ids, prefix)
                    else Path(record_ids, record_prefix)
                )
                out.append(
                    NotificationReceived(endpoint, token, (observed,), (Record(path, _value(value), at),))
                )
            elif kind == _NOTIFICATION:
                n = _notification.decode(raw)
                out.append(NotificationReceived(n.endpoint, n.token, n.paths, _records(n.records)))
            elif kind == _SEND:
                s = _send.decode(raw)
                out.append(SendReceived(s.endpoint, _records(s.records)))
            else:
                decoder = _typed.get(kind)
                if decoder is None:
                    raise ExportChannelError(f"an event of unknown kind {kind}")
                out.append(decoder.decode(raw))
        return out
    except (msgspec.DecodeError, msgspec.ValidationError, LwM2MError, TypeError, ValueError) as exc:
        if isinstance(exc, ExportChannelError):
            raise
        raise ExportChannelError(f"an undecodable batch of events: {exc}") from None
