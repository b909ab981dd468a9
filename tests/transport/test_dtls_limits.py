"""Bounded DTLS state: handshakes in progress end at their lifetime by the timer alone, their
number follows the memory budget, and an ended handshake lets go of its connection at once."""

from __future__ import annotations

import asyncio
import socket
import time

from tests.helpers.mbedtls_backend import HANDSHAKE_COST, MbedtlsBackend

from lwm2m.coap.endpoint import Endpoint
from lwm2m.transport.dtls import (
    DtlsClientConfig,
    DtlsLayer,
    DtlsServerConfig,
    HandshakeFailed,
    PskCredentials,
    SessionLimits,
    open_dtls_endpoint,
)
from lwm2m.transport.dtls.backend import Backend
from lwm2m.transport.dtls.engine_backend import HANDSHAKE_COST as ENGINE_HANDSHAKE_COST
from lwm2m.transport.dtls.engine_backend import EngineBackend
from lwm2m.transport.dtls.records import is_client_hello
from lwm2m.transport.memory import Trimmer, malloc_trim

KEY = bytes(range(16))


def server(limits: SessionLimits, backend: Backend | None = None) -> DtlsLayer:
    config = DtlsServerConfig(psk_lookup={"dev": KEY}.get, limits=limits)
    return DtlsLayer(Endpoint(), server=(backend or EngineBackend()).server(config), limits=limits)


def stall(layer: DtlsLayer, port: int, now: float) -> None:
    """A client (Mbed TLS) completes the cookie exchange with ``layer``, then says nothing more."""
    client = MbedtlsBackend().client(DtlsClientConfig(psk=PskCredentials("dev", KEY))).connect(now)
    client.handshake(now)
    addr = ("192.0.2.1", port)
    layer.receive_datagram(b"".join(client.outgoing()), addr, now)
    ((verify, _),) = layer.datagrams_to_send(now)  # HelloVerifyRequest: no state yet
    client.feed(verify, now)
    client.handshake(now)
    hello = b"".join(client.outgoing())
    assert is_client_hello(hello)
    layer.receive_datagram(hello, addr, now)
    assert layer.datagrams_to_send(now)  # the server's flight: the handshake is in progress


def test_stalled_handshakes_end_at_their_lifetime_by_the_timer_alone() -> None:
    limits = SessionLimits(handshake_lifetime=10.0, handshake_timeout_min=1.0, handshake_timeout_max=4.0)
    layer = server(limits)
    t0 = time.monotonic()
    for i in range(5):
        stall(layer, 40000 + i, t0)
    assert layer.state_sizes()["dtls_handshakes"] == 5
    # No datagram arrives again: only the timer runs, as the driver runs it.
    now = t0
    while (due := layer.get_timer()) is not None and due <= t0 + 10.0:
        now = max(now, due)
        layer.handle_timer(now)
        layer.datagrams_to_send(now)  # retransmitted flights (RFC 6347 §4.2.4)
    assert layer.state_sizes()["dtls_handshakes"] == 0
    failed = []
    while (event := layer.next_event()) is not None:
        failed.append(event)
    assert len(failed) == 5 and all(isinstance(e, HandshakeFailed) for e in failed)
    assert all(e.reason == "handshake timed out" for e in failed)
    assert now <= t0 + 10.0
    # Every ended handshake's connection is gone, even where stale timer entries remain.
    assert all(type(entry[2].conn).__name__ == "_Ended" for entry in layer._heap)
    assert layer.released == 5 * layer.handshake_cost


def test_the_handshake_cap_follows_the_memory_budget() -> None:
    assert SessionLimits().handshake_cap(HANDSHAKE_COST) == (64 << 20) // HANDSHAKE_COST == 728
    assert SessionLimits(max_handshakes=10).handshake_cap(HANDSHAKE_COST) == 10
    # Ours: 5.9 KiB measured, taken as 8 KiB.
    assert SessionLimits().handshake_cap(ENGINE_HANDSHAKE_COST) == 8192
    limits = SessionLimits(handshake_memory=3 * ENGINE_HANDSHAKE_COST)
    layer = server(limits)
    assert layer.max_handshakes == 3
    now = time.monotonic()
    for i in range(7):
        stall(layer, 41000 + i, now)
    assert layer.state_sizes()["dtls_handshakes"] == 3
    reasons = [e.reason for e in iter(layer.next_event, None) if isinstance(e, HandshakeFailed)]
    assert reasons == ["too many handshakes in progress"] * 4


def test_client_hellos_without_cookie_keep_nothing() -> None:
    layer = server(SessionLimits())
    client_config = DtlsClientConfig(psk=PskCredentials("dev", KEY))
    now = time.monotonic()
    for i in range(50):
        client = MbedtlsBackend().client(client_config).connect(now)
        client.handshake(now)
        layer.receive_datagram(b"".join(client.outgoing()), ("192.0.2.2", 42000 + i), now)
        ((_verify, _),) = layer.datagrams_to_send(now)
    sizes = layer.state_sizes()
    assert sizes["dtls_handshakes"] == 0 and sizes["dtls_heap"] == 0 and layer.get_timer() is None


def test_trimmer_runs_after_enough_was_released_and_not_too_often() -> None:
    trimmer = Trimmer(after=100, interval=5.0, collect_interval=20.0)
    trimmer.check(99, 0.0)
    assert trimmer.trims == 0
    can_trim = malloc_trim()
    assert trimmer.check(100, 1.0) is None
    assert trimmer.check(300, 2.0) == 4.0  # within the interval: owed, in 4 s
    assert trimmer.check(300, 6.0) == 15.0  # trimmed; the garbage collection is owed until 21 s
    assert trimmer.trims == (2 if can_trim else 0)
    assert trimmer.collections == 1
    assert trimmer.check(300, 21.0) is None  # the owed collection, and a trim after it
    assert trimmer.collections == 2
    assert trimmer.check(300, 50.0) is None  # nothing released since: nothing owed
    assert trimmer.collections == 2


async def test_a_stalled_handshake_ends_by_the_driver_timer_over_real_sockets() -> None:
    """The cookie exchange completes, then the client goes silent: the server's handshake ends
    at its lifetime with no further datagram, through the timer the UDP driver arms."""
    # The library would go on retransmitting past 1 s: the lifetime is what ends the handshake.
    limits = SessionLimits(handshake_lifetime=1.0, handshake_timeout_min=0.5, handshake_timeout_max=4.0)
    config = DtlsServerConfig(psk_lookup={"dev": KEY}.get, limits=limits)
    failed: list[HandshakeFailed] = []
    on_session = lambda e: failed.append(e) if isinstance(e, HandshakeFailed) else None  # noqa: E731
    async with open_dtls_endpoint(server=config, on_session=on_session) as ep:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        client = MbedtlsBackend().client(DtlsClientConfig(psk=PskCredentials("dev", KEY))).connect(now)
        client.handshake(now)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setblocking(False)
            await loop.sock_sendto(raw, b"".join(client.outgoing()), ep.addresses[0])
            client.feed(await asyncio.wait_for(loop.sock_recv(raw, 4096), 5), now)
            client.handshake(now)
            await loop.sock_sendto(raw, b"".join(client.outgoing()), ep.addresses[0])  # with the cookie
            await asyncio.wait_for(loop.sock_recv(raw, 4096), 5)  # the server's flight: unanswered
            assert ep.dtls.state_sizes()["dtls_handshakes"] == 1
            for _ in range(100):  # at most 10 s; the lifetime is 1 s
                if not ep.dtls.state_sizes()["dtls_handshakes"]:
                    break
                await asyncio.sleep(0.1)
        assert [e.reason for e in failed] == ["handshake timed out"]
