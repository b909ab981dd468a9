"""The REST API on the end devices behind a gateway (LwM2M-TS-Gateway 1.1, object 25): their list,
and every device operation under /api/clients/{gateway}/devices/{prefix}/, checked at the gateway
for the Uri-Path, method and payload it got, and against the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from tests.helpers.web import client_for

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.errors import ResourceNotFound
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived
from lwm2m.server.role import Server
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.web.routes import resolve

MODELS = load_catalogue()
OBJECT25 = (
    b'[{"bn":"/25/0/","n":"0","vs":"urn:dev:001234"},{"n":"1","vs":"dev1"},'
    b'{"n":"3","vs":"</3/0>,</3303>;ver=1.1,</3303/0>"}]'
)
TEMP = Path((3303, 0, 5700), "dev1")


class Gateway:
    """A gateway with one end device, dev1, a thermometer; keeps every request it gets."""

    def __init__(self) -> None:
        self.requests: list[Message] = []
        self.observed: list[RequestReceived] = []

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        path = msg.uri_path_str
        if path == "/25":
            return Message.build(Type.ACK, Code.CONTENT, content_format=CF.SENML_JSON, payload=OBJECT25)
        self.requests.append(msg)
        if not path.startswith("/dev1/"):
            return Message.build(Type.ACK, Code.NOT_FOUND)
        if msg.code == Code.GET and msg.accept == CF.LINK:
            links = b"</dev1/3303/0>,</dev1/3303/0/5700>;pmin=10,</dev1/3303/0/5701>"
            return Message.build(Type.ACK, Code.CONTENT, content_format=CF.LINK, payload=links)
        if msg.code == Code.GET:
            payload = get_codec(CF.SENML_JSON).encode([Record(TEMP, 21.5)], TEMP, MODELS)
            observe = {"observe": 0} if msg.observe == 0 else {}
            if observe:
                self.observed.append(event)
            return Message.build(
                Type.ACK, Code.CONTENT, content_format=CF.SENML_JSON, payload=payload, **observe
            )
        return Message.build(Type.ACK, Code.CHANGED)


@contextlib.asynccontextmanager
async def gateway_up() -> AsyncIterator[tuple[Server, Gateway, CoapUdpEndpoint]]:
    gateway = Gateway()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gateway) as client,
    ):
        register = Message.build(
            Type.CON,
            Code.POST,
            uri_path="/rd",
            uri_query=["ep=gw", "lt=300", "lwm2m=1.1", "b=U"],
            content_format=CF.LINK,
            payload=b"</3/0>,</25>;ver=2.0,</25/0>",
        )
        assert (await client.request(register, ("127.0.0.1", server.port))).code == Code.CREATED
        for _ in range(250):
            if (await server.registration("gw")).end_devices:
                break
            await asyncio.sleep(0.02)
        yield server, gateway, client


async def test_every_operation_on_an_end_device() -> None:
    async with gateway_up() as (server, gateway, client), client_for(server) as api:
        listed = await api.get("/api/clients/gw/devices")
        assert listed.status_code == 200
        assert listed.json() == {
            "endpoint": "gw",
            "devices": [
                {
                    "prefix": "dev1",
                    "deviceId": "urn:dev:001234",
                    "instanceId": 0,
                    "objects": "</3/0>,</3303>;ver=1.1,</3303/0>",
                }
            ],
        }
        client_view = await api.get("/api/clients/gw")  # the registration, as events carry it too
        assert client_view.json()["endDevices"] == listed.json()["devices"]
        base = "/api/clients/gw/devices/dev1"

        read = await api.get(f"{base}/3303/0/5700")
        assert read.status_code == 200, read.text
        assert read.json()["records"] == [{"path": "/dev1/3303/0/5700", "value": 21.5}]
        assert gateway.requests[-1].uri_path == ("dev1", "3303", "0", "5700")

        write = await api.put(f"{base}/3303/0/5701", json={"value": "Cel"})
        assert write.status_code == 200 and write.json()["code"] == "2.04"
        sent = gateway.requests[-1]
        assert sent.code == Code.PUT and sent.uri_path == ("dev1", "3303", "0", "5701")
        records = get_codec(sent.content_format).decode(sent.payload, TEMP.parent.child(5701), MODELS)
        assert records == [Record(TEMP.parent.child(5701), "Cel")]

        write = await api.put(
            f"{base}/3303/0",
            json={"records": [{"path": "/3303/0/5701", "value": "K"}]},
            params={"replace": "false"},
        )
        assert write.status_code == 200 and write.json()["code"] == "2.04"
        sent = gateway.requests[-1]
        assert sent.code == Code.POST and sent.uri_path == ("dev1", "3303", "0")
        records = get_codec(sent.content_format).decode(sent.payload, TEMP.parent, MODELS)
        assert records == [Record(TEMP.parent.child(5701), "K")]

        execute = await api.post(f"{base}/3303/0/5605", json={})
        assert execute.status_code == 200 and gateway.requests[-1].uri_path == ("dev1", "3303", "0", "5605")
        assert gateway.requests[-1].code == Code.POST

        discover = await api.get(f"{base}/3303/0/discover")
        assert discover.status_code == 200
        assert "</dev1/3303/0/5700>;pmin=10" in discover.json()["links"]

        attrs = await api.put(f"{base}/3303/0/5700/attributes", params={"pmin": "5"})
        assert attrs.status_code == 200
        sent = gateway.requests[-1]
        assert sent.uri_path == ("dev1", "3303", "0", "5700") and "pmin=5" in sent.uri_query

        observe = await api.post(f"{base}/3303/0/5700/observe")
        assert observe.status_code == 200, observe.text
        assert observe.json()["records"] == [{"path": "/dev1/3303/0/5700", "value": 21.5}]
        assert gateway.requests[-1].observe == 0
        events = server.events()
        (relation,) = gateway.observed
        note = get_codec(CF.SENML_JSON).encode([Record(TEMP, 22.0)], TEMP, MODELS)
        message = Message.build(Type.NON, Code.CONTENT, content_format=CF.SENML_JSON, payload=note)
        assert client.notify(relation.relation, message)
        notified = await asyncio.wait_for(anext(events), 5)
        assert isinstance(notified, NotificationReceived) and notified.records == (Record(TEMP, 22.0),)
        events.close()
        history = await api.get(f"{base}/history/3303/0/5700")
        assert history.status_code == 200
        assert [(r["path"], r["value"]) for r in history.json()["records"]] == [("/dev1/3303/0/5700", 22.0)]
        cancel = await api.delete(f"{base}/3303/0/5700/observe")
        assert cancel.status_code in (200, 204), cancel.text

        delete = await api.delete(f"{base}/3303/0")
        assert delete.status_code == 200 and gateway.requests[-1].code == Code.DELETE
        assert gateway.requests[-1].uri_path == ("dev1", "3303", "0")


async def test_unknown_and_bad_end_devices() -> None:
    async with gateway_up() as (server, gateway, _), client_for(server) as api:
        asked = len(gateway.requests)
        missing = await api.get("/api/clients/gw/devices/dev9/3303/0/5700")
        assert missing.status_code == 404 and "no end device 'dev9'" in missing.text
        bad = await api.get("/api/clients/gw/devices/..x/3303/0/5700")
        assert bad.status_code == 400 and "invalid prefix" in bad.text
        assert (await api.post("/api/clients/gw/devices")).status_code == 405
        assert len(gateway.requests) == asked  # none of these reached the gateway
        plain = await api.get("/api/clients/gw/devices")
        assert json.loads(plain.text)["devices"][0]["prefix"] == "dev1"


def test_an_end_device_takes_no_device_words() -> None:
    for rest in (["labels"], ["trace"]):
        segments = ["devices", "dev1", *rest]
        with pytest.raises(ResourceNotFound, match="an end device takes its paths, composites and history"):
            resolve("POST", "/api/clients/gw/" + "/".join(segments), segments)
