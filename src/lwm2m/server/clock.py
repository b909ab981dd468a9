"""Times a server keeps per client, shared between the clients stamped within a millisecond.

A server keeps when each client registered and last updated, and when each observation began:
a float object each, 24 bytes, a million of them at a million clients. Stamps taken within
``resolution`` of the one before are that one, the same object: in a registration storm a few
thousand objects serve a million clients. A stamp is at most ``resolution`` early: a
millisecond for the registrar's times (an expiry a millisecond early), ten for when an
observation began (shown, never computed with).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SharedStamps:
    """``clock()``, or the stamp it last gave when that is less than ``resolution`` older."""

    __slots__ = ("_clock", "_last", "_resolution")

    def __init__(self, clock: Callable[[], float] = time.time, resolution: float = 0.001) -> None:
        self._clock = clock
        self._resolution = resolution
        self._last = float("-inf")

    def __call__(self) -> float:
        now = self._clock()
        last = self._last
        if 0.0 <= now - last < self._resolution:
            return last
        self._last = now
        return now
