"""server_name, max_fragment_length and record_size_limit against peers we did not write, over
real loopback sockets with TLS_PSK_WITH_AES_128_CCM_8: OpenSSL 3.0 (``s_client -servername
-maxfraglen``, ``s_server -servername``; it has no record_size_limit) and GnuTLS 3.7
(``--recordsize``, ``--sni-hostname``; it has no max_fragment_length in DTLS). The records
each side protects are measured on the wire. Python-mbedtls 2.28 has neither extension in its
API, so it is no peer here."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any

import pytest
from tests.helpers.dtls_peers import GNUTLS_PSK_CCM_8, Link, closed, process, program, received, wait_for
from tests.helpers.ports import free_udp_port

from lwm2m.errors import DtlsError
from lwm2m.tls import (
    ApplicationData,
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
    DtlsEvent,
    DtlsRole,
    HandshakeComplete,
)
from lwm2m.tls.record import parse_datagram

KEY = bytes(range(16))
IDENTITY = b"Client_identity"  # what s_server expects unless told otherwise
HOST = "lwm2m.example"
CCM_8_OVERHEAD = 16  # explicit nonce and tag


class RecordingSocket(socket.socket):
    """A UDP socket that notes the plaintext size of every protected record it carries."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.bind(("127.0.0.1", 0))
        self.sizes: dict[str, list[int]] = {"sent": [], "received": []}

    def _note(self, side: str, data: bytes) -> None:
        self.sizes[side] += [len(r.fragment) - CCM_8_OVERHEAD for r in parse_datagram(data) if r.epoch == 1]

    def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, Any]:
        data, sender = super().recvfrom(size, flags)
        self._note("received", data)
        return data, sender

    def sendto(self, data: Any, *args: Any) -> int:
        self._note("sent", bytes(data))
        return super().sendto(data, *args)


def _server(**options: Any) -> DtlsConnection:
    config = ConnectionConfig(
        psk_lookup={IDENTITY: KEY}.get, cookie_checker=CookieChecker(bytes(32)), **options
    )
    return DtlsConnection(DtlsRole.SERVER, config, time.monotonic())


def _client(**options: Any) -> DtlsConnection:
    return DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=KEY, **options), time.monotonic()
    )


def _collect(total: int) -> Any:
    """An on_event that stops once ``total`` bytes of application data came."""
    got = [0]

    def on_event(event: DtlsEvent) -> bool:
        if isinstance(event, ApplicationData):
            got[0] += len(event.data)
        return got[0] >= total

    return on_event


def _line_each_way(link: Link, peer: subprocess.Popen[bytes], line: bytes, answer: bytes) -> None:
    """The peer process sends ``line`` (written to its input), our side answers ``answer``,
    which the peer prints."""
    assert peer.stdin is not None
    peer.stdin.write(line)
    peer.stdin.flush()
    assert received(link.run(_collect(len(line)))) == line
    link.connection.send_application_data(answer)
    link.flush()
    wait_for(peer, answer.strip())


# --- OpenSSL ---------------------------------------------------------------------------------


def test_s_client_names_the_server_and_asks_for_512_byte_fragments() -> None:
    with RecordingSocket() as sock:
        port = sock.getsockname()[1]
        server = _server()
        argv = [program("openssl"), "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-quiet"]
        argv += ["-psk", KEY.hex(), "-psk_identity", IDENTITY.decode(), "-cipher", "PSK-AES128-CCM8"]
        argv += ["-servername", HOST, "-maxfraglen", "512"]
        with process(argv) as client:
            link = Link(server, sock)
            link.run(lambda event: isinstance(event, HandshakeComplete))
            assert server.server_name == HOST
            assert server.max_application_data == 512  # no CID with OpenSSL
            # OpenSSL writes no record over the 512 bytes agreed (a longer line is refused).
            _line_each_way(link, client, b"x" * 511 + b"\n", b"y" * 511 + b"\n")
            assert max(sock.sizes["received"]) <= 512
            with pytest.raises(DtlsError, match="at most 512"):
                server.send_application_data(bytes(513))
            assert max(sock.sizes["sent"]) <= 512
            server.close()
            link.flush()


def test_our_client_asks_s_server_for_1024_byte_fragments() -> None:
    port = free_udp_port()
    argv = [program("openssl"), "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{port}", "-nocert"]
    argv += ["-psk", KEY.hex(), "-cipher", "PSK-AES128-CCM8", "-trace"]
    with process(argv, ready=b"ACCEPT") as server, RecordingSocket() as sock:
        # OpenSSL has no record_size_limit: max_fragment_length is what it takes.
        client = _client(server_name=HOST, record_size_limit=None, max_fragment_length=1024)
        link = Link(client, sock, ("127.0.0.1", port))
        link.run(lambda event: isinstance(event, HandshakeComplete))
        wait_for(server, b"max_fragment_length := 2^10 (1024 bytes)")  # its ServerHello, traced
        assert client.max_application_data == 1024
        with pytest.raises(DtlsError, match="at most 1024"):
            client.send_application_data(bytes(1025))
        client.send_application_data(b"a" * 1023 + b"\n")
        link.flush()
        wait_for(server, b"a" * 1023)
        assert server.stdin is not None
        line = b"z" * 1023 + b"\n"
        server.stdin.write(line)
        server.stdin.flush()
        assert received(link.run(_collect(len(line)))) == line
        assert max(sock.sizes["received"]) <= 1024 and max(sock.sizes["sent"]) == 1024
        client.close()
        link.flush()


# --- GnuTLS ----------------------------------------------------------------------------------


def test_our_client_with_a_512_byte_limit_against_gnutls_serv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # GnuTLS takes no limit below 512: it ignores a client's, and refuses a server's with
    # illegal_parameter (its own policy; RFC 8449 §4 allows down to 64).
    port = free_udp_port()
    passwords = tmp_path / "psk.txt"
    passwords.write_text(f"{IDENTITY.decode()}:{KEY.hex()}\n")
    argv = [program("gnutls-serv"), "--udp", "-p", str(port), "--echo", "--pskpasswd", str(passwords)]
    argv += ["--priority", GNUTLS_PSK_CCM_8, "--recordsize", "1024"]
    with process(argv, ready=b"listening"), RecordingSocket() as sock:
        client = _client(record_size_limit=512)
        link = Link(client, sock, ("127.0.0.1", port))
        link.run(lambda event: isinstance(event, HandshakeComplete))
        # GnuTLS told us its limit (RFC 8449): what one record to it may hold.
        assert client.max_application_data == 1024
        data = bytes(range(256)) * 4
        client.send_application_data(data)
        events = link.run(_collect(len(data)))
        # The echo comes back within our limit of 512, in several records (GnuTLS 3.7 makes
        # them 254 bytes: it keeps to less than the limit).
        assert received(events) == data
        echoed = sock.sizes["received"][1:]
        assert max(echoed) <= 512 and len(echoed) >= 2
        assert max(sock.sizes["sent"]) == 1024
        client.close()
        link.flush()


def test_gnutls_cli_with_a_limit_and_a_name_against_our_server() -> None:
    with RecordingSocket() as sock:
        port = sock.getsockname()[1]
        server = _server(record_size_limit=600)
        argv = [program("gnutls-cli"), "--udp", "-p", str(port), "127.0.0.1", "--priority", GNUTLS_PSK_CCM_8]
        argv += ["--pskusername", IDENTITY.decode(), "--pskkey", KEY.hex()]
        argv += ["--recordsize", "700", "--sni-hostname", HOST]
        with process(argv) as cli:
            link = Link(server, sock)
            link.run(lambda event: isinstance(event, HandshakeComplete))
            assert server.server_name == HOST
            assert server.max_application_data == 700
            _line_each_way(link, cli, b"g" * 599 + b"\n", b"G" * 699 + b"\n")
            assert max(sock.sizes["received"]) <= 600
            assert max(sock.sizes["sent"]) == 700
            with pytest.raises(DtlsError, match="at most 700"):
                server.send_application_data(bytes(701))
            assert cli.stdin is not None
            cli.stdin.close()
            link.run(closed)
