"""Interop with aiocoap 0.4.17: its client against our server, our client against its server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as aioresource
import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint


@pytest.fixture
async def aio_client() -> AsyncIterator[aiocoap.Context]:
    ctx = await aiocoap.Context.create_client_context()
    try:
        yield ctx
    finally:
        await ctx.shutdown()


@pytest.fixture
async def our_server(resources: Any) -> AsyncIterator[CoapUdpEndpoint]:
    async with open_udp_endpoint("127.0.0.1", 0, handler=resources) as ep:
        resources.attach(ep)
        yield ep


# --- aiocoap's client, our server --------------------------------------------------------------


async def test_aiocoap_get(aio_client: aiocoap.Context, our_server: CoapUdpEndpoint) -> None:
    request = aiocoap.Message(code=aiocoap.GET, uri=our_server.uri("/small"))
    response = await asyncio.wait_for(aio_client.request(request).response, 10)
    assert response.code == aiocoap.CONTENT
    assert response.payload == b"hello"
    missing = aiocoap.Message(code=aiocoap.GET, uri=our_server.uri("/nothing"))
    assert (await asyncio.wait_for(aio_client.request(missing).response, 10)).code == aiocoap.NOT_FOUND


async def test_aiocoap_put_block1(
    aio_client: aiocoap.Context, our_server: CoapUdpEndpoint, resources: Any
) -> None:
    body = bytes(range(256)) * 12  # 3 KiB: aiocoap sends it in Block1 pieces
    request = aiocoap.Message(code=aiocoap.PUT, uri=our_server.uri("/upload"), payload=body)
    response = await asyncio.wait_for(aio_client.request(request).response, 10)
    assert response.code == aiocoap.CREATED
    assert resources.values["/upload"] == body
    assert any(m.block1 is not None for m in resources.requests) is False  # reassembled before the handler


async def test_aiocoap_get_block2(
    aio_client: aiocoap.Context, our_server: CoapUdpEndpoint, resources: Any
) -> None:
    request = aiocoap.Message(code=aiocoap.GET, uri=our_server.uri("/large"))
    response = await asyncio.wait_for(aio_client.request(request).response, 10)
    assert response.code == aiocoap.CONTENT
    assert response.payload == resources.values["/large"]


async def test_aiocoap_observe(
    aio_client: aiocoap.Context, our_server: CoapUdpEndpoint, resources: Any
) -> None:
    request = aiocoap.Message(code=aiocoap.GET, uri=our_server.uri("/counter"), observe=0)
    pending = aio_client.request(request)
    first = await asyncio.wait_for(pending.response, 10)
    assert first.payload == b"0" and first.opt.observe is not None
    seen: list[bytes] = []
    notifications = aiter(pending.observation)
    for i in range(1, 4):
        resources.set("/counter", b"%d" % i)
        note = await asyncio.wait_for(anext(notifications), 10)
        seen.append(note.payload)
    assert seen == [b"1", b"2", b"3"]
    pending.observation.cancel()
    # aiocoap deregisters (GET with Observe=1) or rejects the next notification: either way
    # the relation goes.
    for _ in range(200):
        resources.set("/counter", b"x")
        await asyncio.sleep(0.02)
        if not our_server.endpoint.observations():
            break
    assert our_server.endpoint.observations() == []


# --- our client, aiocoap's server ----------------------------------------------------------------


class _Value(aioresource.ObservableResource):
    def __init__(self, value: bytes) -> None:
        super().__init__()
        self.value = value

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self.value, content_format=0)

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        self.value = request.payload
        self.updated_state()
        return aiocoap.Message(code=aiocoap.CHANGED)


@pytest.fixture
async def aio_server(udp_port: int) -> AsyncIterator[tuple[tuple[str, int], dict[str, _Value]]]:
    resources = {
        "small": _Value(b"from aiocoap"),
        "large": _Value(b"".join(b"%05d " % i for i in range(700))),  # 4.2 KiB
        "sink": _Value(b""),
    }
    site = aioresource.Site()
    for name, res in resources.items():
        site.add_resource([name], res)
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", udp_port), transports=["udp6"])
    try:
        yield ("127.0.0.1", udp_port), resources
    finally:
        await ctx.shutdown()


def get(path: str, **kw: Any) -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path, **kw)


async def test_our_client_get_and_block2(aio_server: Any) -> None:
    addr, res = aio_server
    async with open_udp_endpoint() as client:
        small = await client.request(get("/small"), addr, timeout=10)
        assert small.code == Code.CONTENT and small.payload == b"from aiocoap"
        large = await client.request(get("/large"), addr, timeout=10)
        assert large.code == Code.CONTENT and large.payload == res["large"].value


async def test_our_client_put_block1(aio_server: Any) -> None:
    addr, res = aio_server
    body = b"abcdefghij" * 300
    async with open_udp_endpoint() as client:
        put = Message.build(Type.CON, Code.PUT, uri_path="/sink", content_format=0, payload=body)
        response = await client.request(put, addr, timeout=10)
        assert response.code == Code.CHANGED
        assert res["sink"].value == body


async def test_our_client_observes_aiocoap(aio_server: Any) -> None:
    addr, res = aio_server
    async with open_udp_endpoint() as client, client.observe(get("/small"), addr) as obs:
        assert (await obs.next(timeout=10)).payload == b"from aiocoap"
        for i in range(3):
            res["small"].value = b"v%d" % i
            res["small"].updated_state()
            assert (await obs.next(timeout=10)).payload == b"v%d" % i


async def test_aiocoap_client_command(our_server: CoapUdpEndpoint, resources: Any) -> None:
    """The ``aiocoap-client`` script, as a user would run it against our server."""
    script = Path(sys.executable).with_name("aiocoap-client")
    if not script.exists():
        pytest.fail(f"aiocoap-client is missing beside {sys.executable}: install the test extra")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # PEERS.md: its output is buffered in a pipe
    proc = await asyncio.create_subprocess_exec(
        str(script),
        "-m",
        "PUT",
        "--payload",
        "via the CLI",
        "--content-format",
        "text/plain; charset=utf-8",
        our_server.uri("/cli"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert resources.values["/cli"] == b"via the CLI"
    proc = await asyncio.create_subprocess_exec(
        str(script),
        our_server.uri("/text"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.rstrip(b"\n") == resources.values["/text"].rstrip(b"\n")
