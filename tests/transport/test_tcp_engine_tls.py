"""CoAP over TLS (``coaps+tcp``) through our own TLS engine (TLS 1.2 over TCP, RFC 5246) in the
TCP endpoint: PSK and raw public keys, which the ssl module cannot give, between our client and
our server and with libcoap's ``coap-client-openssl -u ID -k KEY`` as the client; the identity
each side proved is the one DTLS reports."""

from __future__ import annotations

import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.helpers.libcoap import run_process

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import ConnectionAborted
from lwm2m.transport.dtls import (
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    PskCredentials,
    RpkCredentials,
)
from lwm2m.transport.tcp import CoapTcpEndpoint, open_tcp_endpoint
from lwm2m.transport.tls_engine import engine_tls_client, engine_tls_server

KEY = b"0123456789abcdef"
KEYS = {"device-1": KEY}


def _server(seen: list[PeerIdentity | None]) -> tuple[object, list[CoapTcpEndpoint]]:
    holder: list[CoapTcpEndpoint] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(holder[0].peer_identity(event.addr))
        return Message.build(Type.ACK, Code.CONTENT, payload=b"hello over TLS")

    return handler, holder


def _pem_key() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


async def _get(server_tls: object, client_tls: object) -> tuple[Message, list[PeerIdentity | None]]:
    seen: list[PeerIdentity | None] = []
    handler, holder = _server(seen)
    async with open_tcp_endpoint(
        "127.0.0.1",
        0,
        handler=handler,
        server_tls=server_tls,
        dial=False,  # type: ignore[arg-type]
    ) as server:
        holder.append(server)
        assert server.uri().startswith("coaps+tcp://")
        async with open_tcp_endpoint(None, client_tls=client_tls) as client:  # type: ignore[arg-type]
            request = Message.build(Type.CON, Code.GET, uri_path="/3/0/0")
            response = await client.request(request, ("127.0.0.1", server.port), timeout=10)
            again = await client.request(
                Message.build(Type.CON, Code.GET, uri_path="/x"), ("127.0.0.1", server.port)
            )
            assert again.payload == b"hello over TLS" and client.connections() == 1
    return response, seen


async def test_psk_between_our_client_and_server() -> None:
    response, seen = await _get(
        engine_tls_server(DtlsServerConfig(psk_lookup=KEYS.get)),
        engine_tls_client(DtlsClientConfig(psk=PskCredentials("device-1", KEY))),
    )
    assert response.code == Code.CONTENT and response.payload == b"hello over TLS"
    assert seen == [PeerIdentity("psk", "device-1")] * 2


async def test_rpk_between_our_client_and_server() -> None:
    server_key, server_public = _pem_key()
    client_key, client_public = _pem_key()
    response, seen = await _get(
        engine_tls_server(DtlsServerConfig(rpk=RpkCredentials(server_key))),
        engine_tls_client(DtlsClientConfig(rpk=RpkCredentials(client_key, (server_public,)))),
    )
    assert response.payload == b"hello over TLS"
    spki = serialization.load_pem_public_key(client_public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert seen == [PeerIdentity("rpk", spki.hex())] * 2


async def test_wrong_psk_is_refused() -> None:
    async with (
        open_tcp_endpoint(
            "127.0.0.1",
            0,
            handler=lambda e: None,
            server_tls=engine_tls_server(DtlsServerConfig(psk_lookup=KEYS.get)),
        ) as server,
        open_tcp_endpoint(
            None, client_tls=engine_tls_client(DtlsClientConfig(psk=PskCredentials("device-1", bytes(16))))
        ) as client,
    ):
        with pytest.raises(ConnectionAborted, match="TLS handshake"):
            await client.request(
                Message.build(Type.CON, Code.GET, uri_path="/x"), ("127.0.0.1", server.port), timeout=10
            )
        assert server.connections() == 0


async def test_libcoap_openssl_psk_over_tls() -> None:
    program = shutil.which("coap-client-openssl")
    if program is None:
        pytest.skip("coap-client-openssl is not installed (Debian's libcoap3-bin)")
    seen: list[PeerIdentity | None] = []
    handler, holder = _server(seen)
    tls = engine_tls_server(DtlsServerConfig(psk_lookup=KEYS.get))
    async with open_tcp_endpoint("127.0.0.1", 0, handler=handler, server_tls=tls, dial=False) as server:
        holder.append(server)
        uri = f"coaps+tcp://127.0.0.1:{server.port}/3/0/0"
        result = await run_process(program, "-u", "device-1", "-k", KEY.decode(), "-v", "6", uri)
        assert "hello over TLS" in result.stdout, result
        assert seen == [PeerIdentity("psk", "device-1")]
