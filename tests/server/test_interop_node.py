"""lwm2m-node-lib (npm, installed by the Makefile) registers as a 1.0 client and is read.

Its limits (shared/PEERS.md): it answers single-resource reads in text/plain only
and ignores a Read that asks for TLV, so the Read names the format.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.helpers.server import next_event

from lwm2m.coap.numbers import Code
from lwm2m.model.path import Path as LwPath
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server

PEERS = Path(__file__).resolve().parents[1] / "peers"


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or not (PEERS / "node_modules" / "lwm2m-node-lib").is_dir():
        pytest.fail("lwm2m-node-lib is not installed: run `make test` (npm install in tests/peers)")
    return PEERS / "node_client.js"


async def test_node_client_registers_as_1_0_and_a_single_resource_read_succeeds(node_client: Path) -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        proc = subprocess.Popen(
            ["node", str(node_client), "127.0.0.1", str(server.port), "node-1"],
            cwd=PEERS,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            registered = await next_event(events, ClientRegistered)
            reg = registered.registration
            assert (reg.endpoint, reg.lwm2m_version, reg.object_ids) == ("node-1", "1.0", (3,))
            response = None
            for _ in range(20):  # it starts listening a moment after its Register was answered
                try:
                    response = await server.read("node-1", "/3/0/0", format="text", timeout=1)
                    break
                except TimeoutError:
                    await asyncio.sleep(0.1)
            assert response is not None, "lwm2m-node-lib never answered the Read"
            assert response.code == Code.CONTENT
            assert response.records == (Record(LwPath.parse("/3/0/0"), "node-maker"),)
        finally:
            proc.kill()
            proc.wait()
