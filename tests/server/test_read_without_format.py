"""A Read the user asks no format for: no Accept for an LwM2M 1.0 client, which then answers in
the format it chooses, decoded by its Content-Format (LwM2M 1.0 TS §6.4); a 1.1+ client gets the
server's preferred format. Against lwm2m-node-lib (it never answers a Read asking for TLV) and a
raw UDP device whose requests are read byte for byte."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from tests.helpers.server import next_event

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.model.path import Path as LwPath
from lwm2m.model.record import Record
from lwm2m.protocol.management import ReadRequest
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server

PEERS = Path(__file__).resolve().parents[1] / "peers"


def test_a_read_without_format_carries_no_accept_option() -> None:
    message = ReadRequest(LwPath.parse("/3/0/0")).to_message()
    assert all(number != OptionNumber.ACCEPT for number, _ in message.options)
    asked = ReadRequest(LwPath.parse("/3/0/0"), CF.TLV).to_message()
    assert (OptionNumber.ACCEPT, int(CF.TLV).to_bytes(2, "big")) in asked.options


class RawDevice:
    """A device on a plain UDP socket: registers, then answers each GET with ``answer``."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.requests: list[Message] = []

    async def register(self, server_port: int) -> None:
        register = Message.build(
            Type.CON,
            Code.POST,
            0x1234,
            b"\x01",
            uri_path=["rd"],
            uri_query=["ep=raw-" + self.version.replace(".", ""), f"lwm2m={self.version}", "lt=60"],
            content_format=CF.LINK,
            payload=b"</3/0>",
        )
        await asyncio.get_running_loop().sock_sendto(self.sock, register.encode(), ("127.0.0.1", server_port))

    async def serve(self, answer: tuple[int | None, bytes]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await loop.sock_recvfrom(self.sock, 2048)
            message = Message.decode(data)
            if message.code == Code.GET:
                self.requests.append(message)
                fmt, payload = answer
                reply = Message.build(
                    Type.ACK, Code.CONTENT, message.mid, message.token, content_format=fmt, payload=payload
                )
                await loop.sock_sendto(self.sock, reply.encode(), addr)


@pytest.mark.parametrize(
    ("version", "accept", "answer", "value"),
    [
        ("1.0", None, (int(CF.TEXT), b"raw-maker"), "raw-maker"),
        ("1.0", None, (None, b"no-format"), "no-format"),  # no Content-Format: text/plain
        ("1.0", None, (int(CF.TLV), bytes([0xC3, 0x00]) + b"tlv"), "tlv"),
        ("1.1", int(CF.SENML_CBOR), (int(CF.TEXT), b"text-anyway"), "text-anyway"),
    ],
)
async def test_no_format_asked_means_no_accept_for_1_0_and_any_answer_is_decoded(
    version: str, accept: int | None, answer: tuple[int | None, bytes], value: str
) -> None:
    device = RawDevice(version)
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        events = server.events()
        await device.register(server.port)
        await next_event(events, ClientRegistered)
        serving = asyncio.get_running_loop().create_task(device.serve(answer))
        try:
            response = await server.read(f"raw-{version.replace('.', '')}", "/3/0/0", timeout=5)
        finally:
            serving.cancel()
            device.sock.close()
        (request,) = device.requests
        assert request.accept == accept
        assert response.code == Code.CONTENT
        assert response.records == (Record(LwPath.parse("/3/0/0"), value),)


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or not (PEERS / "node_modules" / "lwm2m-node-lib").is_dir():
        pytest.fail("lwm2m-node-lib is not installed: run `make test` (npm install in tests/peers)")
    return PEERS / "node_client.js"


async def test_lwm2m_node_lib_answers_a_read_that_names_no_format(node_client: Path) -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        proc = subprocess.Popen(
            ["node", str(node_client), "127.0.0.1", str(server.port), "node-nofmt"],
            cwd=PEERS,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            reg = (await next_event(events, ClientRegistered)).registration
            assert reg.lwm2m_version == "1.0"
            response = None
            for _ in range(20):  # it starts listening a moment after its Register was answered
                try:
                    response = await server.read("node-nofmt", "/3/0/0", timeout=1)
                    break
                except TimeoutError:
                    await asyncio.sleep(0.1)
            assert response is not None, "lwm2m-node-lib never answered the Read"
            assert response.code == Code.CONTENT and response.content_format in (None, int(CF.TEXT))
            assert response.records == (Record(LwPath.parse("/3/0/0"), "node-maker"),)
        finally:
            proc.kill()
            proc.wait()
