"""LwM2M Location (object 6): where the device is, how sure and how fast (LwM2M-TS-Core 1.2 §E.7).

A position fix is one call, :meth:`Location.move`: latitude, longitude and the
optional altitude, radius, speed and velocity change together with the
Timestamp (5), and observers are told only once all of them hold the new fix::

    location = Location(latitude=48.8584, longitude=2.2945)
    location.move(48.8606, 2.3376, speed=1.4, bearing=90.0)
"""

from __future__ import annotations

import time
from typing import ClassVar, cast

from lwm2m.client.instance import ObjectInstance
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import Value, values_equal

KMH_PER_MS = 3.6


def encode_velocity(speed: float, bearing: float = 0.0, vertical_speed: float | None = None) -> bytes:
    """Velocity (resource 4) in the format of 3GPP TS 23.032 §8: Horizontal Velocity (type 0),
    or Horizontal with Vertical Velocity (type 1) when ``vertical_speed`` is given.

    ``speed`` and ``vertical_speed`` in m/s (vertical positive upwards), ``bearing`` in
    degrees clockwise from North. Speeds are coded in whole km/h, the bearing in whole degrees.
    """
    if speed < 0:
        raise ValueError(f"speed {speed}: must not be negative")
    direction = int(bearing % 360.0)
    horizontal = min(round(speed * KMH_PER_MS), 0xFFFF)
    if vertical_speed is None:
        head = bytes([(0 << 4) | (direction >> 8), direction & 0xFF])
        return head + horizontal.to_bytes(2, "big")
    downward = 1 if vertical_speed < 0 else 0
    vertical = min(round(abs(vertical_speed) * KMH_PER_MS), 0xFF)
    head = bytes([(1 << 4) | (downward << 1) | (direction >> 8), direction & 0xFF])
    return head + horizontal.to_bytes(2, "big") + bytes([vertical])


def decode_velocity(data: bytes) -> tuple[float, float, float | None]:
    """``(speed m/s, bearing degrees, vertical speed m/s or None)`` from a velocity of type 0 or 1."""
    if len(data) < 4:
        raise ValueError("a velocity has at least 4 bytes")
    kind = data[0] >> 4
    bearing = float(((data[0] & 1) << 8) | data[1])
    speed = int.from_bytes(data[2:4], "big") / KMH_PER_MS
    if kind == 0:
        return speed, bearing, None
    if kind == 1 and len(data) >= 5:
        vertical = data[4] / KMH_PER_MS
        return speed, bearing, -vertical if data[0] & 0x02 else vertical
    raise ValueError(f"velocity type {kind} is not supported")


class Location(ObjectInstance):
    """The single instance of object 6. Optional resources given as None are absent."""

    __slots__ = ()

    object_id: ClassVar[int] = 6

    LATITUDE, LONGITUDE, ALTITUDE, RADIUS, VELOCITY, TIMESTAMP, SPEED = 0, 1, 2, 3, 4, 5, 6

    def __init__(
        self,
        instance_id: int = 0,
        *,
        latitude: float = 0.0,
        longitude: float = 0.0,
        altitude: float | None = None,
        radius: float | None = None,
        speed: float | None = None,
        velocity: bytes | None = None,
        timestamp: int | None = None,
        models: ObjectRegistry | None = None,
    ) -> None:
        _check_position(latitude, longitude)
        given = {
            self.LATITUDE: float(latitude),
            self.LONGITUDE: float(longitude),
            self.ALTITUDE: altitude,
            self.RADIUS: radius,
            self.VELOCITY: velocity,
            self.TIMESTAMP: int(time.time()) if timestamp is None else timestamp,
            self.SPEED: speed,
        }
        super().__init__(instance_id, {rid: v for rid, v in given.items() if v is not None}, models=models)

    @property
    def latitude(self) -> float:
        return float(self.get(self.LATITUDE, 0.0))

    @property
    def longitude(self) -> float:
        return float(self.get(self.LONGITUDE, 0.0))

    @property
    def timestamp(self) -> int:
        return int(self.get(self.TIMESTAMP, 0))

    def move(
        self,
        latitude: float,
        longitude: float,
        *,
        altitude: float | None = None,
        radius: float | None = None,
        speed: float | None = None,
        bearing: float | None = None,
        vertical_speed: float | None = None,
        velocity: bytes | None = None,
        timestamp: float | None = None,
    ) -> None:
        """A new fix. What is not given keeps its value, except Velocity, which is computed from
        ``speed`` and ``bearing`` (and ``vertical_speed``) when ``velocity`` is not given.

        The Timestamp (5) is the time of the fix (now unless given, Unix seconds).
        """
        _check_position(latitude, longitude)
        if velocity is None and speed is not None and bearing is not None:
            velocity = encode_velocity(speed, bearing, vertical_speed)
        fix = {
            self.LATITUDE: float(latitude),
            self.LONGITUDE: float(longitude),
            self.ALTITUDE: altitude,
            self.RADIUS: radius,
            self.VELOCITY: velocity,
            self.SPEED: speed,
            self.TIMESTAMP: int(time.time() if timestamp is None else timestamp),
        }
        changed: list[int] = []
        checked = {rid: self._checked(rid, v) for rid, v in fix.items() if v is not None}
        # Store the whole fix before any observer hears of it: a notification of /6/0
        # must never mix the old latitude with the new longitude.
        for rid, value in checked.items():
            old = self.stored(rid)
            self.store(rid, value)
            if old is None or isinstance(old, dict) or not values_equal(old, cast("Value", value)):
                changed.append(rid)
        for rid in changed:
            self.changed(rid)


def _check_position(latitude: float, longitude: float) -> None:
    if not -90.0 <= latitude <= 90.0:
        raise ValueError(f"latitude {latitude}: expected -90..90 degrees")
    if not -180.0 <= longitude <= 180.0:
        raise ValueError(f"longitude {longitude}: expected -180..180 degrees")
