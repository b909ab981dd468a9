"""Device (object 3) through our server over loopback: reads, reboot, clock, error codes, battery."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.helpers.client import until
from tests.helpers.client_core import record, running, values

from lwm2m.client.core.device import BatteryStatus, Device, ErrorCode, PowerSource
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code


def acme(**kwargs: object) -> Device:
    return Device(
        manufacturer="ACME",
        model_number="T-1000",
        serial_number="SN-42",
        firmware_version="1.0.0",
        device_type="sensor",
        hardware_version="rev B",
        software_version="2.3",
        battery_level=80,
        battery_status=BatteryStatus.NORMAL,
        memory_total=512,
        memory_free=300,
        power_sources=[PowerSource.INTERNAL_BATTERY, PowerSource.USB],
        power_voltages=[3700, 5000],
        utc_offset="+02:00",
        timezone="Europe/Paris",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("fmt", ["tlv", "senml-cbor"])
async def test_read_device_instance(fmt: str) -> None:
    async with running(acme()) as (server, _):
        got = values(await server.read("core-test", "/3/0", format=fmt))
    assert got["/3/0/0"] == "ACME"
    assert got["/3/0/1"] == "T-1000"
    assert got["/3/0/2"] == "SN-42"
    assert got["/3/0/3"] == "1.0.0"
    assert (got["/3/0/6/0"], got["/3/0/6/1"]) == (1, 5)
    assert (got["/3/0/7/0"], got["/3/0/7/1"]) == (3700, 5000)
    assert got["/3/0/9"] == 80
    assert got["/3/0/10"] == 300
    assert got["/3/0/11/0"] == 0  # one instance, 0: no error
    assert abs(int(got["/3/0/13"]) - time.time()) < 5  # type: ignore[call-overload]
    assert got["/3/0/14"] == "+02:00"
    assert got["/3/0/15"] == "Europe/Paris"
    assert got["/3/0/16"] == "U"
    assert got["/3/0/17"] == "sensor"
    assert got["/3/0/20"] == 0
    assert got["/3/0/21"] == 512
    # Executables carry no value; absent optional resources are left out.
    assert not {"/3/0/4", "/3/0/5", "/3/0/12", "/3/0/8"} & set(got)


async def test_reboot_hook_runs_after_the_answer() -> None:
    order: list[str] = []
    rebooted = asyncio.Event()

    async def reboot() -> None:
        order.append("reboot")
        rebooted.set()

    def heard(event: RequestReceived, answer: Message) -> None:
        if event.message.uri_path == ("3", "0", "4"):
            order.append(f"answered {answer.code >> 5}.{answer.code & 31:02d}")

    async with running(acme(on_reboot=reboot), on_request=heard) as (server, _):
        response = await server.execute("core-test", "/3/0/4")
        assert response.code == Code.CHANGED
        await asyncio.wait_for(rebooted.wait(), 2)
    assert order == ["answered 2.04", "reboot"]


async def test_factory_reset_is_offered_only_with_a_hook() -> None:
    resets: list[str] = []
    async with running(acme()) as (server, client):
        refused = await server.execute("core-test", "/3/0/5")
        assert refused.code == Code.METHOD_NOT_ALLOWED
        device = client.tree.instance(3, 0)
        assert isinstance(device, Device)
        device.on_factory_reset = lambda: resets.append("reset")
        assert (await server.execute("core-test", "/3/0/5")).code == Code.CHANGED
        await until(lambda: bool(resets), timeout=0.5)
    assert resets == ["reset"]


async def test_current_time_is_the_clock_plus_what_the_server_wrote() -> None:
    async with running(acme()) as (server, client):
        target = int(time.time()) + 3600
        response = await server.write("core-test", "/3/0/13", [record("/3/0/13", target)])
        assert response.code == Code.CHANGED
        got = values(await server.read("core-test", "/3/0/13"))["/3/0/13"]
        assert target <= int(got) <= target + 2  # type: ignore[call-overload]
        device = client.tree.instance(3, 0)
        assert isinstance(device, Device) and abs(device.current_time - target) <= 2


async def test_error_codes_and_their_reset() -> None:
    device = acme()
    async with running(device) as (server, _):
        device.add_error(ErrorCode.LOW_BATTERY)
        device.add_error(ErrorCode.LOW_SIGNAL)
        device.add_error(ErrorCode.LOW_SIGNAL)  # already reported
        got = values(await server.read("core-test", "/3/0/11"))
        assert got == {"/3/0/11/0": 1, "/3/0/11/1": 4}
        device.clear_error(ErrorCode.LOW_BATTERY)
        assert values(await server.read("core-test", "/3/0/11")) == {"/3/0/11/1": 4}
        assert (await server.execute("core-test", "/3/0/12")).code == Code.CHANGED
        assert values(await server.read("core-test", "/3/0/11")) == {"/3/0/11/0": 0}
        assert device.errors == []
        device.add_error(ErrorCode.GPS_FAILURE)
        device.clear_error(ErrorCode.GPS_FAILURE)
        assert device.get(Device.ERROR_CODE) == {0: 0}


async def test_battery_level_change_is_notified() -> None:
    device = acme()
    async with running(device) as (server, _):
        observation = await server.observe("core-test", "/3/0/9")
        assert observation.response is not None and values(observation.response) == {"/3/0/9": 80}
        device.set(Device.BATTERY_LEVEL, 42)
        assert values(await observation.next(2)) == {"/3/0/9": 42}
        device.set(Device.MEMORY_FREE, 100)  # another resource: no notification for /3/0/9
        device.set(Device.BATTERY_LEVEL, 41)
        assert values(await observation.next(2)) == {"/3/0/9": 41}


async def test_device_resources_are_read_only_where_the_model_says() -> None:
    async with running(acme()) as (server, _):
        response = await server.write("core-test", "/3/0/0", [record("/3/0/0", "Evil Corp")])
        assert response.code == Code.METHOD_NOT_ALLOWED
        response = await server.write("core-test", "/3/0/15", [record("/3/0/15", "UTC")])
        assert response.code == Code.CHANGED
        assert values(await server.read("core-test", "/3/0/15")) == {"/3/0/15": "UTC"}


def test_constructor_checks_and_leaves_out_what_is_not_given() -> None:
    with pytest.raises(ValueError, match="battery_level"):
        Device(battery_level=120)
    bare = Device(current_time=False)
    assert bare.resource_ids() == [4, 11, 12, 16]
    with pytest.raises(ValueError, match="error code"):
        bare.add_error(0)
