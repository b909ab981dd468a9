"""A scripted LwM2M device on aiocoap (a CoAP stack we did not write) for bootstrap tests.

It sends a Bootstrap-Request (or a Bootstrap-Pack-Request) from its own port and
records every request the bootstrap server sends back, in order, answering
each as told: by default 2.05 with ``discover`` links for a Bootstrap-Discover,
2.04 for writes and Bootstrap-Finish, 2.02 for deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiocoap
import aiocoap.interfaces
from tests.helpers.ports import free_udp_port


@dataclass(frozen=True)
class Seen:
    """One request the bootstrap server sent."""

    method: str  # GET, PUT, POST, DELETE
    path: str  # "/" or "/0/1"
    content_format: int | None
    accept: int | None
    payload: bytes

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


Answer = aiocoap.Message | None  # None: never answer (the exchange times out)


class RecordingDevice(aiocoap.interfaces.Resource):
    def __init__(self, discover: bytes = b'</>;lwm2m="1.2",</0/0>,</1>,</3/0>') -> None:
        super().__init__()
        self.discover = discover
        self.seen: list[Seen] = []
        self.answers: dict[str, Answer] = {}  # "PUT /0/1" -> what to answer instead
        self.finished = asyncio.Event()
        self.changed = asyncio.Event()

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    async def render_to_pipe(self, pipe: Any) -> None:
        await self._render_to_pipe(pipe)

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        path = "/" + "/".join(request.opt.uri_path)
        accept = request.opt.accept
        seen = Seen(
            request.code.name,
            path,
            None if request.opt.content_format is None else int(request.opt.content_format),
            None if accept is None else int(accept),
            bytes(request.payload),
        )
        self.seen.append(seen)
        self.changed.set()
        if seen.line in self.answers:
            answer = self.answers[seen.line]
            if answer is None:
                await asyncio.sleep(3600)  # never answers
            assert answer is not None
            return answer
        if seen.line == "POST /bs":
            self.finished.set()
            return aiocoap.Message(code=aiocoap.CHANGED)
        if seen.method == "GET" and seen.accept == 40:
            return aiocoap.Message(code=aiocoap.CONTENT, content_format=40, payload=self.discover)
        if seen.method == "PUT":
            return aiocoap.Message(code=aiocoap.CHANGED)
        if seen.method == "DELETE":
            return aiocoap.Message(code=aiocoap.DELETED)
        return aiocoap.Message(code=aiocoap.METHOD_NOT_ALLOWED)

    def lines(self) -> list[str]:
        return [s.line for s in self.seen]

    def find(self, line: str) -> Seen:
        return next(s for s in self.seen if s.line == line)


@contextlib.asynccontextmanager
async def aio_device(device: RecordingDevice | None = None) -> AsyncIterator[tuple[RecordingDevice, Any]]:
    """The device and its aiocoap context, bound on a free loopback port."""
    device = device or RecordingDevice()
    ctx = await aiocoap.Context.create_server_context(
        device, bind=("127.0.0.1", free_udp_port()), transports=["udp6"]
    )
    try:
        yield device, ctx
    finally:
        await ctx.shutdown()


async def bootstrap_request(ctx: Any, port: int, query: str) -> aiocoap.Message:
    request = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{port}/bs?{query}")
    return await asyncio.wait_for(ctx.request(request).response, 10)
