"""The server over OSCORE (RFC 8613), with aiocoap's OSCORE as the device: a security entry of
mode oscore, a Register, reads and writes protected both ways, the identity bound to the
endpoint as a DTLS identity is (4.03 otherwise), and the sender sequence numbers stored in the
entry so that a restarted server never reuses a nonce (Appendix B.1.1, B.1.2)."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import aiocoap
import aiocoap.resource as aioresource
import pytest
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from tests.helpers.oscore import CLIENT, SALT, SECRET, aiocoap_context
from tests.helpers.ports import free_udp_port
from tests.helpers.server import next_event

from lwm2m.codec.base import ContentFormat as CF
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage import open_store
from lwm2m.storage.base import OscoreSecrets, SecurityInfo

pytestmark = pytest.mark.timeout(60)

ENTRY = SecurityInfo("osc-1", oscore=OscoreSecrets(SECRET, CLIENT.sender_id, CLIENT.recipient_id, SALT))


class Text(aioresource.Resource):
    def __init__(self, value: bytes) -> None:
        super().__init__()
        self.value = value

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self.value, content_format=int(CF.TEXT))

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)


async def device(tmp_path: FsPath, server_port: int, **kw: Any) -> tuple[aiocoap.Context, Text]:
    """aiocoap as an LwM2M device over OSCORE: one context both registers (client credentials)
    and serves /3/0/0 (behind OscoreSiteWrapper), from the same port."""
    manufacturer = Text(b"Open Mobile Alliance")
    site = aioresource.Site()
    site.add_resource(["3", "0", "0"], manufacturer)
    security = aiocoap_context(tmp_path / "device", CLIENT, **kw)
    credentials = aiocoap.credentials.CredentialsMap()
    credentials[":server"] = security
    ctx = await aiocoap.Context.create_server_context(
        OscoreSiteWrapper(site, credentials),
        bind=("127.0.0.1", free_udp_port()),
        transports=["oscore", "udp6"],
    )
    ctx.client_credentials[f"coap://127.0.0.1:{server_port}/*"] = security
    return ctx, manufacturer


def register(port: int, ep: str) -> aiocoap.Message:
    return aiocoap.Message(
        code=aiocoap.POST,
        uri=f"coap://127.0.0.1:{port}/rd?ep={ep}&lt=120&lwm2m=1.1&b=U",
        content_format=int(CF.LINK),
        payload=b"</3/0>",
    )


async def test_a_device_registers_and_is_read_and_written_over_oscore(tmp_path: FsPath) -> None:
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(ENTRY)
        events = server.events()
        ctx, manufacturer = await device(tmp_path, server.port)
        try:
            created = await ctx.request(register(server.port, "osc-1")).response
            assert created.code == aiocoap.CREATED
            assert (await next_event(events, ClientRegistered)).registration.endpoint == "osc-1"
            read = await server.read("osc-1", "/3/0/0", format="text", timeout=10)
            assert read.records == (Record(Path.parse("/3/0/0"), "Open Mobile Alliance"),)
            await server.write(
                "osc-1", "/3/0/0", [Record(Path.parse("/3/0/0"), "Acme")], format="text", timeout=10
            )
            assert manufacturer.value == b"Acme"
            location = "/".join(created.opt.location_path)
            deregister = aiocoap.Message(
                code=aiocoap.DELETE, uri=f"coap://127.0.0.1:{server.port}/{location}"
            )
            assert (await ctx.request(deregister).response).code == aiocoap.DELETED
        finally:
            await ctx.shutdown()


async def test_plain_coap_and_another_identity_get_4_03(tmp_path: FsPath) -> None:
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(ENTRY)
        other = OscoreSecrets(b"another secret", b"\x07", b"\x08")
        await server.security.put(SecurityInfo("osc-2", oscore=other))
        plain = await aiocoap.Context.create_client_context()
        try:
            refused = await plain.request(register(server.port, "osc-1")).response
            assert refused.code == aiocoap.FORBIDDEN and b"must use OSCORE" in refused.payload
        finally:
            await plain.shutdown()
        ctx, _ = await device(tmp_path, server.port)
        try:
            # osc-1's context registering as osc-2: a valid OSCORE request, the wrong identity.
            refused = await ctx.request(register(server.port, "osc-2")).response
            assert (
                refused.code == aiocoap.FORBIDDEN
                and b"oscore:01 may not act as endpoint 'osc-2'" in refused.payload
            )
        finally:
            await ctx.shutdown()
        assert await server.registrations() == []


async def test_sequence_numbers_are_stored_and_a_restart_asks_for_echo(tmp_path: FsPath) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    async with Server(ServerConfig(port=0), store) as server:
        await server.security.put(ENTRY)
        port = server.port
        ctx, _ = await device(tmp_path, port)
        try:
            assert (await ctx.request(register(port, "osc-1")).response).code == aiocoap.CREATED
            await server.read("osc-1", "/3/0/0", format="text", timeout=10)
            used = server.security.oscore.context("osc-1").sequence.next
        finally:
            await ctx.shutdown()
        stored = (await server.security.get("osc-1")).oscore
        assert stored is not None and stored.sequence > used  # the range in use was stored first
        # The entry put again (as an operator would) keeps the stored limit.
        await server.security.put(ENTRY)
        assert (await server.security.get("osc-1")).oscore.sequence == stored.sequence
    store.close()
    store = open_store(url)
    async with Server(ServerConfig(port=port), store) as again:
        restored = again.security.oscore.context("osc-1")
        assert restored.sequence.next == stored.sequence > used
        assert not restored.window.initialized
        ctx, _ = await device(tmp_path / "2", port, next_seq=50)
        try:
            # The first request is answered with the 4.01 Echo challenge; aiocoap repeats it.
            assert (await ctx.request(register(port, "osc-1")).response).code == aiocoap.CREATED
            assert restored.window.initialized
            read = await again.read("osc-1", "/3/0/0", format="text", timeout=10)
            assert read.records[0].value == "Open Mobile Alliance"
        finally:
            await ctx.shutdown()
    store.close()
