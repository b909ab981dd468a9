"""DTLS peers we did not write, as processes on loopback (GnuTLS's ``gnutls-serv``/``gnutls-cli``,
OpenSSL's ``s_server``/``s_client``), and a blocking driver that runs one of our sans-IO
``DtlsConnection`` objects over a real UDP socket against them."""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import IO

import pytest

from lwm2m.tls import ApplicationData, ConnectionClosed, DtlsConnection, DtlsEvent, HandshakeFailure

# GnuTLS priority strings: DTLS 1.2 only, with exactly the suite under test.
GNUTLS_PSK_CCM_8 = "NONE:+VERS-DTLS1.2:+PSK:+AES-128-CCM-8:+AEAD:+SIGN-ALL:+COMP-NULL:+GROUP-ALL"


def program(name: str) -> str:
    """The path of ``name``, or the test is skipped where it is not installed (``make test``
    installs gnutls-bin and openssl)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


class Link:
    """One of our connections on a real UDP socket, talking to ``peer`` (for a server: whoever
    sends the first datagram). :meth:`run` moves datagrams and runs the timers on the real clock."""

    def __init__(
        self, connection: DtlsConnection, sock: socket.socket, peer: tuple[str, int] | None = None
    ) -> None:
        self.connection = connection
        self.sock = sock
        self.peer = peer

    def flush(self) -> None:
        if self.peer is not None:
            for datagram in self.connection.datagrams_to_send(time.monotonic()):
                self.sock.sendto(datagram, self.peer)

    def run(self, on_event: Callable[[DtlsEvent], bool], timeout: float = 10.0) -> list[DtlsEvent]:
        """Until ``on_event`` returns True for an event: every event so far. A handshake failure
        or the timeout fails the test."""
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
            now = time.monotonic()
            timer = connection.get_timer()
            wait = 0.05 if timer is None else max(0.0, min(0.05, timer - now))
            if select.select([self.sock], [], [], wait)[0]:
                data, sender = self.sock.recvfrom(65536)
                self.peer = self.peer or sender
                connection.receive_datagram(data, time.monotonic())
            timer = connection.get_timer()
            if timer is not None and time.monotonic() >= timer:
                connection.handle_timer(time.monotonic())
        pytest.fail(f"no ending event within {timeout} s; events: {events}")


def received(events: list[DtlsEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ApplicationData))


def closed(event: DtlsEvent) -> bool:
    return isinstance(event, ConnectionClosed)


@contextlib.contextmanager
def process(
    argv: list[str], *, ready: bytes | None = None, timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (stdin a pipe, stdout and stderr together); with ``ready``, wait until that
    text appears in its output. Ended (and reaped) on the way out."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if ready is not None:
            wait_for(proc, ready, timeout)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def wait_for(proc: subprocess.Popen[bytes], text: bytes, timeout: float = 10.0) -> bytes:
    """Output of ``proc`` up to and including ``text``; fails the test with what it printed."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or (proc.poll() is not None and not _readable(proc.stdout, 0)):
            pytest.fail(f"{proc.args[0]} never printed {text!r}; it printed {seen[-2000:]!r}")
        if _readable(proc.stdout, min(left, 0.1)):
            chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk and proc.poll() is not None:
                continue
            seen += chunk
    return seen


def _readable(stream: IO[bytes], timeout: float) -> bool:
    return bool(select.select([stream], [], [], timeout)[0])


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock
