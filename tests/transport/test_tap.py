"""The message tap of the driver: in only while a sink is given (with none, the sockets' reader
calls the endpoint's own ``receive_datagram`` and ``_transmit`` its own ``datagrams_to_send``),
and then a copy of each datagram to or from a peer the sink names, and none of the others."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from lwm2m.transport.driver import UdpDriver
from lwm2m.transport.reader import bind_udp


class Echo:
    """A sans-IO endpoint that answers each datagram with ``re:`` and the datagram."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.out: list[tuple[bytes, Any]] = []

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.out.append((b"re:" + data, addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> Any:
        return None


class Sink:
    def __init__(self, *addresses: Any) -> None:
        self.addresses = set(addresses)
        self.copies: list[tuple[bool, bytes, Any]] = []

    def seen(self, incoming: bool, data: bytes, addr: Any) -> None:
        self.copies.append((incoming, data, addr))


async def test_the_tap_is_in_only_while_a_sink_is_given() -> None:
    loop = asyncio.get_running_loop()
    endpoint = Echo()
    server = bind_udp("127.0.0.1", 0)
    traced = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    traced.bind(("127.0.0.1", 0))
    other.bind(("127.0.0.1", 0))
    traced.setblocking(False)
    other.setblocking(False)
    driver = UdpDriver(loop, endpoint, [server], lambda event, now: None)
    driver.start()
    reader = driver._readers[0]
    try:
        # No sink: nothing between the reader and the endpoint.
        assert reader.on_datagram == endpoint.receive_datagram
        assert driver._to_send == endpoint.datagrams_to_send
        sink = Sink(traced.getsockname())
        driver.tap(sink)
        assert reader.on_datagram != endpoint.receive_datagram
        addr = server.getsockname()
        traced.sendto(b"one", addr)
        other.sendto(b"two", addr)
        for sock, want in ((traced, b"re:one"), (other, b"re:two")):
            got = await asyncio.wait_for(loop.sock_recv(sock, 100), 2)
            assert got == want
        assert sink.copies == [
            (True, b"one", traced.getsockname()),
            (False, b"re:one", traced.getsockname()),
        ]
        # Asleep (queue mode) and awake again: the tap comes back with the reader's handler.
        driver.receiving = False
        driver.receiving = True
        assert reader.on_datagram == driver._receive != endpoint.receive_datagram
        driver.tap(None)
        assert reader.on_datagram == endpoint.receive_datagram
        assert driver._to_send == endpoint.datagrams_to_send
        traced.sendto(b"three", addr)
        assert await asyncio.wait_for(loop.sock_recv(traced, 100), 2) == b"re:three"
        assert len(sink.copies) == 2
    finally:
        driver.close()
        traced.close()
        other.close()
