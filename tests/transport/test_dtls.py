"""DTLS 1.2 sessions (RFC 6347): PSK and certificates over real loopback sockets, and the session
layer's bookkeeping (cookies, replacement, idle sessions, caps) in memory with no sockets.

The keys, the small PKI and the in-memory wire are in tests/helpers/pki.py, shared with the other DTLS tests.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from tests.helpers.mbedtls_backend import MbedtlsBackend
from tests.helpers.pki import (
    KEY,
    OTHER_KEY,
    SERVER,
    Pki,
    Wire,
    ask,
    client_layer,
    events_of,
    get,
    make_pki,
    mbedtls_hello,
    psk_client,
    psk_server,
    server_layer,
)

from lwm2m.coap.endpoint import EndpointConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import DtlsError, DtlsHandshakeError, NoDtlsSession, RequestTimeout
from lwm2m.transport.dtls import (
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    HandshakeFailed,
    PeerIdentity,
    SessionEnded,
    SessionEstablished,
    SessionLimits,
    X509Credentials,
    open_dtls_endpoint,
)
from lwm2m.transport.dtls.records import datagrams, is_client_hello, records
from lwm2m.transport.separate import SEPARATE_RESPONSE

FAST_HANDSHAKE = SessionLimits(handshake_timeout_min=0.05, handshake_timeout_max=0.4, handshake_lifetime=3.0)


# --- the session layer in memory -------------------------------------------------------------------


# === records ===========================================================================================


def test_records_are_split_and_packed_to_the_mtu() -> None:
    def record(n: int) -> bytes:
        return bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, n >> 8, n & 0xFF]) + bytes(n)

    flight = record(600) + record(600) + record(100)
    assert [len(r) for r in records(flight)] == [613, 613, 113]
    assert [len(d) for d in datagrams(flight, 1280)] == [1226, 113]
    assert records(flight[:-1]) == records(flight)[:2]  # a truncated tail is dropped
    assert not is_client_hello(record(40))  # a handshake record, but not a ClientHello
    assert not is_client_hello(b"\x16\xfe")


# === over sockets: PSK ===================================================================================


async def test_psk_request_carries_the_peer_identity() -> None:
    seen: list[PeerIdentity | None] = []
    sessions: list[Any] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(server.peer_identity(event.addr))
        return Message.build(Type.ACK, Code.CONTENT, payload=b"hi")

    server_config = psk_server({"dev-1": KEY})
    async with (
        open_dtls_endpoint(server=server_config, handler=handler, on_session=sessions.append) as server,
        open_dtls_endpoint(client=psk_client("dev-1", KEY)) as client,
    ):
        response = await client.request(get("/x"), server.addresses[0], timeout=5)
        assert response.code == Code.CONTENT and response.payload == b"hi"
        assert seen == [PeerIdentity("psk", "dev-1")]
        established = [e for e in sessions if isinstance(e, SessionEstablished)]
        assert len(established) == 1
        # LwM2M's mandatory suite is the one chosen when both sides offer the defaults.
        assert established[0].cipher_suite == CipherSuite.PSK_WITH_AES_128_CCM_8
        assert server.uri().startswith("coaps://127.0.0.1:")
        # Further requests reuse the session: one handshake, one cookie exchange.
        for _ in range(20):
            await client.request(get("/x"), server.addresses[0], timeout=5)
        assert server.dtls.counters["handshakes_done"] == 1
        assert server.dtls.counters["hello_verify_sent"] == 1


async def test_a_separate_response_heard_over_dtls() -> None:
    """The empty ACK of a held request reaches SEPARATE_RESPONSE through the DTLS layer too, and
    the caller's timeout no longer applies (RFC 7252 §5.2.2)."""
    release = asyncio.Event()

    async def held(event: RequestReceived) -> Message:
        await release.wait()
        return Message(Type.ACK, Code.CONTENT, payload=b"later")

    heard: list[bool] = []
    async with (
        open_dtls_endpoint(
            server=psk_server({"dev-1": KEY}), handler=held, config=EndpointConfig(empty_ack_delay=0.05)
        ) as server,
        open_dtls_endpoint(client=psk_client("dev-1", KEY)) as client,
    ):
        await client.connect(server.addresses[0], timeout=5)
        context = SEPARATE_RESPONSE.set(lambda: heard.append(True))
        try:
            task = asyncio.ensure_future(client.request(get("/held"), server.addresses[0], timeout=0.3))
        finally:
            SEPARATE_RESPONSE.reset(context)
        await asyncio.sleep(0.5)
        assert heard == [True] and not task.done()
        release.set()
        assert (await asyncio.wait_for(task, 5)).payload == b"later"


async def test_psk_cbc_sha256_suite() -> None:
    """The CBC suite is off unless asked for; asked for alone, our engine runs it and nothing
    else on both sides, over real sockets."""
    cbc = (CipherSuite.PSK_WITH_AES_128_CBC_SHA256,)
    config = psk_client("dev-1", KEY, ciphers=cbc)
    server_config = DtlsServerConfig(psk_lookup={"dev-1": KEY}.get, ciphers=cbc)
    answer = lambda e: Message(Type.ACK, Code.CONTENT)  # noqa: E731
    async with (
        open_dtls_endpoint(server=server_config, handler=answer) as server,
        open_dtls_endpoint(client=config) as client,
    ):
        assert (await client.request(get("/x"), server.addresses[0], timeout=5)).code == Code.CONTENT
        (info,) = server.sessions()
        assert info.cipher_suite == CipherSuite.PSK_WITH_AES_128_CBC_SHA256


async def test_server_sends_requests_to_a_client_over_its_session() -> None:
    """LwM2M's role reversal: the server starts requests towards a client over the client's session."""
    sessions: list[Any] = []
    client_handler = lambda e: Message.build(Type.ACK, Code.CONTENT, payload=b"from the device")  # noqa: E731
    async with (
        open_dtls_endpoint(server=psk_server({"dev-1": KEY}), on_session=sessions.append) as server,
        open_dtls_endpoint(client=psk_client("dev-1", KEY), handler=client_handler) as client,
    ):
        await client.connect(server.addresses[0], timeout=5)
        await asyncio.sleep(0.05)
        (established,) = [e for e in sessions if isinstance(e, SessionEstablished)]
        response = await server.request(get("/3/0"), established.addr, timeout=5)
        assert response.payload == b"from the device"
        # No session with an address: the server cannot make one and says so at once.
        with pytest.raises(NoDtlsSession):
            await server.request(get("/3/0"), ("127.0.0.1", 9), timeout=5)


async def test_wrong_key_and_unknown_identity_fail_the_handshake() -> None:
    failures: list[HandshakeFailed] = []
    on_session = lambda e: failures.append(e) if isinstance(e, HandshakeFailed) else None  # noqa: E731
    async with open_dtls_endpoint(server=psk_server({"dev-1": KEY}), on_session=on_session) as server:
        for config in (psk_client("dev-1", OTHER_KEY), psk_client("nobody", KEY)):
            async with open_dtls_endpoint(client=config) as client:
                with pytest.raises(DtlsHandshakeError):
                    await client.request(get("/x"), server.addresses[0], timeout=5)
        await asyncio.sleep(0.05)
        assert len(failures) == 2
        assert "wrong PSK" in failures[0].reason and "identity" in failures[1].reason.lower()
        assert server.sessions() == [] and server.dtls.state_sizes()["dtls_handshakes"] == 0


async def test_a_client_hello_without_cookie_gets_a_hello_verify_request_and_leaves_no_state() -> None:
    """RFC 6347 §4.2.1: the server answers with a stateless HelloVerifyRequest."""
    _, hello = mbedtls_hello()
    assert is_client_hello(hello)
    async with open_dtls_endpoint(server=psk_server({"dev-1": KEY})) as server:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setblocking(False)
            for _ in range(50):
                await loop.sock_sendto(raw, hello, server.addresses[0])
                reply = await asyncio.wait_for(loop.sock_recv(raw, 2048), 2)
                assert reply[0] == 22 and reply[13] == 3  # handshake: hello_verify_request
        sizes = server.dtls.state_sizes()
        assert sizes["dtls_handshakes"] == 0 and sizes["dtls_sessions"] == 0
        assert server.dtls.counters["hello_verify_sent"] == 50


async def test_client_shakes_hands_again_after_the_server_lost_its_session() -> None:
    fast = EndpointConfig(ack_timeout=0.1, ack_random_factor=1.0, max_retransmit=1)
    server_config = psk_server({"dev-1": KEY})
    answer = lambda e: Message(Type.ACK, Code.CONTENT)  # noqa: E731
    async with open_dtls_endpoint(client=psk_client("dev-1", KEY), config=fast) as client:
        async with open_dtls_endpoint(server=server_config, handler=answer) as first:
            port = first.port
            assert (await client.request(get("/x"), ("127.0.0.1", port), timeout=5)).code == Code.CONTENT
        async with open_dtls_endpoint("127.0.0.1", port, server=server_config, handler=answer) as second:
            # The restarted server drops records of a session it never had; the request times out.
            with pytest.raises(RequestTimeout):
                await client.request(get("/x"), ("127.0.0.1", port), timeout=5)
            assert (await client.request(get("/x"), ("127.0.0.1", port), timeout=5)).code == Code.CONTENT
            assert second.dtls.counters["handshakes_done"] == 1


async def test_close_notify_ends_the_server_side_session() -> None:
    ended: list[SessionEnded] = []
    on_session = lambda e: ended.append(e) if isinstance(e, SessionEnded) else None  # noqa: E731
    async with open_dtls_endpoint(server=psk_server({"dev-1": KEY}), on_session=on_session) as server:
        async with open_dtls_endpoint(client=psk_client("dev-1", KEY)) as client:
            await client.connect(server.addresses[0], timeout=5)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if ended:
                break
        assert [e.reason for e in ended] == ["closed"] and server.sessions() == []


# === over sockets: certificates ==========================================================================


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.mark.parametrize(
    "suite", [CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8, CipherSuite.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
)
async def test_x509_both_ways(pki: Pki, suite: CipherSuite) -> None:
    seen: list[PeerIdentity | None] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(server.peer_identity(event.addr))
        return Message(Type.ACK, Code.CONTENT)

    server_config = DtlsServerConfig(certificate=pki.issue("lwm2m-server"), psk_lookup={"dev-1": KEY}.get)
    client_config = DtlsClientConfig(certificate=pki.issue("sensor-7"), ciphers=(suite,))
    async with (
        open_dtls_endpoint(server=server_config, handler=handler) as server,
        open_dtls_endpoint(client=client_config) as client,
    ):
        identity = await client.connect(server.addresses[0], timeout=5)
        assert identity is not None and identity.kind == "x509" and identity.name == "lwm2m-server"
        await client.request(get("/x"), server.addresses[0], timeout=5)
        assert seen[0] is not None and seen[0].kind == "x509" and seen[0].name == "sensor-7"
        assert "O=lwm2m tests" in seen[0].subject
        assert server.sessions()[0].cipher_suite == suite
        # The same server still takes PSK clients.
        async with open_dtls_endpoint(client=psk_client("dev-1", KEY)) as psk:
            await psk.request(get("/x"), server.addresses[0], timeout=5)
        assert seen[-1] == PeerIdentity("psk", "dev-1")


async def test_x509_from_another_authority_is_refused(pki: Pki) -> None:
    rogue = make_pki("Rogue CA")
    server_config = DtlsServerConfig(certificate=pki.issue("lwm2m-server"))
    async with open_dtls_endpoint(server=server_config) as server:
        # A client certificate the server's authority did not sign.
        async with open_dtls_endpoint(client=DtlsClientConfig(certificate=rogue.issue("sensor-7"))) as client:
            with pytest.raises(DtlsHandshakeError):
                await client.connect(server.addresses[0], timeout=5)
        # A server certificate the client's authority did not sign.
        mine = rogue.issue("sensor-7")
        trusts_rogue = X509Credentials(mine.certificate, mine.private_key, rogue.ca_pem)
        trusting_rogue = DtlsClientConfig(certificate=trusts_rogue)
        async with open_dtls_endpoint(client=trusting_rogue) as client:
            with pytest.raises(DtlsHandshakeError):
                await client.connect(server.addresses[0], timeout=5)
        assert server.sessions() == []


# === the session layer in memory ======================================================================


def test_a_new_handshake_replaces_a_session_only_once_it_has_authenticated() -> None:
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY, "dev-2": OTHER_KEY}))
    peer = ("127.0.0.1", 40001)
    wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer).payload == b"psk:dev-1"  # type: ignore[union-attr]
    # Someone at the same address starts a handshake with a wrong key: it fails, and the
    # established session goes on untouched.
    wire.add(peer, client_layer("dev-1", OTHER_KEY))
    assert ask(wire, peer) is None
    assert events_of(server, HandshakeFailed)
    assert server.peer_identity(peer) == PeerIdentity("psk", "dev-1")
    assert server.counters["handshakes_done"] == 1
    # A handshake that authenticates replaces the session, and the identity with it.
    wire.add(peer, client_layer("dev-2", OTHER_KEY))
    assert ask(wire, peer).payload == b"psk:dev-2"  # type: ignore[union-attr]
    (ended,) = events_of(server, SessionEnded)
    assert ended.reason == "replaced" and ended.identity == PeerIdentity("psk", "dev-1")
    assert events_of(server, SessionEstablished)[-1].replaced == PeerIdentity("psk", "dev-1")
    assert server.state_sizes()["dtls_sessions"] == 1


def test_lost_flights_are_sent_again() -> None:
    """RFC 6347 §4.2.4: each side retransmits its last flight when its timer runs out."""
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, FAST_HANDSHAKE))
    peer = ("127.0.0.1", 40002)
    client = wire.add(peer, client_layer("dev-1", KEY, FAST_HANDSHAKE))
    lost = {"server": 1, "client": 2}  # the server's first flight, the client's first two

    def drop(data: bytes, src: Any, dst: Any) -> bool:
        side = "server" if src == SERVER else "client"
        if data[0] == 22 and lost[side] > 0:
            lost[side] -= 1
            return True
        return False

    wire.drop = drop
    client.request(get("/who"), SERVER, time.monotonic())
    wire.pump()
    deadline = time.monotonic() + 5
    while not server.peer_identity(peer) and time.monotonic() < deadline:
        time.sleep(0.01)
        wire.tick(time.monotonic())
    assert server.peer_identity(peer) == PeerIdentity("psk", "dev-1")
    assert lost == {"server": 0, "client": 0}


@pytest.mark.parametrize("peer_backend", ["engine", "mbedtls"])
def test_idle_sessions_are_saved_and_taken_up_again_without_a_handshake(peer_backend: str) -> None:
    """Our engine parks an idle session as bytes (export_state/import_state), with our client or
    Mbed TLS as the peer."""
    limits = SessionLimits(idle_timeout=30.0)
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits))
    peer = ("127.0.0.1", 40003)
    wire.add(
        peer, client_layer("dev-1", KEY, backend=MbedtlsBackend() if peer_backend == "mbedtls" else None)
    )
    now = time.monotonic()
    assert ask(wire, peer, now) is not None
    wire.tick(now + 31)  # silent for longer than idle_timeout: out of memory, kept as saved state
    sizes = server.state_sizes()
    assert sizes["dtls_sessions"] == 0 and sizes["dtls_parked"] == 1
    assert server.peer_identity(peer) == PeerIdentity("psk", "dev-1")
    assert ask(wire, peer, now + 32).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert server.counters["sessions_resumed"] == 1 and server.counters["handshakes_done"] == 1
    assert server.state_sizes()["dtls_parked"] == 0


def test_parked_sessions_go_both_ways_and_keep_their_order() -> None:
    """Both sides park; the server's next request to a parked client takes its session up, and
    records keep authenticating in both directions after several rounds of parking."""
    limits = SessionLimits(idle_timeout=30.0)
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits))
    peer = ("127.0.0.1", 40005)
    client = wire.add(peer, client_layer("dev-1", KEY, limits))
    now = time.monotonic()
    for _ in range(4):
        assert ask(wire, peer, now) is not None
        now += 31
        wire.tick(now)
        assert server.state_sizes()["dtls_parked"] == 1 and client.state_sizes()["dtls_parked"] == 1
    # The server asks the parked client: its session is taken up to send (no handshake).
    token = server.request(get("/who"), peer, now)
    wire.pump(now)
    assert any(getattr(e, "token", None) == token for e in server.seen)  # type: ignore[attr-defined]
    assert server.counters["handshakes_done"] == 1 and client.counters["handshakes_done"] == 1
    assert server.counters["sessions_resumed"] == 4 and client.counters["sessions_resumed"] == 4


def test_saved_state_of_the_engine_is_small_and_hostile_state_is_refused() -> None:
    """Issue 14: at most 1 KB per idle resumable session (the bytes, and the layer's entry)."""
    import gc
    import tracemalloc

    from lwm2m.transport.dtls.engine_backend import EngineBackend

    limits = SessionLimits(idle_timeout=30.0)
    wire = Wire()
    server = wire.add(SERVER, server_layer({f"dev-{i}": KEY for i in range(40)}, limits))
    peers = [("127.0.0.1", 41000 + i) for i in range(40)]
    now = time.monotonic()
    for i, p in enumerate(peers):
        wire.add(p, client_layer(f"dev-{i}", KEY))
        assert ask(wire, p, now) is not None
    states = []
    for s in list(server._sessions.values()):
        state = s.conn.save()
        assert state is not None
        states.append(state)
    assert max(len(x) for x in states) <= 300
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    wire.tick(now + 31)  # all 40 parked
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert server.state_sizes()["dtls_parked"] == 40
    # What parking allocated (the saved bytes and the table's entry; the connections it let go
    # of were allocated before tracing began): 420 to 460 bytes a session.
    per_session = (after - before) / 40
    assert per_session <= 1024, per_session
    factory = EngineBackend().server(psk_server({"dev-1": KEY}))
    for bad in (b"", b"\x01", states[0][:-1], states[0] + b"\0", bytes(300)):
        with pytest.raises(DtlsError):
            factory.restore(bad)
    client_factory = EngineBackend().client(psk_client("dev-1", KEY))
    with pytest.raises(DtlsError):
        client_factory.restore(states[0])  # a server's state is no client's


def test_idle_sessions_end_when_none_may_be_parked() -> None:
    limits = SessionLimits(idle_timeout=30.0, max_parked=0)
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits))
    peer = ("127.0.0.1", 40004)
    wire.add(peer, client_layer("dev-1", KEY))
    now = time.monotonic()
    assert ask(wire, peer, now) is not None
    wire.tick(now + 31)
    sizes = server.state_sizes()
    assert sizes["dtls_sessions"] == 0 and sizes["dtls_parked"] == 0 and sizes["dtls_cids"] == 0
    assert [e.reason for e in events_of(server, SessionEnded)] == ["idle"]
    assert server.peer_identity(peer) is None


def test_session_cap_evicts_the_least_recently_heard() -> None:
    wire = Wire()
    limits = SessionLimits(max_sessions=2, max_parked=0)
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits))
    peers = [("127.0.0.1", 40010 + i) for i in range(3)]
    for p in peers:
        wire.add(p, client_layer("dev-1", KEY))
        assert ask(wire, p) is not None
    assert server.state_sizes()["dtls_sessions"] == 2
    (ended,) = events_of(server, SessionEnded)
    assert ended.addr == peers[0] and ended.reason == "evicted"
    assert server.peer_identity(peers[0]) is None


def test_handshakes_in_progress_are_capped() -> None:
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, SessionLimits(max_handshakes=3)))
    # Clients whose final flight never arrives leave their handshakes in progress.
    wire.drop = lambda data, src, dst: src != SERVER and data[0] == 22 and data[13] == 16  # ClientKeyExchange
    for i in range(6):
        p = ("127.0.0.1", 40020 + i)
        wire.add(p, client_layer("dev-1", KEY)).request(get("/x"), SERVER, time.monotonic())
        wire.pump()
    assert server.state_sizes()["dtls_handshakes"] == 3
    assert len(events_of(server, HandshakeFailed)) == 3
