"""Interop with aiocoap's DTLS (tinydtls, the ``aiocoap[tinydtls]`` extra) over DTLS-PSK.

aiocoap's tinydtls transport is a client only (PEERS.md: its DTLS server cannot start
requests towards clients), and takes PSKs of at most 18 bytes; so aiocoap registers
with our server over ``coaps://`` as an LwM2M client would, and the server reads the
registration it made. A wrong key fails the handshake; another endpoint's identity gets 4.03.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo

aiocoap = pytest.importorskip("aiocoap")
pytest.importorskip(
    "DTLSSocket",
    reason="aiocoap[tinydtls] did not build here: `make test` tries it (it needs autotools and a C compiler)",
)

KEY = b"tinydtls-key-16b"  # tinydtls refuses PSKs over 18 bytes
OTHER_KEY = b"other-key-16bytes"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server(ServerConfig(port=0, coaps_port=0)) as s:
        await s.security.put(SecurityInfo("tiny-1", "tiny-1-id", KEY))
        await s.security.put(SecurityInfo("tiny-2", "tiny-2-id", OTHER_KEY))
        yield s


async def register(server: Server, identity: str, key: bytes, ep: str) -> object:
    context = await aiocoap.Context.create_client_context()
    try:
        base = f"coaps://127.0.0.1:{server.coaps_port}"
        context.client_credentials.load_from_dict(
            {f"{base}/*": {"dtls": {"psk": {"hex": key.hex()}, "client-identity": {"ascii": identity}}}}
        )
        request = aiocoap.Message(
            code=aiocoap.POST,
            uri=f"{base}/rd?ep={ep}&lt=300&lwm2m=1.1&b=U",
            content_format=40,
            payload=b"</3/0>,</3303/0>",
        )
        return await context.request(request).response
    finally:
        await context.shutdown()


async def test_aiocoap_tinydtls_registers_over_dtls_psk(server: Server) -> None:
    response = await register(server, "tiny-1-id", KEY, "tiny-1")
    assert str(response.code) == "2.01 Created", response  # type: ignore[attr-defined]
    (registration,) = await server.registrations()
    assert registration.endpoint == "tiny-1"
    assert {o.path for o in registration.objects} == {"/3/0", "/3303/0"}


async def test_aiocoap_tinydtls_with_another_endpoints_identity_gets_4_03(server: Server) -> None:
    response = await register(server, "tiny-2-id", OTHER_KEY, "tiny-1")
    assert str(response.code) == "4.03 Forbidden", response  # type: ignore[attr-defined]
    assert await server.registrations() == []


async def test_aiocoap_tinydtls_with_a_wrong_key_does_not_register(server: Server) -> None:
    with pytest.raises(Exception):  # noqa: B017 (aiocoap reports a failed handshake in several ways)
        async with asyncio.timeout(20):
            await register(server, "tiny-1-id", b"wrong-key-16byte", "tiny-1")
    assert await server.registrations() == []
