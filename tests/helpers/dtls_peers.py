"""DTLS peers we did not write, as processes on loopback (GnuTLS's ``gnutls-serv``/``gnutls-cli``,
OpenSSL's ``s_server``/``s_client``), and a blocking driver that runs one of our sans-IO
``DtlsConnection`` objects over a real UDP socket against them."""

from __future__ import annotations

import asyncio
import contextlib
import select
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from tests.helpers.ports import free_udp_port

from lwm2m.tls import (
    ApplicationData,
    ConnectionClosed,
    DtlsConnection,
    DtlsEvent,
    HandshakeComplete,
    HandshakeFailure,
)

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
                if self.peer is not None and sender != self.peer:
                    continue  # a stray datagram (a port used a moment ago by another test's peer)
                self.peer = sender
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


async def read_until(
    stream: asyncio.StreamReader, marker: bytes, timeout: float = 10.0, *, line: bool = False
) -> bytes:
    """What ``stream`` gave until ``marker`` appeared (with ``line``: and the end of its line),
    or until it ended."""
    seen = b""
    async with asyncio.timeout(timeout):
        while marker not in seen or (line and b"\n" not in seen[seen.index(marker) :]):
            chunk = await stream.read(4096)
            if not chunk:
                break
            seen += chunk
    return seen


@contextlib.asynccontextmanager
async def aio_process(
    *argv: str, stdin: int = asyncio.subprocess.PIPE
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` under asyncio (stdout and stderr together in one pipe); killed and reaped on
    the way out if it is still running."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def end_input(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    """Close the input of ``proc`` (s_client and gnutls-cli then send close_notify and exit)
    and wait until it ends."""
    assert proc.stdin is not None
    proc.stdin.close()
    async with asyncio.timeout(timeout):
        await proc.wait()


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def ping_s_server(argv: list[str], client: DtlsConnection, port: int, suite: int | None = None) -> None:
    """Our ``client`` against ``openssl s_server`` (``argv``, listening on loopback ``port``):
    the handshake (with ``suite``, when given), a line each way, our close_notify."""
    with process(argv, ready=b"ACCEPT") as server, udp_socket() as sock:
        link = Link(client, sock, ("127.0.0.1", port))
        link.run(lambda event: isinstance(event, HandshakeComplete))
        if suite is not None:
            assert client.cipher_suite == suite
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


def answer_upper(
    server: DtlsConnection,
    sock: socket.socket,
    client: subprocess.Popen[bytes],
    line: bytes,
    check: Callable[[HandshakeComplete], None],
) -> Link:
    """Our ``server`` on ``sock`` against a command-line ``client`` (s_client, gnutls-cli): once
    the handshake is complete (``check`` sees its event), the client sends ``line`` and our
    server answers it in capitals, which the client prints. The link, for the ending."""

    def on_event(event: DtlsEvent) -> bool:
        if isinstance(event, HandshakeComplete):
            check(event)
            assert client.stdin is not None
            client.stdin.write(line)
            client.stdin.flush()
        if isinstance(event, ApplicationData):
            server.send_application_data(event.data.upper())
            return True
        return False

    link = Link(server, sock)
    assert received(link.run(on_event)) == line
    wait_for(client, line.strip().upper())  # the client prints what our server sent back
    return link


def echo_through_gnutls_serv(
    directory: Path,
    identity: bytes,
    key: bytes,
    priority: str,
    client: DtlsConnection,
    check: Callable[[], None],
) -> None:
    """Our PSK ``client`` against ``gnutls-serv --echo`` (knowing ``identity``/``key``, the
    suites of ``priority``): once the handshake is complete (then ``check``), a CoAP GET's
    header comes back echoed; then our close_notify."""
    port = free_udp_port()
    passwords = directory / "psk.txt"
    passwords.write_text(f"{identity.decode()}:{key.hex()}\n")
    argv = [program("gnutls-serv"), "--udp", "-p", str(port), "--echo", "--pskpasswd", str(passwords)]
    with process([*argv, "--priority", priority], ready=b"listening"), udp_socket() as sock:

        def on_event(event: DtlsEvent) -> bool:
            if isinstance(event, HandshakeComplete):
                check()
                client.send_application_data(b"\x40\x01\x12\x34")  # a CoAP GET's header
            return isinstance(event, ApplicationData)

        link = Link(client, sock, ("127.0.0.1", port))
        assert received(link.run(on_event)) == b"\x40\x01\x12\x34"  # echoed by GnuTLS
        client.close()
        link.flush()
