"""100,000 random and mutated datagrams at the server's CoAP port; then a normal client
still registers and is read, and the endpoint's state stays within its caps."""

from __future__ import annotations

import asyncio
import random
import socket

from tests.helpers.server import Device, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint

SEEDS = [
    register("victim").replace(mid=7, token=b"tok").encode(),
    Message.build(Type.CON, Code.POST, 9, b"\x01", uri_path="/rd/abc", uri_query=["lt=5"]).encode(),
    Message.build(Type.CON, Code.DELETE, 10, b"", uri_path="/rd/abc").encode(),
    Message.build(
        Type.CON, Code.POST, 11, b"\x02", uri_path="/dp", content_format=112, payload=b"\x81\xa1"
    ).encode(),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif choice < 0.75 and b:
            del b[rng.randrange(len(b)) :]
        else:
            b[rng.randrange(len(b) + 1) : 0] = rng.randbytes(rng.randint(1, 8))
    return bytes(b)


async def test_garbage_does_not_stop_the_server() -> None:
    rng = random.Random(2026)
    async with Server(ServerConfig(port=0)) as server:
        target = ("127.0.0.1", server.port)
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        try:
            for s in senders:
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            for i in range(100_000):
                data = rng.randbytes(rng.randint(0, 64)) if i % 3 == 0 else mutate(rng, rng.choice(SEEDS))
                try:
                    senders[i % 8].sendto(data, target)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                if i % 200 == 0:
                    await asyncio.sleep(0)  # let the server (same loop) keep up
        finally:
            for s in senders:
                s.close()
        await asyncio.sleep(0.2)

        endpoint = server._endpoint
        assert endpoint is not None
        config = endpoint.endpoint.config
        sizes = endpoint.endpoint.state_sizes()
        assert sizes["dedup"] > 1000  # the datagrams did reach the endpoint (well-formed ones are kept)
        assert sizes["dedup"] <= config.max_dedup_entries
        assert sizes["unacked"] <= config.max_pending_requests
        assert sizes["reassembly"] <= config.max_reassembly_buffers
        assert sizes["relations"] <= config.max_observations

        async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as client:
            created = await client.request(register("survivor"), target, timeout=10)
            assert created.code == Code.CREATED
            response = await server.read("survivor", "/3/0/9", timeout=10)
            assert response.code == Code.CONTENT and response.records[0].value == 85
