"""Requests a gateway holds for an end device that hears only after its own uplinks (LoRaWAN class
A): the gateway acknowledges them with an empty ACK and answers later in a separate response
(RFC 7252 §5.2.2), so the REST call answers 202 with a request ID at once, as for a sleeping
queue-mode client, and the outcome comes as ``REQUEST_DONE`` and at ``GET /api/requests/{id}``.
A request the gateway answers at once is answered 200, as before. With our Gateway client and with
the simulator's class A end devices."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers.polling import eventually
from tests.helpers.server import next_event
from tests.helpers.web import client_for

from lwm2m import ClientConfig, Gateway
from lwm2m.client.instance import ObjectInstance
from lwm2m.coap.config import EndpointConfig
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import EndDevice
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived
from lwm2m.server.role import Server
from lwm2m.simulator.fleet import Fleet, FleetConfig
from lwm2m.web.app import create_app
from lwm2m.web.requests import RequestCompleted

QUICK_ACK = ClientConfig(coap_config=EndpointConfig(empty_ack_delay=0.1))


class Uplinks:
    """A class A end device's radio, driven by the test: what waits for it goes at ``uplink()``."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []

    async def downlink(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        await future

    def uplink(self) -> None:
        waiting, self.waiting = self.waiting, []
        for future in waiting:
            future.set_result(None)


async def end_devices(server: Server, endpoint: str) -> tuple[EndDevice, ...]:
    return (await server.registration(endpoint)).end_devices


async def outcome(api: Any, request_id: str) -> dict[str, Any]:
    async def look() -> dict[str, Any]:
        answer = await api.get(f"/api/requests/{request_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    return await eventually(look, lambda body: body["status"] != "queued", timeout=10)


async def test_a_held_request_answers_202_and_its_outcome_comes_later() -> None:
    radio = Uplinks()
    async with Server(ServerConfig(port=0)) as server:
        app = create_app(server)
        gateway = Gateway("gw-held", f"coap://127.0.0.1:{server.port}", config=QUICK_ACK)
        meter = ObjectInstance(0, {1: 12.5}, object_id=3424)
        gateway.add("lora-1", [meter], downlink=radio.downlink)
        gateway.add("wired", [ObjectInstance(0, {5700: 20.0}, object_id=3303)])
        async with gateway, client_for(server, app=app) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-held"), lambda d: len(d) == 2)
            done = app.state.api.requests.subscribe()

            # An end device that hears at once, and the gateway's own objects: 200 as ever.
            now = await api.get("/api/clients/gw-held/devices/wired/3303/0/5700")
            assert now.status_code == 200 and now.json()["records"][0]["value"] == 20.0
            own = await api.get("/api/clients/gw-held/3/0/0")
            assert own.status_code == 200, own.text

            # Held until the end device's next uplink: 202 once the gateway's empty ACK came.
            held = await api.get("/api/clients/gw-held/devices/lora-1/3424/0/1")
            assert held.status_code == 202, held.text
            body = held.json()
            assert body["status"] == "queued" and body["endpoint"] == "gw-held"
            assert held.headers["location"] == f"/api/requests/{body['requestId']}"
            assert len(radio.waiting) == 1  # the gateway holds it
            queued = await api.get(f"/api/requests/{body['requestId']}")
            assert queued.json()["status"] == "queued"
            radio.uplink()
            finished = await outcome(api, body["requestId"])
            assert finished["status"] == "done"
            assert finished["result"]["records"] == [{"path": "/lora-1/3424/0/1", "value": 12.5}]
            event = await asyncio.wait_for(done.get(), 5)
            assert isinstance(event, RequestCompleted) and event.request.request_id == body["requestId"]

            # A write held the same way changes the value once the device heard it.
            device = gateway.device("lora-1").instance(3, 0)
            assert device is not None
            write = await api.put("/api/clients/gw-held/devices/lora-1/3/0/14", json={"value": "+02:00"})
            assert write.status_code == 202, write.text
            assert device.get(14) != "+02:00"
            radio.uplink()
            finished = await outcome(api, write.json()["requestId"])
            assert finished["result"]["code"] == "2.04" and device.get(14) == "+02:00"

            # An Observe held the same way: its first answer comes at the uplink, then the
            # observation runs as any other.
            events = server.events()
            observe = await api.post("/api/clients/gw-held/devices/lora-1/3424/0/1/observe")
            assert observe.status_code == 202, observe.text
            radio.uplink()
            finished = await outcome(api, observe.json()["requestId"])
            assert finished["status"] == "done" and finished["result"]["code"] == "2.05", finished
            meter.set(1, 14.0)
            notified = await next_event(events, NotificationReceived)
            assert notified.records == (Record(Path((3424, 0, 1), "lora-1"), 14.0),)
            events.close()

            # A Write-Composite across a held end device and another: written once it heard it.
            records = [
                {"path": "/lora-1/3/0/14", "value": "+03:00"},
                {"path": "/wired/3303/0/5750", "value": "cellar"},
            ]
            composite = await api.post("/api/clients/gw-held/composite/write", json={"records": records})
            assert composite.status_code == 202, composite.text
            wired = gateway.device("wired").instance(3303, 0)
            assert wired is not None and wired.get(5750) != "cellar"
            radio.uplink()
            finished = await outcome(api, composite.json()["requestId"])
            assert finished["result"]["code"] == "2.04", finished
            assert (device.get(14), wired.get(5750)) == ("+03:00", "cellar")

            # ?wait=true holds the call instead, until the answer.
            waited = asyncio.ensure_future(api.get("/api/clients/gw-held/devices/lora-1/3424/0/1?wait=true"))
            await eventually(lambda: _waiting(radio), timeout=5)
            radio.uplink()
            answer = await asyncio.wait_for(waited, 10)
            assert answer.status_code == 200 and answer.json()["records"][0]["value"] == 14.0
            app.state.api.requests.unsubscribe(done)


async def test_a_held_request_that_is_never_answered_fails_within_the_response_timeout() -> None:
    radio = Uplinks()
    coap = EndpointConfig(response_timeout=0.5)  # after the empty ACK: the separate response's bound
    async with Server(ServerConfig(port=0, coap=coap)) as server:
        gateway = Gateway("gw-mute", f"coap://127.0.0.1:{server.port}", config=QUICK_ACK)
        gateway.add("lora-2", [ObjectInstance(0, {1: 1.0}, object_id=3424)], downlink=radio.downlink)
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_devices(server, "gw-mute"), lambda d: len(d) == 1)
            held = await api.get("/api/clients/gw-mute/devices/lora-2/3424/0/1?timeout=0.3")
            assert held.status_code == 202, held.text  # the call's own timeout no longer applies
            finished = await outcome(api, held.json()["requestId"])
            assert finished["status"] == "failed" and finished["result"]["httpStatus"] == 504
            assert "no response" in finished["result"]["error"]


async def test_the_simulators_class_a_end_devices_answer_202_then_at_their_uplink() -> None:
    async with Server(ServerConfig(port=0)) as server:
        config = FleetConfig(
            count=1,
            profile="ucifi-lorawan-gateway",
            rate=None,
            local_host="127.0.0.1",
            seed=7,
            tick=0.05,
            update_interval=5.0,
            end_devices=3,
            uplink_period=2.5,
        )
        async with Fleet(server.uri, config) as fleet, client_for(server) as api:
            await fleet.wait_registered(timeout=10)
            (gateway,) = fleet.devices
            await eventually(lambda: end_devices(server, gateway.endpoint), lambda d: len(d) == 3, timeout=10)
            device = gateway.end_devices[0]
            # Just after an uplink, so that the next one is over a second (the empty ACK) away.
            spoke = device.radio.uplinks
            await eventually(lambda: _uplinks(device), lambda n: n > spoke, timeout=10)
            uplinks = device.radio.uplinks
            held = await api.get(f"/api/clients/{gateway.endpoint}/devices/{device.prefix}/3/0/17")
            assert held.status_code == 202, held.text
            finished = await outcome(api, held.json()["requestId"])
            assert finished["status"] == "done", finished
            assert finished["result"]["records"][0]["value"] == device.profile.device_type
            assert device.radio.uplinks > uplinks


async def _waiting(radio: Uplinks) -> bool:
    return bool(radio.waiting)


async def _uplinks(device: Any) -> int:
    uplinks: int = device.radio.uplinks
    return uplinks
