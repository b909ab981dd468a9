"""A UDP relay between a device and a server, like a NAT, whose server end can be moved: the
server sees the device at the relay's public port (``rebind()`` changes it), and ``server`` says
where the device's datagrams go (another node of a cluster once its first is gone). With
``filtering`` it lets in only what comes from ``server``, as a NAT that filters by the remote
address (RFC 4787 §5) or a UDP balancer's session does.

:class:`Sessions` does the same for many devices at one port, as a UDP balancer in front of a
cluster's nodes does: each device gets a session (a socket of its own towards the nodes, so
each device has an address of its own there) that lives as long as the relay, and ``server``
says where every session's datagrams go, moved when a node dies as a balancer's health check
moves them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any


class _Side(asyncio.DatagramProtocol):
    def __init__(self, receive: Any) -> None:
        self.receive = receive

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receive(data, addr)


class Nat:
    """A UDP relay between a device and the server, like a NAT: the server sees the device at
    the relay's public port, which ``rebind()`` changes; datagrams to the old port are lost."""

    def __init__(self, server: tuple[str, int], *, filtering: bool = False) -> None:
        self.server = server
        self.filtering = filtering
        self.filtered = 0  # datagrams from elsewhere than ``server``, dropped (with ``filtering``)
        self.device: Any = None
        self.inside: Any = None
        self.outside: Any = None

    async def start(self) -> Nat:
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_device), local_addr=("127.0.0.1", 0)
        )
        await self.rebind()
        return self

    async def rebind(self) -> None:
        loop = asyncio.get_running_loop()
        old = self.outside
        self.outside, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_server), local_addr=("127.0.0.1", 0)
        )
        if old is not None:
            old.close()

    @property
    def address(self) -> tuple[str, int]:
        """Where the device sends to."""
        return self.inside.get_extra_info("sockname")

    @property
    def public(self) -> tuple[str, int]:
        """Where the server sees the device."""
        return self.outside.get_extra_info("sockname")

    def _from_device(self, data: bytes, addr: Any) -> None:
        self.device = addr
        self.outside.sendto(data, self.server)

    def _from_server(self, data: bytes, addr: Any) -> None:
        if self.filtering and tuple(addr[:2]) != tuple(self.server):
            self.filtered += 1
            return
        if self.device is not None:
            self.inside.sendto(data, self.device)

    def close(self) -> None:
        self.inside.close()
        self.outside.close()


class Sessions:
    """Devices at :attr:`address`, each seen by the nodes at its own session socket; their
    datagrams go to ``server`` (change it to move every session), and whatever comes to a
    session's socket, from any node, goes back to its device."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inside: Any = None
        self._sessions: dict[Any, socket.socket] = {}

    async def start(self) -> Sessions:
        self._loop = asyncio.get_running_loop()
        self._inside, _ = await self._loop.create_datagram_endpoint(
            lambda: _Side(self._from_device), local_addr=("127.0.0.1", 0)
        )
        return self

    @property
    def address(self) -> tuple[str, int]:
        """Where the devices send to."""
        return self._inside.get_extra_info("sockname")

    def _from_device(self, data: bytes, addr: Any) -> None:
        session = self._sessions.get(addr)
        if session is None:
            assert self._loop is not None
            session = self._sessions[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            session.bind(("127.0.0.1", 0))
            session.setblocking(False)
            self._loop.add_reader(session.fileno(), self._from_server, session, addr)
        with contextlib.suppress(OSError):  # the node is gone (an ICMP error reported): lost
            session.sendto(data, self.server)

    def _from_server(self, session: socket.socket, device: Any) -> None:
        while True:
            try:
                data = session.recv(65536)
            except BlockingIOError:
                return
            except OSError:  # an earlier datagram to a node that is gone: nothing to read
                continue
            self._inside.sendto(data, device)

    def close(self) -> None:
        for session in self._sessions.values():
            if self._loop is not None:
                self._loop.remove_reader(session.fileno())
            session.close()
        self._sessions.clear()
        if self._inside is not None:
            self._inside.close()
