"""Our engine against OpenSSL's command-line tools (Debian ``openssl``), over real loopback
sockets: TLS_PSK_WITH_AES_128_CCM_8 (``PSK-AES128-CCM8``) with keys of 16 and 64 bytes, our
client against ``openssl s_server -dtls1_2`` and ``openssl s_client -dtls1_2`` against our
server, application data both ways."""

from __future__ import annotations

import time

import pytest
from tests.helpers.dtls_peers import answer_upper, ping_s_server, process, program, udp_socket
from tests.helpers.ports import free_udp_port

from lwm2m.tls import (
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
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
    client = DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=key), time.monotonic()
    )
    ping_s_server(argv, client, port)


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

            def check(event: HandshakeComplete) -> None:
                assert event.identity == IDENTITY

            link = answer_upper(server, sock, client, b"hello from openssl\n", check)
            server.close()  # s_client ends on our close_notify
            link.flush()
            client.wait(timeout=10)
            assert server.closed
