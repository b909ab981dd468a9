"""Simulated street lighting (uCIFI): the photocell (3419), the outdoor lamp controller (3416)
that follows it unless the server overrides it, and the electrical monitor (3418) whose power
follows the lamp's dimming level. See :mod:`lwm2m.simulator.objects` for how ticks work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable
from typing import ClassVar

from lwm2m.client.instance import ResourceValue
from lwm2m.model.registry import ObjectRegistry
from lwm2m.simulator.objects import Simulated
from lwm2m.simulator.values import HOUR, Tick, Walk, daylight


class Photocell(Simulated):
    """uCIFI Photocell (3419): Photocell status (3) is true when it is dark enough for the lamp,
    with hysteresis between ON lux level (1) and OFF lux level (2)."""

    object_id: ClassVar[int] = 3419
    ON_LUX, OFF_LUX, STATUS = 1, 2, 3
    __slots__ = ("cloud",)

    def __init__(self, instance_id: int, *, start: Tick, models: ObjectRegistry | None = None) -> None:
        super().__init__(instance_id, {self.ON_LUX: 30.0, self.OFF_LUX: 60.0}, models=models)
        self.cloud = 1.0  # share of daylight coming through
        self.set(self.STATUS, self.lux(start.hour) < 30.0)

    def lux(self, hour: float) -> float:
        return 60000.0 * daylight(hour) * self.cloud

    def tick(self, t: Tick) -> None:
        self.cloud = min(1.0, max(0.1, self.cloud + t.rng.gauss(0.0, 0.1) * math.sqrt(t.dt / HOUR)))
        lux = self.lux(t.hour)
        dark = bool(self.get(self.STATUS))
        if dark and lux > float(self.get(self.OFF_LUX)):
            self.set(self.STATUS, False)
        elif not dark and lux < float(self.get(self.ON_LUX)):
            self.set(self.STATUS, True)

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        super().write(resource_id, value, replace=replace)
        self.wake()


class LampController(Simulated):
    """uCIFI Outdoor lamp controller (3416).

    Without a command from the server the lamp follows the photocell: Default
    dimming level (4) when dark, off by day. A Write of Command (1) is a manual
    override for Manual override default duration (53) simulated seconds: the
    lamp goes to that level (0 is off) at the next tick. Standby mode (29) true
    switches it off too.
    """

    object_id: ClassVar[int] = 3416
    COMMAND, IN_ACTION, LEVEL, DEFAULT_LEVEL = 1, 2, 3, 4
    OPERATING_HOURS, HOURS_RESET, ON_TIMESTAMP, SWITCHES, SWITCHES_RESET = 15, 16, 17, 18, 19
    GEAR_TEMPERATURE, STANDBY, WATTAGE = 21, 29, 36
    OVERRIDE_START, OVERRIDE_END, OVERRIDE_DURATION, OVERRIDE_ACTIVE = 50, 51, 53, 54
    executable: ClassVar[tuple[int, ...]] = (16, 19)
    __slots__ = ("commanded", "override_until", "photocell")

    def __init__(
        self,
        instance_id: int,
        *,
        wattage: int,
        start: Tick,
        photocell: Photocell | None = None,
        models: ObjectRegistry | None = None,
    ) -> None:
        level = 100 if photocell is None or photocell.get(Photocell.STATUS) else 0
        super().__init__(
            instance_id,
            {
                self.COMMAND: level,
                self.IN_ACTION: level,
                self.LEVEL: level,
                self.DEFAULT_LEVEL: 100,
                self.OPERATING_HOURS: round(start.rng.uniform(0.0, 20000.0), 2),
                self.ON_TIMESTAMP: int(start.now),
                self.SWITCHES: start.rng.randrange(100, 5000),
                self.GEAR_TEMPERATURE: 20.0,
                self.STANDBY: False,
                self.WATTAGE: wattage,
                self.OVERRIDE_DURATION: 3600,
                self.OVERRIDE_ACTIVE: False,
            },
            models=models,
        )
        self.photocell = photocell
        self.override_until = 0.0
        self.commanded: int | None = None  # a Command written since the last tick

    @property
    def level(self) -> int:
        return int(self.get(self.LEVEL))

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        super().write(resource_id, value, replace=replace)
        if resource_id == self.COMMAND and isinstance(value, int):
            self.commanded = value
            self.set(self.IN_ACTION, value)
        self.wake()

    def execute(self, resource_id: int, arguments: str) -> Awaitable[None] | None:
        if resource_id == self.HOURS_RESET:
            self.set(self.OPERATING_HOURS, 0.0)
        elif resource_id == self.SWITCHES_RESET:
            self.set(self.SWITCHES, 0)
        return None

    def tick(self, t: Tick) -> None:
        if self.commanded is not None:
            self.override_until = t.now + float(self.get(self.OVERRIDE_DURATION, 3600))
            self.set_number(self.OVERRIDE_START, int(t.now))
            self.set_number(self.OVERRIDE_END, int(self.override_until))
            self.set(self.OVERRIDE_ACTIVE, True)
            self.commanded = None
        if self.get(self.OVERRIDE_ACTIVE) and t.now >= self.override_until:
            self.set(self.OVERRIDE_ACTIVE, False)
        if self.get(self.OVERRIDE_ACTIVE):
            target = int(self.get(self.COMMAND))
        elif self.photocell is None or self.photocell.get(Photocell.STATUS):
            target = int(self.get(self.DEFAULT_LEVEL))
        else:
            target = 0
        if self.get(self.STANDBY):
            target = 0
        was_on = self.level > 0
        self.set(self.IN_ACTION, target)
        self.set(self.LEVEL, target)
        if (target > 0) != was_on:
            self.set_number(self.SWITCHES, int(self.get(self.SWITCHES)) + 1)
            if target > 0:
                self.set_number(self.ON_TIMESTAMP, int(t.now))
        if target > 0 and t.dt > 0:
            self.set_number(
                self.OPERATING_HOURS, round(float(self.get(self.OPERATING_HOURS)) + t.dt / HOUR, 3)
            )
        self.walked(self.GEAR_TEMPERATURE, _gear_temperature(target), t)


@functools.lru_cache(maxsize=128)
def _gear_temperature(level: int) -> Walk:
    # The control gear warms with the power it drives.
    return Walk(20.0 + 0.3 * level, -40.0, 120.0, swing=4.0, noise=1.0, decimals=1)


class ElectricalMonitor(Simulated):
    """uCIFI Electrical monitor (3418) on a lamp's supply: power follows the lamp's dimming level
    (a few tenths of a watt of standby when it is off), energy accumulates."""

    object_id: ClassVar[int] = 3418
    VOLTAGE, CURRENT, FREQUENCY, POWER, POWER_FACTOR, ENERGY, ENERGY_RESET = 1, 2, 3, 4, 5, 6, 7
    LOW_POWER_THRESHOLD, LOW_POWER, HIGH_POWER_THRESHOLD, HIGH_POWER = 10, 12, 13, 15
    DIMMING = 35
    STANDBY_WATTS = 0.4
    executable: ClassVar[tuple[int, ...]] = (7,)

    VOLTS = Walk(230.0, 207.0, 253.0, swing=-3.0, peaks=(19.0,), noise=1.5, reversion=6.0, decimals=1)
    HERTZ = Walk(50.0, 49.8, 50.2, noise=0.02, reversion=30.0, decimals=2)
    __slots__ = ("hertz", "lamp", "volts")

    def __init__(
        self, instance_id: int, *, lamp: LampController, start: Tick, models: ObjectRegistry | None = None
    ) -> None:
        wattage = float(lamp.get(LampController.WATTAGE))
        super().__init__(
            instance_id,
            {
                self.ENERGY: round(start.rng.uniform(0.0, 500000.0), 1),
                self.LOW_POWER_THRESHOLD: round(0.05 * wattage, 1),
                self.HIGH_POWER_THRESHOLD: round(1.2 * wattage, 1),
            },
            models=models,
        )
        self.lamp = lamp
        self.volts = self.walk_for(self.VOLTAGE, self.VOLTS)
        self.hertz = self.walk_for(self.FREQUENCY, self.HERTZ)
        self.begin(self.VOLTAGE, self.volts, start)
        self.begin(self.FREQUENCY, self.hertz, start)
        self._measure(start)

    def _measure(self, t: Tick) -> None:
        level = self.lamp.level
        wattage = float(self.lamp.get(LampController.WATTAGE))
        if level > 0:
            # LED drivers draw a floor of about 10% at the lowest dimming level.
            watts = wattage * (0.1 + 0.9 * level / 100.0) * (1.0 + t.rng.gauss(0.0, 0.01))
            pf = 0.97 - 0.25 * (1.0 - level / 100.0)
        else:
            watts = self.STANDBY_WATTS * (1.0 + t.rng.gauss(0.0, 0.05))
            pf = 0.35
        watts = max(0.0, watts)
        volts = float(self.get(self.VOLTAGE))
        self.number(self.POWER, round(watts, 1))
        self.number(self.POWER_FACTOR, round(pf, 2))
        self.number(self.CURRENT, round(watts / (volts * pf), 3))
        self.set(self.DIMMING, level)
        self.set(self.LOW_POWER, level > 0 and watts < float(self.get(self.LOW_POWER_THRESHOLD)))
        self.set(self.HIGH_POWER, watts > float(self.get(self.HIGH_POWER_THRESHOLD)))

    def tick(self, t: Tick) -> None:
        # The energy of the interval at the power measured at its start.
        energy = float(self.get(self.ENERGY)) + float(self.get(self.POWER)) * t.dt / HOUR
        self.number(self.ENERGY, round(energy, 1))
        self.walked(self.VOLTAGE, self.volts, t)
        self.walked(self.FREQUENCY, self.hertz, t)
        self._measure(t)

    def execute(self, resource_id: int, arguments: str) -> Awaitable[None] | None:
        if resource_id == self.ENERGY_RESET:
            self.set(self.ENERGY, 0.0)
        return None


# --- water meter -------------------------------------------------------------------------------------
