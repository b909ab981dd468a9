"""The observations started through the API, kept so that they can be cancelled later."""

from __future__ import annotations

import asyncio
import contextlib

from lwm2m.model.path import Path
from lwm2m.server.observation import ServerObservation


class ObservationKeeper:
    """One observation per (endpoint, path); a new Observe of the same path replaces the old.

    Notifications reach API users as SSE events and in the history store; each kept
    observation is drained here so that its queue of notifications does not grow.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, Path], tuple[ServerObservation, asyncio.Task[None]]] = {}

    def __contains__(self, key: tuple[str, Path]) -> bool:
        return key in self._held

    async def keep(self, endpoint: str, path: Path, observation: ServerObservation) -> None:
        await self.cancel(endpoint, path)
        self._held[endpoint, path] = (
            observation,
            asyncio.create_task(self._drain(endpoint, path, observation)),
        )

    async def _drain(self, endpoint: str, path: Path, observation: ServerObservation) -> None:
        async for _ in observation:
            pass
        # The client ended the relation: forget it, unless it was already replaced.
        held = self._held.get((endpoint, path))
        if held is not None and held[0] is observation:
            del self._held[endpoint, path]

    async def cancel(self, endpoint: str, path: Path, *, active: bool = False) -> bool:
        """Cancel the observation of ``path``; False when none is kept."""
        held = self._held.pop((endpoint, path), None)
        if held is None:
            return False
        observation, drain = held
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        await observation.cancel(active=active)
        return True

    async def close(self) -> None:
        for endpoint, path in list(self._held):
            with contextlib.suppress(Exception):
                await self.cancel(endpoint, path)
