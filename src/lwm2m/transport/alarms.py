"""The deadlines of many sleepers of one loop on one timer handle (a heap): the registrations
of a simulated fleet idle until their next Update, and the endpoints of its devices on a shared
socket (``lwm2m.transport.shared``), each with a deadline on the heap rather than a timer
handle of the loop (a uvloop handle and its callback are some 400 bytes)."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Protocol

log = logging.getLogger(__name__)


class Sleeper(Protocol):
    def alarm(self, token: int) -> None:
        """The deadline given with ``token`` (:meth:`Alarms.add`) has come."""
        ...


class Alarms:
    """The deadlines of many sleepers of one loop on one timer handle (a heap).

    A registration idle until its next Update waits here rather than in a task of its own: a
    suspended task with its frame, its future and its timer handle is some 1.5 KB, a deadline
    on the heap a tuple; a fleet of simulated devices has tens of thousands idle at once.
    A cancelled deadline stays on the heap until it comes (the sleeper is not told) or until
    the cancelled ones are half the heap, which is then rebuilt without them.
    """

    __slots__ = ("_at", "_cancelled", "_handle", "_heap", "_loop", "_next")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Sleeper]] = []
        self._cancelled: set[int] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf  # the armed handle's time
        self._next = 0  # the last token given

    def __len__(self) -> int:
        return len(self._heap) - len(self._cancelled)

    def add(self, when: float, sleeper: Sleeper) -> int:
        """Tell ``sleeper`` at loop time ``when``; returns the token (never 0) it is told with."""
        self._next += 1
        token = self._next
        heapq.heappush(self._heap, (when, token, sleeper))
        if when < self._at:
            self._arm(when)
        return token

    def cancel(self, token: int) -> None:
        """The deadline of ``token`` is no longer wanted (its sleeper woke for another reason)."""
        self._cancelled.add(token)
        heap = self._heap
        if len(self._cancelled) * 2 > len(heap) >= 64:
            cancelled = self._cancelled
            self._heap = [entry for entry in heap if entry[1] not in cancelled]
            heapq.heapify(self._heap)
            self._cancelled = set()

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = math.inf
        # asyncio may run a timer up to its clock resolution early (uvloop counts whole
        # milliseconds): what is due by then goes, and the sleeper sees it is not late.
        now = self._loop.time() + CLOCK_SLACK
        heap, cancelled = self._heap, self._cancelled
        while heap and heap[0][0] <= now:
            _, token, sleeper = heapq.heappop(heap)
            if token in cancelled:
                cancelled.discard(token)
                continue
            try:
                sleeper.alarm(token)
            except Exception:
                log.exception("an alarm failed")
        if heap:
            self._arm(heap[0][0])


CLOCK_SLACK = 0.001  # seconds: the coarsest loop clock resolution (uvloop's)
_ALARMS: dict[asyncio.AbstractEventLoop, Alarms] = {}


def alarms() -> Alarms:
    """The running loop's :class:`Alarms`."""
    return alarms_of(asyncio.get_running_loop())


def alarms_of(loop: asyncio.AbstractEventLoop) -> Alarms:
    """The :class:`Alarms` of ``loop``."""
    found = _ALARMS.get(loop)
    if found is None:
        for old in [other for other in _ALARMS if other.is_closed()]:
            del _ALARMS[old]  # the loops of earlier runs (each test runs one)
        found = _ALARMS[loop] = Alarms(loop)
    return found
