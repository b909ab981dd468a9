"""Client test helpers: an event waiter and a temperature object."""

from __future__ import annotations

from lwm2m.client import ObjectInstance


def temperature(value: float = 21.5) -> ObjectInstance:
    return ObjectInstance(0, {5700: value, 5701: "Cel"}, object_id=3303)
