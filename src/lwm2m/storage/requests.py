"""Requests queued for sleeping queue-mode clients: the :class:`~lwm2m.storage.base.QueuedRequestStore`
backends in memory and in SQLite (Redis: :mod:`lwm2m.storage.redis_requests`).

A queue-mode client is reachable only for a while after it sent something (LwM2M-TS-Core 1.2
§6.5); the REST API answers a request for a sleeping one with 202 and a request ID and sends
it when the client wakes. The store keeps such a request as what it takes to run it again on
any node (the HTTP method, path, query, body and content headers of the API call), so that the
request moves with its device: a node that the device wakes at takes its requests and runs
them, in their order, even when the node that queued them is gone.

A request is run once: whoever runs it takes it first (:meth:`take`, atomic: one caller wins,
the others get None). Its outcome is kept for ``RequestQueueLimits.keep`` seconds after it
finished; a request no node took within ``max_age`` seconds is dropped. The number of requests
waiting per endpoint and of requests kept in all is bounded (``RequestQueueFull``).
"""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import msgspec

from lwm2m.errors import ConfigError, RequestQueueFull

RequestState = Literal["queued", "running", "done", "failed"]
FINISHED: tuple[RequestState, ...] = ("done", "failed")


@dataclass(frozen=True, slots=True)
class RequestQueueLimits:
    """Bounds of the queued requests: ``per_endpoint`` waiting for one client, ``total`` kept in
    all (waiting and finished), ``keep`` seconds an outcome stays readable after it finished,
    ``max_age`` seconds a request waits to be taken before it is dropped."""

    per_endpoint: int = 64
    total: int = 10_000
    keep: float = 3600.0
    max_age: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if self.per_endpoint < 1 or self.total < 1:
            raise ConfigError(
                f"per_endpoint and total must be at least 1, got {self.per_endpoint}, {self.total}"
            )
        if not self.keep > 0 or not self.max_age > 0:
            raise ConfigError(f"keep and max_age must be positive, got {self.keep}, {self.max_age}")


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A request for a sleeping client as the store keeps it: the API call to run again
    (``method``, ``path``, ``query``, ``body``, ``headers``: the content headers), its
    ``state``, the node that took it (``runner``) and, once finished, its ``result`` (the JSON
    body the synchronous call would have answered, or ``{"error", "httpStatus"}``)."""

    request_id: str
    endpoint: str
    created_at: float
    method: str
    path: str
    query: str = ""
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    state: RequestState = "queued"
    runner: str = ""
    result: Mapping[str, Any] | None = None
    finished_at: float | None = None

    def call_json(self) -> bytes:
        """The call as JSON: what does not change once the request is queued."""
        return msgspec.json.encode(
            {
                "id": self.request_id,
                "ep": self.endpoint,
                "at": self.created_at,
                "method": self.method,
                "path": self.path,
                "query": self.query,
                "body": base64.b64encode(self.body).decode("ascii"),
                "headers": [list(h) for h in self.headers],
            }
        )

    @classmethod
    def from_call_json(cls, data: bytes | str) -> StoredRequest:
        call = msgspec.json.decode(data)
        return cls(
            request_id=str(call["id"]),
            endpoint=str(call["ep"]),
            created_at=float(call["at"]),
            method=str(call["method"]),
            path=str(call["path"]),
            query=str(call["query"]),
            body=base64.b64decode(call["body"]),
            headers=tuple((str(k), str(v)) for k, v in call["headers"]),
        )


def outcome_json(result: Mapping[str, Any] | None) -> bytes:
    return msgspec.json.encode(None if result is None else dict(result))


def outcome_from_json(data: bytes | str | None) -> dict[str, Any] | None:
    if data is None:
        return None
    found = msgspec.json.decode(data)
    return found if isinstance(found, dict) else None


def check_finish(state: RequestState) -> None:
    if state not in FINISHED:
        raise ValueError(f"a request finishes done or failed, not {state!r}")


class MemoryQueuedRequestStore:
    """Queued requests in the process: they live as long as the store object."""

    def __init__(
        self, limits: RequestQueueLimits | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits or RequestQueueLimits()
        self._clock = clock
        self._entries: dict[str, tuple[StoredRequest, float]] = {}  # id -> (request, expiry time)
        self._waiting: dict[str, list[str]] = {}  # endpoint -> ids of its queued requests, in order

    async def add(self, request: StoredRequest) -> None:
        self._prune()
        waiting = self._waiting.get(request.endpoint, [])
        if len(waiting) >= self.limits.per_endpoint:
            raise RequestQueueFull(f"{len(waiting)} requests wait for {request.endpoint!r} already")
        if len(self._entries) >= self.limits.total:
            raise RequestQueueFull(f"{len(self._entries)} queued requests are kept already")
        queued = replace(request, state="queued", runner="", result=None, finished_at=None)
        self._entries[request.request_id] = (queued, self._clock() + self.limits.max_age)
        self._waiting.setdefault(request.endpoint, []).append(request.request_id)

    async def get(self, request_id: str) -> StoredRequest | None:
        found = self._entries.get(request_id)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    async def pending(self, endpoint: str) -> list[StoredRequest]:
        now = self._clock()
        out = []
        for request_id in self._waiting.get(endpoint, ()):
            found = self._entries.get(request_id)
            if found is not None and found[1] > now:
                out.append(found[0])
        return out

    async def take(self, request_id: str, runner: str) -> StoredRequest | None:
        found = self._entries.get(request_id)
        if found is None or found[0].state != "queued" or found[1] <= self._clock():
            return None
        taken = replace(found[0], state="running", runner=runner)
        self._entries[request_id] = (taken, found[1])
        self._unlist(taken)
        return taken

    async def finish(
        self,
        request_id: str,
        state: RequestState,
        result: Mapping[str, Any],
        finished_at: float,
        *,
        keep: float | None = None,
    ) -> bool:
        check_finish(state)
        found = self._entries.get(request_id)
        if found is None:
            return False
        done = replace(found[0], state=state, result=dict(result), finished_at=finished_at)
        self._entries[request_id] = (done, finished_at + (self.limits.keep if keep is None else keep))
        self._unlist(done)
        return True

    async def waiting(self) -> int:
        self._prune()
        return sum(len(ids) for ids in self._waiting.values())

    async def abandon(self, runner: str, result: Mapping[str, Any], finished_at: float) -> list[str]:
        self._prune()
        running = [
            key for key, (r, _) in self._entries.items() if r.state == "running" and r.runner == runner
        ]
        for request_id in running:
            await self.finish(request_id, "failed", result, finished_at)
        return running

    def _unlist(self, request: StoredRequest) -> None:
        ids = self._waiting.get(request.endpoint)
        if ids is not None and request.request_id in ids:
            ids.remove(request.request_id)
            if not ids:
                del self._waiting[request.endpoint]

    def _prune(self) -> None:
        now = self._clock()
        for request_id in [k for k, (_, expiry) in self._entries.items() if expiry <= now]:
            request, _ = self._entries.pop(request_id)
            self._unlist(request)


# --- SQLite ----------------------------------------------------------------------------------

# A new table only (made if missing), so the schema version stays: an older program ignores it.
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_requests (
    seq INTEGER PRIMARY KEY,        -- queueing order
    request_id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,            -- queued, running, done, failed
    runner TEXT NOT NULL,           -- the node that took it ('' while queued)
    call BLOB NOT NULL,             -- StoredRequest.call_json()
    result BLOB,                    -- the outcome as JSON, once finished
    finished_at REAL,
    expires_at REAL NOT NULL        -- dropped then: max_age after queueing, keep after finishing
);
CREATE INDEX IF NOT EXISTS queued_requests_endpoint ON queued_requests (endpoint, state);
CREATE INDEX IF NOT EXISTS queued_requests_runner ON queued_requests (runner, state);
CREATE INDEX IF NOT EXISTS queued_requests_expires_at ON queued_requests (expires_at);
"""

_COLUMNS = "call, state, runner, result, finished_at"


def _from_row(row: tuple[Any, ...]) -> StoredRequest:
    call, state, runner, result, finished_at = row
    return replace(
        StoredRequest.from_call_json(call),
        state=state,
        runner=runner,
        result=outcome_from_json(result),
        finished_at=finished_at,
    )


@dataclass
class SqliteQueuedRequestStore:
    """Queued requests in the SQLite file of :class:`~lwm2m.storage.sqlite.SqliteStore`: a
    restarted server finds the requests it had not run, under the same IDs."""

    conn: sqlite3.Connection
    limits: RequestQueueLimits = field(default_factory=RequestQueueLimits)
    clock: Callable[[], float] = time.time

    async def add(self, request: StoredRequest) -> None:
        now = self.clock()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM queued_requests WHERE expires_at <= ?", (now,))
            (count,) = c.execute(
                "SELECT count(*) FROM queued_requests WHERE endpoint = ? AND state = 'queued'",
                (request.endpoint,),
            ).fetchone()
            if count >= self.limits.per_endpoint:
                raise RequestQueueFull(f"{count} requests wait for {request.endpoint!r} already")
            (total,) = c.execute("SELECT count(*) FROM queued_requests").fetchone()
            if total >= self.limits.total:
                raise RequestQueueFull(f"{total} queued requests are kept already")
            c.execute(
                "INSERT INTO queued_requests (request_id, endpoint, state, runner, call, expires_at)"
                " VALUES (?, ?, 'queued', '', ?, ?)",
                (request.request_id, request.endpoint, request.call_json(), now + self.limits.max_age),
            )
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    async def get(self, request_id: str) -> StoredRequest | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM queued_requests WHERE request_id = ? AND expires_at > ?",
            (request_id, self.clock()),
        ).fetchone()
        return None if row is None else _from_row(row)

    async def pending(self, endpoint: str) -> list[StoredRequest]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM queued_requests WHERE endpoint = ? AND state = 'queued'"
            " AND expires_at > ? ORDER BY seq",
            (endpoint, self.clock()),
        ).fetchall()
        return [_from_row(r) for r in rows]

    async def take(self, request_id: str, runner: str) -> StoredRequest | None:
        # One statement: of two callers, only the one whose UPDATE found it queued gets a row.
        rows = self.conn.execute(
            "UPDATE queued_requests SET state = 'running', runner = ?"
            f" WHERE request_id = ? AND state = 'queued' AND expires_at > ? RETURNING {_COLUMNS}",
            (runner, request_id, self.clock()),
        ).fetchall()
        return _from_row(rows[0]) if rows else None

    async def finish(
        self,
        request_id: str,
        state: RequestState,
        result: Mapping[str, Any],
        finished_at: float,
        *,
        keep: float | None = None,
    ) -> bool:
        check_finish(state)
        cur = self.conn.execute(
            "UPDATE queued_requests SET state = ?, result = ?, finished_at = ?, expires_at = ?"
            " WHERE request_id = ?",
            (
                state,
                outcome_json(result),
                finished_at,
                finished_at + (self.limits.keep if keep is None else keep),
                request_id,
            ),
        )
        return cur.rowcount > 0

    async def abandon(self, runner: str, result: Mapping[str, Any], finished_at: float) -> list[str]:
        rows = self.conn.execute(
            "UPDATE queued_requests SET state = 'failed', result = ?, finished_at = ?, expires_at = ?"
            " WHERE state = 'running' AND runner = ? RETURNING request_id",
            (outcome_json(result), finished_at, finished_at + self.limits.keep, runner),
        ).fetchall()
        return [request_id for (request_id,) in rows]

    async def waiting(self) -> int:
        (count,) = self.conn.execute(
            "SELECT count(*) FROM queued_requests WHERE state = 'queued' AND expires_at > ?", (self.clock(),)
        ).fetchone()
        return int(count)
