"""OpenSSL (``openssl s_server -dtls1_2`` and ``s_client``) as an ECDHE-ECDSA peer we did not
write, over loopback UDP: mutual X.509 authentication with CCM_8 and GCM, data both ways."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.helpers.certificates import CertificateAuthority, pem_files
from tests.helpers.ports import free_udp_port

from lwm2m.tls.connection import (
    TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ApplicationData,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
)
from lwm2m.tls.cookies import CookieChecker

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="no openssl binary")
SUITES = pytest.mark.parametrize(
    ("suite", "cipher"),
    [
        (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, "ECDHE-ECDSA-AES128-CCM8"),
        (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ],
    ids=["CCM_8", "GCM"],
)
HOST = "lwm2m.example"
ENDPOINT = "urn:imei:490154203237518"
CA = CertificateAuthority("OpenSSL test CA")
SERVER = CA.issue(HOST, dns_names=(HOST,), usage="server")
CLIENT = CA.issue(ENDPOINT)


def _stop(process: subprocess.Popen[bytes], command: bytes = b"") -> str:
    # ``command`` (s_server's "Q" line) lets the process end by itself, flushing its output;
    # a signal is the fallback.
    try:
        out, _ = process.communicate(command, timeout=5)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    return out.decode(errors="replace")


def _drive(
    connection: DtlsConnection, sock: socket.socket, peer: tuple[str, int] | None, seconds: float
) -> None:
    # Carry datagrams between the connection and the socket until established or failed.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not connection.established and not connection.closed:
        now = time.monotonic()
        for datagram in connection.datagrams_to_send(now):
            assert peer is not None
            sock.sendto(datagram, peer)
        try:
            data, peer = sock.recvfrom(65536)
            connection.receive_datagram(data, time.monotonic())
        except TimeoutError:
            pass
        timer = connection.get_timer()
        if timer is not None and timer <= time.monotonic():
            connection.handle_timer(time.monotonic())
    for datagram in connection.datagrams_to_send(time.monotonic()):
        assert peer is not None
        sock.sendto(datagram, peer)


def _line_from_openssl(
    process: subprocess.Popen[bytes], sock: socket.socket, ours: DtlsConnection, line: bytes
) -> None:
    # OpenSSL sends each line of its input as one record: ours receives it.
    assert process.stdin is not None
    process.stdin.write(line)
    process.stdin.flush()
    sock.settimeout(5.0)
    ours.receive_datagram(sock.recv(65536), time.monotonic())
    assert ours.next_event() == ApplicationData(line)


@SUITES
def test_our_client_against_openssl_s_server(suite: int, cipher: str, tmp_path: Path) -> None:
    files = pem_files(tmp_path, CA, SERVER, CLIENT)
    port = free_udp_port()
    assert OPENSSL is not None
    command = [OPENSSL, "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{port}", "-cert", files["server"]]
    command += ["-key", files["server_key"], "-CAfile", files["ca"], "-Verify", "1", "-cipher", cipher]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        time.sleep(0.5)  # s_server binds its port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            credentials = CLIENT.credentials(trust_anchors=(CA.certificate,), expected_name=HOST)
            client = DtlsConnection(
                DtlsRole.CLIENT, ConnectionConfig(certificate=credentials), time.monotonic()
            )
            _drive(client, sock, ("127.0.0.1", port), 10.0)
            assert client.established and client.cipher_suite == suite
            event = client.next_event()
            assert isinstance(event, HandshakeComplete) and event.peer is not None and event.peer.name == HOST
            client.send_application_data(b"POST /rd?ep=ours\n")
            for datagram in client.datagrams_to_send(time.monotonic()):
                sock.sendto(datagram, ("127.0.0.1", port))
            _line_from_openssl(process, sock, client, b"2.01 Created\n")
            time.sleep(0.2)  # s_server prints what it received before it reads the next line
    finally:
        out = _stop(process, b"Q\n")
    assert f"CIPHER is {cipher}" in out
    assert "POST /rd?ep=ours" in out
    assert f"CN = {ENDPOINT}" in out  # s_server took our client certificate


@SUITES
def test_openssl_s_client_against_our_server(suite: int, cipher: str, tmp_path: Path) -> None:
    files = pem_files(tmp_path, CA, SERVER, CLIENT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        port = sock.getsockname()[1]
        assert OPENSSL is not None
        command = [OPENSSL, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-cert", files["client"]]
        command += ["-key", files["client_key"], "-CAfile", files["ca"], "-verify_return_error"]
        command += ["-verify_hostname", HOST, "-cipher", cipher]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            config = ConnectionConfig(
                certificate=SERVER.credentials(trust_anchors=(CA.certificate,)),
                cookie_checker=CookieChecker(b"a cookie secret of 32 bytes ...."),
            )
            # The first datagram gives the client's address; the server keeps nothing before it.
            sock.settimeout(10.0)
            first, peer = sock.recvfrom(65536)
            sock.settimeout(0.1)
            server = DtlsConnection(DtlsRole.SERVER, config, time.monotonic(), address=repr(peer).encode())
            server.receive_datagram(first, time.monotonic())
            _drive(server, sock, peer, 10.0)
            assert server.established and server.cipher_suite == suite
            assert server.peer_identity == ENDPOINT.encode()
            assert isinstance(server.next_event(), HandshakeComplete)
            _line_from_openssl(process, sock, server, b"POST /rd?ep=openssl\n")
            server.send_application_data(b"2.01 Created\n")
            for datagram in server.datagrams_to_send(time.monotonic()):
                sock.sendto(datagram, peer)
            time.sleep(0.3)
        finally:
            out = _stop(process)
    assert f"Cipher is {cipher}" in out
    assert "Verification: OK" in out
    assert "2.01 Created" in out
