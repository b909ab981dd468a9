"""The CBC suites of LwM2M 1.1 on our engine under the session layer (``engine_backend.py``):
off by default; ``ciphers`` given explicitly are honoured exactly (a list of one CBC suite offers
and takes only it, a list without CCM_8 leaves CCM_8 out); against Mbed TLS on the other side in
memory; the session reports the suite it runs."""

from __future__ import annotations

import time

import pytest
from tests.helpers.pki import SERVER, Wire, ask, get, make_pki, psk_client

from lwm2m.coap.endpoint import Endpoint
from lwm2m.tls.messages import ClientHello
from lwm2m.transport.dtls import (
    CipherSuite,
    DtlsClientConfig,
    DtlsLayer,
    DtlsServerConfig,
    HandshakeFailed,
)
from lwm2m.transport.dtls.endpoint import default_backend
from lwm2m.transport.dtls.engine_backend import EngineBackend

pytest.importorskip("mbedtls.tls")
from tests.helpers.mbedtls_backend import MbedtlsBackend

KEY = bytes(range(16))
CCM_8, CBC = CipherSuite.PSK_WITH_AES_128_CCM_8, CipherSuite.PSK_WITH_AES_128_CBC_SHA256
ECDHE_PSK_CBC = CipherSuite.ECDHE_PSK_WITH_AES_128_CBC_SHA256
ECDSA_CBC = CipherSuite.ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
CLIENT = ("127.0.0.1", 40310)


def _server(ciphers: tuple[CipherSuite, ...], backend: object) -> DtlsLayer:
    config = DtlsServerConfig(psk_lookup={"dev-1": KEY}.get, ciphers=ciphers)
    return DtlsLayer(Endpoint(), server=backend.server(config), limits=config.limits)  # type: ignore[attr-defined]


def _client(ciphers: tuple[CipherSuite, ...], backend: object) -> DtlsLayer:
    config = psk_client("dev-1", KEY, ciphers=ciphers)
    return DtlsLayer(Endpoint(), client=backend.client(config), limits=config.limits)  # type: ignore[attr-defined]


def test_the_engine_serves_cbc_only_when_the_ciphers_name_it() -> None:
    both = (CCM_8, CBC)
    assert default_backend(DtlsServerConfig(psk_lookup={}.get, ciphers=both)).name == "engine"
    assert default_backend(client=psk_client("dev-1", KEY, ciphers=both)).name == "engine"
    # By default the engine takes no CBC suite: an Mbed TLS client offering only it is refused.
    wire = Wire()
    wire.add(SERVER, _server((), EngineBackend()))
    client = wire.add(CLIENT, _client((CBC,), MbedtlsBackend()))
    client.request(get("/x"), SERVER, time.monotonic())
    wire.pump()
    assert [type(e) for e in client.seen] == [HandshakeFailed]  # type: ignore[attr-defined]


def test_an_mbedtls_cbc_client_against_the_engine_server() -> None:
    wire = Wire()
    server = wire.add(SERVER, _server((CCM_8, CBC), EngineBackend()))
    wire.add(CLIENT, _client((CBC,), MbedtlsBackend()))
    response = ask(wire, CLIENT)
    assert response is not None and response.payload == b"psk:dev-1"
    [info] = server.sessions()
    assert info.cipher_suite == CBC


def test_the_engine_client_against_an_mbedtls_cbc_server() -> None:
    wire = Wire()
    server = wire.add(SERVER, _server((CBC,), MbedtlsBackend()))
    client = wire.add(CLIENT, _client((CCM_8, CBC), EngineBackend()))
    response = ask(wire, CLIENT)
    assert response is not None
    [info] = client.sessions()
    assert info.cipher_suite == CBC
    [info] = server.sessions()
    assert info.cipher_suite == CBC


def test_engine_to_engine_prefers_ccm_8_when_both_list_cbc() -> None:
    wire = Wire()
    server = wire.add(SERVER, _server((CCM_8, CBC), EngineBackend()))
    wire.add(CLIENT, _client((CCM_8, CBC), EngineBackend()))
    assert ask(wire, CLIENT) is not None
    [info] = server.sessions()
    assert info.cipher_suite == CCM_8


def _offered(config: DtlsClientConfig) -> tuple[int, ...]:
    # The cipher suites of the engine client's first ClientHello, without the SCSV of RFC 5746.
    conn = EngineBackend().client(config).connect(time.monotonic())
    conn.handshake(time.monotonic())
    hello = ClientHello.parse(b"".join(conn.outgoing())[25:])
    return tuple(s for s in hello.cipher_suites if s != 0x00FF)


def test_the_engine_client_offers_exactly_the_ciphers_given() -> None:
    assert _offered(psk_client("dev-1", KEY)) == (0xC0A8,)  # the default: CCM_8 alone
    assert _offered(psk_client("dev-1", KEY, ciphers=(CBC,))) == (0x00AE,)
    assert _offered(psk_client("dev-1", KEY, ciphers=(ECDHE_PSK_CBC, CBC))) == (0xC037, 0x00AE)
    assert _offered(psk_client("dev-1", KEY, ciphers=(CBC, CCM_8))) == (0xC0A8, 0x00AE)
    pki = make_pki()
    assert _offered(DtlsClientConfig(certificate=pki.issue("c"), ciphers=(ECDSA_CBC,))) == (0xC023,)


@pytest.mark.parametrize("suite", [CBC, ECDHE_PSK_CBC])
def test_engine_to_engine_with_one_cbc_suite_on_both_sides(suite: CipherSuite) -> None:
    wire = Wire()
    server = wire.add(SERVER, _server((suite,), EngineBackend()))
    client = wire.add(CLIENT, _client((suite,), EngineBackend()))
    response = ask(wire, CLIENT)
    assert response is not None and response.payload == b"psk:dev-1"
    assert [info.cipher_suite for info in server.sessions()] == [suite]
    assert [info.cipher_suite for info in client.sessions()] == [suite]


def test_a_cbc_only_server_refuses_a_ccm_8_client() -> None:
    wire = Wire()
    server = wire.add(SERVER, _server((CBC,), EngineBackend()))
    client = wire.add(CLIENT, _client((), EngineBackend()))
    client.request(get("/x"), SERVER, time.monotonic())
    wire.pump()
    assert [type(e) for e in client.seen] == [HandshakeFailed]  # type: ignore[attr-defined]
    assert list(server.sessions()) == []


def test_an_mbedtls_cbc_only_client_against_a_cbc_only_engine_server() -> None:
    wire = Wire()
    server = wire.add(SERVER, _server((CBC,), EngineBackend()))
    wire.add(CLIENT, _client((CBC,), MbedtlsBackend()))
    assert ask(wire, CLIENT) is not None
    [info] = server.sessions()
    assert info.cipher_suite == CBC


def _layer(config: DtlsServerConfig | DtlsClientConfig) -> DtlsLayer:
    if isinstance(config, DtlsServerConfig):
        return DtlsLayer(Endpoint(), server=EngineBackend().server(config), limits=config.limits)
    return DtlsLayer(Endpoint(), client=EngineBackend().client(config), limits=config.limits)


def test_ecdhe_ecdsa_cbc_alone_with_certificates_engine_to_engine() -> None:
    pki = make_pki()
    wire = Wire()
    server = wire.add(
        SERVER, _layer(DtlsServerConfig(certificate=pki.issue("lwm2m-server"), ciphers=(ECDSA_CBC,)))
    )
    wire.add(CLIENT, _layer(DtlsClientConfig(certificate=pki.issue("sensor-7"), ciphers=(ECDSA_CBC,))))
    assert ask(wire, CLIENT) is not None
    [info] = server.sessions()
    assert info.cipher_suite == ECDSA_CBC
    # A client offering only the AEAD suites finds nothing in common there.
    other = wire.add(("127.0.0.1", 40311), _layer(DtlsClientConfig(certificate=pki.issue("sensor-8"))))
    other.request(get("/x"), SERVER, time.monotonic())
    wire.pump()
    assert [type(e) for e in other.seen] == [HandshakeFailed]  # type: ignore[attr-defined]
