"""What the bootstrap server tells its users: bootstrap sessions and typed events about them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["running", "finished", "failed"]


@dataclass(frozen=True, slots=True)
class BootstrapSession:
    """One bootstrap of one device, as it stands: running, finished or failed (with the reason).

    ``steps`` lists each operation sent and the client's answer, e.g.
    ``"Bootstrap-Write /0/1 -> 2.04"``.
    """

    session_id: str
    endpoint: str
    address: str  # the client's "host:port"
    started_at: float  # Unix seconds
    status: Status = "running"
    ended_at: float | None = None
    reason: str = ""  # why it failed
    steps: tuple[str, ...] = field(default=())
    kind: Literal["session", "pack"] = "session"  # a Bootstrap-Pack-Request is one exchange

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.session_id,
            "endpoint": self.endpoint,
            "address": self.address,
            "kind": self.kind,
            "status": self.status,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "steps": list(self.steps),
        }
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class BootstrapStarted:
    """A client sent a Bootstrap-Request (or a Bootstrap-Pack-Request) that has a configuration."""

    session: BootstrapSession

    @property
    def endpoint(self) -> str:
        return self.session.endpoint


@dataclass(frozen=True, slots=True)
class BootstrapFinished:
    """The client accepted Bootstrap-Finish (2.04), or received its Bootstrap-Pack."""

    session: BootstrapSession

    @property
    def endpoint(self) -> str:
        return self.session.endpoint


@dataclass(frozen=True, slots=True)
class BootstrapFailed:
    """The session ended without the client's 2.04 to Bootstrap-Finish; ``reason`` says why
    (an error code from the client, no answer, no configuration for the endpoint, ...)."""

    session: BootstrapSession

    @property
    def endpoint(self) -> str:
        return self.session.endpoint

    @property
    def reason(self) -> str:
        return self.session.reason


BootstrapEvent = BootstrapStarted | BootstrapFinished | BootstrapFailed


class BootstrapEventStream:
    """An async iterator over bootstrap events; ``close()`` (or ``async with``) unsubscribes."""

    def __init__(self, subscribers: set[asyncio.Queue[BootstrapEvent]]) -> None:
        self._queue: asyncio.Queue[BootstrapEvent] = asyncio.Queue()
        self._subscribers = subscribers
        subscribers.add(self._queue)

    def __aiter__(self) -> BootstrapEventStream:
        return self

    async def __anext__(self) -> BootstrapEvent:
        return await self._queue.get()

    def close(self) -> None:
        self._subscribers.discard(self._queue)

    async def __aenter__(self) -> BootstrapEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
