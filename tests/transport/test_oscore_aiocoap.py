"""OSCORE (RFC 8613) with aiocoap 0.4.17's implementation as the peer: its client sends protected
requests to our endpoint, our endpoint sends protected requests to its server (OscoreSiteWrapper);
GET, PUT, Observe, the errors of §8.2, and the Echo exchange after a restart (Appendix B.1.2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource as aioresource
import pytest
from aiocoap.oscore import NotAProtectedMessage
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from tests.helpers.oscore import CLIENT, aiocoap_context
from tests.helpers.ports import free_udp_port

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.oscore import OscoreConfig, OscoreContext, OscoreLayer, OscoreReplayWindow
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

pytestmark = pytest.mark.timeout(60)


async def aio_client(tmp_path: Path, config: OscoreConfig, uri: str, **kw: Any) -> aiocoap.Context:
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials[uri] = aiocoap_context(tmp_path / "aio-client", config, **kw)
    return ctx


@pytest.fixture
async def our_server(resources: Any) -> AsyncIterator[CoapUdpEndpoint]:
    layer = OscoreLayer()
    layer.add(OscoreContext(CLIENT.peer()))
    async with open_udp_endpoint("127.0.0.1", 0, handler=resources, oscore=layer) as ep:
        resources.attach(ep)
        yield ep


async def ask(ctx: aiocoap.Context, code: Any, uri: str, **kw: Any) -> aiocoap.Message:
    return await asyncio.wait_for(ctx.request(aiocoap.Message(code=code, uri=uri, **kw)).response, 10)


# --- aiocoap's client, our server -----------------------------------------------------------


async def test_aiocoap_client_reads_and_writes_over_oscore(
    tmp_path: Path, our_server: CoapUdpEndpoint, resources: Any
) -> None:
    ctx = await aio_client(tmp_path, CLIENT, our_server.uri("/*"))
    try:
        response = await ask(ctx, aiocoap.GET, our_server.uri("/small"))
        assert (response.code, response.payload) == (aiocoap.CONTENT, b"hello")
        assert response.opt.content_format == 0  # an inner option, decrypted
        assert (await ask(ctx, aiocoap.PUT, our_server.uri("/new"), payload=b"v")).code == aiocoap.CREATED
        assert resources.values["/new"] == b"v"
        assert (await ask(ctx, aiocoap.GET, our_server.uri("/nothing"))).code == aiocoap.NOT_FOUND
        large = await ask(ctx, aiocoap.GET, our_server.uri("/large"))
        assert large.payload == resources.values["/large"]
    finally:
        await ctx.shutdown()
    # What reached the handler was the inner request, not the outer POST.
    assert [m.code for m in resources.requests[:2]] == [Code.GET, Code.PUT]


async def test_aiocoap_client_observes_over_oscore(
    tmp_path: Path, our_server: CoapUdpEndpoint, resources: Any
) -> None:
    ctx = await aio_client(tmp_path, CLIENT, our_server.uri("/*"))
    try:
        pending = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=our_server.uri("/counter"), observe=0))
        first = await asyncio.wait_for(pending.response, 10)
        assert first.payload == b"0" and first.opt.observe is not None
        notes = aiter(pending.observation)
        for i in range(1, 4):
            resources.set("/counter", b"%d" % i)
            note = await asyncio.wait_for(anext(notes), 10)
            assert note.payload == b"%d" % i
        pending.observation.cancel()
    finally:
        await ctx.shutdown()


async def test_a_wrong_key_gets_an_unprotected_error(tmp_path: Path, our_server: CoapUdpEndpoint) -> None:
    wrong = OscoreConfig(b"another secret", sender_id=b"\x01", recipient_id=b"\x02")
    stranger = OscoreConfig(b"another secret", sender_id=b"\x09", recipient_id=b"\x02")
    expected = (
        (wrong, aiocoap.BAD_REQUEST, b"Decryption failed"),
        (stranger, aiocoap.UNAUTHORIZED, b"Security context not found"),
    )
    for n, (config, code, diagnostic) in enumerate(expected):
        ctx = await aio_client(tmp_path / str(n), config, our_server.uri("/*"))
        try:
            # aiocoap hands the unprotected answer of RFC 8613 §8.2 on in its exception.
            with pytest.raises(NotAProtectedMessage) as exc:
                await ask(ctx, aiocoap.GET, our_server.uri("/small"))
        finally:
            await ctx.shutdown()
        answer = exc.value.plain_message
        assert (answer.code, answer.payload, answer.opt.max_age) == (code, diagnostic, 0)


async def test_aiocoap_client_answers_our_echo_after_a_restart(tmp_path: Path, resources: Any) -> None:
    layer = OscoreLayer()
    restored = OscoreContext(CLIENT.peer(), window=OscoreReplayWindow(initialized=False))
    layer.add(restored)
    async with open_udp_endpoint("127.0.0.1", 0, handler=resources, oscore=layer) as ep:
        ctx = await aio_client(tmp_path, CLIENT, ep.uri("/*"), next_seq=100)
        try:
            response = await ask(ctx, aiocoap.GET, ep.uri("/small"))
        finally:
            await ctx.shutdown()
    assert (response.code, response.payload) == (aiocoap.CONTENT, b"hello")
    assert restored.window.initialized
    assert [m.uri_path_str for m in resources.requests] == ["/small"]  # the first try never reached it


# --- our client, aiocoap's server ------------------------------------------------------------


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


async def aio_server(tmp_path: Path, **kw: Any) -> tuple[aiocoap.Context, dict[str, _Value]]:
    values = {"small": _Value(b"hi"), "counter": _Value(b"0")}
    site = aioresource.Site()
    for name, value in values.items():
        site.add_resource([name], value)
    credentials = aiocoap.credentials.CredentialsMap()
    credentials[":client"] = aiocoap_context(tmp_path / "aio-server", CLIENT.peer(), **kw)
    port = free_udp_port()
    ctx = await aiocoap.Context.create_server_context(
        OscoreSiteWrapper(site, credentials), bind=("127.0.0.1", port), transports=["udp6"]
    )
    ctx.port = port  # type: ignore[attr-defined]
    return ctx, values


async def test_our_client_against_aiocoap_server(tmp_path: Path) -> None:
    server, values = await aio_server(tmp_path)
    peer = ("127.0.0.1", server.port)  # type: ignore[attr-defined]
    layer = OscoreLayer()
    layer.add(OscoreContext(CLIENT), peer=peer)
    try:
        async with open_udp_endpoint("127.0.0.1", 0, oscore=layer) as ep:
            get = Message.build(Type.CON, Code.GET, uri_path="/small")
            response = await ep.request(get, peer, timeout=10)
            assert (response.code, response.payload, response.content_format) == (Code.CONTENT, b"hi", 0)
            put = Message.build(Type.CON, Code.PUT, uri_path="/counter", payload=b"5")
            assert (await ep.request(put, peer, timeout=10)).code == Code.CHANGED
            assert values["counter"].value == b"5"
            async with ep.observe(Message.build(Type.CON, Code.GET, uri_path="/counter"), peer) as obs:
                first = await obs.next(10)
                assert first.payload == b"5" and first.observe is not None
                for i in (6, 7):
                    await ep.request(
                        Message.build(Type.CON, Code.PUT, uri_path="/counter", payload=b"%d" % i),
                        peer,
                        timeout=10,
                    )
                    assert (await obs.next(10)).payload == b"%d" % i
    finally:
        await server.shutdown()


async def test_our_client_answers_aiocoap_echo(tmp_path: Path) -> None:
    server, _ = await aio_server(tmp_path, window_unknown=True)
    peer = ("127.0.0.1", server.port)  # type: ignore[attr-defined]
    layer = OscoreLayer()
    layer.add(OscoreContext(CLIENT), peer=peer)
    try:
        async with open_udp_endpoint("127.0.0.1", 0, oscore=layer) as ep:
            response = await ep.request(
                Message.build(Type.CON, Code.GET, uri_path="/small"), peer, timeout=10
            )
            assert (response.code, response.payload) == (Code.CONTENT, b"hi")
    finally:
        await server.shutdown()
