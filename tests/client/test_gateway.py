"""Our Gateway (LwM2M-TS-Gateway 1.1, object 25) against our Server, end to end through the REST
API: the end devices listed, and read, write, execute, observe with notifications, discover and
attributes on one by its prefix; end devices added and removed at run time, followed by the
server."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.polling import eventually
from tests.helpers.server import next_event
from tests.helpers.web import client_for

from lwm2m import Gateway
from lwm2m.client.instance import ObjectInstance
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import GatewayError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import EndDevice
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived
from lwm2m.server.role import Server

TEMP = Path((3303, 0, 5700), "dev1")


class Thermometer(ObjectInstance):
    object_id = 3303
    executable = (5605,)  # Reset Min and Max Measured Values

    def __init__(self, instance_id: int, value: float) -> None:
        super().__init__(instance_id, {5700: value, 5750: "room"})
        self.resets = 0

    def execute(self, resource_id: int, arguments: str) -> Any:
        if resource_id == 5605:
            self.resets += 1
            return None
        return super().execute(resource_id, arguments)


async def end_devices(server: Server, endpoint: str) -> tuple[EndDevice, ...]:
    return (await server.registration(endpoint)).end_devices


async def test_every_operation_on_an_end_device_of_our_gateway() -> None:
    thermometer = Thermometer(0, 21.5)
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-sdk", f"coap://127.0.0.1:{server.port}")
        gateway.add("dev1", [thermometer], device_id="urn:dev:001234")
        gateway.add("lora-0a1b", [ObjectInstance(0, {1: 12.5}, object_id=3424)])
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            devices = await eventually(lambda: end_devices(server, "gw-sdk"), lambda d: len(d) == 2)
            assert [(d.prefix, d.device_id) for d in devices] == [
                ("dev1", "urn:dev:001234"),
                ("lora-0a1b", "lora-0a1b"),
            ]
            listed = (await api.get("/api/clients/gw-sdk/devices")).json()["devices"]
            dev1 = next(d for d in listed if d["prefix"] == "dev1")
            assert "</3303/0>" in dev1["objects"] and "</3/0>" in dev1["objects"]
            base = "/api/clients/gw-sdk/devices/dev1"

            read = await api.get(f"{base}/3303/0/5700")
            assert read.status_code == 200, read.text
            assert read.json()["records"] == [{"path": "/dev1/3303/0/5700", "value": 21.5}]
            whole = await api.get(f"{base}/3")  # its own Device object, not the gateway's
            assert whole.status_code == 200, whole.text
            assert {r["path"] for r in whole.json()["records"]} >= {"/dev1/3/0/0", "/dev1/3/0/1"}
            assert {"path": "/dev1/3/0/1", "value": "end device"} in whole.json()["records"]
            meter = await api.get("/api/clients/gw-sdk/devices/lora-0a1b/3424/0/1")
            assert meter.json()["records"] == [{"path": "/lora-0a1b/3424/0/1", "value": 12.5}]
            own = await api.get("/api/clients/gw-sdk/3/0/1")  # the gateway's own Device object
            assert own.json()["records"] == [{"path": "/3/0/1", "value": "python"}]

            write = await api.put(f"{base}/3303/0/5750", json={"value": "cellar"})
            assert write.status_code == 200 and write.json()["code"] == "2.04", write.text
            assert thermometer.get(5750) == "cellar"

            execute = await api.post(f"{base}/3303/0/5605", json={})
            assert execute.status_code == 200 and execute.json()["code"] == "2.04", execute.text
            assert thermometer.resets == 1

            discover = await api.get(f"{base}/3303/0/discover")
            assert discover.status_code == 200, discover.text
            assert "</dev1/3303/0/5700>" in discover.json()["links"]

            attrs = await api.put(f"{base}/3303/0/5700/attributes", params={"pmin": "0", "gt": "30"})
            assert attrs.status_code == 200, attrs.text
            discover = await api.get(f"{base}/3303/0/discover")
            assert "</dev1/3303/0/5700>;pmin=0;gt=30" in discover.json()["links"]

            events = server.events()
            observe = await api.post(f"{base}/3303/0/5700/observe")
            assert observe.status_code == 200, observe.text
            assert observe.json()["records"] == [{"path": "/dev1/3303/0/5700", "value": 21.5}]
            thermometer.set(5700, 25.0)  # below gt=30: no notification
            thermometer.set(5700, 31.0)
            notified = await next_event(events, NotificationReceived)
            assert notified.records == (Record(TEMP, 31.0),)
            events.close()
            cancel = await api.delete(f"{base}/3303/0/5700/observe")
            assert cancel.status_code in (200, 204), cancel.text

            missing = await api.get("/api/clients/gw-sdk/devices/dev1/3424/0/1")
            assert missing.json()["code"] == "4.04", missing.text  # dev1 has its own objects only


async def test_end_devices_added_and_removed_at_run_time() -> None:
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-run", f"coap://127.0.0.1:{server.port}")
        gateway.add("dev1", [Thermometer(0, 20.0)])
        async with gateway:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-run"), lambda d: len(d) == 1)
            gateway.add("dev2", [Thermometer(0, 18.0)])
            devices = await eventually(lambda: end_devices(server, "gw-run"), lambda d: len(d) == 2)
            assert sorted(d.prefix for d in devices) == ["dev1", "dev2"]
            answer = await server.read("gw-run", Path((3303, 0, 5700), "dev2"))
            assert answer.records == (Record(Path((3303, 0, 5700), "dev2"), 18.0),)
            gateway.remove("dev1")
            devices = await eventually(lambda: end_devices(server, "gw-run"), lambda d: len(d) == 1)
            assert [d.prefix for d in devices] == ["dev2"]
            gone = await server.read("gw-run", TEMP)
            assert gone.code == Code.NOT_FOUND and "dev1" in gone.diagnostic
            assert gateway.prefixes == ["dev2"]


def test_bad_and_taken_prefixes() -> None:
    gateway = Gateway("gw-bad", "coap://127.0.0.1:9")
    gateway.add("dev1")
    with pytest.raises(GatewayError, match="already"):
        gateway.add("dev1")
    for bad in ("", "12", "a/b", ".x"):
        with pytest.raises(GatewayError, match="invalid prefix"):
            gateway.add(bad)
    with pytest.raises(GatewayError, match="no end device"):
        gateway.remove("dev9")
    assert gateway.prefixes == ["dev1"]
    assert gateway.device("dev1").instance(3, 0) is not None


def request(path: tuple[str, ...], code: Code = Code.GET, **options: Any) -> RequestReceived:
    message = Message.build(Type.CON, code, uri_path="/".join(path), **options)
    return RequestReceived(("127.0.0.1", 5), message)


def test_routing_by_the_first_segment() -> None:
    gateway = Gateway("gw-route", "coap://127.0.0.1:9")
    gateway.add("dev1", [Thermometer(0, 21.5)])
    assert gateway.route(request(("3", "0")), None) is None  # the gateway's own objects
    assert gateway.route(request(()), None) is None
    unknown = gateway.route(request(("dev9", "3303")), None)
    assert isinstance(unknown, Message) and unknown.code == Code.NOT_FOUND
    answer = gateway.route(request(("dev1", "3303", "0", "5700"), accept=CF.SENML_JSON), None)
    assert isinstance(answer, Message) and answer.code == Code.CONTENT
    assert b'"/dev1/3303/0/5700"' in answer.payload
    tlv = gateway.route(request(("dev1", "3303", "0"), accept=CF.TLV), None)
    assert isinstance(tlv, Message) and tlv.code == Code.CONTENT
