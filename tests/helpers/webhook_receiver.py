"""A webhook receiver for tests: a real HTTP/1.1 server (asyncio streams, stdlib only) on a free
loopback port that records every POST and answers the statuses it is told, then 200."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``statuses``: the answers to the first posts (then 200 to every one); ``posts``: what came."""

    statuses: list[int] = field(default_factory=list)
    posts: list[Received] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.posts.append(Received(path, headers, body))
                status = self.statuses.pop(0) if self.statuses else 200
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
                self.arrived.set()
        writer.close()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.posts) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.posts


@contextlib.asynccontextmanager
async def receiver(statuses: list[int] | None = None) -> AsyncIterator[Receiver]:
    got = Receiver(list(statuses or []))
    server = await asyncio.start_server(got.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield got
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)
