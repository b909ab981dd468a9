"""The session layer on our own engine (``engine_backend.py``): which backend a configuration
gets, PSKs of any length up to 64 bytes and identities up to 128 over real sockets, Mbed TLS as
the peer on either side in memory, and the engine's timer driving retransmissions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.helpers.mbedtls_backend import MbedtlsBackend
from tests.helpers.pki import (
    SERVER,
    Pki,
    Wire,
    ask,
    client_layer,
    get,
    make_pki,
    psk_client,
    server_layer,
)

from lwm2m.coap.endpoint import Endpoint
from lwm2m.tls import (
    ClientHello,
    ConnectionConfig,
    DtlsConnection,
    DtlsRecord,
    DtlsRole,
    HandshakeType,
    UnknownExtension,
)
from lwm2m.tls.messages import encode_handshake
from lwm2m.tls.record import DTLS_1_2, HANDSHAKE
from lwm2m.transport.dtls import (
    CipherSuite,
    DtlsClientConfig,
    DtlsLayer,
    DtlsServerConfig,
    HandshakeFailed,
    PeerIdentity,
    PskCredentials,
    SessionLimits,
    open_dtls_endpoint,
)
from lwm2m.transport.dtls.endpoint import default_backend
from lwm2m.transport.dtls.engine_backend import EngineBackend

FAST = SessionLimits(handshake_timeout_min=0.05, handshake_timeout_max=0.4, handshake_lifetime=3.0)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def test_every_configuration_gets_the_engine(pki: Pki) -> None:
    keys = {"dev-1": bytes(16)}.get
    assert default_backend(DtlsServerConfig(psk_lookup=keys)).name == "engine"
    assert default_backend(client=psk_client("dev-1", bytes(16))).name == "engine"
    assert default_backend(DtlsServerConfig(psk_lookup=keys), psk_client("dev-1", bytes(16))).name == "engine"
    assert default_backend(DtlsServerConfig(psk_lookup=keys, certificate=pki.issue("s"))).name == "engine"
    assert default_backend(client=DtlsClientConfig(certificate=pki.issue("c"))).name == "engine"
    EngineBackend().server(DtlsServerConfig(certificate=pki.issue("s")))
    EngineBackend().client(DtlsClientConfig(certificate=pki.issue("c")))
    # A CBC suite alone: the engine runs exactly that (test_dtls_engine_cbc.py).
    cbc = (CipherSuite.PSK_WITH_AES_128_CBC_SHA256,)
    EngineBackend().client(psk_client("dev-1", bytes(16), ciphers=cbc))
    EngineBackend().server(DtlsServerConfig(psk_lookup=keys, ciphers=cbc))
    # A certificate with only PSK suites has nothing to serve it with.
    with pytest.raises(ValueError):
        EngineBackend().client(DtlsClientConfig(certificate=pki.issue("c"), ciphers=cbc))


def test_psk_and_identity_bounds_are_checked_up_front() -> None:
    PskCredentials("i" * 128, bytes(64))
    for identity, key in (("i" * 129, bytes(16)), ("", bytes(16)), ("dev", b""), ("dev", bytes(65))):
        with pytest.raises(ValueError):
            PskCredentials(identity, key)
    with pytest.raises(ValueError):  # two bytes of UTF-8 each: 130 bytes
        PskCredentials("é" * 65, bytes(16))
    # Mbed TLS 2.28 takes 32 bytes at most: its backend says so at once.
    with pytest.raises(ValueError, match="32"):
        MbedtlsBackend().client(psk_client("dev", bytes(33)))
    for bad in ({"cid_length": 3}, {"cid_length": 33}, {"node_id": 256}, {"node_id": -1}):
        with pytest.raises(ValueError):
            SessionLimits(**bad)  # type: ignore[arg-type]
    assert SessionLimits(cid_length=0).cid_length == 0


@pytest.mark.parametrize("size", [1, 16, 32, 48, 64])
async def test_any_psk_up_to_64_bytes_and_a_128_byte_identity_over_sockets(size: int) -> None:
    identity = ("d" * 120) + f"{size:08d}"  # 128 bytes
    key = bytes(range(size))
    seen: list[PeerIdentity | None] = []

    def handler(event: Any) -> Any:
        from lwm2m.coap.message import Message
        from lwm2m.coap.numbers import Code, Type

        seen.append(server.peer_identity(event.addr))
        return Message.build(Type.ACK, Code.CONTENT, payload=b"ok")

    async with (
        open_dtls_endpoint(
            server=DtlsServerConfig(psk_lookup={identity: key}.get), handler=handler
        ) as server,
        open_dtls_endpoint(client=psk_client(identity, key)) as client,
    ):
        response = await client.request(get("/x"), server.addresses[0], timeout=5)
        assert response.payload == b"ok"
        assert seen == [PeerIdentity("psk", identity)]
        (info,) = server.sessions()
        assert info.cipher_suite == CipherSuite.PSK_WITH_AES_128_CCM_8


@pytest.mark.parametrize("server_side", ["engine", "mbedtls"])
def test_mbedtls_and_the_engine_talk_either_way_in_memory(server_side: str) -> None:
    key = bytes(range(16))
    engine, mbed = EngineBackend(), MbedtlsBackend()
    wire = Wire()
    server = wire.add(
        SERVER, server_layer({"dev-1": key}, backend=engine if server_side == "engine" else mbed)
    )
    peer = ("127.0.0.1", 40200)
    wire.add(peer, client_layer("dev-1", key, backend=mbed if server_side == "engine" else engine))
    for _ in range(3):
        assert ask(wire, peer).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert server.counters["handshakes_done"] == 1


def test_the_engine_timer_resends_lost_flights_and_the_lifetime_ends_a_silent_peer() -> None:
    """RFC 6347 §4.2.4: the layer wakes at the engine's own timer, no earlier guess."""
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": bytes(16)}, FAST))
    peer = ("127.0.0.1", 40201)
    client = wire.add(peer, client_layer("dev-1", bytes(16), FAST))
    wire.drop = lambda data, src, dst: True  # nothing gets through
    t0 = time.monotonic()
    client.request(get("/x"), SERVER, t0)
    wire.pump(t0)
    timers = []
    now = t0
    while (due := client.get_timer()) is not None and due <= t0 + 1:
        timers.append(round(due - t0, 3))
        now = due
        wire.tick(now)
    # 0.05 s, doubling up to 0.4 s; a retransmission at the longest timeout unanswered, it gives up.
    assert timers == [0.05, 0.15, 0.35, 0.75]
    assert client.state_sizes()["dtls_handshakes"] == 0
    sent = [d for d, src, _ in wire.sent if src == peer]
    hellos, alert = sent[:-1], sent[-1]
    assert len(hellos) == 4 and len(set(hellos)) == 4  # fresh record sequence numbers each time
    assert alert[0] == 21  # a fatal alert ends it
    assert [e.reason for e in client.seen if isinstance(e, HandshakeFailed)] == ["handshake timed out"]  # type: ignore[attr-defined]
    assert server.state_sizes()["dtls_handshakes"] == 0


@pytest.mark.parametrize("offer", ["scsv", "extension", "none"])
def test_the_server_answers_renegotiation_info_when_offered(offer: str) -> None:
    """RFC 5746 §3.6: an empty renegotiated_connection in the ServerHello when the client
    signals the extension (OpenSSL 3 clients refuse a server that does not)."""
    suites = (0xC0A8, 0x00FF) if offer == "scsv" else (0xC0A8,)
    extensions = (UnknownExtension(0xFF01, b"\0"),) if offer == "extension" else ()
    hello = ClientHello(random=bytes(32), cipher_suites=suites, extensions=extensions)
    message = encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
    server = DtlsConnection(DtlsRole.SERVER, ConnectionConfig(psk_lookup=lambda identity: None), 0.0)
    server.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 0.0)
    flight = b"".join(server.datagrams_to_send(0.0))
    assert flight[13] == HandshakeType.SERVER_HELLO
    assert (b"\xff\x01\x00\x01\x00" in flight) == (offer != "none")


def test_a_client_without_ccm_8_is_refused_at_once_with_an_alert_it_takes() -> None:
    """The CBC suite is off on our engine: a client offering only it gets a fatal
    handshake_failure numbered after its hello (RFC 6347 §4.2.1), and gives up at once."""
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": bytes(16)}))
    config = psk_client("dev-1", bytes(16), ciphers=(CipherSuite.PSK_WITH_AES_128_CBC_SHA256,))
    peer = ("127.0.0.1", 40202)
    client = wire.add(
        peer, DtlsLayer(Endpoint(), client=MbedtlsBackend().client(config), limits=config.limits)
    )
    client.request(get("/x"), SERVER, time.monotonic())
    wire.pump()
    (alert, _, _) = wire.sent[-1]
    assert alert[0] == 21 and alert[-2:] == b"\x02\x28"  # fatal handshake_failure
    assert [type(e) for e in client.seen] == [HandshakeFailed]  # type: ignore[attr-defined]
    assert server.counters["hello_verify_sent"] == 1 and server.counters["dropped_bad_hello"] == 1
    assert server.state_sizes()["dtls_handshakes"] == 0
