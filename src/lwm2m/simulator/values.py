"""How simulated values move: bounded random walks around daily cycles, and the simulated clock.

A :class:`Walk` is a mean-reverting random walk (an Ornstein-Uhlenbeck process)
around a daily cycle: temperature peaks in the afternoon, traffic noise and
NO2 at the morning and evening rush hours. Its exact discretisation keeps the
spread around the cycle at ``noise`` whatever the time between two steps, so a
device ticked every ten seconds and one ticked once a minute look alike. Every
value is clamped to the resource's range from the model (``minimum``/``maximum``
of its definition) and to the walk's own bounds.

All times are simulated: ``Tick.now`` is Unix time that may run faster than the
wall clock (``time_scale``), so a demo can show a whole day in minutes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from lwm2m.model.definition import ResourceDefinition

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Tick:
    """What a simulated object needs to move its values one step."""

    now: float  # simulated Unix time, seconds
    hour: float  # simulated local hour of day, 0 <= hour < 24
    dt: float  # simulated seconds since this device's previous step (0 on its first)
    rng: random.Random

    @property
    def previous_hour(self) -> float:
        """The hour of day of the previous step."""
        return (self.hour - self.dt / HOUR) % 24.0

    @property
    def new_day(self) -> bool:
        """Whether local midnight passed since the previous step."""
        return self.dt >= DAY or (self.dt > 0 and self.previous_hour > self.hour)


def hour_of_day(unix_time: float, utc_offset: float = 0.0) -> float:
    """The local hour of day (0..24) at ``unix_time`` for a zone ``utc_offset`` seconds east of UTC."""
    return ((unix_time + utc_offset) % DAY) / HOUR


def _circular_distance(a: float, b: float) -> float:
    d = abs(a - b) % 24.0
    return min(d, 24.0 - d)


def daylight(hour: float) -> float:
    """Relative daylight, 0 at night to 1 at solar noon (sunrise 6:30, sunset 19:30)."""
    sunrise, sunset = 6.5, 19.5
    if not sunrise < hour < sunset:
        return 0.0
    return math.sin(math.pi * (hour - sunrise) / (sunset - sunrise))


@dataclass(frozen=True, slots=True)
class Walk:
    """A bounded random walk around a daily cycle.

    The cycle is ``mean + swing * shape(hour)``: with ``width`` 0 one cosine wave
    highest at ``peaks[0]`` and lowest twelve hours later (shape -1..1); with a
    ``width`` (hours) a Gaussian bump at each of ``peaks`` over a base of
    ``mean`` (shape 0..1). Around it the value wanders with a typical deviation
    of ``noise`` and is pulled back at ``reversion`` per hour.
    """

    mean: float
    lo: float
    hi: float
    swing: float = 0.0
    peaks: tuple[float, ...] = (15.0,)
    width: float = 0.0
    noise: float = 0.0
    reversion: float = 2.0  # per hour: about half of a deviation is gone after 20 minutes
    decimals: int = 1

    def __post_init__(self) -> None:
        if not self.lo <= self.hi:
            raise ValueError(f"walk bounds {self.lo}..{self.hi} are reversed")
        if not self.peaks:
            raise ValueError("a walk needs at least one peak hour")

    def within(self, resource: ResourceDefinition | None) -> Walk:
        """This walk with its bounds narrowed to the resource's range in the model."""
        if resource is None:
            return self
        lo = self.lo if resource.minimum is None else max(self.lo, float(resource.minimum))
        hi = self.hi if resource.maximum is None else min(self.hi, float(resource.maximum))
        if lo > hi:
            lo = hi = min(max(self.mean, lo), hi)
        if (lo, hi) == (self.lo, self.hi):
            return self
        return Walk(
            self.mean, lo, hi, self.swing, self.peaks, self.width, self.noise, self.reversion, self.decimals
        )

    def cycle(self, hour: float) -> float:
        """The value the walk is drawn towards at ``hour``."""
        if self.width <= 0:
            shape = math.cos(2 * math.pi * (hour - self.peaks[0]) / 24.0)
        else:
            two_w2 = 2 * self.width * self.width
            shape = sum(math.exp(-(_circular_distance(hour, p) ** 2) / two_w2) for p in self.peaks)
        return self.mean + self.swing * shape

    def start(self, hour: float, rng: random.Random) -> float:
        """A first value: the cycle plus a deviation drawn from the walk's stationary spread."""
        deviation = rng.gauss(0.0, self.noise) if self.noise else 0.0
        return self.clamp(self.cycle(hour) + deviation)

    def step(self, value: float, previous_hour: float, hour: float, dt: float, rng: random.Random) -> float:
        """The value ``dt`` simulated seconds after ``value`` (which was current at ``previous_hour``).

        Values are kept unrounded: steps of a few seconds are far smaller than the
        rounding of what a device reports, and rounding at every step would undo them.
        :meth:`rounded` gives what to report.
        """
        deviation = value - self.cycle(previous_hour)
        if dt > 0 and self.noise:
            decay = math.exp(-self.reversion * dt / HOUR)
            deviation = deviation * decay + self.noise * math.sqrt(1.0 - decay * decay) * rng.gauss(0.0, 1.0)
        elif dt > 0:
            deviation *= math.exp(-self.reversion * dt / HOUR)
        return self.clamp(self.cycle(hour) + deviation)

    def clamp(self, value: float) -> float:
        """``value`` within the walk's bounds."""
        return min(max(value, self.lo), self.hi)

    def rounded(self, value: float) -> float:
        """``value`` clamped and rounded to ``decimals``: what a device reports."""
        v = round(self.clamp(value), self.decimals)
        # Rounding may step just outside a bound that has more decimals than the walk.
        return self.clamp(v)


def rate_chance(rate_per_hour: float, dt: float) -> float:
    """The chance that an event of a Poisson process with ``rate_per_hour`` happens within ``dt`` seconds."""
    if rate_per_hour <= 0 or dt <= 0:
        return 0.0
    return 1.0 - math.exp(-rate_per_hour * dt / HOUR)


def ema(average: float, value: float, dt: float, period: float) -> float:
    """An exponential moving average over about ``period`` seconds, moved by ``dt`` seconds at ``value``."""
    if dt <= 0:
        return average
    a = 1.0 - math.exp(-dt / period)
    return average + a * (value - average)
