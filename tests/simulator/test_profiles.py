"""Device profiles build valid devices, and their values stay valid and plausible as time passes.

No sockets: devices are built and ticked directly, a simulated day in ten-minute steps.
"""

from __future__ import annotations

import random

import pytest
from tests.helpers.simulator import MIDNIGHT, MODELS

from lwm2m.client.instance import ObjectInstance
from lwm2m.model.value import ResourceType, check_value
from lwm2m.simulator.lighting import ElectricalMonitor, LampController
from lwm2m.simulator.objects import ParkingSensor, WaterMeter
from lwm2m.simulator.profiles import PROFILES, BuiltDevice, DeviceSpec, build_device, get_profile
from lwm2m.simulator.values import DAY, Tick, hour_of_day

STEP = 600.0


def spec(index: int, rng: random.Random, now: float = MIDNIGHT) -> DeviceSpec:
    return DeviceSpec(index, f"dev-{index:05d}", Tick(now, hour_of_day(now), 0.0, rng), MODELS)


def advance(device: BuiltDevice, rng: random.Random, start: float, seconds: float, step: float = STEP):
    """Tick every part from ``start`` for ``seconds``; yields each Tick after it was applied."""
    now = start
    while now < start + seconds:
        now += step
        t = Tick(now, hour_of_day(now), step, rng)
        for part in device.parts:
            part.tick(t)
        yield t


def invalid_values(instance: ObjectInstance) -> list[str]:
    """Every stored value that is not of its resource's type or lies outside its model range."""
    bad: list[str] = []
    for rid, value in instance.values():
        r = instance.definition.resources[rid]
        for v in value.values() if isinstance(value, dict) else [value]:
            where = f"/{instance.object}/{instance.id}/{rid} ({r.name}) = {v!r}"
            try:
                checked = check_value(v, r.type)
            except ValueError as exc:
                bad.append(f"{where}: {exc}")
                continue
            if type(checked) is not type(v):
                bad.append(f"{where}: stored as {type(v).__name__}, the type is {r.type.value}")
            numeric = r.type in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT)
            if numeric and r.minimum is not None and v < r.minimum:
                bad.append(f"{where}: below {r.minimum}")
            if numeric and r.maximum is not None and v > r.maximum:
                bad.append(f"{where}: above {r.maximum}")
            if r.type is ResourceType.STRING and r.maximum is not None and len(str(v)) > r.maximum:
                bad.append(f"{where}: longer than {r.maximum}")
    return bad


def test_every_profile_is_listed_with_its_objects() -> None:
    assert list(PROFILES) == [
        "ipso-weather",
        "ucifi-streetlight",
        "ucifi-water-meter",
        "ucifi-air-quality",
        "ucifi-parking",
        "ucifi-lorawan-gateway",
        "mixed",
    ]
    rng = random.Random(1)
    for name, profile in PROFILES.items():
        if name == "mixed":
            continue
        built = build_device(profile, spec(0, rng))
        assert sorted({o.object for o in built.objects}) == sorted(profile.objects), name
    with pytest.raises(ValueError, match=r"unknown profile 'nope'.*ipso-weather"):
        get_profile("nope")


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_builds_valid_devices_that_stay_valid_for_two_days(name: str) -> None:
    rng = random.Random(7)
    for index in range(6):
        device = build_device(get_profile(name), spec(index, rng))
        assert {3, 5} <= {o.object for o in device.objects}
        for instance in device.objects:
            assert invalid_values(instance) == [], device.profile.name
        for _ in advance(device, rng, MIDNIGHT, 2 * DAY):
            pass
        for instance in device.objects:
            assert invalid_values(instance) == [], device.profile.name


def test_mixed_blends_every_profile_and_a_seed_repeats_it() -> None:
    def kinds(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [build_device(PROFILES["mixed"], spec(i, rng)).profile.name for i in range(200)]

    first = kinds(3)
    assert set(first) == {n for n in PROFILES if n != "mixed"}
    assert kinds(3) == first
    assert first.count("ucifi-streetlight") > first.count("ucifi-air-quality")


def test_weather_follows_a_daily_cycle() -> None:
    rng = random.Random(11)
    warm = cold = 0.0
    for index in range(20):
        device = build_device(get_profile("ipso-weather"), spec(index, rng))
        temperature = device.objects[2]
        for t in advance(device, rng, MIDNIGHT, DAY):
            if 14 <= t.hour < 16:
                warm += temperature.get(5700)
            elif 2 <= t.hour < 4:
                cold += temperature.get(5700)
        assert temperature.get(5601) <= temperature.get(5700) <= temperature.get(5602)
    assert warm > cold + 20 * 12 * 3.0  # afternoons some degrees warmer than nights, on average


def streetlight(rng: random.Random) -> tuple[BuiltDevice, LampController, ElectricalMonitor]:
    device = build_device(get_profile("ucifi-streetlight"), spec(0, rng, MIDNIGHT + 12 * 3600))
    lamp = next(o for o in device.objects if isinstance(o, LampController))
    monitor = next(o for o in device.objects if isinstance(o, ElectricalMonitor))
    return device, lamp, monitor


def test_a_lamp_switched_off_and_on_changes_its_power_at_the_next_tick() -> None:
    rng = random.Random(5)
    device, lamp, monitor = streetlight(rng)
    woken: list[bool] = []
    lamp.on_wake = lambda: woken.append(True)
    noon = MIDNIGHT + 12 * 3600
    ticks = advance(device, rng, noon, DAY, step=10.0)
    next(ticks)
    assert lamp.level == 0 and monitor.get(4) < 1.0  # daylight: off, standby power only
    lamp.write(1, 100)  # the server's Command: full on
    assert woken
    next(ticks)
    on = monitor.get(4)
    assert lamp.level == 100 and lamp.get(54) is True
    assert on > 0.8 * lamp.get(36)
    energy = monitor.get(6)
    lamp.write(1, 0)
    next(ticks)
    assert lamp.level == 0
    assert monitor.get(4) < 1.0  # about zero
    assert monitor.get(35) == 0
    next(ticks)
    assert monitor.get(6) >= energy  # energy accumulates
    switches = lamp.get(18)
    lamp.write(1, 50)
    next(ticks)
    assert 0.3 * on < monitor.get(4) < 0.8 * on
    assert lamp.get(18) == switches + 1


def test_a_lamp_without_commands_follows_the_photocell() -> None:
    rng = random.Random(8)
    device, lamp, _ = streetlight(rng)
    levels = {round(t.hour): lamp.level for t in advance(device, rng, MIDNIGHT + 12 * 3600, DAY, step=STEP)}
    assert levels[12] == 0 and levels[1] == 100 and levels[23] == 100


def test_a_water_meter_index_only_grows() -> None:
    rng = random.Random(9)
    device = build_device(get_profile("ucifi-water-meter"), spec(0, rng))
    meter = next(o for o in device.objects if isinstance(o, WaterMeter))
    assert not meter.has_resource(2) and not meter.has_resource(5)  # no resets offered
    readings = [meter.get(1)]
    pulses = [meter.get(4)]
    for _ in advance(device, rng, MIDNIGHT, DAY):
        readings.append(meter.get(1))
        pulses.append(meter.get(4))
    assert readings == sorted(readings) and pulses == sorted(pulses)
    assert 0.05 < readings[-1] - readings[0] < 2.0  # a household's day, in m3
    battery = device.objects[3]
    assert battery.get(1) == device.device.get(9)  # the Device battery level mirrors 3411


def test_parking_occupancy_toggles_sometimes() -> None:
    rng = random.Random(12)
    changes = 0
    for index in range(10):
        device = build_device(get_profile("ucifi-parking"), spec(index, rng))
        sensor = next(o for o in device.objects if isinstance(o, ParkingSensor))
        previous = sensor.get(1)
        for _ in advance(device, rng, MIDNIGHT, DAY, step=60.0):
            changes += sensor.get(1) != previous
            previous = sensor.get(1)
            assert 0 <= sensor.get(3) <= DAY
    assert 10 <= changes <= 10 * 60  # some cars a day per space, not a flicker


def test_profiles_are_callable_for_a_single_client() -> None:
    objects = PROFILES["ucifi-air-quality"](seed=1)
    assert [o.object for o in objects] == [3, 5, 3428, 3433, 6]


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if not p.blend])
def test_the_object_instances_of_a_device_have_no_dict_of_attributes(name: str) -> None:
    """Tens of thousands of devices per process: every instance a profile builds has __slots__ all
    the way down (an attribute dict would be some 100 bytes more per instance)."""
    for instance in PROFILES[name](seed=1):
        assert not hasattr(instance, "__dict__"), type(instance).__name__
