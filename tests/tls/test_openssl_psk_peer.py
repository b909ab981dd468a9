"""Our engine against OpenSSL's command-line tools (Debian ``openssl``), over real loopback
sockets: TLS_PSK_WITH_AES_128_CCM_8 (``PSK-AES128-CCM8``) with keys of 16 and 64 bytes, our
client against ``openssl s_server -dtls1_2`` and ``openssl s_client -dtls1_2`` against our
server, application data both ways."""

from __future__ import annotations

import time

import pytest
from tests.helpers.dtls_peers import Link, process, program, received, udp_socket, wait_for
from tests.helpers.ports import free_udp_port

from lwm2m.tls import (
    ApplicationData,
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
    DtlsEvent,
    DtlsRole,
    HandshakeComplete,
)

KEYS = {"16-byte key": bytes(range(16)), "64-byte key": bytes(range(64))}
IDENTITY = b"Client_identity"  # what s_server expects unless told otherwise


@pytest.mark.parametrize("key", list(KEYS.values()), ids=list(KEYS))
def test_our_client_against_s_server(key: bytes) -> None:
    port = free_udp_port()
    argv = [program("openssl"), "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{port}", "-nocert"]
    argv += ["-psk", key.hex(), "-cipher", "PSK-AES128-CCM8"]
    with process(argv, ready=b"ACCEPT") as server, udp_socket() as sock:
        client = DtlsConnection(
            DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=key), time.monotonic()
        )
        link = Link(client, sock, ("127.0.0.1", port))
        link.run(lambda event: isinstance(event, HandshakeComplete))
        client.send_application_data(b"ping from the device\n")
        link.flush()
        wait_for(server, b"ping from the device")  # s_server prints what it received
        assert server.stdin is not None
        server.stdin.write(b"pong from openssl\n")  # and sends what it reads
        server.stdin.flush()
        events = link.run(lambda event: isinstance(event, ApplicationData))
        assert received(events) == b"pong from openssl\n"
        client.close()
        link.flush()


@pytest.mark.parametrize("key", list(KEYS.values()), ids=list(KEYS))
def test_s_client_against_our_server(key: bytes) -> None:
    with udp_socket() as sock:
        port = sock.getsockname()[1]
        server = DtlsConnection(
            DtlsRole.SERVER,
            ConnectionConfig(psk_lookup={IDENTITY: key}.get, cookie_checker=CookieChecker(bytes(32))),
            time.monotonic(),
        )
        argv = [program("openssl"), "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-quiet"]
        argv += ["-psk", key.hex(), "-psk_identity", IDENTITY.decode(), "-cipher", "PSK-AES128-CCM8"]
        with process(argv) as client:

            def on_event(event: DtlsEvent) -> bool:
                if isinstance(event, HandshakeComplete):
                    assert event.psk_identity == IDENTITY
                    assert client.stdin is not None
                    client.stdin.write(b"hello from openssl\n")
                    client.stdin.flush()
                if isinstance(event, ApplicationData):
                    server.send_application_data(event.data.upper())
                    return True
                return False

            link = Link(server, sock)
            assert received(link.run(on_event)) == b"hello from openssl\n"
            wait_for(client, b"HELLO FROM OPENSSL")
            server.close()  # s_client ends on our close_notify
            link.flush()
            client.wait(timeout=10)
            assert server.closed
