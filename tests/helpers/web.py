"""A server with its HTTP API on free ports, an API client and an SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import uvicorn
from tests.helpers.devices import Thermometer
from tests.helpers.openapi import answer_problems, template_of
from tests.helpers.ports import free_tcp_port
from tests.helpers.server import Device, register

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.web.app import create_app


class Gadget:
    """A device with /3/0 (Device) and a thermometer, that also takes writes, discover and attributes."""

    def __init__(self) -> None:
        self.device = Device()
        self.thermometer = Thermometer()
        self.requests: list[Message] = []

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        self.requests.append(msg)
        if msg.uri_path[:1] == ("3303",):
            return self.thermometer(event)
        if msg.code == Code.GET and msg.accept == CF.LINK:
            return Message.build(
                Type.ACK, Code.CONTENT, content_format=CF.LINK, payload=b"</3/0>;pmin=10,</3/0/0>,</3/0/9>"
            )
        if msg.code == Code.PUT:
            return Message.build(Type.ACK, Code.CHANGED)
        return self.device(event)


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[tuple[Server, Gadget, CoapUdpEndpoint]]:
    gadget = Gadget()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
    ):
        answer = await device.request(register("dev-1"), ("127.0.0.1", server.port))
        assert answer.code == Code.CREATED
        yield server, gadget, device


def client_for(server: Server, token: str | None = None, *, app: Any = None) -> httpx.AsyncClient:
    """An API client of ``app`` (the server's API by default) that checks every answer against
    the app's OpenAPI document: a documented status, and a body that matches its schema."""
    if app is None:
        app = create_app(server, api_token=token)
    hooks = {"response": [conforms(app)]}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", event_hooks=hooks)


def conforms(app: Any) -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook: AssertionError for an answer its document does not allow."""
    api = getattr(getattr(app, "state", None), "api", None)
    document = getattr(api, "document", None)

    async def check(response: httpx.Response) -> None:
        path = response.url.path
        if document is None or template_of(document, path) is None:
            return  # not an API operation (the console, a refused URL)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return
        await response.aread()
        method = response.request.method
        problems = answer_problems(document, method, path, response.status_code, response.content)
        assert not problems, (method, str(response.url), response.text[:300], problems)

    return check


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict | None]]:
    """(event name, data) per event; comments come out as (":", None)."""
    name = ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield ":", None
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` on a real uvicorn at a free loopback port; yields its base URL. (httpx's
    ASGITransport buffers whole responses, so an event stream needs a real server.)"""
    port = free_tcp_port()
    http = uvicorn.Server(uvicorn.Config(app, "127.0.0.1", port, log_level="warning"))
    http.config.timeout_graceful_shutdown = 1
    task = asyncio.create_task(http.serve())
    try:
        while not http.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        http.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:  # name what the app's shutdown still waits for, then give up on it
            waiting = [
                f"{t.get_name()}: {''.join(f'{f.f_code.co_filename}:{f.f_lineno} ' for f in t.get_stack())}"
                for t in asyncio.all_tasks()
                if not t.done() and t is not asyncio.current_task()
            ]
            task.cancel()
            raise AssertionError("uvicorn did not stop within 10 s; pending tasks:\n" + "\n".join(waiting))
        task.result()
