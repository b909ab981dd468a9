"""The client side of the Bootstrap Interface (LwM2M-TS-Core 1.2 §6.1) against a scripted bootstrap
server: what it answers to each operation, the check on Bootstrap-Finish, and that a failed session
leaves no half-applied state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import parse_links
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.bootstrap import (
    BootstrapDeleteRequest,
    BootstrapDiscoverRequest,
    BootstrapFinishRequest,
    BootstrapReadRequest,
    BootstrapWriteRequest,
)
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

P = Path.parse
MODELS = load_catalogue()


class ScriptedBootstrap:
    """A bootstrap server whose every step the test sends itself."""

    def __init__(self, ep: CoapUdpEndpoint) -> None:
        self.ep = ep
        self.requests: asyncio.Queue[RequestReceived] = asyncio.Queue()
        self.client: Any = None
        self.pack: bytes | None = None  # the answer to a Bootstrap-Pack-Request

    @property
    def uri(self) -> str:
        return self.ep.uri()

    def on_request(self, event: RequestReceived) -> Message:
        if event.message.uri_path == ("bspack",) and self.pack is not None:
            self.requests.put_nowait(event)
            return Message.build(Type.ACK, Code.CONTENT, content_format=CF.SENML_CBOR, payload=self.pack)
        if event.message.uri_path == ("bs",):
            self.client = event.addr
            self.requests.put_nowait(event)
            return Message.build(Type.ACK, Code.CHANGED)
        return Message.build(Type.ACK, Code.NOT_FOUND)

    async def next_request(self, timeout: float = 5.0) -> RequestReceived:
        async with asyncio.timeout(timeout):
            return await self.requests.get()

    async def code(self, request: Any) -> int:
        return int((await self.send(request)).code)

    async def send(self, request: Any) -> Message:
        message = request.to_message(MODELS) if not isinstance(request, Message) else request
        return await self.ep.request(message, self.client, timeout=5)


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[ScriptedBootstrap]:
    bs = ScriptedBootstrap.__new__(ScriptedBootstrap)
    async with open_udp_endpoint("127.0.0.1", 0, handler=lambda e: bs.on_request(e)) as ep:
        ScriptedBootstrap.__init__(bs, ep)
        yield bs


def security(iid: int, uri: str, ssid: int) -> tuple[Record, ...]:
    base = P(f"/0/{iid}")
    values = [(0, uri), (1, False), (2, 3), (3, b""), (4, b""), (5, b""), (10, ssid)]
    return tuple(Record(base.child(rid), v) for rid, v in values)


def server(iid: int, ssid: int, lifetime: int = 60) -> tuple[Record, ...]:
    base = P(f"/1/{iid}")
    return tuple(Record(base.child(rid), v) for rid, v in [(0, ssid), (1, lifetime), (6, True), (7, "U")])


def put(path: str, fmt: int, payload: bytes) -> Message:
    return Message.build(Type.CON, Code.PUT, uri_path=path, content_format=fmt, payload=payload)


def temperature() -> ObjectInstance:
    return ObjectInstance(0, {5700: 21.5}, object_id=3303)


def links(answer: Message) -> dict[str, dict[str, str | None]]:
    return {link.target: dict(link.attributes) for link in parse_links(answer.payload)}


async def test_every_operation_of_a_session_is_answered() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as lwm2m, scripted() as bs:
        events = lwm2m.events()
        async with Client("scripted", bootstrap=bs.uri, objects=[temperature()]) as client:
            request = (await bs.next_request()).message
            assert request.code == Code.POST and request.uri_query == ("ep=scripted", "pct=112")

            answer = await bs.send(BootstrapDiscoverRequest())
            assert answer.code == Code.CONTENT and answer.content_format == CF.LINK
            found = links(answer)
            assert found["/"] == {"lwm2m": "1.2"}
            assert found["/0/0"] == {}  # the bootstrap account: no ssid, no uri
            assert "/1" in found and "/3/0" in found and "/3303/0" in found

            assert (
                await bs.send(BootstrapWriteRequest(P("/0/1"), security(1, lwm2m.uri, 101)))
            ).code == Code.CHANGED
            assert (
                await bs.send(BootstrapWriteRequest(P("/1/0"), server(0, 101), CF.TLV))
            ).code == Code.CHANGED
            on_security = links(await bs.send(BootstrapDiscoverRequest(P("/0"))))
            assert on_security["/0/1"] == {"ssid": "101", "uri": lwm2m.uri}
            assert links(await bs.send(BootstrapDiscoverRequest(P("/1"))))["/1/0"] == {"ssid": "101"}

            read = await bs.send(BootstrapReadRequest(P("/1/0"), CF.SENML_CBOR))
            assert read.code == Code.CONTENT
            values = {
                r.path.ids[2]: r.value
                for r in get_codec(CF.SENML_CBOR).decode(read.payload, P("/1/0"), MODELS)
            }
            assert values[0] == 101 and values[1] == 60
            assert (
                await bs.send(Message.build(Type.CON, Code.GET, uri_path="/0/1"))
            ).code == Code.BAD_REQUEST
            execute = Message.build(Type.CON, Code.POST, uri_path="/1/0/8")
            assert await bs.code(execute) == Code.METHOD_NOT_ALLOWED

            assert (
                await bs.send(BootstrapDeleteRequest(P("/0/0")))
            ).code == Code.BAD_REQUEST  # its own account
            assert await bs.code(BootstrapDeleteRequest(P("/3/0"))) == Code.BAD_REQUEST  # the Device
            assert await bs.code(BootstrapDeleteRequest(P("/3303/9"))) == Code.DELETED  # nothing there
            assert await bs.code(BootstrapDeleteRequest()) == Code.DELETED
            assert [i.id for i in client.tree.instances(0)] == [0]
            assert client.tree.instances(1) == [] and client.tree.instances(3303) == []
            assert client.tree.instance(3, 0) is not None

            # A resource of an instance that is not there brings the instance.
            write = BootstrapWriteRequest(P("/0/1/0"), (Record(P("/0/1/0/"), lwm2m.uri),))
            assert await bs.code(write) == Code.CHANGED
            for records in (security(1, lwm2m.uri, 101), server(0, 101)):
                path = records[0].path.parent
                assert await bs.code(BootstrapWriteRequest(path, records)) == Code.CHANGED
            assert await bs.code(BootstrapFinishRequest()) == Code.CHANGED
            registration = (await next_registration(events)).registration
            assert registration.endpoint == "scripted" and registration.lifetime == 60
            assert isinstance(client.account, ServerAccount) and client.account.short_server_id == 101


async def next_registration(events: Any) -> Any:
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, ClientRegistered):
                return event
    raise AssertionError("no registration")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (put("/0/1", CF.TLV, b"\xc8\x00"), Code.BAD_REQUEST),  # a truncated TLV
        (put("/0/1", 999, b"x"), Code.UNSUPPORTED_CONTENT_FORMAT),
        (put("/9999/0", CF.SENML_JSON, b'[{"n":"/9999/0/1","v":1}]'), Code.NOT_FOUND),
        (put("/1/0", CF.SENML_JSON, b'[{"n":"/1/0/1","vs":"long"}]'), Code.BAD_REQUEST),  # not an integer
        (Message.build(Type.CON, Code.GET, uri_path="/1/0", observe=0), Code.METHOD_NOT_ALLOWED),
        (
            Message.build(Type.CON, Code.FETCH, content_format=CF.SENML_CBOR, payload=b"\x80"),
            Code.METHOD_NOT_ALLOWED,
        ),
        (Message.build(Type.CON, Code.DELETE, uri_path="/1/0/1"), Code.BAD_REQUEST),
        (Message.build(Type.CON, Code.GET, uri_path="/x"), Code.NOT_FOUND),
    ],
)
async def test_bad_bootstrap_requests_are_refused_and_change_nothing(message: Message, code: int) -> None:
    async with (
        scripted() as bs,
        Client("strict", bootstrap=bs.uri, config=ClientConfig(bootstrap_timeout=5)) as client,
    ):
        await bs.next_request()
        before = {(i.definition.id, i.id) for i in client.tree}
        assert await bs.code(message) == code
        assert {(i.definition.id, i.id) for i in client.tree} == before


async def test_finish_with_no_usable_account_is_4_06_and_nothing_stays() -> None:
    async with scripted() as bs:
        client = Client(
            "inconsistent", bootstrap=bs.uri, objects=[temperature()], config=ClientConfig(retry_initial=0.05)
        )
        async with client:
            await bs.next_request()
            sensor = client.tree.instance(3303, 0)
            assert await bs.code(BootstrapDeleteRequest()) == Code.DELETED
            # A Server instance without its Security instance: nothing to register with.
            assert await bs.code(BootstrapWriteRequest(P("/1/0"), server(0, 101))) == Code.CHANGED
            assert (
                await bs.send(BootstrapWriteRequest(P("/0/1"), security(1, "coap://h", 555)))
            ).code == Code.CHANGED
            refused = await bs.send(BootstrapFinishRequest())
            assert refused.code == Code.NOT_ACCEPTABLE
            assert b"/1/0 (Short Server ID 101) has no Security (0) instance" in refused.payload
            # Everything as before the session: the sensor back, no server account, one Security.
            assert client.tree.instance(3303, 0) is sensor
            assert client.tree.instances(1) == [] and [i.id for i in client.tree.instances(0)] == [0]
            assert client.bootstrapper.last_error is not None and "4.06" not in client.bootstrapper.last_error
            assert "has no Security (0) instance" in client.bootstrapper.last_error
            # The client asks again.
            await bs.next_request()
            assert client.account is None and client.bootstraps == 0


async def test_a_failed_session_restores_the_accounts_the_client_had() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as lwm2m, scripted() as bs:
        events = lwm2m.events()
        client = Client(
            "restored",
            lwm2m.uri,
            [temperature()],
            bootstrap=bs.uri,
            config=ClientConfig(lifetime=300, bootstrap_timeout=0.5),
        )
        async with client:
            await next_registration(events)
            old_security = client.tree.instance(0, 1)
            assert old_security is not None and old_security.get(Security.URI) == lwm2m.uri
            old_account = client.account
            client.request_bootstrap()
            await bs.next_request()
            elsewhere = BootstrapWriteRequest(P("/0/1"), security(1, "coap://elsewhere", 9))
            assert await bs.code(elsewhere) == Code.CHANGED
            lifetime = BootstrapWriteRequest(P("/1/0/1"), (Record(P("/1/0/1"), 5),))
            assert await bs.code(lifetime) == Code.CHANGED  # changed in place
            assert await bs.code(BootstrapWriteRequest(P("/1/1"), server(1, 9))) == Code.CHANGED
            assert client.tree.instance(0, 1).get(Security.URI) == "coap://elsewhere"
            assert client.account is old_account and old_account.lifetime == 5
            # No Bootstrap-Finish: after bootstrap_timeout the client gives up, puts everything back
            # and registers again with the account it had.
            again = (await next_registration(events)).registration
            assert again.lifetime == 300 and client.bootstraps == 0
            assert client.tree.instance(0, 1) is old_security and old_security.get(Security.URI) == lwm2m.uri
            assert [i.id for i in client.tree.instances(1)] == [0] and old_account.lifetime == 300
            assert client.tree.instance(3303, 0) is not None
            assert "no Bootstrap-Finish within 0.5 s" in (client.bootstrapper.last_error or "")


async def test_requests_from_elsewhere_during_a_session_see_no_security() -> None:
    async with scripted() as bs, Client("private", bootstrap=bs.uri) as client:
        await bs.next_request()
        async with open_udp_endpoint("127.0.0.1", 0) as other:
            peer = ("127.0.0.1", client.port)
            read = await other.request(Message.build(Type.CON, Code.GET, uri_path="/0/0"), peer, timeout=5)
            assert read.code == Code.NOT_FOUND
            discover = Message.build(Type.CON, Code.GET, accept=CF.LINK)
            assert (await other.request(discover, peer, timeout=5)).code != Code.CONTENT


async def test_a_1_0_client_sends_no_pct_and_has_no_bootstrap_read() -> None:
    async with (
        scripted() as bs,
        Client("old", bootstrap=bs.uri, config=ClientConfig(lwm2m_version="1.0")),
    ):
        request = (await bs.next_request()).message
        assert request.uri_query == ("ep=old",)
        assert await bs.code(BootstrapReadRequest(P("/1"))) == Code.METHOD_NOT_ALLOWED
        found = links(await bs.send(BootstrapDiscoverRequest()))
        assert found["/"] == {"lwm2m": "1.0"}


async def test_trigger_without_a_bootstrap_account_is_refused() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as lwm2m:
        events = lwm2m.events()
        async with Client("plain", lwm2m.uri):
            await next_registration(events)
            assert (await lwm2m.execute("plain", "/1/0/9")).code == Code.METHOD_NOT_ALLOWED


async def test_an_inconsistent_bootstrap_pack_changes_nothing() -> None:
    async with scripted() as bs:
        records = [*server(0, 101), *security(1, "coaps://secured", 101)]  # NoSec on coaps
        bs.pack = get_codec(CF.SENML_CBOR).encode(records, P("/"), MODELS)
        client = Client(
            "packed", bootstrap=bs.uri, config=ClientConfig(bootstrap_pack=True, retry_initial=0.05)
        )
        async with client:
            request = (await bs.next_request()).message
            assert (request.code, request.uri_path, request.uri_query) == (
                Code.GET,
                ("bspack",),
                ("ep=packed",),
            )
            await bs.next_request()  # refused, put back, asked again
            assert "coaps://secured is coaps but the security mode is NoSec" in (
                client.bootstrapper.last_error or ""
            )
            assert client.tree.instances(1) == [] and [i.id for i in client.tree.instances(0)] == [0]


async def test_the_bootstrap_account_is_never_made_a_server_account_nor_deleted() -> None:
    """A Bootstrap-Write over the bootstrap account that clears Bootstrap-Server is refused, and
    Bootstrap-Delete of /, /0 or /0/7 leaves it (LwM2M-TS-Core 1.2 §6.1.7.6)."""
    async with scripted() as bs:
        factory = Security(7, uri=bs.uri, bootstrap=True, short_server_id=None)
        async with Client("kept", objects=[factory], config=ClientConfig(bootstrap_timeout=5)) as client:
            await bs.next_request()
            over = await bs.send(BootstrapWriteRequest(P("/0/7"), security(7, "coap://h", 101)))
            assert over.code == Code.BAD_REQUEST and b"bootstrap server account" in over.payload
            flag = BootstrapWriteRequest(P("/0/7/1"), (Record(P("/0/7/1"), False),))
            assert await bs.code(flag) == Code.BAD_REQUEST
            whole = BootstrapWriteRequest(P("/0"), security(7, "coap://h", 101))
            assert await bs.code(whole) == Code.BAD_REQUEST
            # Updating the account itself (its URI) stays possible.
            uri = BootstrapWriteRequest(P("/0/7/0"), (Record(P("/0/7/0"), bs.uri),))
            assert await bs.code(uri) == Code.CHANGED
            assert await bs.code(BootstrapDeleteRequest(P("/0/7"))) == Code.BAD_REQUEST
            assert await bs.code(BootstrapDeleteRequest(P("/0"))) == Code.DELETED
            assert await bs.code(BootstrapDeleteRequest()) == Code.DELETED
            assert client.tree.instance(0, 7) is factory and factory.get(Security.BOOTSTRAP) is True


async def test_a_pack_landing_on_the_bootstrap_account_goes_to_a_free_instance() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as lwm2m, scripted() as bs:
        events = lwm2m.events()
        # A server that does not know the device's layout put the account at /0/1.
        bs.pack = get_codec(CF.SENML_CBOR).encode(
            [*security(1, lwm2m.uri, 101), *server(0, 101)], P("/"), MODELS
        )
        factory = Security(1, uri=bs.uri, bootstrap=True, short_server_id=None)
        async with Client("moved", objects=[factory], config=ClientConfig(bootstrap_pack=True)) as client:
            await next_registration(events)
            assert client.tree.instance(0, 1) is factory and factory.get(Security.BOOTSTRAP) is True
            moved = client.tree.instance(0, 0)
            assert moved is not None and moved.get(Security.URI) == lwm2m.uri
            assert moved.get(Security.SHORT_SERVER_ID) == 101
