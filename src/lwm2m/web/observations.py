"""The observations started through the API, kept so that they can be cancelled later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator

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
    per observation. Those a restarted server takes up are found through it (``serve``), as
    if kept here, not in a table of their own: a million of them would take a hundred
    megabytes. An ended observation (its client dropped it, or its registration ended) is not
    kept; the entries of ended ones are swept whenever the table has doubled.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, ObservationKey], ServerObservation] = {}
        self._swept_at = SWEEP_AT_LEAST  # the table's size that makes the next sweep
        self._running_of: Callable[[str], Iterable[ServerObservation]] | None = None
        self._resumed: Callable[[], Awaitable[None]] | None = None

    def serve(
        self, running_of: Callable[[str], Iterable[ServerObservation]], resumed: Callable[[], Awaitable[None]]
    ) -> None:
        """Find also the observations the server runs, as ``running_of(endpoint)`` answers them
        (those it took up after a restart, once ``resumed()`` has returned)."""
        self._running_of = running_of
        self._resumed = resumed

    async def settled(self) -> None:
        """Wait until the server has taken up what it stored before a restart (``serve``)."""
        if self._resumed is not None:
            await self._resumed()

    def __contains__(self, key: tuple[str, ObservationKey]) -> bool:
        return self.get(*key) is not None

    def __len__(self) -> int:
        """Entries held: the running observations started here, and ended ones not swept yet."""
        return len(self._held)

    def get(self, endpoint: str, key: ObservationKey) -> ServerObservation | None:
        return next(self._matching(endpoint, key), None)

    def _matching(self, endpoint: str, key: ObservationKey) -> Iterator[ServerObservation]:
        """The running observations under ``key``: the one kept here, then those the server
        took up (after a restart, or from another node), which have no first answer; not those
        others made in this process (a firmware campaign's)."""
        held = self._held.get((endpoint, key))
        if held is not None and held.running:
            yield held
        if self._running_of is not None:
            for observation in list(self._running_of(endpoint)):
                if (
                    observation is not held
                    and observation.running
                    and observation_key(observation) == key
                    and observation.response is None  # (decodes the first answer: asked last)
                ):
                    yield observation

    async def keep(self, endpoint: str, key: ObservationKey, observation: ServerObservation) -> None:
        for old in list(self._matching(endpoint, key)):
            if old is not observation:
                await old.cancel()  # replaced
        observation.discard_unread()
        held = self._held
        held[endpoint, key] = observation
        if len(held) >= self._swept_at:
            for gone in [k for k, o in held.items() if not o.running]:
                del held[gone]
            self._swept_at = max(SWEEP_AT_LEAST, 2 * len(held))

    async def cancel(self, endpoint: str, key: ObservationKey, *, active: bool = False) -> bool:
        """Cancel the observation kept under ``key``; False when none is kept."""
        observation = self.get(endpoint, key)
        self._held.pop((endpoint, key), None)
        if observation is None:
            return False
        await observation.cancel(active=active)
        return True

    async def close(self) -> None:
        """Let the observations run on: they belong to the server, whose ``stop()`` keeps their
        records for the next start (a clean stop loses none of them)."""
        self._held = {}
