"""Webhooks and their outbox: the :class:`~lwm2m.storage.base.WebhookStore` backends in memory and
in SQLite (Redis: :mod:`lwm2m.storage.redis_webhooks`).

A webhook is a URL that wants some types of server events (:mod:`lwm2m.export.webhooks` posts
them). Each event for a hook is written to the outbox before it is posted and removed once the
receiver took it, so that a server that stops, or dies, posts after its restart what it had not
delivered: delivery is at least once.

The outbox is bounded per hook and in all (:class:`OutboxLimits`): beyond, the oldest entries
go (``enqueue`` answers how many). An entry is *claimed* for a while (``lease`` seconds) by the
one who posts it: its ``next_at`` moves by the lease, so that two posters sharing a store
(cluster nodes) do not take the same entry at the same time, and an entry whose poster died
comes due again when the lease ends.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import msgspec

from lwm2m.errors import ConfigError


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Bounds of the outbox: ``per_hook`` entries waiting for one hook, ``total`` in all, and
    ``hooks`` registered at most."""

    per_hook: int = 10_000
    total: int = 100_000
    hooks: int = 100

    def __post_init__(self) -> None:
        if self.per_hook < 1 or self.total < 1 or self.hooks < 1:
            raise ConfigError(
                f"outbox limits must be at least 1, got {self.per_hook}, {self.total}, {self.hooks}"
            )


@dataclass(frozen=True, slots=True)
class Webhook:
    """A registered webhook: ``url`` wants the events named in ``events`` (their SSE names),
    signed with ``secret``. With ``batch_events`` above 1, one post carries up to that many
    events (a JSON array), an incomplete batch waiting up to ``batch_delay`` seconds for more."""

    hook_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: float
    batch_events: int = 1
    batch_delay: float = 0.0

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "id": self.hook_id,
            "url": self.url,
            "events": list(self.events),
            "secret": self.secret,
            "at": self.created_at,
        }
        if self.batch_events > 1:  # absent for one event per post: read as before by older programs
            data["batch"] = [self.batch_events, self.batch_delay]
        return msgspec.json.encode(data)

    @classmethod
    def from_json(cls, data: bytes | str) -> Webhook:
        d = msgspec.json.decode(data)
        batch = d.get("batch") or [1, 0.0]
        return cls(
            str(d["id"]),
            str(d["url"]),
            tuple(str(e) for e in d["events"]),
            str(d["secret"]),
            float(d["at"]),
            int(batch[0]),
            float(batch[1]),
        )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event for one hook: ``body`` (the JSON posted), ``event_id`` (the same for every hook
    the event goes to: a receiver dedupes by it), the time it was written, the attempts made
    and when the next may be made. ``seq`` is the store's order of writing (0 until written)."""

    hook_id: str
    event_id: str
    created_at: float
    body: bytes
    attempts: int = 0
    next_at: float = 0.0
    seq: int = 0

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {"h": self.hook_id, "e": self.event_id, "at": self.created_at, "b": self.body.decode("utf-8")}
        )

    @classmethod
    def from_json(cls, data: bytes | str, seq: int, attempts: int, next_at: float) -> OutboxEntry:
        d = msgspec.json.decode(data)
        return cls(str(d["h"]), str(d["e"]), float(d["at"]), str(d["b"]).encode(), attempts, next_at, seq)


@dataclass(frozen=True, slots=True)
class Retry:
    """A failed attempt: the entry's attempts so far and when the next one may be made."""

    seq: int
    attempts: int
    next_at: float


class WebhookStore(Protocol):
    """Webhooks by ID and the outbox of the events they wait for (this module's docstring)."""

    limits: OutboxLimits

    async def put_hook(self, hook: Webhook) -> None:
        """Add ``hook`` (or replace the one with its ID)."""
        ...

    async def get_hook(self, hook_id: str) -> Webhook | None: ...

    async def hooks(self) -> list[Webhook]:
        """Every hook, oldest first."""
        ...

    async def delete_hook(self, hook_id: str) -> bool:
        """Remove the hook and its waiting entries; False when there was none."""
        ...

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> int:
        """Write ``entries`` (one commit for all), numbered in order; drop the oldest beyond the
        limits and answer how many went."""
        ...

    async def claim(self, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        """At most ``limit`` entries due at ``now`` (earliest due first), made due again only
        after ``now + lease``: answered in writing order."""
        ...

    async def delivered(self, seqs: Sequence[int]) -> None:
        """Remove these entries (posted, or given up)."""
        ...

    async def retry(self, retries: Sequence[Retry]) -> None:
        """Record failed attempts: each entry's attempt count and its next due time."""
        ...

    async def size(self) -> int:
        """Entries waiting in all."""
        ...


class MemoryWebhookStore:
    """Webhooks and their outbox in the process: they live as long as the store object."""

    def __init__(self, limits: OutboxLimits | None = None) -> None:
        self.limits = limits or OutboxLimits()
        self._hooks: dict[str, Webhook] = {}
        self._entries: dict[int, OutboxEntry] = {}  # by seq, in writing order
        self._seq = 0

    async def put_hook(self, hook: Webhook) -> None:
        self._hooks[hook.hook_id] = hook

    async def get_hook(self, hook_id: str) -> Webhook | None:
        return self._hooks.get(hook_id)

    async def hooks(self) -> list[Webhook]:
        return sorted(self._hooks.values(), key=lambda h: (h.created_at, h.hook_id))

    async def delete_hook(self, hook_id: str) -> bool:
        if self._hooks.pop(hook_id, None) is None:
            return False
        for seq in [s for s, e in self._entries.items() if e.hook_id == hook_id]:
            del self._entries[seq]
        return True

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> int:
        for entry in entries:
            self._seq += 1
            self._entries[self._seq] = replace(entry, seq=self._seq)
        dropped = 0
        for hook_id in {e.hook_id for e in entries}:
            mine = [s for s, e in self._entries.items() if e.hook_id == hook_id]
            for seq in mine[: max(0, len(mine) - self.limits.per_hook)]:
                del self._entries[seq]
                dropped += 1
        excess = len(self._entries) - self.limits.total
        for seq in list(self._entries)[: max(0, excess)]:
            del self._entries[seq]
            dropped += 1
        return dropped

    async def claim(self, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        due = sorted(
            (e for e in self._entries.values() if e.next_at <= now), key=lambda e: (e.next_at, e.seq)
        )
        out = due[:limit]
        for entry in out:
            self._entries[entry.seq] = replace(entry, next_at=now + lease)
        return out

    async def delivered(self, seqs: Sequence[int]) -> None:
        for seq in seqs:
            self._entries.pop(seq, None)

    async def retry(self, retries: Sequence[Retry]) -> None:
        for r in retries:
            entry = self._entries.get(r.seq)
            if entry is not None:
                self._entries[r.seq] = replace(entry, attempts=r.attempts, next_at=r.next_at)

    async def size(self) -> int:
        return len(self._entries)


# --- SQLite ----------------------------------------------------------------------------------

# New tables only (made if missing), so the schema version stays: an older program ignores them.
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    hook_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    data BLOB NOT NULL              -- Webhook.to_json()
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    seq INTEGER PRIMARY KEY,        -- writing order
    hook_id TEXT NOT NULL,
    data BLOB NOT NULL,             -- OutboxEntry.to_json()
    attempts INTEGER NOT NULL,
    next_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_at, seq);
CREATE INDEX IF NOT EXISTS webhook_outbox_hook ON webhook_outbox (hook_id, seq);
"""


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    seq, data, attempts, next_at = row
    return OutboxEntry.from_json(data, int(seq), int(attempts), float(next_at))


@dataclass
class SqliteWebhookStore:
    """Webhooks and their outbox in the SQLite file of :class:`~lwm2m.storage.sqlite.SqliteStore`
    (autocommit connection): a restarted server posts what it had not delivered."""

    conn: sqlite3.Connection
    limits: OutboxLimits = field(default_factory=OutboxLimits)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        for statement in SQLITE_SCHEMA.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    async def put_hook(self, hook: Webhook) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO webhooks (hook_id, created_at, data) VALUES (?, ?, ?)",
            (hook.hook_id, hook.created_at, hook.to_json()),
        )

    async def get_hook(self, hook_id: str) -> Webhook | None:
        row = self.conn.execute("SELECT data FROM webhooks WHERE hook_id = ?", (hook_id,)).fetchone()
        return None if row is None else Webhook.from_json(row[0])

    async def hooks(self) -> list[Webhook]:
        rows = self.conn.execute("SELECT data FROM webhooks ORDER BY created_at, hook_id").fetchall()
        return [Webhook.from_json(data) for (data,) in rows]

    async def delete_hook(self, hook_id: str) -> bool:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            gone = c.execute("DELETE FROM webhooks WHERE hook_id = ?", (hook_id,)).rowcount
            c.execute("DELETE FROM webhook_outbox WHERE hook_id = ?", (hook_id,))
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return gone > 0

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> int:
        if not entries:
            return 0
        c = self.conn
        dropped = 0
        c.execute("BEGIN IMMEDIATE")  # one commit for the batch
        try:
            c.executemany(
                "INSERT INTO webhook_outbox (hook_id, data, attempts, next_at) VALUES (?, ?, ?, ?)",
                [(e.hook_id, e.to_json(), e.attempts, e.next_at) for e in entries],
            )
            for hook_id in {e.hook_id for e in entries}:
                (count,) = c.execute(
                    "SELECT count(*) FROM webhook_outbox WHERE hook_id = ?", (hook_id,)
                ).fetchone()
                if count > self.limits.per_hook:
                    dropped += c.execute(
                        "DELETE FROM webhook_outbox WHERE seq IN (SELECT seq FROM webhook_outbox"
                        " WHERE hook_id = ? ORDER BY seq LIMIT ?)",
                        (hook_id, count - self.limits.per_hook),
                    ).rowcount
            (total,) = c.execute("SELECT count(*) FROM webhook_outbox").fetchone()
            if total > self.limits.total:
                dropped += c.execute(
                    "DELETE FROM webhook_outbox WHERE seq IN"
                    " (SELECT seq FROM webhook_outbox ORDER BY seq LIMIT ?)",
                    (total - self.limits.total,),
                ).rowcount
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return dropped

    async def claim(self, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        # A read first: an idle poster takes no write lock (its poll would otherwise hold the
        # file's one writer lock a moment every poll, against the server writing beside it).
        if (
            self.conn.execute("SELECT 1 FROM webhook_outbox WHERE next_at <= ? LIMIT 1", (now,)).fetchone()
            is None
        ):
            return []
        # One statement: of two posters sharing the file, each entry goes to one of them.
        rows = self.conn.execute(
            "UPDATE webhook_outbox SET next_at = ? WHERE seq IN (SELECT seq FROM webhook_outbox"
            " WHERE next_at <= ? ORDER BY next_at, seq LIMIT ?) RETURNING seq, data, attempts, ?",
            (now + lease, now, limit, now + lease),
        ).fetchall()
        out = [_entry(r) for r in rows]
        out.sort(key=lambda e: e.seq)
        return out

    async def delivered(self, seqs: Sequence[int]) -> None:
        self._batch("DELETE FROM webhook_outbox WHERE seq = ?", [(s,) for s in seqs])

    async def retry(self, retries: Sequence[Retry]) -> None:
        self._batch(
            "UPDATE webhook_outbox SET attempts = ?, next_at = ? WHERE seq = ?",
            [(r.attempts, r.next_at, r.seq) for r in retries],
        )

    def _batch(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """``sql`` for each row, in one transaction (one commit, not one per row)."""
        if not rows:
            return
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(sql, rows)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    async def size(self) -> int:
        (count,) = self.conn.execute("SELECT count(*) FROM webhook_outbox").fetchone()
        return int(count)
