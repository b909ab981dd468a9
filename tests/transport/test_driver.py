"""UdpDriver against a scripted sans-IO endpoint: the order of calls, the one timer, routing."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from lwm2m.transport.driver import UdpDriver
from lwm2m.transport.reader import bind_udp


class Scripted:
    """Echoes each datagram with a prefix; fires timers at ``deadlines``; logs every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.out: list[tuple[bytes, Any]] = []
        self.events: list[Any] = []
        self.deadlines: list[float] = []
        self.fired: list[float] = []

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.calls.append("receive")
        self.events.append(("got", data))
        self.out.append((b"re:" + data, addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        self.calls.append("send")
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return min(self.deadlines) if self.deadlines else None

    def handle_timer(self, now: float) -> None:
        self.calls.append("timer")
        self.fired.append(now)
        self.deadlines = [d for d in self.deadlines if d > now]
        self.events.append(("fired", now))

    def next_event(self) -> Any:
        return self.events.pop(0) if self.events else None


@pytest.mark.both_loops
async def test_datagram_then_events_then_send() -> None:
    loop = asyncio.get_running_loop()
    ep = Scripted()
    seen: list[Any] = []

    def on_event(event: Any, now: float) -> None:
        ep.calls.append("event")
        seen.append(event)

    sock = bind_udp("127.0.0.1", 0)
    driver = UdpDriver(loop, ep, [sock], on_event)
    driver.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(5)
        peer.sendto(b"ping", sock.getsockname())
        reply = await loop.run_in_executor(None, peer.recv, 100)
    assert reply == b"re:ping"
    assert seen == [("got", b"ping")]
    assert ep.calls[:3] == ["receive", "event", "send"]
    driver.close()
    assert sock.fileno() == -1


@pytest.mark.both_loops
async def test_one_timer_follows_the_earliest_deadline() -> None:
    loop = asyncio.get_running_loop()
    ep = Scripted()
    sock = bind_udp("127.0.0.1", 0)
    driver = UdpDriver(loop, ep, [sock], lambda e, now: None)
    driver.start()
    t0 = loop.time()
    ep.deadlines = [t0 + 0.2]
    driver.flush()
    ep.deadlines.append(t0 + 0.05)  # an earlier deadline re-arms the handle
    driver.flush()
    await asyncio.sleep(0.1)
    assert len(ep.fired) == 1 and ep.fired[0] >= t0 + 0.05
    await asyncio.sleep(0.2)
    assert len(ep.fired) == 2 and ep.fired[1] >= t0 + 0.2
    ep.deadlines = [loop.time() + 0.05]
    driver.flush()
    ep.deadlines = []  # gone before it fires: no handle_timer call
    await asyncio.sleep(0.1)
    assert len(ep.fired) == 2
    driver.close()


async def test_sends_route_by_address_family() -> None:
    loop = asyncio.get_running_loop()
    ep = Scripted()
    s4 = bind_udp("127.0.0.1", 0)
    s6 = bind_udp("::1", 0)
    driver = UdpDriver(loop, ep, [s4, s6], lambda e, now: None)
    driver.start()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as p4,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as p6,
    ):
        p4.bind(("127.0.0.1", 0))
        p6.bind(("::1", 0))
        p4.settimeout(5)
        p6.settimeout(5)
        ep.out = [(b"four", p4.getsockname()), (b"six", p6.getsockname())]
        driver.flush()
        assert p4.recvfrom(100) == (b"four", s4.getsockname())
        data, src = p6.recvfrom(100)
        assert data == b"six" and src[:2] == s6.getsockname()[:2]
    driver.close()


@pytest.mark.both_loops
async def test_not_receiving_drops_datagrams_until_switched_back() -> None:
    loop = asyncio.get_running_loop()
    ep = Scripted()
    sock = bind_udp("127.0.0.1", 0)
    driver = UdpDriver(loop, ep, [sock], lambda e, now: None)
    driver.start()
    driver.receiving = False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(5)
        peer.sendto(b"asleep", sock.getsockname())
        await asyncio.sleep(0.05)
        assert "receive" not in ep.calls
        driver.receiving = True
        peer.sendto(b"awake", sock.getsockname())
        reply = await loop.run_in_executor(None, peer.recv, 100)
    assert reply == b"re:awake"
    assert ep.calls.count("receive") == 1
    driver.close()


@pytest.mark.both_loops
async def test_a_failing_event_handler_spoils_neither_later_events_nor_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    ep = Scripted()
    seen: list[Any] = []

    def on_event(event: Any, now: float) -> None:
        seen.append(event)
        if event == ("got", b"one"):
            raise RuntimeError("boom")

    sock = bind_udp("127.0.0.1", 0)
    driver = UdpDriver(loop, ep, [sock], on_event)
    driver.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(5)
        peer.sendto(b"one", sock.getsockname())
        peer.sendto(b"two", sock.getsockname())
        replies = {await loop.run_in_executor(None, peer.recv, 100) for _ in range(2)}
    assert replies == {b"re:one", b"re:two"}
    assert seen == [("got", b"one"), ("got", b"two")]
    assert "event handler failed" in caplog.text
    driver.close()


async def test_events_go_once_each_oldest_first_even_when_a_handler_flushes() -> None:
    loop = asyncio.get_running_loop()
    ep = Scripted()
    seen: list[Any] = []
    sock = bind_udp("127.0.0.1", 0)

    def on_event(event: Any, now: float) -> None:
        seen.append(event)
        if event == "a":
            ep.events.append("d")  # raised by what the handler did
            driver.flush(now)  # the application flushes from inside a handler: it goes on from b

    driver = UdpDriver(loop, ep, [sock], on_event)
    ep.events.extend(["a", "b", "c"])
    driver.flush()
    assert seen == ["a", "b", "c", "d"] and ep.events == []
    ep.events.append("e")
    driver.flush()
    assert seen == ["a", "b", "c", "d", "e"]
    driver.close()
