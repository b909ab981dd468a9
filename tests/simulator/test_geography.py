"""Simulated devices stand somewhere plausible: street lights in rows along a few straight streets of
a European city, a light every 35 m; the other positioned kinds scattered within a few kilometres
of the centre; the demo's map can show a fleet."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict

import pytest
from tests.helpers.simulator import MIDNIGHT, MODELS

from lwm2m.client.core.location import Location
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator.fleet import Fleet, FleetConfig
from lwm2m.simulator.geography import CITIES, LIGHT_SPACING, STREET_LIGHTS, City, city_for, scattered_position
from lwm2m.simulator.profiles import PROFILES, BuiltDevice, DeviceSpec, build_device
from lwm2m.simulator.values import Tick, hour_of_day

EARTH = 6_371_000.0
LYON = next(c for c in CITIES if c.name == "Lyon")
BARCELONA = next(c for c in CITIES if c.name == "Barcelona")


def fleet_of(profile: str, count: int, city: City, seed: int = 3) -> list[BuiltDevice]:
    rng = random.Random(seed)
    start = Tick(MIDNIGHT, hour_of_day(MIDNIGHT), 0.0, rng)
    return [
        build_device(PROFILES[profile], DeviceSpec(i, f"sim-{i:05d}", start, MODELS, city=city))
        for i in range(count)
    ]


def location(device: BuiltDevice) -> Location | None:
    found = [o for o in device.objects if o.object == 6]
    assert len(found) <= 1
    if not found:
        return None
    (where,) = found
    assert isinstance(where, Location) and where.id == 0
    return where


def metres(city: City, latitude: float, longitude: float) -> tuple[float, float]:
    """(east, north) metres from the centre, computed here independently of the simulator."""
    north = math.radians(latitude - city.latitude) * EARTH
    east = math.radians(longitude - city.longitude) * EARTH * math.cos(math.radians(city.latitude))
    return east, north


def in_box(city: City, latitude: float, longitude: float, km: float) -> bool:
    """Within the box of ``km`` kilometres each way around the centre."""
    east, north = metres(city, latitude, longitude)
    return abs(east) <= km * 1000 and abs(north) <= km * 1000


@pytest.mark.parametrize("city", [LYON, BARCELONA])
@pytest.mark.parametrize("count", [1, 60, 500])
def test_every_street_light_has_a_position_in_the_city_on_a_few_straight_streets(
    city: City, count: int
) -> None:
    lights = fleet_of("ucifi-streetlight", count, city)
    points = []
    for device in lights:
        where = location(device)
        assert where is not None, device
        lat, lon = where.get(0), where.get(1)
        assert isinstance(lat, float) and isinstance(lon, float)
        assert in_box(city, lat, lon, km=3.0), (device.device.get(2), lat, lon)
        assert where.get(3) == 5.0  # radius: a surveyed installation
        points.append(metres(city, lat, lon))
    # Turned back by the grid's bearing, each light shares its across-street coordinate with
    # the others of its street: group them into lines.
    a = math.radians(city.bearing)
    grid = [(e * math.sin(a) + n * math.cos(a), e * math.cos(a) - n * math.sin(a)) for e, n in points]
    rows: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (x, y) in enumerate(grid):
        rows[("y", round(y))].append(i)
        rows[("x", round(x))].append(i)
    # Each light belongs to the longer of its two candidate lines (the other one only crosses
    # the rows of parallel streets).
    lines: dict[tuple[str, int], list[float]] = defaultdict(list)
    for x, y in grid:
        along_x, along_y = rows[("y", round(y))], rows[("x", round(x))]
        if len(along_x) >= len(along_y):
            lines[("y", round(y))].append(x)
        else:
            lines[("x", round(x))].append(y)
    assert sum(len(v) for v in lines.values()) == count
    assert len(lines) <= max(1, math.ceil(count / STREET_LIGHTS)), "a few long streets, not scattered points"
    if count >= 48:
        assert {axis for axis, _ in lines} == {"x", "y"}, "streets in both directions of the grid"
    for along in lines.values():
        gaps = sorted(along)
        for first, second in itertools.pairwise(gaps):
            steps = (second - first) / LIGHT_SPACING
            assert abs(steps - round(steps)) < 0.02 and round(steps) >= 1, (first, second)


def test_a_mixed_fleet_puts_its_positioned_devices_within_a_few_km_and_meters_in_cellars() -> None:
    devices = fleet_of("mixed", 400, LYON)
    kinds: dict[str, int] = defaultdict(int)
    for device in devices:
        where = location(device)
        kinds[device.profile.name] += where is not None
        if device.profile.name == "ucifi-water-meter":
            assert where is None
            continue
        assert where is not None, device.profile.name
        assert in_box(LYON, where.get(0), where.get(1), km=5.0)
    assert all(
        kinds[name] > 0
        for name in ("ucifi-streetlight", "ucifi-parking", "ipso-weather", "ucifi-air-quality")
    )


def test_positions_are_the_same_every_run_and_spread_out() -> None:
    first = [location(d) for d in fleet_of("ucifi-parking", 50, LYON, seed=1)]
    again = [location(d) for d in fleet_of("ucifi-parking", 50, LYON, seed=2)]
    assert [(w.get(0), w.get(1)) for w in first] == [(w.get(0), w.get(1)) for w in again]  # type: ignore[union-attr]
    distances = [math.hypot(*metres(LYON, w.get(0), w.get(1))) for w in first]  # type: ignore[union-attr]
    assert max(distances) <= 4000 and max(distances) > 500 and len({round(d) for d in distances}) > 40
    assert scattered_position(LYON, "x") == scattered_position(LYON, "x")


def test_a_fleet_stands_in_one_city_chosen_by_its_prefix_or_named() -> None:
    assert city_for("demo") == city_for("demo") and city_for("demo") in CITIES
    assert len({city_for(f"p{i}") for i in range(50)}) == len(CITIES)
    fleet = Fleet("coap://127.0.0.1:5683", FleetConfig(count=1, prefix="demo"))
    assert fleet.city == city_for("demo")
    assert Fleet("coap://127.0.0.1:5683", FleetConfig(count=1, city="munich")).city.name == "Munich"
    with pytest.raises(ValueError, match="city 'Atlantis': expected one of Amsterdam"):
        Fleet("coap://127.0.0.1:5683", FleetConfig(count=1, city="Atlantis"))


async def test_the_server_reads_the_position_of_a_running_street_light() -> None:
    async with Server(ServerConfig(port=0)) as server:
        fleet = Fleet(
            server.uri,
            FleetConfig(count=3, profile="ucifi-streetlight", rate=None, local_host="127.0.0.1", city="Lyon"),
        )
        async with fleet:
            await fleet.wait_registered(timeout=10)
            registration = await server.registration(fleet.devices[2].endpoint)
            assert "/6/0" in {link.path for link in registration.objects}
            answer = await server.read(registration.endpoint, "/6/0", timeout=5)
            values = {str(r.path): r.value for r in answer.records}
            assert in_box(LYON, values["/6/0/0"], values["/6/0/1"], km=3.0)


def test_ten_thousand_lights_stay_within_a_few_km_and_never_share_a_spot() -> None:
    from lwm2m.simulator.geography import street_light_position

    spots = {street_light_position(LYON, i) for i in range(10_000)}
    assert len(spots) == 10_000
    assert all(in_box(LYON, lat, lon, km=4.0) for lat, lon in spots)
