"""The observations started through the API, kept so that they can be cancelled later."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from lwm2m.model.path import Path
from lwm2m.server.observation import ServerObservation

# A single-path observation is kept under its path, an Observe-Composite under the sorted
# tuple of its distinct paths (even of one path: the two are different requests).
ObservationKey = Path | tuple[Path, ...]


def composite_key(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The key of an Observe-Composite of ``paths``, whatever their order or repetitions."""
    return tuple(sorted(set(paths)))


def observation_key(observation: ServerObservation) -> ObservationKey:
    record = observation.record
    return composite_key(record.paths) if record.composite else record.path


class ObservationKeeper:
    """One observation per (endpoint, key); a new Observe of the same path(s) replaces the old.

    Notifications reach API users as SSE events and in the history store; each kept
    observation is drained here so that its queue of notifications does not grow.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, ObservationKey], tuple[ServerObservation, asyncio.Task[None]]] = {}

    def __contains__(self, key: tuple[str, ObservationKey]) -> bool:
        return key in self._held

    def get(self, endpoint: str, key: ObservationKey) -> ServerObservation | None:
        held = self._held.get((endpoint, key))
        return None if held is None else held[0]

    async def keep(self, endpoint: str, key: ObservationKey, observation: ServerObservation) -> None:
        await self.cancel(endpoint, key)
        self._held[endpoint, key] = (
            observation,
            asyncio.create_task(self._drain(endpoint, key, observation)),
        )

    async def _drain(self, endpoint: str, key: ObservationKey, observation: ServerObservation) -> None:
        async for _ in observation:
            pass
        # The relation ended (by the client, or with its registration): forget it, unless
        # it was already replaced.
        held = self._held.get((endpoint, key))
        if held is not None and held[0] is observation:
            del self._held[endpoint, key]

    async def cancel(self, endpoint: str, key: ObservationKey, *, active: bool = False) -> bool:
        """Cancel the observation kept under ``key``; False when none is kept."""
        held = self._held.pop((endpoint, key), None)
        if held is None:
            return False
        observation, drain = held
        await _stop(drain)
        await observation.cancel(active=active)
        return True

    async def close(self) -> None:
        """Stop draining, and leave the observations running: they belong to the server, whose
        ``stop()`` keeps their records for the next start (a clean stop loses none of them)."""
        held, self._held = self._held, {}
        for _, drain in held.values():
            await _stop(drain)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
