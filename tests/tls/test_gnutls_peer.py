"""Our engine against GnuTLS (Debian ``gnutls-bin``), a DTLS 1.2 implementation we did not write,
over real loopback sockets: TLS_PSK_WITH_AES_128_CCM_8 with keys of 16 and 64 bytes and
identities up to 128 bytes, our client against ``gnutls-serv --udp --echo`` and ``gnutls-cli
--udp`` against our server. GnuTLS does not know Connection IDs: our client offers the
extension and goes on without it (RFC 9146 §3)."""

from __future__ import annotations

import time

import pytest
from tests.helpers.dtls_peers import (
    GNUTLS_PSK_CCM_8,
    Link,
    closed,
    process,
    program,
    received,
    udp_socket,
    wait_for,
)
from tests.helpers.ports import free_udp_port

from lwm2m.tls import (
    ApplicationData,
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
)

KEYS = {
    "16-byte key": (b"dev-1", bytes(range(16))),
    "64-byte key, 128-byte identity": (b"i" * 128, bytes(range(64))),
}


@pytest.mark.parametrize(("identity", "key"), list(KEYS.values()), ids=list(KEYS))
def test_our_client_against_gnutls_serv(tmp_path, identity: bytes, key: bytes) -> None:  # type: ignore[no-untyped-def]
    port = free_udp_port()
    passwords = tmp_path / "psk.txt"
    passwords.write_text(f"{identity.decode()}:{key.hex()}\n")
    argv = [program("gnutls-serv"), "--udp", "-p", str(port), "--echo", "--pskpasswd", str(passwords)]
    with process([*argv, "--priority", GNUTLS_PSK_CCM_8], ready=b"listening"), udp_socket() as sock:
        client = DtlsConnection(
            DtlsRole.CLIENT, ConnectionConfig(psk_identity=identity, psk=key), time.monotonic()
        )

        def on_event(event: object) -> bool:
            if isinstance(event, HandshakeComplete):
                assert not client.cid_negotiated  # GnuTLS ignores the extension
                client.send_application_data(b"\x40\x01\x12\x34")  # a CoAP GET's header
            return isinstance(event, ApplicationData)

        link = Link(client, sock, ("127.0.0.1", port))
        assert received(link.run(on_event)) == b"\x40\x01\x12\x34"  # echoed by GnuTLS
        client.close()
        link.flush()


@pytest.mark.parametrize(("identity", "key"), list(KEYS.values()), ids=list(KEYS))
def test_gnutls_cli_against_our_server(identity: bytes, key: bytes) -> None:
    keys = {identity: key}
    with udp_socket() as sock:
        port = sock.getsockname()[1]
        server = DtlsConnection(
            DtlsRole.SERVER,
            ConnectionConfig(psk_lookup=keys.get, cookie_checker=CookieChecker(bytes(32))),
            time.monotonic(),
        )
        argv = [program("gnutls-cli"), "--udp", "-p", str(port), "127.0.0.1", "--priority", GNUTLS_PSK_CCM_8]
        with process([*argv, "--pskusername", identity.decode(), "--pskkey", key.hex()]) as cli:

            def on_event(event: object) -> bool:
                if isinstance(event, HandshakeComplete):
                    assert event.psk_identity == identity
                    assert cli.stdin is not None
                    cli.stdin.write(b"hello from gnutls\n")
                    cli.stdin.flush()
                if isinstance(event, ApplicationData):
                    server.send_application_data(event.data.upper())
                    return True
                return False

            link = Link(server, sock)
            assert received(link.run(on_event)) == b"hello from gnutls\n"
            wait_for(cli, b"HELLO FROM GNUTLS")  # gnutls-cli prints what our server sent back
            assert cli.stdin is not None
            cli.stdin.close()  # gnutls-cli sends close_notify when its input ends
            link.run(closed)
