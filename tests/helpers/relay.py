"""A UDP relay between a device and a server, like a NAT, whose server end can be moved: the
server sees the device at the relay's public port (``rebind()`` changes it), and ``server`` says
where the device's datagrams go (another node of a cluster once its first is gone). With
``filtering`` it lets in only what comes from ``server``, as a NAT that filters by the remote
address (RFC 4787 §5) or a UDP balancer's session does."""

from __future__ import annotations

import asyncio
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
