"""Composite operations across the end devices behind our Gateway (LwM2M-TS-Core 1.2 §6.3.8,
§6.4.3 with the prefixed paths of LwM2M-TS-Gateway 1.1), through the REST API: one
Observe-Composite over several end devices whose every notification carries all their records,
and a Write-Composite over several that writes all of it or nothing."""

from __future__ import annotations

import asyncio

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
from lwm2m.codec.formats import get_codec
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import EndDevice
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived
from lwm2m.server.role import Server

TEMP = Path((3303, 0, 5700), "dev1")
VOLUME = Path((3424, 0, 1), "meter")


async def end_devices(server: Server, endpoint: str) -> tuple[EndDevice, ...]:
    return (await server.registration(endpoint)).end_devices


async def test_one_observation_across_end_devices() -> None:
    thermometer = ObjectInstance(0, {5700: 21.5, 5750: "room"}, object_id=3303)
    meter = ObjectInstance(0, {1: 12.5, 3: "cold"}, object_id=3424)
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-obs", f"coap://127.0.0.1:{server.port}")
        gateway.add("dev1", [thermometer])
        gateway.add("meter", [meter])
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-obs"), lambda d: len(d) == 2)
            base = "/api/clients/gw-obs/composite"
            paths = [str(TEMP), str(VOLUME)]
            events = server.events()
            observe = await api.post(f"{base}/observe", json={"paths": paths})
            assert observe.status_code == 200 and observe.json()["code"] == "2.05", observe.text
            assert observe.json()["records"] == [
                {"path": "/dev1/3303/0/5700", "value": 21.5},
                {"path": "/meter/3424/0/1", "value": 12.5},
            ]
            # A change on either end device: a notification with the records of both.
            thermometer.set(5700, 23.0)
            notified = await next_event(events, NotificationReceived)
            assert notified.endpoint == "gw-obs"
            assert set(notified.records) == {Record(TEMP, 23.0), Record(VOLUME, 12.5)}
            meter.set(1, 13.5)
            notified = await next_event(events, NotificationReceived)
            assert set(notified.records) == {Record(TEMP, 23.0), Record(VOLUME, 13.5)}

            # An active cancel (Observe 1) ends it at the gateway at once.
            cancel = await api.delete(f"{base}/observe", params={"paths": ",".join(paths), "active": "true"})
            assert cancel.status_code == 200, cancel.text
            assert await _spanning(gateway) == 0
            thermometer.set(5700, 24.0)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(next_event(events, NotificationReceived), 0.5)
            # A passive one: the server answers the next notification with RST, which ends it.
            observe = await api.post(f"{base}/observe", json={"paths": paths})
            assert observe.json()["code"] == "2.05" and await _spanning(gateway) == 1
            cancel = await api.delete(f"{base}/observe", params={"paths": ",".join(paths)})
            assert cancel.status_code == 200, cancel.text
            meter.set(1, 14.5)
            await eventually(lambda: _spanning(gateway), lambda n: n == 0)
            events.close()


async def _spanning(gateway: Gateway) -> int:
    return len(gateway._spanning)


def composite_fetch(paths: list[Path], observe: int | None) -> RequestReceived:
    payload = get_codec(CF.SENML_JSON).encode([Record(p) for p in paths], ROOT, None)
    message = Message.build(
        Type.CON, Code.FETCH, token=b"t1", content_format=CF.SENML_JSON, payload=payload, observe=observe
    )
    return RequestReceived(("127.0.0.1", 5683), message, observe=observe)


async def test_an_observation_across_end_devices_ends_with_any_of_its_ends() -> None:
    """Cancelled by an Observe 1 with the same token or by the endpoint (an RST, a new Register):
    no end device's observer keeps it; nor does one whose part was refused."""
    gateway = Gateway("gw-ends")
    gateway.add("dev1", [ObjectInstance(0, {5700: 21.5}, object_id=3303)])
    gateway.add("meter", [ObjectInstance(0, {1: 12.5}, object_id=3424)])
    observe = composite_fetch([TEMP, VOLUME], 0)
    answer = gateway.route(observe, None)
    assert isinstance(answer, Message) and answer.code == Code.CONTENT and answer.observe == 0
    assert len(gateway._spanning) == 1
    assert all(len(gateway._nodes[p].reporter.observer) == 1 for p in ("dev1", "meter"))
    cancel = gateway.route(composite_fetch([TEMP, VOLUME], 1), None)
    assert isinstance(cancel, Message) and cancel.code == Code.CONTENT and cancel.observe is None
    assert not gateway._spanning
    assert all(len(gateway._nodes[p].reporter.observer) == 0 for p in ("dev1", "meter"))

    gateway.route(observe, None)
    gateway.cancelled(observe.relation)
    assert not gateway._spanning and len(gateway._nodes["meter"].reporter.observer) == 0
    # A part refused: nothing kept anywhere.
    refused = gateway.route(composite_fetch([TEMP, Path((3424, 0, 1), "dev9")], 0), None)
    assert isinstance(refused, Message) and refused.code == Code.NOT_FOUND
    missing = gateway.route(composite_fetch([TEMP, Path((5, 0, 1), "meter")], 0), None)
    assert isinstance(missing, Message) and missing.code == Code.CONTENT  # left out, as in a read
    gateway.cancelled(observe.relation)
    mixed = gateway.route(composite_fetch([TEMP, Path((3, 0, 1))], 0), None)
    assert isinstance(mixed, Message) and mixed.code == Code.BAD_REQUEST and b"not both" in mixed.payload
    assert not gateway._spanning
    assert all(len(gateway._nodes[p].reporter.observer) == 0 for p in ("dev1", "meter"))


async def test_write_composite_across_end_devices_is_all_or_nothing() -> None:
    thermometer = ObjectInstance(0, {5700: 21.5, 5750: "room"}, object_id=3303)
    meter = ObjectInstance(0, {1: 12.5, 3: "cold"}, object_id=3424)
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-write", f"coap://127.0.0.1:{server.port}")
        gateway.add("dev1", [thermometer])
        gateway.add("meter", [meter])
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-write"), lambda d: len(d) == 2)
            url = "/api/clients/gw-write/composite/write"
            good = [
                {"path": "/dev1/3303/0/5750", "value": "attic"},
                {"path": "/meter/3424/0/3", "value": "hot"},
                {"path": "/3/0/14", "value": "+01:00"},
            ]
            # The last part is refused (read-only): the parts before it are not written either.
            for bad, code in (
                ({"path": "/meter/3424/0/1", "value": 99.0}, "4.05"),  # Cumulated volume: R
                ({"path": "/meter/3424/7/3", "value": "x"}, "4.04"),  # no such instance
                ({"path": "/3/0/1", "value": "model"}, "4.05"),  # the gateway's own Model Number: R
            ):
                refused = await api.post(url, json={"records": [*good, bad]})
                assert refused.status_code == 200 and refused.json()["code"] == code, refused.text
                assert "nothing written" in refused.text
                assert (thermometer.get(5750), meter.get(3)) == ("room", "cold")
                assert gateway.client.tree.instance(3, 0).get(14) != "+01:00"
            written = await api.post(url, json={"records": good})
            assert written.json()["code"] == "2.04", written.text
            assert (thermometer.get(5750), meter.get(3)) == ("attic", "hot")
            assert gateway.client.tree.instance(3, 0).get(14) == "+01:00"


async def test_composite_on_an_end_devices_own_url_takes_its_own_paths() -> None:
    """``/api/clients/{gw}/devices/{prefix}/composite/...`` as on a device: the body names the end
    device's own paths, which go to the gateway under its prefix; a prefixed path there is a 400."""
    thermometer = ObjectInstance(0, {5700: 21.5, 5750: "room"}, object_id=3303)
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-own", f"coap://127.0.0.1:{server.port}")
        gateway.add("dev1", [thermometer])
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-own"), lambda d: len(d) == 1)
            base = "/api/clients/gw-own/devices/dev1/composite"
            read = await api.post(f"{base}/read", json={"paths": ["/3303/0/5700", "/3303/0/5750"]})
            assert read.status_code == 200 and read.json()["code"] == "2.05", read.text
            assert read.json()["records"] == [
                {"path": "/dev1/3303/0/5700", "value": 21.5},
                {"path": "/dev1/3303/0/5750", "value": "room"},
            ]
            records = [{"path": "/3303/0/5750", "value": "hall"}]
            write = await api.post(f"{base}/write", json={"records": records})
            assert write.status_code == 200 and write.json()["code"] == "2.04", write.text
            assert thermometer.get(5750) == "hall"
            events = server.events()
            observe = await api.post(f"{base}/observe", json={"paths": ["/3303/0/5700"]})
            assert observe.status_code == 200 and observe.json()["code"] == "2.05", observe.text
            thermometer.set(5700, 24.0)
            notified = await next_event(events, NotificationReceived)
            assert notified.records == (Record(TEMP, 24.0),)
            cancel = await api.delete(f"{base}/observe", params={"paths": "/3303/0/5700"})
            assert cancel.status_code in (200, 204), cancel.text
            prefixed = await api.post(f"{base}/read", json={"paths": ["/dev1/3303/0/5700"]})
            assert prefixed.status_code == 400 and "without a prefix" in prefixed.json()["error"]
