"""Resumption in the transport (RFC 5246 §7.3, RFC 5077): our client offers the last session it
made with a server address, and our server resumes it from its session cache or a ticket, after
its session went (closed, evicted) or after a restart that kept the ticket keys.

The wire is the in-memory one of tests/helpers/pki.py; one test runs over sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.helpers.pki import (
    KEY,
    OTHER_KEY,
    SERVER,
    Wire,
    ask,
    certificate_configs,
    client_layer,
    get,
    layer_of,
    psk_client,
    psk_server,
)

from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import DtlsError
from lwm2m.transport.dtls import DtlsLayer, SessionEstablished, SessionLimits, open_dtls_endpoint
from lwm2m.transport.dtls.engine_backend import CLIENT_SESSIONS, SESSION_LIFETIME, EngineBackend
from lwm2m.transport.dtls.records import is_client_hello, records

PEER = ("127.0.0.1", 40500)


@pytest.fixture(autouse=True)
def no_sessions_of_other_tests() -> None:
    CLIENT_SESSIONS.clear()


HANDSHAKE = 22
SERVER_HELLO_DONE = 14


def server_with(keys: dict[str, bytes], limits: SessionLimits | None = None) -> tuple[DtlsLayer, Any]:
    config = psk_server(keys, limits)
    factory = EngineBackend().server(config)
    return DtlsLayer(Endpoint(), server=factory, limits=config.limits), factory


def full_flights(wire: Wire, since: int) -> int:
    """Server flights of a full handshake (ServerHelloDone in them) sent after ``since``."""
    return sum(
        1
        for data, src, _ in wire.sent[since:]
        if src == SERVER
        for record in records(data)
        if record[0] == HANDSHAKE and record[3:5] == b"\0\0" and record[13] == SERVER_HELLO_DONE
    )


def connected(keys: dict[str, bytes] | None = None) -> tuple[Wire, DtlsLayer, Any, DtlsLayer]:
    wire = Wire()
    server, factory = server_with(keys if keys is not None else {"dev-1": KEY})
    wire.add(SERVER, server)
    client = wire.add(PEER, client_layer("dev-1", KEY))
    assert ask(wire, PEER) is not None
    assert server.counters["handshakes_done"] == 1 and server.counters["handshakes_resumed"] == 0
    return wire, server, factory, client


def test_a_client_whose_session_went_resumes_it_with_an_abbreviated_handshake() -> None:
    wire, server, _factory, client = connected()
    # The server lets the session go without a word (evicted, say); the client gives up on it
    # (as CoapDtlsEndpoint does after a request timed out) and asks again.
    server.close(PEER, notify=False)
    client.close(SERVER, notify=False)
    since = len(wire.sent)
    assert ask(wire, PEER).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert sum(is_client_hello(d) for d, _, _ in wire.sent[since:]) == 2  # with and without cookie
    assert full_flights(wire, since) == 0
    assert server.counters["handshakes_done"] == 2 and server.counters["handshakes_resumed"] == 1
    assert client.counters["handshakes_resumed"] == 1
    established = [e for e in server.seen if isinstance(e, SessionEstablished)]  # type: ignore[attr-defined]
    assert [e.resumed for e in established] == [False, True]
    # And again: the resumed session is the one offered next.
    server.close(PEER, notify=False)
    client.close(SERVER, notify=False)
    assert ask(wire, PEER) is not None
    assert server.counters["handshakes_resumed"] == 2


def test_a_client_made_anew_resumes_the_session_of_the_one_before() -> None:
    """The last sessions are kept for the process: a new client endpoint (a new socket) with
    the same PSK offers it; one with another PSK for the identity does not."""
    wire, server, _factory, _client = connected()
    del wire.nodes[PEER]
    for key, resumed in ((KEY, 1), (OTHER_KEY, 0)):
        again = wire.add(PEER, client_layer("dev-1", key))
        server.close(PEER, notify=False)
        ask(wire, PEER)
        assert again.counters["handshakes_started"] == 1
        assert again.counters["handshakes_resumed"] == resumed
    assert server.counters["handshakes_resumed"] == 1


def test_a_restarted_server_with_its_ticket_keys_resumes_and_one_without_does_not() -> None:
    wire, _server, factory, client = connected()
    for keys, resumed in ((factory.ticket_state(), 1), (None, 0)):
        restarted, new_factory = server_with({"dev-1": KEY})
        if keys is not None:
            new_factory.load_ticket_state(keys)
        wire.add(SERVER, restarted)
        client.close(SERVER, notify=False)
        assert ask(wire, PEER).payload == b"psk:dev-1"  # type: ignore[union-attr]
        assert restarted.counters["handshakes_done"] == 1
        assert restarted.counters["handshakes_resumed"] == resumed
        factory = new_factory


def test_tickets_and_cached_sessions_end_after_their_lifetime_in_the_callers_time() -> None:
    wire, server, _factory, client = connected()
    now = time.monotonic()
    for later, resumed in ((SESSION_LIFETIME / 2, 1), (SESSION_LIFETIME * 2.5, 1)):
        server.close(PEER, notify=False)
        client.close(SERVER, notify=False)
        assert ask(wire, PEER, now + later) is not None
        assert server.counters["handshakes_resumed"] == resumed
    # Past the lifetime (2.5 lifetimes on, the keys rotated and the cache forgot it) a full
    # handshake came; the new session resumes again.
    server.close(PEER, notify=False)
    client.close(SERVER, notify=False)
    assert ask(wire, PEER, now + SESSION_LIFETIME * 2.5 + 1) is not None
    assert server.counters["handshakes_done"] == 4 and server.counters["handshakes_resumed"] == 2


def test_a_session_of_a_replaced_psk_is_not_resumed_nor_taken_up_from_saved_state() -> None:
    keys = {"dev-1": KEY}
    wire, server, factory, client = connected(keys)
    state = next(iter(server._sessions.values())).conn.save()
    keys["dev-1"] = OTHER_KEY
    with pytest.raises(DtlsError, match="replaced"):
        factory.restore(state)
    del keys["dev-1"]
    with pytest.raises(DtlsError, match="removed"):
        factory.restore(state)
    keys["dev-1"] = KEY
    assert factory.restore(state).established
    # Our client offers its session; the server, whose key for it changed, refuses it: the
    # handshake fails and the client does not offer that session again.
    keys["dev-1"] = OTHER_KEY
    server.close(PEER, notify=False)
    client.close(SERVER, notify=False)
    assert ask(wire, PEER) is None
    assert server.counters["handshakes_resumed"] == 0
    # With the key back, the request's retransmission makes a full handshake: the session the
    # server refused is not offered again (the server would have taken it now).
    keys["dev-1"] = KEY
    t0 = time.monotonic()
    for dt in (3.0, 7.0, 15.0):
        wire.tick(t0 + dt)
    assert server.counters["handshakes_done"] == 2 and server.counters["handshakes_resumed"] == 0


def test_the_ticket_keys_survive_bytes_and_refuse_anything_else() -> None:
    factory = EngineBackend().server(psk_server({"dev-1": KEY}))
    saved = factory.ticket_state()
    other = EngineBackend().server(psk_server({"dev-1": KEY}))
    other.load_ticket_state(saved)
    assert other.ticket_state() == saved
    nan = saved[:1] + struct.pack(">d", float("nan")) + saved[9:]
    for bad in (b"", saved[:-1], saved + b"\0", b"\x02" + saved[1:], nan, bytes(100)):
        with pytest.raises(DtlsError):
            other.load_ticket_state(bad)
    assert other.ticket_state() == saved


@given(st.binary(max_size=120))
def test_saved_ticket_keys_parser_takes_any_bytes(data: bytes) -> None:
    factory = EngineBackend().server(psk_server({"dev-1": KEY}))
    try:
        factory.load_ticket_state(data)
    except DtlsError:
        return
    assert factory.ticket_state()[9:] == data[9:]


@given(st.binary(max_size=400))
def test_saved_session_parser_takes_any_bytes(data: bytes) -> None:
    factory = EngineBackend().server(psk_server({"dev-1": KEY}))
    client = EngineBackend().client(psk_client("dev-1", KEY))
    for f in (factory, client):
        with contextlib.suppress(DtlsError):
            f.restore(data)


async def test_over_sockets_a_client_resumes_after_the_server_closed_its_session() -> None:
    answer = lambda e: Message.build(Type.ACK, Code.CONTENT, payload=b"hi")  # noqa: E731
    async with (
        open_dtls_endpoint(server=psk_server({"dev-1": KEY}), handler=answer) as server,
        open_dtls_endpoint(client=psk_client("dev-1", KEY)) as client,
    ):
        addr = server.addresses[0]
        assert (await client.request(get("/x"), addr, timeout=5)).payload == b"hi"
        (info,) = server.sessions()
        server.close_session(info.addr)  # close_notify: the client's session ends too
        for _ in range(50):
            if not client.sessions():
                break
            await asyncio.sleep(0.01)
        assert (await client.request(get("/x"), addr, timeout=5)).payload == b"hi"
        assert server.dtls.counters["handshakes_done"] == 2
        assert server.dtls.counters["handshakes_resumed"] == 1


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_a_certificate_client_resumes_by_id_and_by_ticket_after_a_restart(kind: str) -> None:
    server_config, client_config, who = certificate_configs(kind)
    wire = Wire()
    first = EngineBackend().server(server_config)
    server = wire.add(SERVER, DtlsLayer(Endpoint(), server=first, limits=server_config.limits))
    client = wire.add(PEER, layer_of(client_config))
    assert ask(wire, PEER).payload == who.encode()  # type: ignore[union-attr]
    # The session goes on both sides; the client offers it again, and the server resumes it
    # from its cache: the peer is the one the full handshake authenticated (RFC 5077 §3.4).
    server.close(PEER, notify=False)
    client.close(SERVER, notify=False)
    since = len(wire.sent)
    assert ask(wire, PEER).payload == who.encode()  # type: ignore[union-attr]
    assert full_flights(wire, since) == 0
    assert server.counters["handshakes_resumed"] == 1 and client.counters["handshakes_resumed"] == 1
    # A restarted server with the ticket keys resumes from the ticket.
    restarted_factory = EngineBackend().server(server_config)
    restarted_factory.load_ticket_state(first.ticket_state())
    restarted = wire.add(SERVER, DtlsLayer(Endpoint(), server=restarted_factory, limits=server_config.limits))
    client.close(SERVER, notify=False)
    assert ask(wire, PEER).payload == who.encode()  # type: ignore[union-attr]
    assert restarted.counters["handshakes_done"] == 1 and restarted.counters["handshakes_resumed"] == 1
