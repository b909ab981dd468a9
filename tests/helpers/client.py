"""Client test helpers: a temperature object, and waiting for a client's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lwm2m.client import ObjectInstance


def temperature(value: float = 21.5) -> ObjectInstance:
    return ObjectInstance(0, {5700: value, 5701: "Cel"}, object_id=3303)


async def until(condition: Callable[[], bool], timeout: float = 5.0, every: float = 0.01) -> None:
    """Return as soon as ``condition()`` holds (a state the client reaches by itself), instead of
    sleeping a fixed time meant to be long enough."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(every)
