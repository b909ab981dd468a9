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
    answer_upper,
    closed,
    echo_through_gnutls_serv,
    process,
    program,
    udp_socket,
)

from lwm2m.tls import (
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
    client = DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(psk_identity=identity, psk=key), time.monotonic()
    )

    def check() -> None:
        assert not client.cid_negotiated  # GnuTLS ignores the extension

    echo_through_gnutls_serv(tmp_path, identity, key, GNUTLS_PSK_CCM_8, client, check)


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

            def check(event: HandshakeComplete) -> None:
                assert event.identity == identity

            link = answer_upper(server, sock, cli, b"hello from gnutls\n", check)
            assert cli.stdin is not None
            cli.stdin.close()  # gnutls-cli sends close_notify when its input ends
            link.run(closed)
