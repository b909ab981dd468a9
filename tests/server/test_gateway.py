"""A gateway and its end devices (LwM2M-TS-Gateway 1.1, object 25), from a scripted raw-UDP gateway:
the server reads /25 after the Register and after an Update that changes the /25 instances,
keeps the end devices with the registration, reaches them by prefix, and takes their Sends."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers.server import next_event

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import ObjectLink
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientUpdated, SendReceived
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint

# The gateway's /25 in SenML-JSON, two end devices: a temperature sensor and a water meter.
TWO_DEVICES = (
    b'[{"bn":"/25/0/","n":"0","vs":"urn:dev:001234"},{"n":"1","vs":"dev1"},'
    b'{"n":"3","vs":"</3/0>,</3303>;ver=1.1,</3303/0>"},'
    b'{"bn":"/25/1/","n":"0","vs":"urn:dev:556789"},{"n":"1","vs":"lora-0a1b"},'
    b'{"n":"3","vs":"</3/0>,</3424/0>"}]'
)
ONE_DEVICE = TWO_DEVICES[: TWO_DEVICES.index(b',{"bn":"/25/1/"')] + b"]"


class ScriptedGateway:
    """Answers the server's requests as a gateway would: /25 from ``object25``, the temperature of
    dev1 as text; every request's Uri-Path is kept."""

    def __init__(self) -> None:
        self.object25 = TWO_DEVICES
        self.asked: list[str] = []

    def __call__(self, event: RequestReceived) -> Message:
        path = event.message.uri_path_str
        self.asked.append(path)
        if path == "/25":
            return Message.build(Type.ACK, Code.CONTENT, content_format=CF.SENML_JSON, payload=self.object25)
        if path == "/dev1/3303/0/5700":
            return Message.build(Type.ACK, Code.CONTENT, content_format=CF.TEXT, payload=b"21.5")
        return Message.build(Type.ACK, Code.NOT_FOUND)


def message(code: Code, path: str, payload: bytes, fmt: int, query: list[str] | None = None) -> Message:
    return Message.build(
        Type.CON, code, uri_path=path, uri_query=query or [], content_format=fmt, payload=payload
    )


async def updated(events: Any, count: int) -> ClientUpdated:
    while True:
        event = await next_event(events, ClientUpdated)
        if len(event.registration.end_devices) == count:
            return event  # type: ignore[no-any-return]


async def test_scripted_gateway() -> None:
    gateway = ScriptedGateway()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gateway) as client,
    ):
        events = server.events()
        peer = ("127.0.0.1", server.port)
        links = b"</1/0>,</3/0>,</25>;ver=2.0,</25/0>,</25/1>"
        query = ["ep=gw-1", "lt=300", "lwm2m=1.1", "b=U"]
        answer = await client.request(message(Code.POST, "/rd", links, CF.LINK, query), peer)
        assert answer.code == Code.CREATED
        event = await updated(events, 2)
        dev1, lora = event.registration.end_devices
        assert (dev1.prefix, dev1.device_id, dev1.instance_id) == ("dev1", "urn:dev:001234", 0)
        assert dev1.objects == (ObjectLink(3, 0), ObjectLink(3303, None, "1.1"), ObjectLink(3303, 0))
        assert (lora.prefix, lora.device_id, lora.object_ids) == ("lora-0a1b", "urn:dev:556789", (3, 3424))
        assert event.previous.end_devices == ()
        assert (await server.registration("gw-1")).end_devices == (dev1, lora)

        # An end device's resource: the prefix is the first Uri-Path segment.
        temp = Path((3303, 0, 5700), "dev1")
        read = await server.read("gw-1", temp)
        assert read.success and read.records == (Record(temp, 21.5),)
        assert gateway.asked[-1] == "/dev1/3303/0/5700"

        # An Update without a new object list leaves /25 alone; one that drops /25/1 is followed.
        location = "/" + "/".join(answer.location_path)
        asked = len(gateway.asked)
        assert (await client.request(message(Code.POST, location, b"", CF.LINK), peer)).code == Code.CHANGED
        gateway.object25 = ONE_DEVICE
        links = b"</1/0>,</3/0>,</25>;ver=2.0,</25/0>"
        assert (await client.request(message(Code.POST, location, links, CF.LINK), peer)).code == Code.CHANGED
        event = await updated(events, 1)
        assert event.registration.end_devices == (dev1,)
        assert gateway.asked[asked:] == ["/25"]

        # A Send with the gateway's own value and its end device's.
        send = b'[{"bn":"/3/0/","n":"9","v":80,"bt":1700000000},{"bn":"/dev1/3303/0/","n":"5700","v":22.5}]'
        assert (
            await client.request(message(Code.POST, "/dp", send, CF.SENML_JSON), peer)
        ).code == Code.CHANGED
        sent = await next_event(events, SendReceived)
        assert [r.path for r in sent.records] == [Path((3, 0, 9)), temp]
        history = await server.history("gw-1", temp)
        assert [e.record.value for e in history] == [22.5]


async def test_an_update_after_a_failed_read_of_25_reads_it_again() -> None:
    gateway = ScriptedGateway()
    gateway.object25 = b"[{"  # not SenML: the server cannot decode it
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gateway) as client,
    ):
        events = server.events()
        peer = ("127.0.0.1", server.port)
        query = ["ep=gw-3", "lt=300", "lwm2m=1.1", "b=U"]
        answer = await client.request(message(Code.POST, "/rd", b"</25/0>,</25/1>", CF.LINK, query), peer)
        for _ in range(100):
            if gateway.asked:
                break
            await asyncio.sleep(0.02)
        assert gateway.asked == ["/25"]
        gateway.object25 = TWO_DEVICES
        location = "/" + "/".join(answer.location_path)
        assert (await client.request(message(Code.POST, location, b"", CF.LINK), peer)).code == Code.CHANGED
        event = await updated(events, 2)
        assert [d.prefix for d in event.registration.end_devices] == ["dev1", "lora-0a1b"]
        assert gateway.asked == ["/25", "/25"]


async def test_a_bad_object_25_leaves_the_gateway_registered_without_end_devices() -> None:
    gateway = ScriptedGateway()
    gateway.object25 = b'[{"bn":"/25/0/","n":"0","vs":"x"},{"n":"1","vs":"../x"},{"n":"3","vs":""}]'
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gateway) as client,
    ):
        peer = ("127.0.0.1", server.port)
        query = ["ep=gw-2", "lt=300", "lwm2m=1.1", "b=U"]
        answer = await client.request(message(Code.POST, "/rd", b"</25/0>", CF.LINK, query), peer)
        assert answer.code == Code.CREATED
        for _ in range(100):
            if gateway.asked:
                break
            await asyncio.sleep(0.02)
        assert gateway.asked == ["/25"]
        await asyncio.sleep(0.1)
        assert (await server.registration("gw-2")).end_devices == ()


async def test_an_update_listing_the_same_objects_reads_25_again() -> None:
    """An end device's objects changed (its /25/x/3), not the gateway's: the gateway's Update carries
    its object list all the same, and the server reads /25 again; an Update without one does not."""
    gateway = ScriptedGateway()
    gateway.object25 = ONE_DEVICE
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gateway) as client,
    ):
        events = server.events()
        peer = ("127.0.0.1", server.port)
        links = b"</3/0>,</25>;ver=2.0,</25/0>"
        query = ["ep=gw-4", "lt=300", "lwm2m=1.1", "b=U"]
        answer = await client.request(message(Code.POST, "/rd", links, CF.LINK, query), peer)
        event = await updated(events, 1)
        assert event.registration.end_devices[0].object_ids == (3, 3303)
        location = "/" + "/".join(answer.location_path)
        assert (await client.request(message(Code.POST, location, b"", CF.LINK), peer)).code == Code.CHANGED
        gateway.object25 = ONE_DEVICE.replace(b"</3303/0>", b"</3303/0>,</3303/1>")
        assert (await client.request(message(Code.POST, location, links, CF.LINK), peer)).code == Code.CHANGED
        while True:
            event = await next_event(events, ClientUpdated)
            if event.registration.end_devices != event.previous.end_devices:
                break
        (dev1,) = event.registration.end_devices
        assert dev1.instances(3303) == (0, 1)
        assert gateway.asked == ["/25", "/25"]
