"""Random walks around daily cycles: bounded, mean-reverting, the same spread at any step."""

from __future__ import annotations

import random
import statistics

import pytest

from lwm2m.model.definition import ResourceDefinition
from lwm2m.model.value import ResourceType
from lwm2m.simulator.values import DAY, HOUR, Tick, Walk, daylight, ema, hour_of_day, rate_chance


def run(walk: Walk, hours: float, step: float, seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    hour, value = 0.0, walk.start(0.0, rng)
    out = []
    for _ in range(int(hours * HOUR / step)):
        nxt = (hour + step / HOUR) % 24
        value = walk.step(value, hour, nxt, step, rng)
        hour = nxt
        out.append((hour, value))
    return out


def test_a_walk_stays_in_its_bounds_and_rounds() -> None:
    walk = Walk(20.0, 15.0, 25.0, swing=8.0, noise=5.0, decimals=1)
    values = [v for _, v in run(walk, 48, 60.0)]
    assert min(values) >= 15.0 and max(values) <= 25.0
    assert min(values) == 15.0 and max(values) == 25.0  # pushed against both bounds
    shown = [walk.rounded(v) for v in values]
    assert all(v == round(v, 1) for v in shown)
    assert walk.rounded(25.04) == 25.0 and walk.rounded(14.0) == 15.0


def test_steps_smaller_than_the_rounding_still_move_the_reported_value() -> None:
    # A tick of 0.2 s moves a temperature by some hundredths of a degree: the walk keeps
    # the exact value, so that the tenths reported still change within seconds.
    walk = Walk(12.0, -40.0, 60.0, swing=5.0, noise=1.2, decimals=1)
    shown = {walk.rounded(v) for _, v in run(walk, 10 / 3600, 0.2)}
    assert len(shown) >= 2


def test_a_walk_follows_its_daily_cycle() -> None:
    walk = Walk(10.0, -50.0, 50.0, swing=5.0, peaks=(15.0,), noise=1.0)
    samples = run(walk, 24 * 20, 300.0)
    afternoon = statistics.mean(v for h, v in samples if 14 <= h < 16)
    night = statistics.mean(v for h, v in samples if 2 <= h < 4)
    assert 13.0 < afternoon < 16.0 and 4.0 < night < 7.5


def test_the_spread_around_the_cycle_does_not_depend_on_the_step() -> None:
    walk = Walk(0.0, -100.0, 100.0, noise=2.0, decimals=3)
    fine = statistics.pstdev(v for _, v in run(walk, 24 * 10, 10.0))
    coarse = statistics.pstdev(v for _, v in run(walk, 24 * 10, 600.0))
    assert 1.5 < fine < 2.5 and 1.5 < coarse < 2.5


def test_gaussian_peaks_make_rush_hours() -> None:
    walk = Walk(10.0, 0.0, 100.0, swing=20.0, peaks=(8.0, 18.0), width=1.0)
    assert walk.cycle(8.0) == pytest.approx(30.0, abs=0.01)
    assert walk.cycle(18.0) == pytest.approx(30.0, abs=0.01)
    assert walk.cycle(13.0) == pytest.approx(10.0, abs=0.01)
    assert walk.cycle(23.5) == pytest.approx(10.0, abs=0.1)
    assert walk.cycle(0.5) < walk.cycle(7.0)


def test_within_narrows_to_the_model_range() -> None:
    walk = Walk(50.0, -10.0, 150.0, noise=10.0)
    percent = ResourceDefinition(1, "Level", ResourceType.INTEGER, minimum=0, maximum=100)
    narrowed = walk.within(percent)
    assert (narrowed.lo, narrowed.hi) == (0.0, 100.0)
    free = ResourceDefinition(2, "Value", ResourceType.FLOAT)
    assert walk.within(free) is walk
    assert walk.within(None) is walk
    with pytest.raises(ValueError, match="reversed"):
        Walk(1.0, 5.0, 0.0)


def test_clock_helpers() -> None:
    assert hour_of_day(DAY * 100 + 3 * HOUR) == pytest.approx(3.0)
    assert hour_of_day(DAY * 100 + 23 * HOUR, utc_offset=2 * HOUR) == pytest.approx(1.0)
    assert daylight(3.0) == 0.0 and daylight(13.0) == pytest.approx(1.0)
    assert rate_chance(0.0, 10.0) == 0.0 and rate_chance(1.0, HOUR) == pytest.approx(0.632, abs=0.001)
    assert ema(0.0, 10.0, 0.0, 60.0) == 0.0 and 6.0 < ema(0.0, 10.0, 60.0, 60.0) < 6.5
    t = Tick(DAY * 100 + 0.5 * HOUR, 0.5, HOUR, random.Random())
    assert t.previous_hour == pytest.approx(23.5) and t.new_day
    assert not Tick(0.0, 5.0, HOUR, random.Random()).new_day
