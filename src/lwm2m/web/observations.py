"""The observations started through the API, kept so that they can be cancelled later."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

from lwm2m.model.path import Path
from lwm2m.server.observation import ServerObservation

# A single-path observation is kept under its path, an Observe-Composite under the sorted
# tuple of its distinct paths (even of one path: the two are different requests).
ObservationKey = Path | tuple[Path, ...]
SWEEP_AT_LEAST = 1024  # kept observations before the first sweep of the ended ones


def composite_key(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The key of an Observe-Composite of ``paths``, whatever their order or repetitions."""
    return tuple(sorted(set(paths)))


def observation_key(observation: ServerObservation) -> ObservationKey:
    record = observation.record
    return composite_key(record.paths) if record.composite else record.path


class ObservationKeeper:
    """One observation per (endpoint, key); a new Observe of the same path(s) replaces the old.

    Notifications reach API users as SSE events and in the history store; the observations
    kept here keep none for a reader (``ServerObservation.discard_unread``): no task or queue
    per observation, which at a million observations taken up after a restart would be a
    gigabyte. An ended observation (its client dropped it, or its registration ended) counts
    as not kept; the entries of ended ones are swept whenever the table has doubled.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, ObservationKey], ServerObservation] = {}
        self._swept_at = SWEEP_AT_LEAST  # the table's size that makes the next sweep
        self._resumed: asyncio.Task[None] | None = None  # keeping those a restarted server takes up

    def keep_resumed(
        self, resumed: Callable[[], Awaitable[None]], observations: Callable[[], Iterable[ServerObservation]]
    ) -> None:
        """Keep the observations a restarted server takes up (``Server.resumed``, then
        ``Server.observations``) like API-started ones, so that DELETE cancels them; one kept
        already under the same key (started through the API meanwhile) stays."""

        async def keep_them() -> None:
            await resumed()
            for observation in observations():
                key = (observation.endpoint, observation_key(observation))
                if key not in self:
                    self._put(key, observation)

        self._resumed = asyncio.create_task(keep_them())

    async def settled(self) -> None:
        """Wait until the observations of ``keep_resumed`` are kept (a cancel looks for them)."""
        if self._resumed is not None and not self._resumed.done():
            await asyncio.shield(self._resumed)

    def __contains__(self, key: tuple[str, ObservationKey]) -> bool:
        return self.get(*key) is not None

    def __len__(self) -> int:
        """Entries held: the running observations, and ended ones not swept yet."""
        return len(self._held)

    def get(self, endpoint: str, key: ObservationKey) -> ServerObservation | None:
        observation = self._held.get((endpoint, key))
        return observation if observation is not None and observation.running else None

    async def keep(self, endpoint: str, key: ObservationKey, observation: ServerObservation) -> None:
        await self.cancel(endpoint, key)
        self._put((endpoint, key), observation)

    def _put(self, key: tuple[str, ObservationKey], observation: ServerObservation) -> None:
        observation.discard_unread()
        held = self._held
        held[key] = observation
        if len(held) >= self._swept_at:
            for gone in [k for k, o in held.items() if not o.running]:
                del held[gone]
            self._swept_at = max(SWEEP_AT_LEAST, 2 * len(held))

    async def cancel(self, endpoint: str, key: ObservationKey, *, active: bool = False) -> bool:
        """Cancel the observation kept under ``key``; False when none is kept."""
        observation = self._held.pop((endpoint, key), None)
        if observation is None or not observation.running:
            return False
        await observation.cancel(active=active)
        return True

    async def close(self) -> None:
        """Let the observations run on: they belong to the server, whose ``stop()`` keeps their
        records for the next start (a clean stop loses none of them)."""
        if self._resumed is not None:
            await _stop(self._resumed)
        self._held = {}


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
