"""TLS 1.2 over TCP through our engine (stream mode, RFC 5246) against OpenSSL's ``s_server``
and ``s_client`` (``-tls1_2``) over real loopback sockets: TLS_PSK_WITH_AES_128_CCM_8, and
ECDHE-ECDSA with X.509 in CCM_8 and GCM, data both ways, our close_notify."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from tests.helpers.certificates import CertificateAuthority, pem_files
from tests.helpers.dtls_peers import process, program, received, wait_for
from tests.helpers.ports import free_tcp_port
from tests.helpers.tls_stream_peers import StreamLink, accept, tcp_connect, tcp_listener

from lwm2m.tls import ApplicationData, ConnectionConfig, DtlsConnection, DtlsRole, HandshakeComplete
from lwm2m.tls.connection import (
    TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    TLS_PSK_WITH_AES_128_CCM_8,
)

KEY = bytes(range(16))
IDENTITY = b"Client_identity"  # what s_server expects unless told otherwise
ECDSA = pytest.mark.parametrize(
    ("suite", "cipher"),
    [
        (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, "ECDHE-ECDSA-AES128-CCM8"),
        (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ],
    ids=["CCM_8", "GCM"],
)
HOST = "lwm2m.example"
ENDPOINT = "urn:imei:490154203237518"
CA = CertificateAuthority("OpenSSL TLS test CA")
SERVER = CA.issue(HOST, dns_names=(HOST,), usage="server")
CLIENT = CA.issue(ENDPOINT)


def _ping(client: DtlsConnection, server: subprocess.Popen[bytes], port: int, chunk: int = 65536) -> None:
    with tcp_connect(port) as sock:
        link = StreamLink(client, sock)
        link.run(lambda event: isinstance(event, HandshakeComplete), chunk=chunk)
        client.send_application_data(b"ping from the device\n")
        link.flush()
        wait_for(server, b"ping from the device")  # s_server prints what it received
        assert server.stdin is not None
        server.stdin.write(b"pong from openssl\n")  # and sends what it reads
        server.stdin.flush()
        events = link.run(lambda event: isinstance(event, ApplicationData), chunk=chunk)
        assert received(events) == b"pong from openssl\n"
        client.close()
        link.flush()


@pytest.mark.parametrize("chunk", [65536, 7], ids=["whole", "7-byte-reads"])
def test_our_psk_client_against_s_server(chunk: int) -> None:
    port = free_tcp_port()
    argv = [program("openssl"), "s_server", "-tls1_2", "-accept", f"127.0.0.1:{port}", "-nocert"]
    argv += ["-psk", KEY.hex(), "-cipher", "PSK-AES128-CCM8"]
    client = DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=KEY), time.monotonic(), stream=True
    )
    with process(argv, ready=b"ACCEPT") as server:
        _ping(client, server, port, chunk)
        assert client.cipher_suite == TLS_PSK_WITH_AES_128_CCM_8


def test_s_client_psk_against_our_server() -> None:
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        argv = [program("openssl"), "s_client", "-tls1_2", "-connect", f"127.0.0.1:{port}", "-quiet"]
        argv += ["-psk", KEY.hex(), "-psk_identity", IDENTITY.decode(), "-cipher", "PSK-AES128-CCM8"]
        with process(argv) as client, accept(listener) as sock:
            server = DtlsConnection(
                DtlsRole.SERVER,
                ConnectionConfig(psk_lookup={IDENTITY: KEY}.get),
                time.monotonic(),
                stream=True,
            )
            link = StreamLink(server, sock)
            events = link.run(lambda event: isinstance(event, HandshakeComplete))
            assert events[-1] == HandshakeComplete(IDENTITY)
            assert client.stdin is not None
            client.stdin.write(b"hello from openssl\n")
            client.stdin.flush()
            events = link.run(lambda event: isinstance(event, ApplicationData))
            assert received(events) == b"hello from openssl\n"
            server.send_application_data(b"HELLO FROM US\n")
            link.flush()
            wait_for(client, b"HELLO FROM US")
            server.close()  # s_client (-quiet ignores the end of its input) ends on our close_notify
            link.flush()
            assert client.wait(timeout=10) == 0


def test_s_client_wrong_psk_fails_the_handshake() -> None:
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        argv = [program("openssl"), "s_client", "-tls1_2", "-connect", f"127.0.0.1:{port}", "-quiet"]
        argv += ["-psk", bytes(16).hex(), "-psk_identity", IDENTITY.decode(), "-cipher", "PSK-AES128-CCM8"]
        with process(argv) as client, accept(listener) as sock:
            server = DtlsConnection(
                DtlsRole.SERVER,
                ConnectionConfig(psk_lookup={IDENTITY: KEY}.get),
                time.monotonic(),
                stream=True,
            )
            link = StreamLink(server, sock)
            deadline = time.monotonic() + 10
            while not server.closed and time.monotonic() < deadline:
                link.flush()
                data = sock.recv(65536)
                if not data:
                    break
                server.receive_data(data)
            link.flush()
            assert server.closed and not server.established
            out = wait_for(client, b"alert")
            assert b"alert" in out
            client.wait(timeout=10)


@ECDSA
def test_our_x509_client_against_s_server(suite: int, cipher: str, tmp_path: Path) -> None:
    files = pem_files(tmp_path, CA, SERVER, CLIENT)
    port = free_tcp_port()
    argv = [
        program("openssl"),
        "s_server",
        "-tls1_2",
        "-accept",
        f"127.0.0.1:{port}",
        "-cert",
        files["server"],
    ]
    argv += ["-key", files["server_key"], "-CAfile", files["ca"], "-Verify", "1", "-cipher", cipher]
    credentials = CLIENT.credentials(trust_anchors=(CA.certificate,), expected_name=HOST)
    client = DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(certificate=credentials), time.monotonic(), stream=True
    )
    with process(argv, ready=b"ACCEPT") as server, tcp_connect(port) as sock:
        link = StreamLink(client, sock)
        events = link.run(lambda event: isinstance(event, HandshakeComplete))
        event = events[-1]
        assert isinstance(event, HandshakeComplete) and event.peer is not None and event.peer.name == HOST
        assert client.cipher_suite == suite
        client.send_application_data(b"POST /rd?ep=ours\n")
        link.flush()
        out = wait_for(server, b"POST /rd?ep=ours")
        assert f"CN = {ENDPOINT}".encode() in out  # s_server took our client certificate
        assert server.stdin is not None
        server.stdin.write(b"2.01 Created\n")
        server.stdin.flush()
        assert received(link.run(lambda event: isinstance(event, ApplicationData))) == b"2.01 Created\n"


@ECDSA
def test_s_client_x509_against_our_server(suite: int, cipher: str, tmp_path: Path) -> None:
    files = pem_files(tmp_path, CA, SERVER, CLIENT)
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        argv = [program("openssl"), "s_client", "-tls1_2", "-connect", f"127.0.0.1:{port}"]
        argv += ["-cert", files["client"], "-key", files["client_key"], "-CAfile", files["ca"]]
        argv += ["-verify_return_error", "-verify_hostname", HOST, "-cipher", cipher]
        with process(argv) as client, accept(listener) as sock:
            config = ConnectionConfig(certificate=SERVER.credentials(trust_anchors=(CA.certificate,)))
            server = DtlsConnection(DtlsRole.SERVER, config, time.monotonic(), stream=True)
            link = StreamLink(server, sock)
            link.run(lambda event: isinstance(event, HandshakeComplete))
            assert server.cipher_suite == suite and server.peer_identity == ENDPOINT.encode()
            out = wait_for(client, b"Verification: OK")
            assert client.stdin is not None
            client.stdin.write(b"POST /rd?ep=openssl\n")
            client.stdin.flush()
            assert received(link.run(lambda e: isinstance(e, ApplicationData))) == b"POST /rd?ep=openssl\n"
            server.send_application_data(b"2.01 Created\n")
            link.flush()
            out += wait_for(client, b"2.01 Created")
            assert f"Cipher is {cipher}".encode() in out
