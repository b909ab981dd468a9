"""Raw public keys (RFC 7250) through the transport against GnuTLS, a DTLS stack we did not
write: ``gnutls-cli --udp`` with a raw public key carrying a CoAP request to our server, and
our client against ``gnutls-serv --udp --echo`` presenting the server's raw public key (and
asking for ours). Skipped where gnutls-bin is not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.helpers.certificates import p256
from tests.helpers.dtls_peers import aio_process, end_input, process, program, read_until
from tests.helpers.pki import get
from tests.helpers.ports import free_udp_port

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import DtlsHandshakeError
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import (
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    RpkCredentials,
    SessionEstablished,
    open_dtls_endpoint,
)

# DTLS 1.2, ECDHE-ECDSA with CCM_8, raw public keys for both sides (RFC 7250 §4).
GNUTLS_RPK = (
    "NONE:+VERS-DTLS1.2:+ECDHE-ECDSA:+AES-128-CCM-8:+AEAD:+SIGN-ALL:+COMP-NULL:+GROUP-ALL"
    ":+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK"
)
SERVER_KEY, CLIENT_KEY = p256(), p256()


def key_files(tmp_path: Path, name: str, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """GnuTLS's --rawpkkeyfile (PKCS #8 PEM) and --rawpkfile (the public key, PEM)."""
    private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    private.write_bytes(private_key_pem(key))
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def test_gnutls_cli_with_a_raw_public_key_against_our_server(tmp_path: Path) -> None:
    gnutls_cli = program("gnutls-cli")
    private, public = key_files(tmp_path, "client", CLIENT_KEY)
    seen: list[PeerIdentity | None] = []
    sessions: list[Any] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(server.peer_identity(event.addr))
        return Message.build(Type.ACK, Code.CONTENT, payload=b"hello from lwm2m over RPK")

    # The server lists no client keys: any key the client proves it holds is taken, and named.
    config = DtlsServerConfig(rpk=RpkCredentials(private_key_pem(SERVER_KEY)))
    async with open_dtls_endpoint(server=config, handler=handler, on_session=sessions.append) as server:
        argv = [gnutls_cli, "--udp", "-p", str(server.port), "127.0.0.1", "--priority", GNUTLS_RPK]
        argv += ["--rawpkkeyfile", str(private), "--rawpkfile", str(public)]
        # GnuTLS has no trust store for a bare key: our side is what is tested.
        async with aio_process(*argv, "--insecure") as proc:
            assert proc.stdin is not None and proc.stdout is not None
            banner = await read_until(proc.stdout, b"Handshake was completed")
            text = banner.decode(errors="replace")
            assert "Raw Public Key" in text and "AES-128-CCM-8" in text, text
            assert "extended master secret" in text, text  # RFC 7627
            proc.stdin.write(Message.build(Type.CON, Code.GET, 0x2345, b"\x09", uri_path="/hello").encode())
            await proc.stdin.drain()
            answer = await read_until(proc.stdout, b"over RPK")
            assert b"hello from lwm2m over RPK" in answer, answer.decode(errors="replace")
            await end_input(proc)  # gnutls-cli sends close_notify when its input ends
    assert seen == [PeerIdentity("rpk", spki_der(CLIENT_KEY.public_key()).hex())]
    (established,) = [e for e in sessions if isinstance(e, SessionEstablished)]
    assert established.cipher_suite == CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8


async def test_our_rpk_client_against_gnutls_serv(tmp_path: Path) -> None:
    private, public = key_files(tmp_path, "server", SERVER_KEY)
    port = free_udp_port()
    argv = [program("gnutls-serv"), "--udp", "-p", str(port), "--echo", "--priority", GNUTLS_RPK]
    argv += ["--rawpkkeyfile", str(private), "--rawpkfile", str(public), "--require-client-cert"]
    server_public = SERVER_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    config = DtlsClientConfig(rpk=RpkCredentials(private_key_pem(CLIENT_KEY), (server_public,)))
    echoed: list[bytes] = []

    def handler(event: RequestReceived) -> Message:
        # gnutls-serv --echo sends our request back: it arrives as a request from the server,
        # whose answer the echo returns to us as the response to our request.
        echoed.append(event.message.encode())
        return Message.build(Type.ACK, Code.CONTENT, payload=b"echoed through GnuTLS")

    with process(argv, ready=b"listening"):
        async with open_dtls_endpoint(client=config, handler=handler) as client:
            identity = await client.connect(("127.0.0.1", port), timeout=10)
            assert identity == PeerIdentity("rpk", server_public.hex())
            response = await client.request(get("/echo"), ("127.0.0.1", port), timeout=10)
            assert response.payload == b"echoed through GnuTLS" and len(echoed) == 1
            (info,) = client.sessions()
            assert info.cipher_suite == CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8


async def test_our_rpk_client_refuses_a_gnutls_serv_with_another_key(tmp_path: Path) -> None:
    private, public = key_files(tmp_path, "server", p256())
    port = free_udp_port()
    argv = [program("gnutls-serv"), "--udp", "-p", str(port), "--echo", "--priority", GNUTLS_RPK]
    argv += ["--rawpkkeyfile", str(private), "--rawpkfile", str(public)]
    config = DtlsClientConfig(
        rpk=RpkCredentials(private_key_pem(CLIENT_KEY), (spki_der(SERVER_KEY.public_key()),))
    )
    with process(argv, ready=b"listening"):
        async with open_dtls_endpoint(client=config) as client:
            with pytest.raises(DtlsHandshakeError):
                await client.connect(("127.0.0.1", port), timeout=10)
