"""TLS_PSK_WITH_AES_128_CBC_SHA256 on our engine under the session layer (``engine_backend.py``):
off by default, on beside CCM_8 when the configuration's ``ciphers`` name it, against Mbed TLS
on the other side in memory; the session reports the suite it runs."""

from __future__ import annotations

import time

import pytest
from tests.helpers.pki import SERVER, Wire, ask, get, psk_client

from lwm2m.coap.endpoint import Endpoint
from lwm2m.transport.dtls import CipherSuite, DtlsLayer, DtlsServerConfig, HandshakeFailed
from lwm2m.transport.dtls.endpoint import default_backend
from lwm2m.transport.dtls.engine_backend import EngineBackend

pytest.importorskip("mbedtls.tls")
from tests.helpers.mbedtls_backend import MbedtlsBackend

KEY = bytes(range(16))
CCM_8, CBC = CipherSuite.PSK_WITH_AES_128_CCM_8, CipherSuite.PSK_WITH_AES_128_CBC_SHA256
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
