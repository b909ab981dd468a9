"""Our Gateway (LwM2M-TS-Gateway 1.1, object 25) against our Server, end to end through the REST
API: the end devices listed, and read, write, execute, observe with notifications, discover and
attributes on one by its prefix; end devices added and removed at run time, followed by the
server."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.polling import eventually
from tests.helpers.server import next_event
from tests.helpers.web import client_for

from lwm2m import ClientConfig, Gateway
from lwm2m.client.instance import ObjectInstance
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError, GatewayError
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


async def test_composite_operations_with_prefixed_paths() -> None:
    thermometer = Thermometer(0, 21.5)
    meter = ObjectInstance(0, {1: 12.5, 3: "cold"}, object_id=3424)
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-comp", f"coap://127.0.0.1:{server.port}")
        gateway.add("dev1", [thermometer])
        gateway.add("lora-0a1b", [meter])
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-comp"), lambda d: len(d) == 2)
            base = "/api/clients/gw-comp/composite"
            paths = ["/dev1/3303/0/5700", "/lora-0a1b/3424/0/1", "/3/0/1", "/dev1/3424/0/1"]
            read = await api.post(f"{base}/read", json={"paths": paths})
            assert read.status_code == 200 and read.json()["code"] == "2.05", read.text
            assert read.json()["records"] == [  # the gateway's own first; dev1 has no water meter
                {"path": "/3/0/1", "value": "python"},
                {"path": "/dev1/3303/0/5700", "value": 21.5},
                {"path": "/lora-0a1b/3424/0/1", "value": 12.5},
            ]
            one = await api.post(
                f"{base}/read", json={"paths": ["/dev1/3303/0"]}, params={"format": "lwm2m-cbor"}
            )
            assert one.status_code == 200 and one.json()["code"] == "2.05", one.text
            assert {"path": "/dev1/3303/0/5700", "value": 21.5} in one.json()["records"]

            records = [
                {"path": "/dev1/3303/0/5750", "value": "attic"},
                {"path": "/lora-0a1b/3424/0/3", "value": "hot"},
            ]
            write = await api.post(f"{base}/write", json={"records": records})
            assert write.status_code == 200 and write.json()["code"] == "2.04", write.text
            assert (thermometer.get(5750), meter.get(3)) == ("attic", "hot")
            missing = [*records[:1], {"path": "/dev1/3424/0/3", "value": "x"}]
            refused = await api.post(f"{base}/write", json={"records": missing})
            assert refused.json()["code"] == "4.04", refused.text
            unknown = await api.post(f"{base}/read", json={"paths": ["/dev9/3303/0/5700"]})
            assert unknown.json()["code"] == "4.04" and "dev9" in unknown.text

            events = server.events()
            observed = ["/dev1/3303/0/5700", "/dev1/3/0/1"]
            observe = await api.post(f"{base}/observe", json={"paths": observed})
            assert observe.status_code == 200 and observe.json()["code"] == "2.05", observe.text
            thermometer.set(5700, 23.0)
            notified = await next_event(events, NotificationReceived)
            assert Record(TEMP, 23.0) in notified.records
            assert Record(Path((3, 0, 1), "dev1"), "end device") in notified.records
            events.close()
            cancel = await api.delete(f"{base}/observe", params={"paths": ",".join(observed)})
            assert cancel.status_code in (200, 204), cancel.text
            # Across end devices: one observation (tests/client/test_gateway_composite.py); with
            # the gateway's own paths beside theirs, refused.
            mixed = await api.post(f"{base}/observe", json={"paths": paths[:3]})
            assert mixed.json()["code"] == "4.00" and "not both" in mixed.text


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=200),
    code=st.sampled_from([Code.FETCH, Code.IPATCH]),
    fmt=st.sampled_from([CF.SENML_CBOR, CF.SENML_JSON, CF.LWM2M_CBOR]),
)
def test_any_composite_payload_is_answered_or_left_to_the_client(payload: bytes, code: Code, fmt: CF) -> None:
    gateway = FUZZED
    message = Message.build(Type.CON, code, content_format=fmt, payload=payload)
    answer = gateway.route(RequestReceived(("127.0.0.1", 5), message), None)
    assert answer is None or (isinstance(answer, Message) and answer.code >= Code.CREATED)


PATHS = st.builds(
    Path,
    st.lists(st.sampled_from([0, 1, 3, 5700, 3303, 3424, 5750]), min_size=0, max_size=4).map(tuple),
    st.sampled_from(["", "dev1", "dev9"]),
)


@settings(max_examples=300, deadline=None)
@given(paths=st.lists(PATHS, min_size=1, max_size=5), code=st.sampled_from([Code.FETCH, Code.IPATCH]))
def test_any_composite_path_list_is_answered(paths: list[Path], code: Code) -> None:
    records = [Record(p, "x" if code == Code.IPATCH and len(p.ids) >= 3 else None) for p in paths]
    payload = get_codec(CF.SENML_JSON).encode(records, Path(()), None)  # untyped: any value anywhere
    message = Message.build(Type.CON, code, content_format=CF.SENML_JSON, payload=payload, observe=None)
    answer = FUZZED.route(RequestReceived(("127.0.0.1", 5), message), None)
    try:  # a value its resource cannot hold: the client's own handler answers 4.00
        get_codec(CF.SENML_JSON).decode(payload, Path(()), FUZZED.client.models)
        typed = True
    except CodecError:
        typed = False
    if typed and any(p.prefix for p in paths):
        assert isinstance(answer, Message) and answer.code >= Code.CREATED
    else:
        assert answer is None


FUZZED = Gateway("gw-fuzz", "coap://127.0.0.1:9")
FUZZED.add("dev1", [Thermometer(0, 21.5)])


async def test_notifications_of_an_end_device_wait_while_the_gateway_sleeps() -> None:
    thermometer = Thermometer(0, 21.5)
    async with Server(ServerConfig(port=0)) as server:
        config = ClientConfig(queue_mode=True, awake_time=0.3)
        gateway = Gateway("gw-queue", f"coap://127.0.0.1:{server.port}", config=config)
        gateway.add("dev1", [thermometer])
        async with gateway:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-queue"), lambda d: len(d) == 1)
            events = server.events()
            observation = await server.observe("gw-queue", TEMP)
            assert observation.response is not None and observation.response.records == (Record(TEMP, 21.5),)
            await eventually(_async(lambda: gateway.client.sleeping))
            updates = gateway.client.updates
            thermometer.set(5700, 24.0)  # held: the gateway wakes by an Update, then notifies
            notified = await next_event(events, NotificationReceived)
            assert notified.records == (Record(TEMP, 24.0),)
            assert gateway.client.updates == updates + 1
            events.close()


def _async(check: Any) -> Any:
    async def run() -> Any:
        return check()

    return run
