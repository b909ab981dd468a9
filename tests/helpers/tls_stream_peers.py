"""TLS peers over TCP (OpenSSL's ``s_server``/``s_client``, GnuTLS's ``gnutls-serv``/
``gnutls-cli``) against one of our sans-IO connections in stream mode (TLS 1.2, RFC 5246),
driven by a blocking loop over a real loopback TCP socket."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from lwm2m.tls import DtlsConnection, DtlsEvent, HandshakeFailure


class StreamLink:
    """Our stream connection on a connected TCP socket: :meth:`run` moves bytes both ways."""

    def __init__(self, connection: DtlsConnection, sock: socket.socket) -> None:
        self.connection = connection
        self.sock = sock
        self.eof = False

    def flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(
        self, on_event: Callable[[DtlsEvent], bool], timeout: float = 10.0, *, chunk: int = 65536
    ) -> list[DtlsEvent]:
        """Until ``on_event`` returns True for an event: every event so far. A handshake failure,
        the end of the stream or the timeout fails the test. ``chunk`` bounds each read, to
        feed the connection the stream in small pieces."""
        connection, events = self.connection, []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush()
            while (event := connection.next_event()) is not None:
                events.append(event)
                if isinstance(event, HandshakeFailure):
                    pytest.fail(f"the handshake failed: {event.reason}")
                if on_event(event):
                    self.flush()
                    return events
            if self.eof:
                pytest.fail(f"the peer closed the stream; events: {events}")
            if select.select([self.sock], [], [], 0.05)[0]:
                data = self.sock.recv(chunk)
                if not data:
                    self.eof = True
                connection.receive_data(data)
        pytest.fail(f"no ending event within {timeout} s; events: {events}")


@contextlib.contextmanager
def tcp_connect(port: int, timeout: float = 10.0) -> Iterator[socket.socket]:
    """A TCP connection to loopback ``port``, retried while the peer starts listening."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with sock:
        yield sock


@contextlib.contextmanager
def tcp_listener() -> Iterator[socket.socket]:
    """A listening TCP socket on a free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock


def accept(listener: socket.socket, timeout: float = 10.0) -> socket.socket:
    if not select.select([listener], [], [], timeout)[0]:
        pytest.fail("no TCP connection came in")
    sock, _ = listener.accept()
    return sock
