"""Resumption against a TLS stack we did not write: OpenSSL's ``s_server`` and ``s_client``
(DTLS 1.2, TLS_PSK_WITH_AES_128_CCM_8) over loopback UDP, our engine driven by a small socket
loop in the test. Our client resumes an OpenSSL session by the ticket OpenSSL gave it
(RFC 5077); OpenSSL's client resumes our server's session by id and by our ticket, as its own
"Reused" line says."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.helpers.dtls_engine import IDENTITY, PSK, client_config, events, server_config
from tests.helpers.ports import free_udp_port

from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
)
from lwm2m.tls.state import ResumableSession
from lwm2m.tls.tickets import SessionCache, TicketKeys

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="no openssl command")
CIPHER = "PSK-AES128-CCM8"
HOST = "127.0.0.1"


def _client_session(port: int, session: ResumableSession | None) -> tuple[DtlsConnection, list[object]]:
    # Our client against the server at ``port``: handshake, one line of data, close_notify.
    config = client_config(random=os.urandom)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOST, port))
        sock.settimeout(0.05)
        client = DtlsConnection(DtlsRole.CLIENT, config, time.monotonic(), session=session)
        deadline = time.monotonic() + 10
        while not client.established and not client.closed and time.monotonic() < deadline:
            for datagram in client.datagrams_to_send(time.monotonic()):
                sock.send(datagram)
            try:
                client.receive_datagram(sock.recv(4096), time.monotonic())
            except (TimeoutError, ConnectionRefusedError):
                client.handle_timer(time.monotonic())
        seen = events(client)
        if client.established:
            client.send_application_data(b"hello from our client\n")
            for datagram in client.datagrams_to_send(time.monotonic()):
                sock.send(datagram)
            time.sleep(0.2)  # so that OpenSSL prints the line before the close_notify ends it
            client.close()
        for datagram in client.datagrams_to_send(time.monotonic()):
            sock.send(datagram)
    return client, seen


def test_our_client_resumes_an_openssl_session_by_its_ticket(tmp_path: Path) -> None:
    port = free_udp_port()
    command = [OPENSSL, "s_server", "-dtls1_2", "-accept", f"{HOST}:{port}", "-nocert"]
    command += ["-psk", PSK.hex(), "-cipher", CIPHER, "-naccept", "2"]
    server = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    try:
        time.sleep(0.3)  # until it listens
        first, seen = _client_session(port, None)
        assert seen == [HandshakeComplete(IDENTITY)]
        session = first.session
        assert session is not None and session.ticket  # OpenSSL sent a NewSessionTicket
        second, seen = _client_session(port, session)
        assert seen == [HandshakeComplete(IDENTITY, resumed=True)] and second.resumed
        output, _ = server.communicate(timeout=10)
    finally:
        server.kill()
        server.wait()
    text = output.decode(errors="replace")
    assert "hello from our client" in text
    assert "Reused session-id" in text


def _serve(
    sock: socket.socket, config: ConnectionConfig, client: subprocess.Popen[bytes]
) -> list[tuple[DtlsConnection, bytes]]:
    # Our server, one connection per client address, until the client process ends; each
    # connection with the data it received.
    connections: dict[tuple[str, int], DtlsConnection] = {}
    done: list[tuple[DtlsConnection, bytes]] = []
    sock.settimeout(0.05)
    deadline = time.monotonic() + 10
    while client.poll() is None and time.monotonic() < deadline:
        try:
            data, address = sock.recvfrom(4096)
        except TimeoutError:
            for connection in connections.values():
                connection.handle_timer(time.monotonic())
        else:
            connection = connections.get(address)
            if connection is None or connection.closed:
                name = f"{address[0]}:{address[1]}".encode()
                connection = DtlsConnection(DtlsRole.SERVER, config, time.monotonic(), address=name)
                connections[address] = connection
            connection.receive_datagram(data, time.monotonic())
            for event in events(connection):
                if isinstance(event, ApplicationData):
                    done.append((connection, event.data))
                    # The line arrived: OpenSSL may end (its stdin closes).
                    assert client.stdin is not None
                    client.stdin.close()
        for address, connection in connections.items():
            for datagram in connection.datagrams_to_send(time.monotonic()):
                sock.sendto(datagram, address)
    return done


def _openssl_client(port: int, session_file: Path, resume: bool) -> subprocess.Popen[bytes]:
    command = [OPENSSL, "s_client", "-dtls1_2", "-connect", f"{HOST}:{port}", "-cipher", CIPHER]
    command += ["-psk", PSK.hex(), "-psk_identity", IDENTITY.decode()]
    # Our server does not send renegotiation_info (RFC 5746), which OpenSSL 3 asks for.
    command += ["-legacy_server_connect"]
    command += ["-sess_in" if resume else "-sess_out", str(session_file)]
    pipe = subprocess.PIPE
    client = subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=subprocess.STDOUT)
    assert client.stdin is not None
    client.stdin.write(b"hello from openssl\n")
    client.stdin.flush()
    return client


@pytest.mark.parametrize("by", ["session-id", "ticket"])
def test_openssl_client_resumes_our_servers_session(by: str, tmp_path: Path) -> None:
    if by == "ticket":
        config = server_config(ticket_keys=TicketKeys(os.urandom(32)), cookie_checker=None, random=os.urandom)
    else:
        config = server_config(session_cache=SessionCache(), cookie_checker=None, random=os.urandom)
    session_file = tmp_path / "session.pem"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        outputs = []
        servers = []
        for resume in (False, True):
            client = _openssl_client(port, session_file, resume)
            try:
                servers += _serve(sock, config, client)
                client.wait(timeout=10)
                assert client.stdout is not None
                outputs.append(client.stdout.read().decode(errors="replace"))
            finally:
                client.kill()
                client.wait()
    first, second = outputs
    assert "New, TLSv1.2, Cipher is PSK-AES128-CCM8" in first, first
    assert "Extended master secret: yes" in first
    assert "Reused, TLSv1.2, Cipher is PSK-AES128-CCM8" in second, second
    [(full, line), (resumed, again)] = servers
    assert line == again == b"hello from openssl\n"
    assert not full.resumed and resumed.resumed
