"""One UDP socket for many endpoints, each at an IPv4 address of its own: :class:`SharedUdp`.

A process can hold only so many file descriptors (and a host only some 28,000 ephemeral
ports per address), so a simulated fleet of tens of thousands of devices cannot give each a
socket of its own. Here one socket is bound to a port on the wildcard address and each
endpoint takes an address of a local network (``127.0.0.0/8`` is local as a whole on Linux):
what arrives for that address goes to its endpoint (the destination comes with each datagram
through ``IP_PKTINFO``), and what it sends leaves from that address (``IP_PKTINFO`` on
``sendmsg``). On the wire each endpoint is then a peer of its own, ``address:port``, as a
device with a socket of its own is; only the address differs from one to the next instead of
the port. IPv4 on Linux only.

A :class:`SharedRoute` is what one endpoint's :class:`~lwm2m.transport.driver.UdpDriver`
reads and sends through in place of sockets: its ``on_datagram`` is called for every
datagram to its address, and its batch callback once per wake-up of the socket that brought
it some.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable

from lwm2m.transport.reader import DEFAULT_BATCH, MAX_DATAGRAM, OnBatch, OnDatagram

log = logging.getLogger(__name__)

Address = tuple[str, int]  # IPv4 only: (host, port)

# <netinet/in.h> on Linux; the socket module names it only for IPv6.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("@i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_ANCILLARY = socket.CMSG_SPACE(_PKTINFO.size)
SHARED_BUFFER = 4 << 20  # one socket carries the datagrams of thousands of endpoints
MAX_BACKLOG = 16384  # datagrams waiting for the kernel to take them; beyond, dropped as UDP may


def _nothing(data: bytes, addr: Address, now: float) -> None:
    """A route's handler before its driver attaches."""


def _no_batch(now: float) -> None:
    pass


class SharedRoute:
    """One endpoint's address on a :class:`SharedUdp`: a reader (``on_datagram``, ``start``,
    ``close``) and a sender (``send``, ``send_all``) for its driver."""

    __slots__ = ("_key", "_shared", "address", "on_batch", "on_datagram", "pktinfo")

    family = socket.AF_INET

    def __init__(self, shared: SharedUdp, address: str) -> None:
        self._shared = shared
        self._key = socket.inet_aton(address)
        self.address: Address = (address, shared.port)
        self.pktinfo = _PKTINFO.pack(0, self._key, b"\0\0\0\0")
        self.on_datagram: OnDatagram = _nothing
        self.on_batch: OnBatch = _no_batch

    def __repr__(self) -> str:
        return f"<SharedRoute {self.address[0]}:{self.address[1]}>"

    def attach(self, on_datagram: OnDatagram, on_batch: OnBatch) -> None:
        self.on_datagram = on_datagram
        self.on_batch = on_batch

    def start(self) -> None:
        self._shared._routes[self._key] = self

    def close(self) -> None:
        if self._shared._routes.get(self._key) is self:
            del self._shared._routes[self._key]

    @property
    def rng(self) -> random.Random:
        return self._shared.rng

    def getsockname(self) -> Address:
        return self.address

    def send(self, data: bytes, addr: Address) -> None:
        self._shared._send(data, addr, self.pktinfo)

    def send_all(self, datagrams: list[tuple[bytes, Address]]) -> None:
        send = self._shared._send
        pktinfo = self.pktinfo
        for data, addr in datagrams:
            send(data, addr, pktinfo)


class SharedUdp:
    """A UDP socket on ``port`` of every local IPv4 address, whose :meth:`route` hands each
    endpoint an address of ``network`` of its own (the next one not yet handed out).

    ``await SharedUdp.create("127.64.0.0/10")``; :meth:`close` when no endpoint uses it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, network: str) -> None:
        try:
            net = ipaddress.IPv4Network(network)
        except ValueError as exc:
            raise ValueError(f"network {network!r}: {exc}") from None
        self._loop = loop
        self._sock = sock
        self.network = net
        self.port: int = sock.getsockname()[1]
        self._routes: dict[bytes, SharedRoute] = {}
        self._next = int(net.network_address) + (1 if net.num_addresses > 2 else 0)
        self._last = int(net.broadcast_address) - (1 if net.num_addresses > 2 else 0)
        self._buf = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buf)
        self._backlog: deque[tuple[bytes, Address, bytes]] = deque()
        self._writing = False
        self._fd = sock.fileno()
        self.dropped = 0  # datagrams for an address no endpoint holds
        # Message IDs and tokens of the endpoints on this socket (RFC 7252 §4.4, §5.3.1).
        self.rng = random.Random()
        loop.add_reader(self._fd, self._on_readable)

    @classmethod
    async def create(cls, network: str = "127.64.0.0/10", port: int = 0) -> SharedUdp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):  # a lower system limit is fine
                    sock.setsockopt(socket.SOL_SOCKET, opt, SHARED_BUFFER)
            sock.setblocking(False)
            sock.bind(("0.0.0.0", port))
            return cls(asyncio.get_running_loop(), sock, network)
        except BaseException:
            sock.close()
            raise

    def __len__(self) -> int:
        """Routes receiving now."""
        return len(self._routes)

    def route(self) -> SharedRoute:
        """An address of the network no route had before; OSError once they are all handed out."""
        if self._next > self._last:
            raise OSError(f"no address of {self.network} left for another endpoint")
        address = str(ipaddress.IPv4Address(self._next))
        self._next += 1
        return SharedRoute(self, address)

    def _on_readable(self) -> None:
        recv = self._sock.recvmsg_into
        buffers = [self._buf]
        view = self._view
        routes = self._routes
        now = self._loop.time()
        touched: dict[SharedRoute, None] = {}
        for _ in range(DEFAULT_BATCH):
            try:
                n, ancillary, _flags, addr = recv(buffers, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error queued for an earlier send
                log.debug("UDP receive error ignored: %s", exc)
                continue
            route = None
            for level, kind, data in ancillary:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    route = routes.get(data[8:12])
            if route is None:
                self.dropped += 1
                continue
            try:
                route.on_datagram(view[:n].tobytes(), addr, now)
            except Exception:
                log.exception("datagram from %s to %s dropped: handler failed", addr, route)
            touched[route] = None
        for route in touched:
            try:
                route.on_batch(now)
            except Exception:
                log.exception("%s: handling a batch failed", route)

    def _send(self, data: bytes, addr: Address, pktinfo: bytes) -> None:
        if self._writing:
            self._queue(data, addr, pktinfo)
            return
        try:
            self._sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr, pktinfo)
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)
        except OSError as exc:
            log.debug("UDP send to %s failed: %s", addr, exc)

    def _queue(self, data: bytes, addr: Address, pktinfo: bytes) -> None:
        if len(self._backlog) < MAX_BACKLOG:
            self._backlog.append((data, addr, pktinfo))
        else:
            log.warning("UDP send backlog full: datagram to %s dropped", addr)

    def _on_writable(self) -> None:
        backlog = self._backlog
        send: Callable[..., int] = self._sock.sendmsg
        while backlog:
            data, addr, pktinfo = backlog[0]
            try:
                send([data], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("UDP send to %s failed: %s", addr, exc)
            backlog.popleft()
        self._writing = False
        self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._fd = -1
        self._routes.clear()
        self._sock.close()
