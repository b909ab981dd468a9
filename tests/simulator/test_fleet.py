"""A fleet of simulated devices against our server, over loopback UDP."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig, FleetStats
from lwm2m.simulator import fleet as fleet_module
from lwm2m.simulator.lighting import LampController

P = Path.parse


@asynccontextmanager
async def fleet_and_server(**options: Any) -> AsyncIterator[tuple[Server, Fleet]]:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        options.setdefault("rate", None)
        options.setdefault("local_host", "127.0.0.1")
        async with Fleet(server.uri, FleetConfig(**options)) as fleet:
            await fleet.wait_registered(timeout=10)
            yield server, fleet


def value(response: Any) -> Any:
    assert response.code >> 5 == 2, response
    (record,) = response.records
    return record.value


async def eventually(check: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_a_fleet_registers_is_read_and_deregisters() -> None:
    async with fleet_and_server(count=20, profile="mixed", seed=4, prefix="city") as (server, fleet):
        registrations = await server.registrations()
        assert sorted(r.endpoint for r in registrations) == [f"city-{i:05d}" for i in range(20)]
        weather = [d for d in fleet.devices if d.profile.name == "ipso-weather"]
        assert weather, "the seed gives a weather station"
        temperature = value(await server.read(weather[0].endpoint, "/3303/0/5700"))
        assert isinstance(temperature, float) and -40.0 <= temperature <= 60.0
        model = value(await server.read(weather[0].endpoint, "/3/0/1"))
        assert model == "WS-300"
        stats = fleet.stats()
        assert isinstance(stats, FleetStats)
        assert (stats.devices, stats.started, stats.registered, stats.registrations) == (20, 20, 20, 20)
        assert stats.requests == 2 and stats.errors == 0


async def test_stopping_the_fleet_deregisters_every_device() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        fleet = Fleet(
            server.uri, FleetConfig(count=12, profile="ucifi-parking", rate=None, local_host="127.0.0.1")
        )
        async with fleet:
            await fleet.wait_registered(timeout=10)
            assert len(await server.registrations()) == 12
        assert await server.registrations() == []
        assert fleet.stopped == 12


async def test_switching_a_street_light_off_and_on_changes_its_power() -> None:
    options = {"count": 2, "profile": "ucifi-streetlight", "tick": 0.05, "update_interval": 5.0}
    async with fleet_and_server(**options) as (server, fleet):
        ep = fleet.devices[1].endpoint
        lamp = fleet.devices[1].instance(3416)
        assert isinstance(lamp, LampController)
        wattage = lamp.get(36)

        async def power() -> float:
            return float(value(await server.read(ep, "/3418/0/4")))

        answer = await server.write(ep, "/3416/0/1", [Record(P("/3416/0/1"), 100)])
        assert answer.code >> 5 == 2, answer

        async def is_on() -> bool:
            return await power() > 0.8 * wattage

        await eventually(is_on)
        answer = await server.write(ep, "/3416/0/1", [Record(P("/3416/0/1"), 0)])
        assert answer.code >> 5 == 2, answer

        async def is_off() -> bool:
            return await power() < 1.0

        await eventually(is_off)
        assert value(await server.read(ep, "/3416/0/3")) == 0  # dimming level
        assert value(await server.read(ep, "/3416/0/54")) is True  # manual override


async def test_observing_a_moving_value_with_pmin_and_pmax_gets_notifications() -> None:
    options = {
        "count": 3,
        "profile": "ipso-weather",
        "tick": 0.05,
        "update_interval": 0.05,
        "time_scale": 3600.0,  # an hour a second: the temperature moves at every tick
        "seed": 2,
    }
    async with fleet_and_server(**options) as (server, fleet):
        ep = fleet.devices[0].endpoint
        answer = await server.write_attributes(ep, "/3303/0/5700", {"pmin": 1, "pmax": 3})
        assert answer.code >> 5 == 2, answer
        observation = await server.observe(ep, "/3303/0/5700")
        loop = asyncio.get_running_loop()
        times, values = [loop.time()], [value(observation.response)]
        for _ in range(2):
            notification = await observation.next(timeout=3)
            times.append(loop.time())
            values.append(value(notification))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # The value changes at every tick: pmin spaces the notifications (about 1 s), never
        # more than pmax apart.
        assert all(0.8 <= g <= 3.5 for g in gaps), gaps
        assert min(gaps) < 2.0
        assert len(set(values)) > 1
        assert fleet.stats().notifications >= 2
        await observation.cancel()


async def test_a_firmware_update_goes_through_the_states() -> None:
    options = {"count": 1, "profile": "ucifi-water-meter", "install_seconds": 0.3}
    async with fleet_and_server(**options) as (server, fleet):
        ep = fleet.devices[0].endpoint
        assert value(await server.read(ep, "/5/0/3")) == 0  # Idle
        answer = await server.write(ep, "/5/0/0", [Record(P("/5/0/0"), b"WM-15 firmware 2.4.1\x00\x01")])
        assert answer.code >> 5 == 2, answer
        assert value(await server.read(ep, "/5/0/3")) == 2  # Downloaded
        answer = await server.execute(ep, "/5/0/2")
        assert answer.code >> 5 == 2, answer
        assert value(await server.read(ep, "/5/0/3")) == 3  # Updating

        async def done() -> bool:
            return value(await server.read(ep, "/5/0/3")) == 0

        await eventually(done)
        assert value(await server.read(ep, "/5/0/5")) == 1  # Update Result: success
        assert value(await server.read(ep, "/3/0/3")) == "2.4.1"  # the new firmware version
        answer = await server.execute(ep, "/5/0/2")
        assert answer.code == 0x85  # 4.05: nothing downloaded


async def test_a_reboot_registers_again() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        fleet = Fleet(
            server.uri,
            FleetConfig(
                count=2, profile="ipso-weather", rate=None, local_host="127.0.0.1", reboot_seconds=0.1
            ),
        )
        async with fleet:
            await fleet.wait_registered(timeout=10)
            device = fleet.devices[0]
            before = await server.registration(device.endpoint)
            answer = await server.execute(device.endpoint, "/3/0/4")
            assert answer.code >> 5 == 2, answer

            async def again() -> bool:
                return device.client.registrations == 2 and device.client.registered

            await eventually(again)
            after = await server.registration(device.endpoint)
            assert after.address[1] != before.address[1]  # a new socket, as after a restart


async def test_devices_start_at_the_rate_asked() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        loop = asyncio.get_running_loop()
        fleet = Fleet(
            server.uri, FleetConfig(count=6, profile="ucifi-parking", rate=20.0, local_host="127.0.0.1")
        )
        started = loop.time()
        async with fleet:
            await asyncio.sleep(0.12)
            elapsed = loop.time() - started
            assert 1 <= fleet.started <= elapsed * 20 + 1  # one every 50 ms, the first at once
            await fleet.wait_registered(timeout=10)
            assert loop.time() - started >= 0.24  # six at 20/s: the last one 0.25 s after the first


async def test_a_fleet_on_one_shared_socket_is_a_device_per_address() -> None:
    options = {"count": 6, "profile": "mixed", "seed": 4, "shared_network": "127.77.0.0/16"}
    async with fleet_and_server(**options) as (server, fleet):
        assert fleet.shared_udp is not None and len(fleet.shared_udp) == 6
        registrations = {r.endpoint: r.address for r in await server.registrations()}
        port = fleet.shared_udp.port
        # One port, an address each: the server tells them apart as it does devices on sockets.
        assert sorted(registrations.values()) == [(f"127.77.0.{i}", port) for i in range(1, 7)]
        for device in fleet.devices:
            model = value(await server.read(device.endpoint, "/3/0/1"))
            assert model == device.profile.model_number
        weather = next(d for d in fleet.devices if d.profile.name == "ipso-weather")
        answer = await server.write_attributes(weather.endpoint, "/3303/0/5700", {"pmin": 0, "pmax": 1})
        assert answer.code >> 5 == 2, answer
        observation = await server.observe(weather.endpoint, "/3303/0/5700")
        notification = await observation.next(timeout=3)
        assert isinstance(value(notification), float)
        await observation.cancel()
        assert fleet.stats().requests == 6 + 2 and fleet.stats().errors == 0  # reads, attributes, observe
    assert await server.registrations() == []  # every device de-registered through the shared socket
    assert fleet.shared_udp is not None and len(fleet.shared_udp) == 0


async def test_a_device_on_a_shared_socket_reboots_to_a_new_address() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        config = FleetConfig(
            count=2, profile="ipso-weather", rate=None, reboot_seconds=0.1, shared_network="127.78.0.0/24"
        )
        async with Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            device = fleet.devices[0]
            before = await server.registration(device.endpoint)
            answer = await server.execute(device.endpoint, "/3/0/4")
            assert answer.code >> 5 == 2, answer

            async def again() -> bool:
                return device.client.registrations == 2 and device.client.registered

            await eventually(again)
            after = await server.registration(device.endpoint)
            assert after.address[0] != before.address[0]  # as a device on a new socket after a restart
            assert value(await server.read(device.endpoint, "/3303/0/5700")) is not None


async def test_a_shared_network_needs_an_ipv4_server() -> None:
    fleet = Fleet("coap://[::1]:5999", FleetConfig(count=1, shared_network="127.82.0.0/24"))
    with pytest.raises(ValueError, match=r"coap://\[::1\]:5999 is IPv6; IPv4 only"):
        await fleet.start()
    assert fleet.shared_udp is None


async def test_the_value_loop_moves_a_tick_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_module, "STEP_SLICE", 2)
    monkeypatch.setattr(fleet_module, "TICK_PARTS", 1)
    options = {"count": 5, "profile": "ipso-weather", "tick": 60.0, "update_interval": 60.0}
    async with fleet_and_server(**options) as (_server, fleet):
        stepped: list[str] = []
        step = fleet._step

        def recording(device: Any, now: float, hour: float, rng: Any) -> None:
            stepped.append(device.endpoint)
            step(device, now, hour, rng)

        monkeypatch.setattr(fleet, "_step", recording)
        seen = [(len(stepped), done) for done in fleet._steps()]
        assert seen == [(2, 0.4), (4, 0.8)]  # a pause after every second device
        assert sorted(stepped) == sorted(d.endpoint for d in fleet.devices)  # and all of them moved


async def test_the_value_loop_spreads_a_tick_over_its_parts() -> None:
    options = {"count": 20, "profile": "ipso-weather", "tick": 60.0, "update_interval": 60.0}
    async with fleet_and_server(**options) as (_server, fleet):
        # Twenty devices in one bucket: ten parts of two, nine pauses at 10 %, 20 %, … of it.
        assert list(fleet._steps()) == [pytest.approx(k / 10) for k in range(1, 10)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "count 0"),
        ({"count": 1, "profile": "ucifi-toaster"}, "unknown profile 'ucifi-toaster'"),
        ({"count": 1, "prefix": "a b"}, "prefix 'a b'"),
        ({"count": 1, "rate": 0}, "rate 0"),
        ({"count": 1, "lwm2m_version": "2.0"}, "lwm2m_version '2.0'"),
        ({"count": 1, "tick": 1.0, "update_interval": 0.5}, "update_interval 0.5"),
        ({"count": 1, "shared_network": "127.0.0.300/8"}, "shared_network '127.0.0.300/8'"),
        ({"count": 1, "shared_network": "::1/128"}, "shared_network '::1/128'"),
    ],
)
def test_bad_fleet_options_name_the_value(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fleet("coap://127.0.0.1:5999", FleetConfig(**options))
