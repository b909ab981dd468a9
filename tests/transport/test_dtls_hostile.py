"""Bad input at the DTLS layer: garbage, truncated, tampered and replayed records, and a flood of
ClientHellos. No crash, no state before a valid cookie, bounded memory, and a normal client still
registers meanwhile."""

from __future__ import annotations

import asyncio
import random
import resource
import socket
import threading
import time
from typing import Any

import pytest
from tests.helpers.client import temperature
from tests.helpers.events import next_event
from tests.helpers.mbedtls_backend import MbedtlsBackend
from tests.helpers.pki import (
    KEY,
    SERVER,
    Wire,
    answer_requests,
    ask,
    client_layer,
    events_of,
    get,
    mbedtls_hello,
    server_layer,
)

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import DtlsLayer, PskCredentials, SessionEnded, SessionLimits
from lwm2m.transport.dtls.backend import Backend
from lwm2m.transport.dtls.records import is_client_hello


def client_hello() -> bytes:
    return mbedtls_hello("dev-1", KEY)[1]


def with_cookie(hello: bytes, cookie: bytes) -> bytes:
    """``hello`` (one unfragmented ClientHello record) carrying ``cookie`` (RFC 6347 §4.2.1)."""
    record, header, body = hello[:13], hello[13:25], hello[25:]
    at = 35 + body[34]  # client_version(2) random(32) session_id<0..32>
    body = body[:at] + bytes([len(cookie)]) + cookie + body[at + 1 + body[at] :]
    n = len(body).to_bytes(3, "big")
    header = header[:1] + n + header[4:6] + b"\0\0\0" + n
    return record[:11] + (12 + len(body)).to_bytes(2, "big") + header + body


def test_tampered_truncated_and_replayed_records_are_dropped() -> None:
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}))
    peer = ("127.0.0.1", 40100)
    client = wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer) is not None
    delivered: list[bytes] = []
    inner_receive = server.inner.receive_datagram

    def counting(data: bytes, addr: object, now: float) -> None:
        delivered.append(data)
        inner_receive(data, addr, now)

    server.inner.receive_datagram = counting
    now = time.monotonic()
    client.request(get("/who"), SERVER, now)
    ((record, _),) = client.datagrams_to_send(now)
    server.receive_datagram(record, peer, now)
    assert len(delivered) == 1
    server.receive_datagram(record, peer, now)  # replayed (RFC 6347 §4.1.2.6)
    for cut in range(len(record)):
        server.receive_datagram(record[:cut], peer, now)
    for i in range(len(record)):
        for bit in (0x01, 0x80):
            tampered = bytearray(record)
            tampered[i] ^= bit
            server.receive_datagram(bytes(tampered), peer, now)
    rng = random.Random(7)
    for _ in range(2000):
        head = bytes([rng.choice((20, 21, 22, 23, 25, rng.randrange(256))), 0xFE, 0xFD])
        server.receive_datagram(head + rng.randbytes(rng.randrange(0, 120)), peer, now)
    for size in (20_000, 65_000):  # beyond any record, and beyond the TLS library's input buffer
        server.receive_datagram(bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(size), peer, now)
    assert len(delivered) == 1
    assert server.counters["dropped_oversize"] == 2 and server.counters["errors"] == 0
    sizes = server.state_sizes()
    assert sizes["dtls_sessions"] == 1 and sizes["dtls_handshakes"] == 0
    server.inner.receive_datagram = inner_receive
    wire.pump()  # the answer to the request above
    assert ask(wire, peer) is not None  # the session still works


def _recorded_request(wire: Wire, client: DtlsLayer, now: float) -> bytes:
    """A request from ``client`` that the server takes, as the server got it: one record."""
    client.request(get("/who"), SERVER, now)
    ((record, _),) = client.datagrams_to_send(now)
    server = wire.nodes[SERVER]
    server.receive_datagram(record, wire_addr(wire, client), now)
    answer_requests(server, now)
    wire.pump(now)  # the answer
    return record


def wire_addr(wire: Wire, layer: DtlsLayer) -> Any:
    return next(addr for addr, node in wire.nodes.items() if node is layer)


def spoofed(record: bytes, rng: random.Random) -> list[bytes]:
    """What a sender that has the peer's address but not its keys can send from it: the replay
    of a record the server took, that record tampered with and with a higher sequence number
    (RFC 6347 §4.1.2.6), and garbage under every record type (never a ClientHello)."""
    out = [record]
    for i in range(0, len(record), 3):
        tampered = bytearray(record)
        tampered[i] ^= 0x40
        out.append(bytes(tampered))
    out.append(record[:5] + (int.from_bytes(record[5:11], "big") + 1000).to_bytes(6, "big") + record[11:])
    for _ in range(300):
        head = bytes([rng.choice((20, 21, 22, 23, 25)), 0xFE, 0xFD])
        garbage = head + rng.randbytes(rng.randrange(0, 80))
        if not is_client_hello(garbage):
            out.append(garbage)
    return out


@pytest.mark.parametrize("backend", ["engine", "mbedtls"])
def test_spoofed_records_do_not_keep_an_idle_session_alive(backend: str) -> None:
    """Only a record that authenticated refreshes a session's idle time: records sent from the
    peer's address without its keys leave the session to end at ``idle_timeout``; a real record
    keeps it."""
    limits = SessionLimits(idle_timeout=30.0, max_parked=0)
    ends: dict[str, float] = {}
    for case in ("spoofed", "real"):
        wire = Wire()
        server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits, _backend(backend)))
        peer = ("127.0.0.1", 40200)
        client = wire.add(peer, client_layer("dev-1", KEY))
        now = time.monotonic()
        assert ask(wire, peer, now) is not None
        record = _recorded_request(wire, client, now + 1)
        rng = random.Random(5)
        for t in (now + 10, now + 20, now + 29):
            if case == "spoofed":
                for datagram in spoofed(record, rng):
                    server.receive_datagram(datagram, peer, t)
            else:
                _recorded_request(wire, client, t)
            wire.tick(t)
            assert server.session(peer) is not None, (case, t - now)
        for t in range(31, 62):
            wire.tick(now + t)
            if server.session(peer) is None:
                ends[case] = t
                break
        assert [e.reason for e in events_of(server, SessionEnded)] == ["idle"]
        assert server.counters["errors"] == 0
    # Heard last at +1 (the spoofed records count for nothing), or at +29.
    assert ends == {"spoofed": 31, "real": 59}


@pytest.mark.parametrize("backend", ["engine", "mbedtls"])
def test_spoofed_records_do_not_move_a_session_in_the_eviction_order(backend: str) -> None:
    """The least recently heard session makes room for a new one: spoofed records from its
    address do not make it the most recently heard; a real record does."""
    for case in ("spoofed", "real"):
        wire = Wire()
        limits = SessionLimits(max_sessions=2, max_parked=0)
        server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits, _backend(backend)))
        first, second, third = (("127.0.0.1", 40210 + i) for i in range(3))
        now = time.monotonic()
        client = wire.add(first, client_layer("dev-1", KEY))
        assert ask(wire, first, now) is not None
        record = _recorded_request(wire, client, now + 0.5)
        wire.add(second, client_layer("dev-1", KEY))
        assert ask(wire, second, now + 1) is not None
        if case == "spoofed":
            for datagram in spoofed(record, random.Random(6)):
                server.receive_datagram(datagram, first, now + 2)
        else:
            _recorded_request(wire, client, now + 2)
        wire.add(third, client_layer("dev-1", KEY))
        assert ask(wire, third, now + 3) is not None
        (ended,) = events_of(server, SessionEnded)
        assert ended.reason == "evicted"
        assert ended.addr == (first if case == "spoofed" else second), case


@pytest.mark.parametrize("backend", ["engine", "mbedtls"])
def test_spoofed_records_do_not_take_up_a_parked_session(backend: str) -> None:
    """A parked session is taken up by a record that authenticates, never by spoofed ones: those
    leave it parked, and move no live session out of memory to make room for it."""
    limits = SessionLimits(idle_timeout=30.0, max_sessions=1)
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits, _backend(backend)))
    first, second = ("127.0.0.1", 40220), ("127.0.0.1", 40221)
    client = wire.add(first, client_layer("dev-1", KEY))
    now = time.monotonic()
    assert ask(wire, first, now) is not None
    record = _recorded_request(wire, client, now + 1)
    wire.tick(now + 40)  # idle: parked
    wire.add(second, client_layer("dev-1", KEY))
    assert ask(wire, second, now + 41) is not None
    for datagram in spoofed(record, random.Random(7)):
        server.receive_datagram(datagram, first, now + 42)
    assert [info.addr for info in server.sessions()] == [second]
    assert [info.addr for info in server.parked()] == [first]
    assert server.counters["sessions_resumed"] == 0 and server.counters["errors"] == 0
    assert ask(wire, first, now + 43) is not None  # a real record takes it up, without a handshake
    assert [info.addr for info in server.sessions()] == [first]
    assert [info.addr for info in server.parked()] == [second]
    assert server.counters["sessions_resumed"] == 1 and server.counters["handshakes_done"] == 2


def _backend(name: str) -> Backend | None:
    return MbedtlsBackend() if name == "mbedtls" else None


def test_client_hellos_without_a_valid_cookie_keep_no_state() -> None:
    server = server_layer({"dev-1": KEY})
    hello = client_hello()
    rng = random.Random(11)
    now = time.monotonic()
    for i in range(3000):
        addr = ("127.0.0.1", 20000 + i)
        forged = hello if i % 3 == 0 else with_cookie(hello, rng.randbytes(rng.choice((1, 16, 28, 32))))
        assert is_client_hello(forged)
        server.receive_datagram(forged, addr, now)
        server.receive_datagram(forged[: rng.randrange(13, len(forged))], addr, now)  # truncated
    sent = server.datagrams_to_send(now)
    assert len(sent) >= 3000 and all(d[0] == 22 and d[13] == 3 for d, _ in sent)  # HelloVerifyRequests
    sizes = server.state_sizes()
    assert sizes["dtls_handshakes"] == 0 and sizes["dtls_sessions"] == 0 and sizes["dtls_heap"] == 0


async def test_a_flood_of_client_hellos_and_garbage_while_a_device_registers() -> None:
    hello = client_hello()
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("steady", "steady-id", KEY))
        assert server.coaps_port and server.dtls is not None and server.coaps_uri
        target = ("127.0.0.1", server.coaps_port)
        stop = threading.Event()
        counts = {"sent": 0}

        def flood() -> None:
            rng = random.Random(3)
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
            try:
                deadline = time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < deadline:
                    for s in socks:
                        kind = rng.randrange(4)
                        if kind == 0:
                            data = hello
                        elif kind == 1:
                            data = with_cookie(hello, rng.randbytes(32))
                        elif kind == 2:
                            data = bytes([23, 0xFE, 0xFD, 0, 1]) + rng.randbytes(rng.randrange(8, 80))
                        else:
                            data = rng.randbytes(rng.randrange(1, 200))
                        try:
                            s.sendto(data, target)
                            counts["sent"] += 1
                        except OSError:
                            pass
                    time.sleep(0.0005)
            finally:
                for s in socks:
                    s.close()

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        try:
            await asyncio.sleep(0.5)
            events = server.events()
            psk = PskCredentials("steady-id", KEY)
            client = Client("steady", server.coaps_uri, [temperature()], config=ClientConfig(psk=psk))
            async with client:
                await next_event(events, ClientRegistered, timeout=10)
                assert (await server.read("steady", "/3303/0/5700", timeout=5)).success
                await asyncio.sleep(0.5)
                sizes = server.dtls.dtls.state_sizes()
                # Only the steady client has state; the flood left none.
                assert sizes["dtls_sessions"] == 1 and sizes["dtls_handshakes"] == 0
        finally:
            stop.set()
            thread.join(5)
        counters = server.dtls.dtls.counters
        assert counts["sent"] > 2000, counts
        assert counters["hello_verify_sent"] > 500
        assert counters["handshakes_started"] == counters["handshakes_done"] == 1
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        assert grown_mib < 64, grown_mib
