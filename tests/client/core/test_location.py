"""Location (object 6): a move is one consistent fix, and observers hear of it."""

from __future__ import annotations

import pytest
from tests.helpers.client_core import running, values

from lwm2m.client.core.location import Location, decode_velocity, encode_velocity


async def test_move_notifies_an_observer_of_the_instance() -> None:
    location = Location(latitude=48.8584, longitude=2.2945, altitude=35.0, timestamp=1_700_000_000)
    async with running(location) as (server, _):
        observation = await server.observe("core-test", "/6/0")
        assert observation.response is not None
        assert values(observation.response)["/6/0/0"] == pytest.approx(48.8584)
        location.move(48.8606, 2.3376, radius=12.5, speed=1.5, bearing=90.0, timestamp=1_700_000_060)
        # The first notification already holds the whole fix.
        got = values(await observation.next(2))
        assert got["/6/0/0"] == pytest.approx(48.8606)
        assert got["/6/0/1"] == pytest.approx(2.3376)
        assert got["/6/0/2"] == pytest.approx(35.0)  # not given: kept
        assert got["/6/0/3"] == pytest.approx(12.5)
        assert got["/6/0/5"] == 1_700_000_060
        assert got["/6/0/6"] == pytest.approx(1.5)
        assert decode_velocity(got["/6/0/4"])[:2] == (pytest.approx(5 / 3.6), 90.0)  # type: ignore[arg-type]
        resource = await server.observe("core-test", "/6/0/1")
        location.move(-33.8568, 151.2153)
        assert values(await resource.next(2)) == {"/6/0/1": pytest.approx(151.2153)}
    assert location.latitude == pytest.approx(-33.8568)


def test_velocity_format() -> None:
    # 3GPP TS 23.032: type 0 (horizontal), bearing 9 bits, speed in km/h on 16 bits.
    assert encode_velocity(10.0, 270.0) == bytes([0x01, 0x0E, 0x00, 36])
    # Type 1 with a downward vertical speed: D bit set, 1 m/s is 4 km/h rounded.
    up_down = encode_velocity(0.0, 0.0, -1.0)
    assert up_down == bytes([0x12, 0x00, 0x00, 0x00, 4])
    speed, bearing, vertical = decode_velocity(up_down)
    assert (speed, bearing) == (0.0, 0.0) and vertical == pytest.approx(-4 / 3.6)
    with pytest.raises(ValueError):
        decode_velocity(b"\x20\x00\x00\x00")


def test_position_is_checked() -> None:
    with pytest.raises(ValueError, match="latitude"):
        Location(latitude=91.0)
    location = Location()
    with pytest.raises(ValueError, match="longitude"):
        location.move(0.0, 181.0)
    assert location.timestamp > 0
