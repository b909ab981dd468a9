"""Requests for sleeping clients, answered later.

A queue-mode client is reachable only for a while after it sent something
(LwM2M-TS-Core 1.2 §6.5, LwM2M-TS-Transport 1.2 §6.5); the server holds a
request for it until it wakes up. An HTTP call should not hang that long, so
the API answers 202 with a request ID at once, runs the request in the
background, and reports its outcome as a ``REQUEST_DONE`` event and at
``GET /api/requests/{id}``. The table of outcomes is bounded in size and age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from lwm2m.errors import ConfigError, TableFull
from lwm2m.web.errors import describe

log = logging.getLogger(__name__)

Status = Literal["queued", "done", "failed"]
Work = Callable[[], Awaitable[dict[str, Any]]]

MAX_REQUESTS = 1024  # entries kept, queued and finished together
RESULT_TTL = 3600.0  # seconds a finished request's outcome stays readable
# Outcomes waiting for a subscriber that does not read (a stalled event stream): the newer
# ones are dropped beyond this, so that it costs bounded memory.
MAX_UNREAD_OUTCOMES = MAX_REQUESTS


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """One request for a sleeping client, as ``GET /api/requests/{id}`` shows it.

    ``result`` is what the synchronous call would have answered: the device's answer
    (``{"code": "2.05", ...}``) when done, ``{"error": ..., "httpStatus": ...}`` when failed.
    """

    request_id: str
    endpoint: str
    status: Status
    created_at: float  # Unix seconds
    result: Mapping[str, Any] | None = None
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requestId": self.request_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "createdAt": self.created_at,
        }
        if self.result is not None:
            out["result"] = dict(self.result)
        if self.finished_at is not None:
            out["finishedAt"] = self.finished_at
        return out


@dataclass(frozen=True, slots=True)
class RequestCompleted:
    """A queued request finished (the SSE event ``REQUEST_DONE``)."""

    request: QueuedRequest

    @property
    def endpoint(self) -> str:
        return self.request.endpoint


class RequestTable:
    """Runs queued requests and keeps their outcomes: at most ``capacity`` entries; a finished
    one is dropped ``keep`` seconds after it finished, or earlier to make room for a new one."""

    def __init__(
        self,
        *,
        capacity: int = MAX_REQUESTS,
        keep: float = RESULT_TTL,
        clock: Callable[[], float] = time.time,
        prefix: str = "",
    ) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity must be at least 1, got {capacity}")
        # Every request ID begins with it: a cluster node's id and ``~``, so that any node
        # knows which one holds the request (``lwm2m.web.cluster``).
        self.prefix = prefix
        self.capacity = capacity
        self.keep = keep
        self._clock = clock
        self._entries: OrderedDict[str, QueuedRequest] = OrderedDict()  # oldest first
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._listeners: set[asyncio.Queue[RequestCompleted]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def submit(self, endpoint: str, work: Work) -> QueuedRequest:
        """Start ``work`` (it waits for the client to wake) and answer its entry, still queued."""
        self._prune()
        if len(self._entries) >= self.capacity and not self._evict_finished():
            raise TableFull(f"{len(self._entries)} requests are waiting for sleeping clients already")
        request_id = self.prefix + secrets.token_hex(8)
        entry = QueuedRequest(request_id, endpoint, "queued", self._clock())
        self._entries[request_id] = entry
        self._tasks[request_id] = asyncio.create_task(self._run(entry, work))
        return entry

    def get(self, request_id: str) -> QueuedRequest | None:
        self._prune()
        return self._entries.get(request_id)

    async def _run(self, entry: QueuedRequest, work: Work) -> None:
        try:
            result = await work()
            status: Status = "done"
        except asyncio.CancelledError:
            raise  # the table is closing: nobody is left to tell
        except Exception as exc:
            found = describe(exc)
            if found is None:
                log.exception("queued request %s for %s failed", entry.request_id, entry.endpoint)
                found = (500, f"internal error: {type(exc).__name__}: {exc}")
            status, result = "failed", {"error": found[1], "httpStatus": found[0]}
        finally:
            self._tasks.pop(entry.request_id, None)
        finished = replace(entry, status=status, result=result, finished_at=self._clock())
        if entry.request_id in self._entries:
            self._entries[entry.request_id] = finished
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(RequestCompleted(finished))

    def _prune(self) -> None:
        horizon = self._clock() - self.keep
        expired = [
            key
            for key, entry in self._entries.items()
            if entry.finished_at is not None and entry.finished_at <= horizon
        ]
        for key in expired:
            del self._entries[key]

    def _evict_finished(self) -> bool:
        for key, entry in self._entries.items():
            if entry.finished_at is not None:
                del self._entries[key]
                return True
        return False

    def subscribe(self) -> asyncio.Queue[RequestCompleted]:
        """A queue that receives every RequestCompleted from now on (up to MAX_UNREAD_OUTCOMES
        unread); give it back to ``unsubscribe``."""
        queue: asyncio.Queue[RequestCompleted] = asyncio.Queue(MAX_UNREAD_OUTCOMES)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[RequestCompleted]) -> None:
        self._listeners.discard(queue)

    async def close(self) -> None:
        """Give up the requests still waiting (the API is stopping)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
