"""Simulated object instances: IPSO sensors and uCIFI devices whose values move with the fleet's ticks.

Each class is an :class:`~lwm2m.client.instance.ObjectInstance` with a
``tick(t)`` method that the fleet's one shared loop calls every few seconds.
Values change through ``set``, so the client's observer applies the server's
notification attributes (pmin, pmax, gt, lt, st, epmin, epmax) as for any device.
A server's Write or Execute that changes what the device does calls ``wake()``,
which asks the fleet to tick the device at its very next tick instead of at its
turn (so a lamp switched off shows its power drop within one tick).

Objects of one device refer to each other where the physics does: the
electrical monitor (3418) reads the lamp controller's (3416) dimming level (those live in
:mod:`lwm2m.simulator.lighting`), the
lamp follows the photocell (3419) unless the server overrides it, and a
battery's (3411) level is also the Device's Battery Level (3/0/9). Firmware
Update (5) is the client's own state machine
(:class:`lwm2m.client.core.firmware.FirmwareUpdate`); :class:`Installer` plays
the flashing.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from lwm2m.client.instance import ObjectInstance, ResourceValue
from lwm2m.errors import BadRequest
from lwm2m.model.definition import ResourceDefinition
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ResourceType
from lwm2m.simulator.values import DAY, HOUR, Tick, Walk, daylight, ema, rate_chance

Wake = Callable[[], None]

_INTEGERS = (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.TIME)


@functools.lru_cache(maxsize=1024)
def _narrowed(walk: Walk, resource: ResourceDefinition | None) -> Walk:
    # Walks and definitions are frozen: devices of one profile share their narrowed walks.
    return walk.within(resource)


class Simulated(ObjectInstance):
    """An object instance moved by the fleet's ticks. Override :meth:`tick`."""

    # A few per simulated device: no dict of attributes (each subclass names its own too).
    __slots__ = ("exact", "on_wake")

    def __init__(
        self,
        instance_id: int = 0,
        values: Mapping[int, Any] | None = None,
        *,
        object_id: int | None = None,
        models: ObjectRegistry | None = None,
    ) -> None:
        super().__init__(instance_id, values, object_id=object_id, models=models)
        self.on_wake: Wake | None = None  # set by the fleet
        # Unrounded values of walked resources; made by the first walk (most parts walk none).
        self.exact: dict[int, float] | None = None

    def tick(self, t: Tick) -> None:
        """Move the values ``t.dt`` simulated seconds forward."""

    def wake(self) -> None:
        """Ask to be ticked at the next tick (after a Write or Execute changed the device)."""
        if self.on_wake is not None:
            self.on_wake()

    def walk_for(self, resource_id: int, walk: Walk) -> Walk:
        """``walk`` bounded by the range of ``resource_id`` in this object's model."""
        return _narrowed(walk, self.definition.resources.get(resource_id))

    def number(self, resource_id: int, value: float) -> None:
        """Set a numeric resource, as an integer where its type is one."""
        r = self.definition.resources[resource_id]
        self.set_number(resource_id, round(value) if r.type in _INTEGERS else float(value))

    def begin(self, resource_id: int, walk: Walk, start: Tick) -> float:
        """Give a walked resource its first value; returns what it reports."""
        exact = self.exact
        if exact is None:
            exact = self.exact = {}
        v = exact[resource_id] = walk.start(start.hour, start.rng)
        shown = walk.rounded(v)
        self.number(resource_id, shown)
        return shown

    def walked(self, resource_id: int, walk: Walk, t: Tick) -> float:
        """Step the resource's value along ``walk`` (already bounded) and store it; returns what
        it reports (rounded)."""
        known = self.exact
        if known is None:
            known = self.exact = {}
        exact = known.get(resource_id)
        if exact is None:
            exact = float(self.get(resource_id, walk.mean))
        v = known[resource_id] = walk.step(exact, t.previous_hour, t.hour, t.dt, t.rng)
        shown = walk.rounded(v)
        self.number(resource_id, shown)
        return shown


# --- IPSO sensors ------------------------------------------------------------------------------------


class Sensor(Simulated):
    """An IPSO sensor (Temperature 3303, Humidity 3304, Barometer 3315, …): the Sensor Value walks,
    Min/Max Measured Value follow it, Reset Min and Max Measured Values (5605) resets them."""

    VALUE, MIN_MEASURED, MAX_MEASURED, RANGE_MIN, RANGE_MAX, RESET = 5700, 5601, 5602, 5603, 5604, 5605
    UNITS = 5701
    executable: ClassVar[tuple[int, ...]] = (5605,)
    __slots__ = ("walk",)

    def __init__(
        self,
        instance_id: int,
        *,
        object_id: int | None = None,
        walk: Walk,
        units: str,
        start: Tick,
        models: ObjectRegistry | None = None,
    ) -> None:
        super().__init__(instance_id, object_id=object_id, models=models)
        self.walk = self.walk_for(self.VALUE, walk)
        first = self.begin(self.VALUE, self.walk, start)
        self.number(self.MIN_MEASURED, first)
        self.number(self.MAX_MEASURED, first)
        self.number(self.RANGE_MIN, self.walk.lo)
        self.number(self.RANGE_MAX, self.walk.hi)
        self.set(self.UNITS, units)

    def tick(self, t: Tick) -> None:
        v = self.walked(self.VALUE, self.walk, t)
        if v < self.get(self.MIN_MEASURED):
            self.number(self.MIN_MEASURED, v)
        if v > self.get(self.MAX_MEASURED):
            self.number(self.MAX_MEASURED, v)

    def execute(self, resource_id: int, arguments: str) -> Awaitable[None] | None:
        if resource_id == self.RESET:
            v = self.get(self.VALUE)
            self.set(self.MIN_MEASURED, v)
            self.set(self.MAX_MEASURED, v)
        return None


class NoiseSensor(Sensor):
    """uCIFI Noise sensor (3433): sound level in dB, with Abnormal noise detected above a threshold."""

    object_id: ClassVar[int] = 3433
    VALUE, MIN_MEASURED, MAX_MEASURED, RANGE_MIN, RANGE_MAX, RESET = 3, 4, 5, 6, 7, 8
    GUNSHOT, ABNORMAL = 1, 2
    executable: ClassVar[tuple[int, ...]] = (8,)
    ABNORMAL_DB = 85.0
    __slots__ = ("level",)

    def __init__(
        self, instance_id: int, *, walk: Walk, start: Tick, models: ObjectRegistry | None = None
    ) -> None:
        Simulated.__init__(self, instance_id, {self.GUNSHOT: False}, models=models)
        self.walk = self.walk_for(self.VALUE, walk)
        self.level = self.walk.start(start.hour, start.rng)  # the background, without loud moments
        first = self.walk.rounded(self.level)
        for rid in (self.VALUE, self.MIN_MEASURED, self.MAX_MEASURED):
            self.number(rid, first)
        self.number(self.RANGE_MIN, self.walk.lo)
        self.number(self.RANGE_MAX, self.walk.hi)
        self.set(self.ABNORMAL, first >= self.ABNORMAL_DB)

    def tick(self, t: Tick) -> None:
        self.level = self.walk.step(self.level, t.previous_hour, t.hour, t.dt, t.rng)
        v = self.walk.rounded(self.level)
        # A passing truck or a siren: a loud moment now and then, more by day, that the
        # background level does not keep.
        if t.rng.random() < rate_chance(0.5 + 2.0 * daylight(t.hour), t.dt):
            v = self.walk.rounded(self.level + t.rng.uniform(20.0, 35.0))
        self.number(self.VALUE, v)
        if v < self.get(self.MIN_MEASURED):
            self.number(self.MIN_MEASURED, v)
        if v > self.get(self.MAX_MEASURED):
            self.number(self.MAX_MEASURED, v)
        self.set(self.ABNORMAL, v >= self.ABNORMAL_DB)


class AirQuality(Simulated):
    """uCIFI Air quality (3428): particulates and gases with daily cycles, and their running averages."""

    object_id: ClassVar[int] = 3428
    # resource -> (its average resource, averaging period in seconds)
    AVERAGES: ClassVar[dict[int, tuple[int, float]]] = {
        1: (2, DAY),  # PM10, 24 h
        3: (4, DAY),  # PM2.5
        5: (6, DAY),  # PM1
        7: (8, 8 * HOUR),  # CO, 8 h
        12: (14, 8 * HOUR),  # O3, 8 h
        15: (16, HOUR),  # NO2, 1 h
        17: (18, HOUR),  # CO2
        23: (24, HOUR),  # VOC
    }
    __slots__ = ("walks",)

    def __init__(
        self,
        instance_id: int,
        *,
        walks: Mapping[int, Walk],
        start: Tick,
        models: ObjectRegistry | None = None,
    ) -> None:
        super().__init__(instance_id, models=models)
        self.walks = {rid: self.walk_for(rid, w) for rid, w in walks.items()}
        for rid, w in self.walks.items():
            self.begin(rid, w, start)
            avg = self.AVERAGES.get(rid)
            if avg is not None and self.exact is not None:
                self.exact[avg[0]] = w.clamp(w.mean)
                self.number(avg[0], w.rounded(w.mean))

    def tick(self, t: Tick) -> None:
        exact = self.exact
        for rid, w in self.walks.items():
            self.walked(rid, w, t)
            avg = self.AVERAGES.get(rid)
            if avg is not None:
                assert exact is not None  # begun in __init__
                a = exact[avg[0]] = ema(exact[avg[0]], exact[rid], t.dt, avg[1])
                self.number(avg[0], w.rounded(a))


# --- street light ----------------------------------------------------------------------------------


class WaterMeter(Simulated):
    """uCIFI Water meter (3424): the index (Cumulated water volume, m3) only grows, with household
    use peaking in the morning and evening; some meters have a leak, suspected after a night of
    continuous flow. The resets (2, 5) are not offered."""

    object_id: ClassVar[int] = 3424
    VOLUME, METER_TYPE, PULSES, PULSE_RATIO, MIN_FLOW, MAX_FLOW = 1, 3, 4, 6, 7, 8
    LEAK_SUSPECTED, LEAK_DETECTED, BACK_FLOW = 9, 10, 11
    # The daily pattern of household use: a base, a morning and an evening peak.
    USE = Walk(0.1, 0.0, 10.0, swing=1.0, peaks=(7.5, 19.5), width=1.6, decimals=6)
    USE_HOURS = 0.1 * 24 + 2 * 1.6 * math.sqrt(2 * math.pi)  # the integral of USE.cycle over a day
    # How much more or less than usual the household uses: one walk (frozen) for every meter.
    FACTOR = Walk(1.0, 0.0, 4.0, noise=0.4, reversion=4.0, decimals=3)
    __slots__ = ("daily_use", "leak", "night_flow", "usage", "volume")

    def __init__(
        self,
        instance_id: int,
        *,
        daily_use: float,
        leak: float,
        start: Tick,
        models: ObjectRegistry | None = None,
    ) -> None:
        volume = round(start.rng.uniform(10.0, 2000.0), 3)
        ratio = 1000  # pulses per m3: one per litre
        super().__init__(
            instance_id,
            {
                self.VOLUME: volume,
                self.METER_TYPE: "cold water",
                self.PULSES: int(volume * ratio),
                self.PULSE_RATIO: ratio,
                self.MIN_FLOW: 0.0,
                self.MAX_FLOW: 0.0,
                self.LEAK_SUSPECTED: False,
                self.LEAK_DETECTED: False,
                self.BACK_FLOW: False,
            },
            models=models,
        )
        self.daily_use = daily_use  # m3 per day
        self.leak = leak  # m3/s of a leak, 0 for none
        self.usage = 1.0
        self.night_flow = 0.0  # seconds of continuous flow in the small hours
        self.volume = volume  # unrounded

    def flow(self, hour: float) -> float:
        """The flow in m3/s at ``hour``, leak included."""
        return self.daily_use * self.usage * self.USE.cycle(hour) / (self.USE_HOURS * HOUR) + self.leak

    def tick(self, t: Tick) -> None:
        if t.dt <= 0:
            return
        self.usage = self.FACTOR.step(self.usage, t.previous_hour, t.hour, t.dt, t.rng)
        rate = self.flow(t.hour)
        self.volume += rate * t.dt
        self.set_number(self.VOLUME, round(self.volume, 3))
        ratio = int(self.get(self.PULSE_RATIO) or 1000)
        self.set_number(self.PULSES, max(int(self.get(self.PULSES)), int(self.volume * ratio)))
        if rate > float(self.get(self.MAX_FLOW)):
            self.set_number(self.MAX_FLOW, round(rate, 7))
        if self.leak > 0 and 2.0 <= t.hour < 5.0:
            # In the small hours a household uses little, and not without pause: flow that
            # never stops then is a leak (suspected after two hours, detected after two nights).
            self.night_flow += t.dt
            if self.night_flow >= 2 * HOUR:
                self.set(self.LEAK_SUSPECTED, True)
            if self.night_flow >= 6 * HOUR:
                self.set(self.LEAK_DETECTED, True)

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        if resource_id == self.PULSE_RATIO and isinstance(value, int) and value <= 0:
            raise BadRequest(f"/{self.object}/{self.id}/6: a pulse ratio is positive, not {value}")
        super().write(resource_id, value, replace=replace)


class Battery(Simulated):
    """uCIFI Battery (3411): a primary cell draining over years; the level is an integer percent."""

    object_id: ClassVar[int] = 3411
    LEVEL, CAPACITY, VOLTAGE, KIND, LOW_THRESHOLD, TOO_LOW = 1, 2, 3, 4, 5, 6
    __slots__ = ("charge", "device", "drain")

    def __init__(
        self,
        instance_id: int,
        *,
        years: float,
        start: Tick,
        device: ObjectInstance | None = None,
        models: ObjectRegistry | None = None,
    ) -> None:
        self.charge = start.rng.uniform(35.0, 100.0)  # percent, unrounded
        super().__init__(
            instance_id,
            {self.CAPACITY: 19.0, self.KIND: "Li-SOCl2", self.LOW_THRESHOLD: 10},
            models=models,
        )
        self.drain = 100.0 / (years * 365 * DAY)  # percent per second
        self.device = device
        self._publish(start)

    def _publish(self, t: Tick) -> None:
        level = max(0, min(100, math.ceil(self.charge)))
        self.set_number(self.LEVEL, level)
        volts = 3.0 + 0.65 * self.charge / 100.0 + t.rng.gauss(0.0, 0.005)
        self.set_number(self.VOLTAGE, round(volts, 3))
        self.set(self.TOO_LOW, level < int(self.get(self.LOW_THRESHOLD) or 0))
        if self.device is not None and self.device.get(9) is not None:
            self.device.set_number(9, level)  # Device Battery Level mirrors the battery's

    def tick(self, t: Tick) -> None:
        if t.dt > 0:
            self.charge = max(0.0, self.charge - self.drain * t.dt)
        self._publish(t)


class LpwanLink(Simulated):
    """uCIFI LPWAN Communication (3412): a LoRaWAN link whose SNR and RSSI wander."""

    object_id: ClassVar[int] = 3412
    NETWORK, MAC, DATA_RATE, TX_POWER, FREQUENCY = 1, 6, 10, 11, 12
    SESSION_TIME, SESSION_DURATION, REPEATS, SNR, FAILURE, RSSI = 13, 14, 17, 18, 19, 20
    SNR_WALK = Walk(2.0, -20.0, 15.0, noise=4.0, reversion=3.0, decimals=1)
    RSSI_WALK = Walk(-100.0, -137.0, -40.0, noise=6.0, reversion=3.0, decimals=1)
    __slots__ = ("rssi", "snr")

    def __init__(
        self, instance_id: int, *, mac: str, start: Tick, models: ObjectRegistry | None = None
    ) -> None:
        rng = start.rng
        super().__init__(
            instance_id,
            {
                self.NETWORK: "LoRaWAN",
                self.MAC: mac,
                self.DATA_RATE: rng.choice((250, 440, 980, 1760, 3125, 5470)),
                self.TX_POWER: 14.0,
                self.FREQUENCY: rng.choice((868.1e6, 868.3e6, 868.5e6)),
                self.SESSION_TIME: int(start.now),
                self.SESSION_DURATION: 0,
                self.REPEATS: 0,
                self.FAILURE: False,
            },
            models=models,
        )
        self.snr = self.walk_for(self.SNR, self.SNR_WALK)
        self.rssi = self.walk_for(self.RSSI, self.RSSI_WALK)
        self.begin(self.SNR, self.snr, start)
        self.begin(self.RSSI, self.rssi, start)

    def tick(self, t: Tick) -> None:
        snr = self.walked(self.SNR, self.snr, t)
        self.walked(self.RSSI, self.rssi, t)
        self.set_number(self.SESSION_DURATION, max(0, int(t.now) - int(self.get(self.SESSION_TIME))))
        if snr < -15.0 and t.rng.random() < 0.5:
            self.set_number(self.REPEATS, int(self.get(self.REPEATS)) + 1)
        self.set(self.FAILURE, snr <= -19.0)


# --- parking -----------------------------------------------------------------------------------------


class ParkingSensor(Simulated):
    """uCIFI Parking Sensor (3431): cars arrive and leave, more by day; Duration (2) counts the seconds
    since the last change, Daily Duration (3) the seconds occupied since midnight."""

    object_id: ClassVar[int] = 3431
    OCCUPIED, DURATION, DAILY, FORBIDDEN, KIND = 1, 2, 3, 4, 5
    __slots__ = ("since",)

    def __init__(self, instance_id: int, *, start: Tick, models: ObjectRegistry | None = None) -> None:
        occupied = start.rng.random() < self.busy(start.hour)
        super().__init__(
            instance_id,
            {
                self.OCCUPIED: occupied,
                self.DURATION: 0,
                self.DAILY: 0,
                self.FORBIDDEN: False,
                self.KIND: "magnetometer",
            },
            models=models,
        )
        self.since = start.now

    @staticmethod
    def busy(hour: float) -> float:
        """The share of time a space is occupied at ``hour``: 30% at night, up to 85% by day."""
        return 0.3 + 0.55 * daylight(hour)

    def tick(self, t: Tick) -> None:
        occupied = bool(self.get(self.OCCUPIED))
        daily = 0 if t.new_day else int(self.get(self.DAILY))
        if occupied:
            daily += int(t.dt)
        p = self.busy(t.hour)
        stay = 0.75 if daylight(t.hour) > 0 else 8.0  # mean hours a car stays
        leave = 1.0 / stay
        arrive = leave * p / (1.0 - p)
        if t.rng.random() < rate_chance(leave if occupied else arrive, t.dt):
            occupied = not occupied
            self.since = t.now
            self.set(self.OCCUPIED, occupied)
            self.set(self.FORBIDDEN, occupied and t.rng.random() < 0.02)
        self.set_number(self.DURATION, max(0, int(t.now - self.since)))
        self.set_number(self.DAILY, min(daily, int(DAY)))


# --- firmware ------------------------------------------------------------------------------------------


class Installer:
    """The simulated flashing of a firmware package, as the ``verify`` and ``on_update`` hooks of
    :class:`lwm2m.client.core.firmware.FirmwareUpdate` (which runs the State machine of §E.6).

    A package with ``corrupt`` in its first bytes fails the integrity check. An
    update takes ``seconds``, then the package's name and version go to PkgName
    (5/0/6) and PkgVersion (5/0/7), which the Firmware Update object copies to
    the device's Firmware Version (3/0/3). A URI that ends ``/NAME@VERSION`` (the
    server's package URIs, ``/fw/ID/lamp@2.1.0``) names both; otherwise the version is the
    first dotted number in the package's first bytes or in its URI's file name
    (``lamp-2.1.0.bin``), else the current one with its last number plus one.
    """

    __slots__ = ("device", "firmware", "seconds")

    def __init__(self, device: ObjectInstance, seconds: float = 2.0) -> None:
        self.device = device
        self.seconds = seconds
        self.firmware: ObjectInstance | None = None  # set once the object exists

    def verify(self, package: bytes) -> bool:
        return b"corrupt" not in package[:256].lower()

    async def __call__(self, package: bytes) -> bool:
        await asyncio.sleep(self.seconds)
        fw = self.firmware
        if fw is not None:
            uri = str(fw.get(1, "") or "")
            named = named_package(uri)
            if named is not None:
                fw.set(6, named[0][:255])
                fw.set(7, named[1][:255])
                return True
            name = uri.rstrip("/").rsplit("/", 1)[-1] if uri else "package.bin"
            head = package[:64].decode("latin-1")
            current = str(self.device.get(3, "") or "1.0.0")
            fw.set(6, name[:255])
            fw.set(7, package_version(head, None) or package_version(name, current) or current)
        return True


def named_package(uri: str) -> tuple[str, str] | None:
    """(name, version) of a URI whose last path segment is ``NAME@VERSION`` (percent-decoded);
    None for any other URI."""
    path = urlsplit(uri).path if uri else ""
    name, at, version = unquote(path.rsplit("/", 1)[-1]).rpartition("@")
    return (name, version) if at and name and version else None


def package_version(text: str, current: str | None) -> str | None:
    """The version ``text`` carries (``lamp-2.1.0.bin`` -> ``2.1.0``), else ``current`` with its last
    number plus one (None when ``current`` is None)."""
    found = re.findall(r"\d+(?:\.\d+)+", text)
    if found:
        return found[0]
    if current is None:
        return None
    parts = current.split(".")
    if parts and parts[-1].isdigit():
        return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])
    return current + ".1" if current else "1.0.1"
