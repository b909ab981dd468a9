"""Raw public keys (RFC 7250) over TLS over TCP (``coaps+tcp``, RFC 8323) through our TLS engine,
against GnuTLS: ``gnutls-cli`` (TCP) with a raw public key carrying a CoAP over TCP request to
our endpoint, and our engine's client over a TCP socket against ``gnutls-serv --echo`` presenting the
server's raw public key and asking for ours. Skipped where gnutls-bin is not installed."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from tests.helpers.certificates import p256
from tests.helpers.dtls_peers import aio_process, end_input, process, program, read_until, received
from tests.helpers.ports import free_tcp_port
from tests.helpers.tls_stream_peers import StreamLink, tcp_connect
from tests.transport.test_dtls_gnutls_rpk import key_files, private_key_pem

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.framing import SignalCode, encode_message, signal
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.tls import ApplicationData, HandshakeComplete
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import DtlsClientConfig, DtlsServerConfig, PeerIdentity, RpkCredentials
from lwm2m.transport.tcp import CoapTcpEndpoint, open_tcp_endpoint
from lwm2m.transport.tls_engine import engine_tls_client, engine_tls_server

# TLS 1.2, ECDHE-ECDSA with CCM_8, raw public keys for both sides (RFC 7250 §4).
GNUTLS_RPK = (
    "NONE:+VERS-TLS1.2:+ECDHE-ECDSA:+AES-128-CCM-8:+AEAD:+SIGN-ALL:+COMP-NULL:+GROUP-ALL"
    ":+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK"
)
SERVER_KEY, CLIENT_KEY = p256(), p256()


async def test_gnutls_cli_with_a_raw_public_key_against_our_tls_server(tmp_path: Path) -> None:
    gnutls_cli = program("gnutls-cli")
    private, public = key_files(tmp_path, "client", CLIENT_KEY)
    seen: list[PeerIdentity | None] = []
    holder: list[CoapTcpEndpoint] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(holder[0].peer_identity(event.addr))
        return Message.build(Type.ACK, Code.CONTENT, payload=b"hello from lwm2m over TLS RPK")

    tls = engine_tls_server(DtlsServerConfig(rpk=RpkCredentials(private_key_pem(SERVER_KEY))))
    async with open_tcp_endpoint("127.0.0.1", 0, handler=handler, server_tls=tls, dial=False) as server:
        holder.append(server)
        argv = [gnutls_cli, "-p", str(server.port), "127.0.0.1", "--priority", GNUTLS_RPK]
        argv += ["--rawpkkeyfile", str(private), "--rawpkfile", str(public)]
        async with aio_process(*argv, "--insecure") as proc:
            assert proc.stdin is not None and proc.stdout is not None
            text = (await read_until(proc.stdout, b"Handshake was completed")).decode(errors="replace")
            assert "Raw Public Key" in text and "AES-128-CCM-8" in text, text
            # RFC 8323 §5.3: a CSM first, then the request, framed for TCP.
            proc.stdin.write(encode_message(signal(SignalCode.CSM)))
            proc.stdin.write(encode_message(Message.build(Type.CON, Code.GET, 0, b"\x09", uri_path="/hello")))
            await proc.stdin.drain()
            answer = await read_until(proc.stdout, b"over TLS RPK")
            assert b"hello from lwm2m over TLS RPK" in answer, answer.decode(errors="replace")
            await end_input(proc)
    assert seen == [PeerIdentity("rpk", spki_der(CLIENT_KEY.public_key()).hex())]


def test_our_rpk_client_against_gnutls_serv_over_tcp(tmp_path: Path) -> None:
    private, public = key_files(tmp_path, "server", SERVER_KEY)
    port = free_tcp_port()
    argv = [program("gnutls-serv"), "-p", str(port), "--echo", "--priority", GNUTLS_RPK]
    argv += ["--rawpkkeyfile", str(private), "--rawpkfile", str(public), "--require-client-cert"]
    server_public = SERVER_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tls = engine_tls_client(
        DtlsClientConfig(rpk=RpkCredentials(private_key_pem(CLIENT_KEY), (server_public,)))
    )
    connection = tls.stream_connection(time.monotonic())
    with process(argv, ready=b"IPv4"), tcp_connect(port) as sock:
        link = StreamLink(connection, sock)
        events = link.run(lambda event: isinstance(event, HandshakeComplete))
        complete = events[-1]
        assert isinstance(complete, HandshakeComplete) and complete.peer is not None
        assert complete.peer.public_key == server_public  # the key gnutls-serv presented
        connection.send_application_data(b"ping over TLS RPK\n")
        echoed = link.run(lambda event: isinstance(event, ApplicationData))
        assert received(echoed) == b"ping over TLS RPK\n"
        connection.close()
        link.flush()
