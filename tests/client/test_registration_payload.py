"""The bytes of our client's Register (LwM2M-TS-Core 1.2 §6.2.1): the root link announces the one
preferred content format as a bare integer, ``ct=112``, as the Core TS's examples do; a quoted list
(``ct="112 110 ..."``) is refused by some servers (Wakaama answers 4.00)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.helpers.ports import free_udp_port

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.coap.message import Message


async def first_register(version: str) -> tuple[bytes, Message]:
    """The first datagram a client sends to a silent server at a raw UDP socket."""
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.setblocking(False)
        client = Client(
            "bytes-1",
            f"coap://127.0.0.1:{port}",
            [ObjectInstance(0, {5700: 1.0}, object_id=3303)],
            config=ClientConfig(lwm2m_version=version),
        )
        await client.start()
        try:
            async with asyncio.timeout(5):
                data, _ = await asyncio.get_running_loop().sock_recvfrom(sock, 2048)
        finally:
            await client.stop()
    return data, Message.decode(data)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_register_payload_announces_one_format_as_a_bare_integer(version: str) -> None:
    data, message = await first_register(version)
    assert message.uri_path == ("rd",) and f"lwm2m={version}" in message.uri_query
    payload = message.payload
    assert data.endswith(b"\xff" + payload)  # the payload is the datagram's tail, byte for byte
    assert payload.startswith(b'</>;rt="oma.lwm2m";ct=112,')
    assert b'ct="' not in payload and b"110" not in payload.split(b",")[0]


async def test_a_1_0_register_has_no_ct() -> None:
    _, message = await first_register("1.0")
    assert b"ct=" not in message.payload and b"oma.lwm2m" not in message.payload
    assert message.payload.startswith(b"</")
