"""The client's loop side of its sans-IO parts (DESIGN.md, "Sans-IO"): a part says when it
is due (``get_timer()``) and does its work at a time it is given (``handle_timer(now)``);
a :class:`LoopTimer` calls it at that time on the asyncio loop, reading the loop's clock so
the part never does."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

# The heap of deadlines is the transport's: its endpoints on a shared socket use it too.
from lwm2m.transport.alarms import CLOCK_SLACK, Alarms, Sleeper, alarms

log = logging.getLogger(__name__)

# A part's get_timer() while inputs wait for its next handle_timer(now): due whatever ``now`` is.
IMMEDIATELY = float("-inf")


class Flag:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait`` in a few dozen bytes: an Event
    holds a ``deque`` (760 bytes) and an instance dict from its creation, and every simulated
    device has some; a Flag makes a list of waiters only while a task waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set the flag and wake every task waiting (as ``asyncio.Event.set``)."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self, timeout: float | None = None) -> bool:
        """Return True once the flag is set (at once if it is), or False after ``timeout`` seconds
        if given; cancellable, as ``asyncio.Event.wait``. (A timeout of its own is a timer handle
        where ``asyncio.timeout`` around the wait would make a context manager, its handle, and
        a cancellation to undo.)"""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        timer = loop.call_later(timeout, _time_up, waiter) if timeout is not None else None
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            # Set: set() took the list. Timed out or cancelled: this waiter leaves it.
            if self._waiters is waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None


def _time_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class TimerDriven(Protocol):
    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class LoopTimer:
    """One asyncio timer for one sans-IO part: ``update()`` after giving the part an input that
    may make it due earlier; after each ``handle_timer`` the timer follows by itself."""

    __slots__ = ("_handle", "_loop", "_part", "_when")

    def __init__(self, part: TimerDriven, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._part = part
        self._loop = loop
        self._handle: asyncio.Handle | None = None
        self._when = 0.0  # the armed handle's time

    def update(self) -> None:
        when = self._part.get_timer()
        handle = self._handle
        if handle is not None:
            if when is not None and self._when <= when:
                # Armed no later than needed: if early, handle_timer does nothing and it re-arms.
                # (An exchange moving the queue-mode deadline costs no new timer.)
                return
            handle.cancel()
            self._handle = None
        if when is None:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._when = when
        if when == IMMEDIATELY:
            # Inputs of this step of the loop (several values set together) are taken in at the
            # next step, together.
            self._handle = self._loop.call_soon(self._fire, when)
        else:
            self._handle = self._loop.call_at(when, self._fire, when)

    def _fire(self, when: float) -> None:
        self._handle = None
        assert self._loop is not None
        # asyncio may run a timer up to its clock resolution early: the part sees its deadline.
        self._part.handle_timer(max(self._loop.time(), when))
        self.update()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


__all__ = ["CLOCK_SLACK", "IMMEDIATELY", "Alarms", "Flag", "LoopTimer", "Sleeper", "alarms"]
