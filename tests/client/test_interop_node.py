"""Our Client (as LwM2M 1.0) against lwm2m-node-lib's server (npm, installed by the Makefile).

tests/peers/node_server.js runs the lwm2m-node-lib server, prints a JSON line
for each thing it sees and reads a resource when told on stdin. Two of its
quirks are handled there (see the script): it answers a Register with one
Location-Path option "rd/1", and its Read sends no Accept unless configured,
then cannot make sense of the TLV a 1.0 client answers without one; the script
is given ``text/plain`` (its LWM2M_DEFAULT_ACCEPT_FORMAT setting).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.ports import free_udp_port

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message

PEERS = Path(__file__).resolve().parents[1] / "peers"
SCRIPT = PEERS / "node_server.js"


class NodeServer:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    async def next(self, event: str, timeout: float = 10) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"the node server ended while waiting for {event!r}")
                seen = json.loads(line)
                if seen["event"] == event:
                    return seen
                assert seen["event"] != "error", seen

    async def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def read(self, endpoint: str, path: str) -> dict[str, Any]:
        await self.command(f"read {endpoint} {path.strip('/').replace('/', ' ')}")
        return await self.next("read")


@pytest.fixture
async def node_server() -> AsyncIterator[NodeServer]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (`make test` needs Node.js for the lwm2m-node-lib peer)")
    if not (PEERS / "node_modules" / "lwm2m-node-lib").is_dir():
        pytest.skip("lwm2m-node-lib is not installed: `make test` runs npm install in tests/peers")
    port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        str(port),
        "text/plain",
        cwd=PEERS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    server = NodeServer(proc, port)
    try:
        assert (await server.next("ready"))["port"] == port
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_node_server_registers_a_1_0_client_and_reads_a_resource(node_server: NodeServer) -> None:
    requests: list[tuple[RequestReceived, Message]] = []
    temperature = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
    client = Client(
        "node-dev",
        f"coap://127.0.0.1:{node_server.port}",
        objects=[temperature],
        on_request=lambda event, answer: requests.append((event, answer)),
        config=ClientConfig(lifetime=60, lwm2m_version="1.0"),
    )
    async with client:
        await client.wait_registered(5)
        registration = await node_server.next("registration")
        assert registration["endpoint"] == "node-dev"
        assert registration["version"] == "1.0"
        assert (registration["lifetime"], registration["binding"]) == ("60", "U")
        listed = {link.split(";")[0] for link in registration["payload"].split(",")}
        assert {"</1/0>", "</3/0>", "</3303/0>"} <= listed
        assert client.location == "1"

        read = await node_server.read("node-dev", "/3303/0/5700")
        assert read.get("error") is None, read
        assert float(read["value"]) == 21.5
        ((event, answer),) = requests
        assert event.message.uri_path == ("3303", "0", "5700") and event.message.accept == 0
        assert answer.code == 0x45 and answer.content_format == 0  # 2.05 in text/plain

        temperature.set(5700, -3.25)
        read = await node_server.read("node-dev", "/3303/0/5700")
        assert float(read["value"]) == -3.25
        read = await node_server.read("node-dev", "/3/0/0")
        assert read["value"] == "lwm2m"
        read = await node_server.read("node-dev", "/3303/0/5601")  # a resource the client lacks
        assert read["code"] == "4.04", read
    assert (await node_server.next("unregistration"))["endpoint"] == "node-dev"
