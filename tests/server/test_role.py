"""The server over real loopback sockets, with a client made of our CoAP endpoint."""

from __future__ import annotations

import pytest
from tests.helpers.server import DEVICE, Device, P, next_event, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import NotRegistered
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered, ClientUpdated, RegistrationExpired
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint


async def test_register_read_execute_update_deregister() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        device = Device()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            peer = ("127.0.0.1", server.port)
            created = await client.request(register("dev-1"), peer)
            assert created.code == Code.CREATED
            assert created.location_path[0] == "rd"
            registered = await next_event(events, ClientRegistered)
            reg = registered.registration
            assert (reg.endpoint, reg.lifetime, reg.lwm2m_version) == ("dev-1", 300, "1.1")
            assert reg.object_ids == (1, 3, 3303)

            response = await server.read("dev-1", "/3/0")
            assert response.code == Code.CONTENT and response.content_format == CF.SENML_CBOR
            assert {r.path: r.value for r in response.records} == DEVICE
            tlv = await server.read("dev-1", "/3/0/9", format="tlv")
            assert tlv.records == (Record(P("/3/0/9"), 85),)
            missing = await server.read("dev-1", "/3/0/99")
            assert missing.code == Code.NOT_FOUND
            assert (await server.execute("dev-1", "/3/0/4")).code == Code.CHANGED

            location = "/".join(created.location_path)
            updated = await client.request(
                Message.build(Type.CON, Code.POST, uri_path=location, uri_query=["lt=600"]), peer
            )
            assert updated.code == Code.CHANGED
            assert (await next_event(events, ClientUpdated)).registration.lifetime == 600

            gone = await client.request(Message.build(Type.CON, Code.DELETE, uri_path=location), peer)
            assert gone.code == Code.DELETED
            assert (await next_event(events, ClientDeregistered)).registration.endpoint == "dev-1"
            with pytest.raises(NotRegistered):
                await server.read("dev-1", "/3/0")


async def test_a_1_0_client_is_asked_in_tlv() -> None:
    async with Server(ServerConfig(port=0)) as server:
        device = Device()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            await client.request(register("old", version="1.0"), ("127.0.0.1", server.port))
            records = [Record(P("/3/0/14"), "+01:00")]
            device_answer = await server.write("old", "/3/0", records)
            assert device_answer.code == Code.METHOD_NOT_ALLOWED
            assert device.requests[-1].content_format == CF.TLV


@pytest.mark.parametrize(
    ("message", "code", "needle"),
    [
        (Message.build(Type.CON, Code.POST, uri_path="/rd", uri_query=["lt=60"]), Code.BAD_REQUEST, b"ep"),
        (
            Message.build(Type.CON, Code.POST, uri_path="/rd", uri_query=["ep=x", "lt=soon"]),
            Code.BAD_REQUEST,
            b"lt",
        ),
        (
            Message.build(Type.CON, Code.POST, uri_path="/rd/nope", uri_query=["lt=60"]),
            Code.NOT_FOUND,
            b"nope",
        ),
        (Message.build(Type.CON, Code.DELETE, uri_path="/rd/nope"), Code.NOT_FOUND, b"nope"),
        (Message.build(Type.CON, Code.GET, uri_path="/elsewhere"), Code.NOT_FOUND, b"elsewhere"),
    ],
)
async def test_bad_registration_requests_get_a_diagnostic(
    message: Message, code: Code, needle: bytes
) -> None:
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint("127.0.0.1", 0) as client:
        answer = await client.request(message, ("127.0.0.1", server.port))
        assert answer.code == code
        assert needle in answer.payload


async def test_a_new_register_replaces_the_old_and_expiry_removes_it() -> None:
    async with Server(ServerConfig(port=0, expiry_interval=0.1)) as server:
        events = server.events()
        async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as client:
            peer = ("127.0.0.1", server.port)
            first = await client.request(register("dev-2", lt=60), peer)
            second = await client.request(register("dev-2", lt=1), peer)
            assert first.location_path != second.location_path
            await next_event(events, ClientRegistered)
            replaced = await next_event(events, ClientRegistered)
            assert replaced.replaced is not None and replaced.replaced.lifetime == 60
            assert [r.endpoint for r in await server.registrations()] == ["dev-2"]
            expired = await next_event(events, RegistrationExpired)
            assert expired.registration.endpoint == "dev-2"
            assert await server.registrations() == []
