"""The message trace's parts: a datagram's summary (type, code, MID, token, options in short
form, a payload preview of at most 64 bytes), the bounds (traced endpoints, entries each, ttl),
the switch-off when its time is up, and the tap that stands in the transport only while a trace
is on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.option import BlockOption
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import ConfigError, TooManyTraces
from lwm2m.protocol.registration import Registration
from lwm2m.server.events import ClientUpdated, EventStream
from lwm2m.server.trace import KEEP_RAW, PREVIEW_BYTES, MessageTrace, TraceConfig, as_summary, summarize
from lwm2m.transport.tap import MessageSink


def test_a_request_and_an_answer_read_as_summaries() -> None:
    request = Message.build(
        Type.CON, Code.GET, mid=4711, token=b"\x0a\x0b", uri_path=["3", "0", "9"], accept=CF.SENML_CBOR
    ).encode()
    got = summarize(request, False, 1000.0)
    assert got == {
        "at": 1000.0,
        "direction": "out",
        "size": len(request),
        "type": "CON",
        "code": "GET",
        "mid": 4711,
        "token": "0a0b",
        "options": ["Uri-Path: 3", "Uri-Path: 0", "Uri-Path: 9", f"Accept: {int(CF.SENML_CBOR)}"],
        "payloadSize": 0,
    }
    answer = Message.build(
        Type.ACK,
        Code.CONTENT,
        mid=4711,
        token=b"\x0a\x0b",
        content_format=CF.TEXT,
        observe=3,
        block2=BlockOption(2, True, 2),
        payload=b"87",
    )
    got = summarize(answer.encode(), True, 1001.0)
    assert got["direction"] == "in" and got["type"] == "ACK" and got["code"] == "2.05 Content"
    assert got["options"] == ["Observe: 3", "Content-Format: 0", "Block2: 2/1/64"]
    assert (got["preview"], got["previewFormat"], got["payloadSize"]) == ("87", "text", 2)


def test_a_payload_preview_is_at_most_64_bytes_text_or_hex() -> None:
    long_text = Message.build(Type.NON, Code.CONTENT, payload=b"x" * 500).encode()
    got = summarize(long_text, True, 0.0)
    assert got["preview"] == "x" * PREVIEW_BYTES and got["payloadSize"] == 500
    binary = Message.build(Type.NON, Code.CONTENT, payload=bytes(range(200))).encode()
    got = summarize(binary, True, 0.0)
    assert got["previewFormat"] == "hex" and got["preview"] == bytes(range(PREVIEW_BYTES)).hex()
    # A character cut by the 64-byte bound: the text before it.
    cut = Message.build(Type.NON, Code.CONTENT, payload=b"a" * 63 + "é".encode() * 3).encode()
    got = summarize(cut, True, 0.0)
    assert got["previewFormat"] == "text" and got["preview"] == "a" * 63
    empty = Message.build(Type.ACK, 0, mid=9).encode()
    got = summarize(empty, True, 0.0)
    assert got["code"] == "empty" and "preview" not in got
    junk = summarize(b"\xff" * 100, True, 0.0)
    assert junk["error"] == "not a CoAP message" and junk["preview"] == ("ff" * PREVIEW_BYTES)


class _Transports:
    """The server's side of the tap: what is tapped in now."""

    def __init__(self) -> None:
        self.sink: MessageSink | None = None
        self.calls = 0

    def __call__(self, sink: MessageSink | None) -> None:
        self.sink = sink
        self.calls += 1


def _never() -> EventStream:
    return EventStream(set())


def _datagram(mid: int) -> bytes:
    return Message.build(Type.CON, Code.GET, mid=mid, uri_path=["3"]).encode()


async def test_the_tap_is_in_only_while_a_trace_is_on_and_entries_are_bounded() -> None:
    tap = _Transports()
    peers: dict[str, Any] = {"a": ("192.0.2.1", 5683), "b": ("192.0.2.2", 5683)}
    trace = MessageTrace(tap, peers, _never, TraceConfig(max_endpoints=2, max_entries=3))
    assert tap.sink is None
    trace.start("a")
    assert tap.sink is trace and tap.calls == 1
    trace.start("b")
    assert tap.calls == 1  # already in
    with pytest.raises(TooManyTraces):
        trace.start("c")
    for mid in range(5):
        trace.seen(True, _datagram(mid), ("192.0.2.1", 5683))
    trace.seen(False, _datagram(99), ("192.0.2.9", 5683))  # nobody's: not kept
    assert [e["mid"] for e in trace.entries("a")] == [2, 3, 4]  # the newest 3
    assert trace.entries("b") == []
    assert trace.state("a").kept == 3
    # A large datagram is summarized at once; its summary reads the same.
    big = Message.build(
        Type.CON, Code.PUT, mid=7, uri_path=["5", "0", "0"], payload=b"\x00" * KEEP_RAW
    ).encode()
    trace.seen(True, big, ("192.0.2.1", 5683))
    assert trace.entries("a")[-1] == summarize(big, True, trace.entries("a")[-1]["at"])
    assert trace.entries("a")[-1]["payloadSize"] == KEEP_RAW
    assert trace.stop("a") and not trace.stop("a")
    assert trace.entries("a") == [] and tap.sink is trace
    trace.stop("b")
    assert tap.sink is None and tap.calls == 2
    with pytest.raises(ValueError):
        trace.start("a", 0)
    with pytest.raises(ValueError):
        trace.start("a", 86401)
    with pytest.raises(ConfigError):
        TraceConfig(max_entries=0)


async def test_a_trace_switches_itself_off_and_tells_its_followers() -> None:
    tap = _Transports()
    trace = MessageTrace(tap, {"a": ("192.0.2.1", 5683)}, _never)
    trace.start("a", 0.05)
    follower = trace.follow("a")
    assert follower is not None and trace.follow("nobody") is None
    trace.seen(True, _datagram(1), ("192.0.2.1", 5683))
    await asyncio.sleep(0.15)
    assert not trace.state("a").on and tap.sink is None
    assert as_summary(follower.pop())["mid"] == 1
    assert as_summary(follower.pop()) == {"end": "expired"}


async def test_the_trace_follows_a_device_to_its_new_address() -> None:
    subscribers: set[Any] = set()
    peers: dict[str, Any] = {"a": ("192.0.2.1", 5683)}
    trace = MessageTrace(_Transports(), peers, lambda: EventStream(subscribers))
    trace.start("a")
    await asyncio.sleep(0)  # the address watch subscribes
    assert len(subscribers) == 1
    # An Update from a new address (LwM2M-TS-Core 1.2 §6.2.2): the registrar has it first.
    peers["a"] = ("192.0.2.7", 40000)
    moved = Registration("a", "r1", ("192.0.2.7", 40000), registered_at=1.0, last_update=2.0)
    for backlog in subscribers:
        backlog.put(ClientUpdated(moved, moved))
    await asyncio.sleep(0.01)
    trace.seen(True, _datagram(1), ("192.0.2.1", 5683))  # the old address: not the device's now
    trace.seen(True, _datagram(2), ("192.0.2.7", 40000))
    assert [e["mid"] for e in trace.entries("a")] == [2]
    # A DTLS session that moved (RFC 9146): the server tells the trace directly.
    peers["a"] = ("192.0.2.8", 40001)
    trace.relocate("a")
    trace.seen(True, _datagram(3), ("192.0.2.8", 40001))
    assert [e["mid"] for e in trace.entries("a")] == [2, 3]
    trace.close()
    await asyncio.sleep(0)
    assert not subscribers  # the watch ended with the last trace
