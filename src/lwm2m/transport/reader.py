"""Raw non-blocking UDP sockets on an asyncio loop: a reader with a reused buffer, a sender.

Stock asyncio's datagram transport allocates a 256 KiB buffer for every
``recvfrom`` (DESIGN.md, "event loop"); here one buffer per socket is reused
with ``recvfrom_into`` and only the datagram's bytes are copied out. A wake-up
drains every pending datagram (up to ``max_batch``, so that a flood cannot
starve timers and other callbacks) before the batch callback runs once.
Sends go straight to ``sock.sendto``; only when the kernel buffer is full
(EAGAIN) do they queue and wait for the loop to report the socket writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable

from lwm2m.transport.address import Addr

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
DEFAULT_BATCH = 256
_SOCKET_BUFFER = 1 << 20  # room for a burst of some hundreds of datagrams while the loop is busy

OnDatagram = Callable[[bytes, Addr, float], None]
OnBatch = Callable[[float], None]


def bind_udp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (an IPv6 literal gives an IPv6-only socket)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        if family == socket.AF_INET6:
            # Keep IPv4 peers off this socket: they would appear as ::ffff:a.b.c.d,
            # a second name for an address that an IPv4 socket reports as a.b.c.d.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # a lower system limit is fine
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
        sock.setblocking(False)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        # The address in the error (its filename), so that a caller can say which port it was.
        raise OSError(exc.errno, exc.strerror, f"{_show(host)}:{port}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def _show(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_local = threading.local()


def _receive_buffer() -> tuple[bytearray, memoryview]:
    """The receive buffer of this thread, shared by all its readers.

    A datagram is copied out before its handler runs, and one thread reads one
    socket at a time, so readers never overlap in it; a simulator with ten
    thousand sockets keeps one 64 KiB buffer instead of ten thousand.
    """
    shared = getattr(_local, "buffer", None)
    if shared is None:
        buf = bytearray(MAX_DATAGRAM)
        shared = _local.buffer = (buf, memoryview(buf))
    return shared


class DatagramReader:
    """Calls ``on_datagram(data, addr, now)`` for each datagram, then ``on_batch(now)`` per wake-up.

    ``on_datagram`` may be replaced at any time (it is read once per wake-up).
    """

    __slots__ = ("_buf", "_fd", "_loop", "_on_batch", "_sock", "_view", "max_batch", "on_datagram")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_datagram: OnDatagram,
        on_batch: OnBatch,
        *,
        max_batch: int = DEFAULT_BATCH,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = -1
        self.on_datagram = on_datagram
        self._on_batch = on_batch
        self._buf, self._view = _receive_buffer()
        self.max_batch = max_batch

    def start(self) -> None:
        self._fd = self._sock.fileno()
        self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1

    def _on_readable(self) -> None:
        recv = self._sock.recvfrom_into
        buf = self._buf
        view = self._view
        on_datagram = self.on_datagram
        now = self._loop.time()
        got = 0
        for _ in range(self.max_batch):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # An ICMP error queued for an earlier send (ECONNREFUSED, EHOSTUNREACH):
                # it belongs to no datagram we could hand on, and the next read proceeds.
                log.debug("UDP receive error ignored: %s", exc)
                continue
            got += 1
            try:
                on_datagram(view[:n].tobytes(), addr, now)
            except Exception:
                log.exception("datagram from %s dropped: handler failed", addr)
        if got:
            self._on_batch(now)


class DatagramSender:
    """``send(data, addr)`` now if the kernel takes it, else queued until the socket is writable."""

    __slots__ = ("_backlog", "_fd", "_loop", "_sock", "_writing")

    MAX_BACKLOG = 4096  # beyond this, datagrams are dropped: UDP may lose them anyway

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        # Made when the kernel first refuses a datagram, dropped once it has taken them all:
        # an empty deque is 760 bytes, and a simulated device has a sender of its own.
        self._backlog: deque[tuple[bytes, Addr]] | None = None
        self._writing = False

    def send(self, data: bytes, addr: Addr) -> None:
        if self._writing:
            self._queue(data, addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", addr, exc)

    def send_all(self, datagrams: list[tuple[bytes, Addr]]) -> None:
        """``send`` each of ``datagrams`` in order, with one method call for the lot."""
        if self._writing:
            for data, addr in datagrams:
                self._queue(data, addr)
            return
        sendto = self._sock.sendto
        rest = iter(datagrams)
        for data, addr in rest:
            try:
                sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self._queue(data, addr)
                for later, to in rest:
                    self._queue(later, to)
                self._writing = True
                self._loop.add_writer(self._fd, self._on_writable)
                return
            except OSError as exc:
                log.debug("UDP send to %s failed: %s", addr, exc)

    def _queue(self, data: bytes, addr: Addr) -> None:
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        if len(backlog) < self.MAX_BACKLOG:
            backlog.append((data, addr))
        else:
            log.warning("UDP send backlog full: datagram to %s dropped", addr)

    def _on_writable(self) -> None:
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("UDP send to %s failed: %s", addr, exc)
            backlog.popleft()
        self._backlog = None
        self._writing = False
        self._loop.remove_writer(self._fd)

    @property
    def pending(self) -> int:
        return len(self._backlog) if self._backlog is not None else 0

    def close(self) -> None:
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._backlog = None
