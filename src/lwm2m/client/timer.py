"""The client's loop side of its sans-IO parts (DESIGN.md, "Sans-IO"): a part says when it
is due (``get_timer()``) and does its work at a time it is given (``handle_timer(now)``);
a :class:`LoopTimer` calls it at that time on the asyncio loop, reading the loop's clock so
the part never does."""

from __future__ import annotations

import asyncio
from typing import Protocol

# A part's get_timer() while inputs wait for its next handle_timer(now): due whatever ``now`` is.
IMMEDIATELY = float("-inf")


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
