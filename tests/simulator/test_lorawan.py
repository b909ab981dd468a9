"""The simulator's LoRaWAN gateway (profile ucifi-lorawan-gateway): uCIFI end devices behind an
LwM2M Gateway, each with its own Device object, sparse uplinks, and class A downlinks: a request
to an end device is answered at its next uplink."""

from __future__ import annotations

import asyncio

import pytest
from tests.helpers.polling import eventually

from lwm2m.coap.numbers import Code
from lwm2m.errors import ConfigError
from lwm2m.model.path import Path
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator.fleet import Fleet, FleetConfig
from lwm2m.simulator.lorawan import ClassARadio
from lwm2m.simulator.profiles import PROFILES

END_DEVICE_OBJECTS = {3424: "ucifi-water-meter", 3431: "ucifi-parking", 3416: "ucifi-streetlight"}


async def test_a_gateway_fleet_with_class_a_end_devices() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        config = FleetConfig(
            count=1,
            profile="ucifi-lorawan-gateway",
            rate=None,
            local_host="127.0.0.1",
            seed=5,
            tick=0.05,
            update_interval=5.0,  # the gateway itself; its end devices are looked at every tick
            end_devices=12,
            uplink_period=0.6,
        )
        async with Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            (gateway,) = fleet.devices
            devices = await eventually(
                lambda: _end_devices(server, gateway.endpoint), lambda d: len(d) == 12, timeout=10
            )
            kinds = set()
            for device in devices:
                ids = {o.object_id for o in device.objects}
                assert 3 in ids, device  # a Device object of its own
                (kind,) = ids & set(END_DEVICE_OBJECTS)
                kinds.add(END_DEVICE_OBJECTS[kind])
            assert len(kinds) >= 2
            first = gateway.end_devices[0]
            path = Path((3, 0, 17), first.prefix)  # its Device Type
            uplinks = first.radio.uplinks
            answer = await server.read(gateway.endpoint, path, timeout=10)
            assert answer.code == Code.CONTENT, answer
            assert first.radio.uplinks > uplinks  # answered at an uplink, not before
            (record,) = answer.records
            assert record.path == path and record.value == first.profile.device_type
            own = await server.read(gateway.endpoint, "/3/0/17")  # the gateway answers at once
            assert own.records[0].value == "LoRaWAN gateway"


async def _end_devices(server: Server, endpoint: str) -> tuple:  # type: ignore[type-arg]
    return (await server.registration(endpoint)).end_devices


async def test_a_downlink_waits_for_the_next_uplink() -> None:
    radio = ClassARadio(30.0, first_uplink=100.0)
    held = asyncio.ensure_future(radio.downlink())
    await asyncio.sleep(0)
    assert radio.waiting == 1
    assert not radio.uplink_due(99.0)
    await asyncio.sleep(0)
    assert not held.done()
    assert radio.uplink_due(100.5)
    await asyncio.sleep(0)
    assert held.done() and radio.waiting == 0
    assert radio.next_uplink == 130.0 and radio.uplinks == 1
    assert radio.uplink_due(500.0) and radio.next_uplink == 500.0  # after a long pause: from now


def test_the_gateway_profile_and_its_settings() -> None:
    profile = PROFILES["ucifi-lorawan-gateway"]
    assert {name for name, _ in profile.end_devices} == set(END_DEVICE_OBJECTS.values())
    assert ("ucifi-lorawan-gateway", 0.01) in PROFILES["mixed"].blend
    with pytest.raises(ConfigError, match="end_devices"):
        FleetConfig(end_devices=0)
    with pytest.raises(ConfigError, match="uplink_period"):
        FleetConfig(uplink_period=0)
