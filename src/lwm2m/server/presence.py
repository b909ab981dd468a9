"""Queue mode on the server side (LwM2M-TS-Transport 1.2 §6.5, LwM2M-TS-Core 1.2 §6.5).

A client in queue mode is reachable only for a while after it sent something
(Register, Update, or any request): by default MAX_TRANSMIT_WAIT, 93 s. Requests
for a sleeping client wait until it wakes up, or give up after a bound.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from lwm2m.errors import ConfigError, QueueTimeout
from lwm2m.server.events import ClientAwake, ClientSleeping, ServerEvent

MAX_TRANSMIT_WAIT = 93.0  # RFC 7252 §4.8.2 with the default transmission parameters


class Presence:
    """Which queue-mode clients are awake now; wakes the requests waiting for them."""

    def __init__(self, emit: Callable[[ServerEvent], None], awake_time: float = MAX_TRANSMIT_WAIT) -> None:
        if not math.isfinite(awake_time) or awake_time <= 0:
            raise ConfigError(f"awake_time {awake_time!r}: a positive number of seconds")
        self._emit = emit
        self.awake_time = awake_time
        self._sleep_timers: dict[str, asyncio.TimerHandle] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._waiting = 0  # requests waiting in wait_awake

    def seen(self, endpoint: str) -> None:
        """The client just sent something: it is awake for ``awake_time`` from now."""
        timer = self._sleep_timers.pop(endpoint, None)
        if timer is not None:
            timer.cancel()
        else:
            self._emit(ClientAwake(endpoint))
        loop = asyncio.get_running_loop()
        self._sleep_timers[endpoint] = loop.call_later(self.awake_time, self._fall_asleep, endpoint)
        wakeup = self._wakeups.pop(endpoint, None)
        if wakeup is not None:
            wakeup.set()

    def asleep(self, endpoint: str) -> None:
        """The client cannot be reached now (its TCP connection closed): asleep at once, until
        it sends again (LwM2M-TS-Transport 1.2 §6.5: a queue-mode client over TCP closes its
        connection when it sleeps)."""
        timer = self._sleep_timers.get(endpoint)
        if timer is not None:
            timer.cancel()
            self._fall_asleep(endpoint)

    def _fall_asleep(self, endpoint: str) -> None:
        if self._sleep_timers.pop(endpoint, None) is not None:
            self._emit(ClientSleeping(endpoint))

    def is_awake(self, endpoint: str) -> bool:
        return endpoint in self._sleep_timers

    async def wait_awake(self, endpoint: str, timeout: float | None) -> None:
        if self.is_awake(endpoint):
            return
        wakeup = self._wakeups.setdefault(endpoint, asyncio.Event())
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout):
                await wakeup.wait()
        except TimeoutError:
            raise QueueTimeout(f"{endpoint!r} did not wake up within {timeout} s") from None
        finally:
            self._waiting -= 1

    @property
    def awake_count(self) -> int:
        """Queue-mode clients awake now."""
        return len(self._sleep_timers)

    @property
    def waiting(self) -> int:
        """Requests waiting now for a sleeping client to wake (queued, §6.5)."""
        return self._waiting

    def forget(self, endpoint: str) -> None:
        """The client is gone (de-registered, expired) or no longer in queue mode: no more
        awake/sleeping state. Requests waiting for it are let go, to find out which."""
        timer = self._sleep_timers.pop(endpoint, None)
        if timer is not None:
            timer.cancel()
        wakeup = self._wakeups.pop(endpoint, None)
        if wakeup is not None:
            wakeup.set()

    def close(self) -> None:
        for timer in self._sleep_timers.values():
            timer.cancel()
        self._sleep_timers.clear()
