"""Requests for sleeping clients, answered later.

A queue-mode client is reachable only for a while after it sent something
(LwM2M-TS-Core 1.2 §6.5, LwM2M-TS-Transport 1.2 §6.5); the server holds a
request for it until it wakes up. An HTTP call should not hang that long, so
the API answers 202 with a request ID at once, runs the request in the
background, and reports its outcome as a ``REQUEST_DONE`` event and at
``GET /api/requests/{id}``. The table of outcomes is bounded in size and age.

Once the table is started on a server (:meth:`RequestTable.start`, done by the app), a queued
request is also kept in the server's store (:mod:`lwm2m.storage.requests`) as the API call it
was, so that it moves with its device. Whoever runs it takes it from the store first (an
atomic step: one taker wins), so it runs once:

- the node that queued it runs it when the device wakes there, as before, after taking it;
- a node where the device registers, updates or wakes (a node that took the device over from a
  node that died, or any node after the balancer moved it; the same node after a restart on
  SQLite) takes the device's other waiting requests and runs them in their order, through its
  own routes, as the call they were (with ``wait=true``: the device is awake);
- the outcome goes to the store, to this table and to the ``REQUEST_DONE`` event, and
  ``GET /api/requests/{id}`` answers from the table, else from the store;
- a request that was running when its node stopped or died may have reached the device: it
  never runs again, and fails (:data:`INTERRUPTED`) when that node starts again.

The store is looked at only when a device registers, updates or wakes from sleep at this node,
never per notification; a request that runs at once is never stored.
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

import msgspec

from lwm2m.errors import ConfigError, QueueTimeout, TableFull
from lwm2m.server.events import ClientAwake, ClientRegistered, ClientUpdated, EventStream
from lwm2m.server.role import Server
from lwm2m.storage.base import QueuedRequestStore
from lwm2m.storage.requests import FINISHED, StoredRequest
from lwm2m.web.errors import describe

log = logging.getLogger(__name__)

Status = Literal["queued", "done", "failed"]
Work = Callable[[], Awaitable[dict[str, Any]]]
# Runs a stored request's API call through the app's routes: its HTTP status and JSON body.
Replay = Callable[[StoredRequest], Awaitable[tuple[int, bytes]]]

MAX_REQUESTS = 1024  # entries kept, queued and finished together
RESULT_TTL = 3600.0  # seconds a finished request's outcome stays readable
# Outcomes waiting for a subscriber that does not read (a stalled event stream): the newer
# ones are dropped beyond this, so that it costs bounded memory.
MAX_UNREAD_OUTCOMES = MAX_REQUESTS
# The outcome of a request that was running when its node stopped or died.
INTERRUPTED = {
    "error": "the server stopped while the request ran: it may have reached the device",
    "httpStatus": 503,
}


def awaited_query(query: str) -> str:
    """``query`` with ``wait=true`` (and no other ``wait``): a stored call run again when its
    device woke runs at once, never queued anew."""
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] != "wait"]
    return "&".join([*kept, "wait=true"])


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

    @classmethod
    def from_stored(cls, stored: StoredRequest) -> QueuedRequest:
        """How a stored request shows: still "queued" while it waits or runs."""
        status: Status = stored.state if stored.state in FINISHED else "queued"  # type: ignore[assignment]
        return cls(
            stored.request_id,
            stored.endpoint,
            status,
            stored.created_at,
            None if stored.result is None or status == "queued" else stored.result,
            stored.finished_at if status != "queued" else None,
        )

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
    one is dropped ``keep`` seconds after it finished, or earlier to make room for a new one.

    Until :meth:`start`, requests live only here (:meth:`submit`); after it, :meth:`queue` keeps
    them in the server's store too, and the table runs the requests that wait in the store for
    a device that registers, updates or wakes at this node."""

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
        # Set by start(): the server whose devices the requests are for, its store of queued
        # requests, how a stored request runs here, and this node's name as a taker.
        self._server: Server | None = None
        self._store: QueuedRequestStore | None = None
        self._replay: Replay | None = None
        self._runner = ""
        self._follower: asyncio.Task[None] | None = None
        self._pickups: dict[str, asyncio.Task[None]] = {}  # endpoint -> its pick-up under way
        self._again: set[str] = set()  # endpoints that woke again during their pick-up

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stored(self) -> bool:
        """Whether queued requests go to the store (the table is started)."""
        return self._store is not None

    async def start(self, server: Server, replay: Replay, runner: str = "") -> None:
        """Keep queued requests in ``server``'s store from now on, and run those waiting there
        for a device that registers, updates or wakes at this node (``replay``: through the
        app's routes) as ``runner`` (this node's id). The store is followed only where it may
        hold requests this node did not queue itself: shared by a cluster, or left by a
        previous run (SQLite)."""
        self._server = server
        self._store = server.store.queued_requests
        self._replay = replay
        self._runner = runner
        if runner or not server.config.shared_store:
            # What this node was running when it last stopped or died may have reached the
            # device: failed, never run again. (Nodes that share a store without a cluster
            # have no name of their own: the others' requests would be taken for its own.)
            try:
                abandoned = await self._store.abandon(runner, INTERRUPTED, self._clock())
            except Exception as exc:
                log.warning("the requests left running at the last stop could not be failed: %s", exc)
            else:
                if abandoned:
                    log.warning("%d requests were running when the server last stopped", len(abandoned))
        if server.config.shared_store or await self._store.waiting() > 0:
            self._follower = asyncio.ensure_future(self._follow(server.events()))

    def submit(self, endpoint: str, work: Work) -> QueuedRequest:
        """Start ``work`` (it waits for the client to wake) and answer its entry, still queued."""
        entry = self._new_entry(endpoint)
        self._tasks[entry.request_id] = asyncio.create_task(self._run(entry, work))
        return entry

    async def queue(self, call: StoredRequest, work: Work) -> QueuedRequest:
        """Keep the API call ``call`` (its ID and time are set here) in the store and run
        ``work`` when its device wakes at this node, unless another node took it by then.
        Without a store (not started), :meth:`submit`. TableFull when there is no room."""
        if self._store is None:
            return self.submit(call.endpoint, work)
        entry = self._new_entry(call.endpoint, keep=False)
        await self._store.add(replace(call, request_id=entry.request_id, created_at=entry.created_at))
        self._entries[entry.request_id] = entry
        self._tasks[entry.request_id] = asyncio.create_task(self._run_taken_here(entry, work))
        return entry

    def _new_entry(self, endpoint: str, *, keep: bool = True) -> QueuedRequest:
        self._prune()
        if len(self._entries) >= self.capacity and not self._evict_finished():
            raise TableFull(f"{len(self._entries)} requests are waiting for sleeping clients already")
        request_id = self.prefix + secrets.token_hex(8)
        entry = QueuedRequest(request_id, endpoint, "queued", self._clock())
        if keep:
            self._entries[request_id] = entry
        return entry

    def get(self, request_id: str) -> QueuedRequest | None:
        """The entry this table holds (never the store's)."""
        self._prune()
        return self._entries.get(request_id)

    async def lookup(self, request_id: str) -> QueuedRequest | None:
        """The request as this table knows it, else as the store does: a request this node
        queued and another node ran shows its outcome from the store."""
        entry = self.get(request_id)
        if self._store is None or (entry is not None and entry.status != "queued"):
            return entry
        stored = await self._store.get(request_id)
        if stored is None:
            return entry
        if entry is not None and stored.state not in FINISHED:
            return entry
        return QueuedRequest.from_stored(stored)

    async def _run(self, entry: QueuedRequest, work: Work) -> None:
        try:
            result = await work()
            status: Status = "done"
        except asyncio.CancelledError:
            raise  # the table is closing: nobody is left to tell
        except Exception as exc:
            status, result = "failed", self._failure(entry, exc)
        finally:
            self._tasks.pop(entry.request_id, None)
        await self._finish(entry, status, result)

    async def _run_taken_here(self, entry: QueuedRequest, work: Work) -> None:
        """A request this node queued: when its device wakes here (or its wait runs out), take
        it from the store; run it if that succeeded, else another node runs it."""
        assert self._server is not None and self._store is not None
        try:
            expired: QueueTimeout | None = None
            try:
                await self._server.presence.wait_awake(entry.endpoint, self._server.queue_timeout)
            except QueueTimeout as exc:
                expired = exc  # taken all the same, so that no node runs it later
            if await self._store.take(entry.request_id, self._runner) is None:
                # The device woke at another node, which took it: the store has its outcome.
                self._entries.pop(entry.request_id, None)
                return
            if expired is not None:
                raise expired
            result = await work()
            status: Status = "done"
        except asyncio.CancelledError:
            raise  # the table is closing: the request stays in the store for a node to take
        except Exception as exc:
            status, result = "failed", self._failure(entry, exc)
        finally:
            self._tasks.pop(entry.request_id, None)
        await self._finish(entry, status, result)

    @staticmethod
    def _failure(entry: QueuedRequest, exc: Exception) -> dict[str, Any]:
        found = describe(exc)
        if found is None:
            log.exception("queued request %s for %s failed", entry.request_id, entry.endpoint)
            found = (500, f"internal error: {type(exc).__name__}: {exc}")
        return {"error": found[1], "httpStatus": found[0]}

    async def _finish(self, entry: QueuedRequest, status: Status, result: dict[str, Any]) -> None:
        finished = replace(entry, status=status, result=result, finished_at=self._clock())
        if entry.request_id in self._entries:
            self._entries[entry.request_id] = finished
        if self._store is not None:
            try:
                at = finished.finished_at or 0.0
                await self._store.finish(entry.request_id, status, result, at, keep=self.keep)
            except Exception as exc:  # the store is away: the outcome stays in this table only
                log.warning("the outcome of request %s could not be stored: %s", entry.request_id, exc)
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(RequestCompleted(finished))

    # --- requests waiting in the store for a device that wakes here ------------------------------

    async def _follow(self, events: EventStream) -> None:
        try:
            async for event in events:
                if isinstance(event, ClientRegistered | ClientUpdated):
                    self._woke(event.registration.endpoint)
                elif isinstance(event, ClientAwake):
                    self._woke(event.endpoint)
        finally:
            events.close()

    def _woke(self, endpoint: str) -> None:
        if endpoint in self._pickups:
            self._again.add(endpoint)  # looked at again once the pick-up under way is done
            return
        task = asyncio.ensure_future(self._pick_up(endpoint))
        self._pickups[endpoint] = task
        task.add_done_callback(lambda _: self._pickups.pop(endpoint, None))

    async def _pick_up(self, endpoint: str) -> None:
        """Take and run, in their order, the requests waiting in the store for ``endpoint`` that
        no task of this table waits to take itself."""
        assert self._store is not None
        while True:
            self._again.discard(endpoint)
            try:
                waiting = await self._store.pending(endpoint)
                for stored in waiting:
                    if stored.request_id in self._tasks:
                        continue  # queued here: its own task takes it
                    taken = await self._store.take(stored.request_id, self._runner)
                    if taken is not None:
                        await self._run_stored(taken)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away: the device's next wake-up tries again
                log.warning("the requests queued for %s could not be taken: %s", endpoint, exc)
                return
            if endpoint not in self._again:
                return

    async def _run_stored(self, taken: StoredRequest) -> None:
        """Run a request taken from the store here, through the app's routes."""
        assert self._replay is not None
        entry = QueuedRequest.from_stored(replace(taken, state="queued"))
        if len(self._entries) < self.capacity or self._evict_finished():
            self._entries[entry.request_id] = entry
        status: Status
        try:
            code, body = await self._replay(taken)
            answer = msgspec.json.decode(body) if body else {}
            if not isinstance(answer, dict):
                raise ValueError(f"an answer that is not a JSON object: {body[:80]!r}")
            if code == 200:
                status, result = "done", answer
            else:
                status, result = "failed", {"error": str(answer.get("error", "")), "httpStatus": code}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status, result = "failed", self._failure(entry, exc)
        await self._finish(entry, status, result)

    # --- outcomes ----------------------------------------------------------------------------

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
        """Give up the requests still waiting (the API is stopping); those in the store stay
        there, for this node after a restart or for another node to take."""
        tasks = list(self._tasks.values()) + list(self._pickups.values())
        if self._follower is not None:
            tasks.append(self._follower)
            self._follower = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
