"""SQLite stores: one database file holds registrations, observations and history.

The database runs in WAL mode and every method commits before it returns, so
a process killed with SIGKILL loses nothing it acknowledged (the committed
WAL frames are in the operating system's hands). ``synchronous=NORMAL``, the
default, does not fsync each commit: a power cut may lose the last commits
but never corrupts the file; pass ``synchronous="FULL"`` to survive that too,
at the price of one fsync per write.

The exception is ``history.add``, the server's path for notifications: it
keeps rows back and writes them with one commit at ``history.flush()``, which
the server runs 0.1 s after the first row of a batch (``HISTORY_FLUSH_DELAY``
in ``lwm2m.server.role``), or as soon as ``MAX_PENDING`` rows wait. A SIGKILL
may lose the notifications of that last tenth of a second, at most
``MAX_PENDING`` rows. Batches pay: the history's per-endpoint indexes put the
rows of many clients on as many pages, and a commit writes every page it
touched, so a commit of 256 rows cost twice the CPU per row of one of 2048.

Registrations are written in groups too, but durably before ``registrations.add`` returns:
the adds of one event-loop round share one transaction (``SqliteRegistrationStore``).

The calls block, and run on the caller's thread: a write of one small row
takes tens of microseconds, less than handing it to a worker thread would.
One connection serves the three stores; use it from one thread at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import msgspec

from lwm2m.errors import ConfigError, IdentityInUse, StoreError
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import Registration
from lwm2m.storage.base import (
    PAGE_SCAN,
    HistoryEntry,
    HistoryRetention,
    Observation,
    OscoreSecrets,
    Reachable,
    RegistrationPage,
    Row,
    SavedDtlsSession,
    SecurityInfo,
    Source,
    TakenDtlsSession,
    check_query,
    collect_page,
    glob_matcher,
    name_range,
    prefix_upper,
    record_from_row,
    record_row,
    reserve_range,
)
from lwm2m.storage.bootstrap import SqliteBootstrapConfigStore
from lwm2m.storage.campaigns import SqliteCampaignStore
from lwm2m.storage.firmware import SqlitePackageStore, firmware_folder
from lwm2m.storage.labels import SqliteLabelStore
from lwm2m.storage.requests import SQLITE_SCHEMA as REQUESTS_SCHEMA
from lwm2m.storage.requests import SqliteQueuedRequestStore
from lwm2m.storage.webhooks import SqliteWebhookStore

SCHEMA_VERSION = 3  # 2: security.rpk (raw public key entries); 3: security.oscore_id
# Registrations a page reads and decodes between two yields to the event loop (~1 ms).
SQLITE_PAGE_CHUNK = 64
# HistoryStore.add keeps rows back until flush() or until this many wait: one commit for them all.
MAX_PENDING = 2048
# Registrations RegistrationStore.add writes in one transaction at most (a group commit).
MAX_GROUP = 256
# SQLite's page cache for the connection, KiB: the history's indexes are written all over.
CACHE_KIB = 32 * 1024
# WAL checkpoints (copying the WAL back into the database file) run in a thread of their own,
# five times a second (_Checkpointer): SQLite's automatic checkpoint runs inside the commit that
# crosses wal_autocheckpoint, and held the event loop for tens of milliseconds in the middle of
# an expiry sweep (bench/expiry.py). The automatic one stays only as a bound, should that
# thread fall behind: at WAL_CHECKPOINT_PAGES pages (~160 MB), in the committing call as before.
# Under a steady stream of commits the WAL starts over only when a commit finds it all copied
# back, which the thread's checkpoints rarely leave it: it grows until the bound. At 8,000 pages
# a sweep at a million registrations met the bound every ~700 commits of 16 (2 to 4 ms of CPU and
# an fsync, each time, on the loop); at 40,000 a sweep of ten thousand no longer does.
WAL_CHECKPOINT_PAGES = 40000
CHECKPOINT_EVERY = 0.2  # seconds between two checkpoints of the thread

log = logging.getLogger(__name__)
_DELETE_REGISTRATION = "DELETE FROM registrations WHERE endpoint = ?"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    endpoint TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL UNIQUE,
    expires_at REAL NOT NULL,
    data BLOB NOT NULL              -- Registration.to_dict() as JSON
);
CREATE INDEX IF NOT EXISTS registrations_expires_at ON registrations (expires_at);

CREATE TABLE IF NOT EXISTS observations (
    seq INTEGER PRIMARY KEY,        -- creation order
    token BLOB NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    data BLOB NOT NULL              -- Observation.to_dict() as JSON
);
CREATE INDEX IF NOT EXISTS observations_endpoint ON observations (endpoint);
CREATE INDEX IF NOT EXISTS observations_registration_id ON observations (registration_id);

CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,        -- arrival order
    endpoint TEXT NOT NULL,
    path TEXT NOT NULL,
    time REAL NOT NULL,             -- the record's timestamp, else received_at
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,             -- value type where JSON cannot tell it (base.record_row)
    record BLOB NOT NULL            -- the JSON record form (lwm2m.model.jsonform)
);
CREATE INDEX IF NOT EXISTS history_endpoint_time ON history (endpoint, time);
CREATE INDEX IF NOT EXISTS history_endpoint ON history (endpoint);  -- (endpoint, seq): count retention
CREATE INDEX IF NOT EXISTS history_received_at ON history (received_at);  -- age retention

CREATE TABLE IF NOT EXISTS security (
    endpoint TEXT PRIMARY KEY,
    psk_identity TEXT UNIQUE,       -- NULL for certificate, raw public key and nosec entries
    data BLOB NOT NULL,             -- SecurityInfo.to_dict(with_key=True) as JSON
    rpk BLOB UNIQUE,                -- DER SubjectPublicKeyInfo of a raw public key entry (schema 2)
    oscore_id TEXT UNIQUE           -- OscoreSecrets.identity of an OSCORE entry (schema 3)
);

-- DTLS sessions saved at a clean stop and ticket keys: key material, like security. New tables
-- only (made if missing), so the schema version stays: an older program ignores them.
CREATE TABLE IF NOT EXISTS dtls_sessions (
    address TEXT PRIMARY KEY,       -- the peer's socket address as a JSON array
    cid BLOB UNIQUE,                -- its Connection ID (RFC 9146), NULL without
    state BLOB NOT NULL             -- the transport's versioned bytes (keys included)
);

-- DTLS sessions the server processes sharing this file can take over from one another while
-- they run (DtlsSessionStore.publish/take_over): one row per session, gone at ``expires``.
CREATE TABLE IF NOT EXISTS dtls_shared (
    key TEXT PRIMARY KEY,           -- the session's CID (hex), or its peer's address
    saved BLOB NOT NULL,            -- the transport's versioned bytes (keys included)
    base INTEGER NOT NULL,          -- the write sequence number first published
    takers INTEGER NOT NULL,        -- takeovers counted so far
    holder TEXT NOT NULL,           -- the server that holds it now
    expires REAL NOT NULL           -- Unix time
);
CREATE INDEX IF NOT EXISTS dtls_shared_expires ON dtls_shared (expires);

CREATE TABLE IF NOT EXISTS dtls_keys (
    name TEXT PRIMARY KEY,          -- "tickets": the ticket keys (RFC 5077)
    value BLOB NOT NULL
);
"""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Schema 1 had no raw public key entries: add their column to a security table that lacks it.
    SQLite cannot add a UNIQUE column, so the uniqueness comes from an index."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(security)")}
    if not columns or "rpk" in columns:
        return  # a new database (the schema makes the table) or one already migrated
    conn.execute("ALTER TABLE security ADD COLUMN rpk BLOB")
    conn.execute("CREATE UNIQUE INDEX security_rpk ON security (rpk)")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Schema 2 had no index of OSCORE identities: add its column (unique by an index, as above)
    and fill it from the OSCORE entries already stored."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(security)")}
    if not columns or "oscore_id" in columns:
        return
    conn.execute("ALTER TABLE security ADD COLUMN oscore_id TEXT")
    conn.execute("CREATE UNIQUE INDEX security_oscore_id ON security (oscore_id)")
    for endpoint, data in conn.execute("SELECT endpoint, data FROM security").fetchall():
        info = _security(data)
        if info.oscore is not None:
            conn.execute(
                "UPDATE security SET oscore_id = ? WHERE endpoint = ?", (info.oscore.identity, endpoint)
            )


def _oscore_id(info: SecurityInfo) -> str | None:
    return None if info.oscore is None else info.oscore.identity


# Failures of the file, not of the statement: another process holding the write lock past the
# busy timeout, a full disk, an I/O error, a file that became read-only.
_AWAY = frozenset(
    (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
    )
)


class _Connection(sqlite3.Connection):
    """The store's connection: a statement that fails because the file is locked, full or
    unreadable raises :class:`StoreError` (the store away for a moment: a Register is answered
    5.03 with Max-Age, an HTTP request 503), not ``sqlite3.OperationalError`` (a 5.00). A wrong
    statement still raises what SQLite raised."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _away(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _away(exc) from exc


def _away(exc: sqlite3.OperationalError) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _AWAY:
        return StoreError(f"SQLite: {exc}")
    return exc


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front, so a read-then-write cannot be
    # overtaken by another process writing the same file in between.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _one(cur: sqlite3.Cursor) -> tuple[Any, ...] | None:
    # fetchall, not fetchone: a DELETE ... RETURNING stays an active statement (and
    # its autocommit transaction open) until it has been stepped to the end.
    rows = cur.fetchall()
    return rows[0] if rows else None


_encode = msgspec.json.Encoder().encode
_AS_IS = frozenset((int, str, bool))  # value types JSON keeps as they are (finite floats too)


def _json(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def sqlite_glob(glob: str) -> str:
    """An ``fnmatch`` glob as a SQLite GLOB pattern matching at least the same names: ``*`` and
    ``?`` as they are, a ``[...]`` class as ``?``, a literal ``[`` (one left open) as ``[[]``."""
    out = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "[":
            # fnmatch's rule: "!" then "]" may open the class; the next "]" closes it.
            j = i + 1
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1
            close = glob.find("]", j)
            if close < 0:
                out.append("[[]")
            else:
                out.append("?")
                i = close
        else:
            out.append(c)
        i += 1
    return "".join(out)


# The four fields of a stored registration a start needs; the others are skipped, not built.
_reachable_form = msgspec.json.Decoder(Reachable)


def _registration(data: bytes) -> Registration:
    return Registration.from_dict(msgspec.json.decode(data))


def _observation(data: bytes) -> Observation:
    return Observation.from_dict(msgspec.json.decode(data))


def _security(data: bytes) -> SecurityInfo:
    return SecurityInfo.from_dict(msgspec.json.decode(data))


class SqliteRegistrationStore:
    """Registrations in the ``registrations`` table.

    ``add`` commits in groups: the registrations added while the event loop runs one round (a
    storm's Registers, read from the socket together, each reaching ``add`` in its task's first
    step) are written in one transaction, at most ``MAX_GROUP`` of them, and every ``add``
    returns only once that transaction committed: the 2.01 of a Register still goes out after
    its registration is in the file (kill -9 loses nothing acknowledged), and a storm pays one
    commit per group instead of one per registration."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._pending: list[tuple[Registration, asyncio.Future[Registration | None]]] = []

    async def add(self, registration: Registration) -> Registration | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Registration | None] = loop.create_future()
        self._pending.append((registration, future))
        if len(self._pending) == 1:
            # After the tasks already waiting to run: those of the same read join this group.
            loop.call_soon(self.write_pending)
        elif len(self._pending) >= MAX_GROUP:
            self.write_pending()
        return await future

    def write_pending(self) -> None:
        """Write the registrations ``add`` holds, in one transaction, and answer their callers."""
        group, self._pending = self._pending, []
        if not group:
            return
        try:
            with _transaction(self._conn) as c:
                olds = [_replace_registration(c, r) for r, _ in group]
        except sqlite3.IntegrityError:
            # A registration ID in use by another endpoint (IDs are random: next to never). The
            # group was rolled back: each is written alone, so that only the clashing one fails.
            for r, future in group:
                try:
                    _settle(future, self._add_one(r))
                except Exception as exc:
                    _fail(future, exc)
            return
        except Exception as exc:  # the file locked past the busy timeout, full, unreadable
            for _, future in group:
                _fail(future, exc)
            return
        for (_, future), old in zip(group, olds, strict=True):
            _settle(future, None if old is None else _registration(old))

    def _add_one(self, r: Registration) -> Registration | None:
        try:
            with _transaction(self._conn) as c:
                old = _replace_registration(c, r)
        except sqlite3.IntegrityError:
            raise ValueError(f"registration ID {r.registration_id!r} is in use by another endpoint") from None
        return None if old is None else _registration(old)

    async def get(self, endpoint: str) -> Registration | None:
        row = self._conn.execute("SELECT data FROM registrations WHERE endpoint = ?", (endpoint,)).fetchone()
        return None if row is None else _registration(row[0])

    async def get_by_id(self, registration_id: str) -> Registration | None:
        row = self._conn.execute(
            "SELECT data FROM registrations WHERE registration_id = ?", (registration_id,)
        ).fetchone()
        return None if row is None else _registration(row[0])

    async def update(self, registration: Registration) -> Registration | None:
        r = registration
        with _transaction(self._conn) as c:
            row = c.execute(
                "SELECT data FROM registrations WHERE endpoint = ? AND registration_id = ?",
                (r.endpoint, r.registration_id),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE registrations SET expires_at = ?, data = ? WHERE endpoint = ?",
                (r.expires_at, _json(r.to_dict()), r.endpoint),
            )
        return _registration(row[0])

    async def remove(self, endpoint: str, *, registration_id: str | None = None) -> Registration | None:
        if registration_id is None:
            cur = self._conn.execute(
                "DELETE FROM registrations WHERE endpoint = ? RETURNING data", (endpoint,)
            )
        else:
            cur = self._conn.execute(
                "DELETE FROM registrations WHERE endpoint = ? AND registration_id = ? RETURNING data",
                (endpoint, registration_id),
            )
        row = _one(cur)
        return None if row is None else _registration(row[0])

    async def all(self) -> list[Registration]:
        rows = self._conn.execute("SELECT data FROM registrations ORDER BY rowid").fetchall()
        return [_registration(d) for (d,) in rows]

    async def reachable(self) -> list[Reachable]:
        # Only the four fields are decoded from each row's JSON (the others are skipped by the
        # decoder), without building a Registration: a start on a million stays short.
        rows = self._conn.execute("SELECT data FROM registrations ORDER BY rowid").fetchall()
        decode = _reachable_form.decode
        return [decode(d) for (d,) in rows]

    async def page(
        self,
        after: str | None = None,
        limit: int = 100,
        *,
        prefix: str = "",
        glob: str | None = None,
        match: Callable[[Registration], bool] | None = None,
        scan: int = PAGE_SCAN,
    ) -> RegistrationPage:
        start = name_range(prefix, glob)
        if start is None:
            return RegistrationPage([], None)
        # The endpoint is the primary key: its index gives the order and the range, so a
        # chunk reads only its own rows (``endpoint > ? ... LIMIT ?``), wherever it starts.
        # SQLite's GLOB (a superset of the glob here: each [class] becomes ?) spares reading
        # and decoding the rows whose names cannot match; the exact test follows in Python.
        upper = prefix_upper(start)
        where = "endpoint > ? AND endpoint >= ?" + ("" if upper is None else " AND endpoint < ?")
        data = "data" if glob is None else "CASE WHEN endpoint GLOB ? THEN data END"
        query = f"SELECT endpoint, {data} FROM registrations WHERE {where} ORDER BY endpoint LIMIT ?"
        head = () if glob is None else (sqlite_glob(glob),)
        range_end = () if upper is None else (upper,)
        named = None if glob is None else glob_matcher(glob)

        def fetch(cursor: str | None, n: int) -> list[Row]:
            rows = self._conn.execute(query, (*head, cursor or "", start, *range_end, n))
            return [
                (
                    endpoint,
                    None
                    if blob is None or (named is not None and not named(endpoint))
                    else _registration(blob),
                )
                for endpoint, blob in rows
            ]

        filtered = glob is not None or match is not None
        # Rows turned down by GLOB cost little: a filtered walk takes bigger chunks.
        chunk = SQLITE_PAGE_CHUNK if glob is None else SQLITE_PAGE_CHUNK * 4
        return await collect_page(fetch, after, limit, match, chunk=chunk, filtered=filtered, scan=scan)

    async def expired(
        self, now: float, grace: float = 0.0, *, limit: int | None = None
    ) -> list[Registration]:
        check_query(limit)
        # The registrations_expires_at index gives both the range and the order: SQLite reads
        # only the expired rows, and with LIMIT only the first of them.
        rows = self._conn.execute(
            "SELECT data FROM registrations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
            (now - grace, -1 if limit is None else limit),
        ).fetchall()
        return [_registration(d) for (d,) in rows]

    async def remove_expired(self, now: float, grace: float = 0.0, *, limit: int) -> list[Registration]:
        check_query(limit)
        # One statement, one commit for the batch: a commit per registration cost the sweep
        # ~4x the CPU, and filled the WAL (whose checkpoints stall the caller) as fast.
        rows = self._conn.execute(
            "DELETE FROM registrations WHERE endpoint IN (SELECT endpoint FROM registrations"
            " WHERE expires_at <= ? ORDER BY expires_at LIMIT ?) RETURNING data",
            (now - grace, limit),
        ).fetchall()
        found = [_registration(d) for (d,) in rows]
        found.sort(key=_expires_at)  # RETURNING keeps no order
        return found


def _replace_registration(c: sqlite3.Connection, r: Registration) -> bytes | None:
    """Write ``r`` in place of the endpoint's registration, if any: the data of the one replaced."""
    old = _one(c.execute("DELETE FROM registrations WHERE endpoint = ? RETURNING data", (r.endpoint,)))
    c.execute(
        "INSERT INTO registrations (endpoint, registration_id, expires_at, data) VALUES (?, ?, ?, ?)",
        (r.endpoint, r.registration_id, r.expires_at, _json(r.to_dict())),
    )
    return None if old is None else bytes(old[0])


def _settle(future: asyncio.Future[Registration | None], result: Registration | None) -> None:
    if not future.done():  # a caller cancelled meanwhile: its registration is written all the same
        future.set_result(result)


def _fail(future: asyncio.Future[Registration | None], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


def _expires_at(registration: Registration) -> float:
    return registration.expires_at


class SqliteObservationStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def add(self, observation: Observation) -> Observation | None:
        o = observation
        with _transaction(self._conn) as c:
            old = _one(c.execute("DELETE FROM observations WHERE token = ? RETURNING data", (o.token,)))
            c.execute(
                "INSERT INTO observations (token, endpoint, registration_id, data) VALUES (?, ?, ?, ?)",
                (o.token, o.endpoint, o.registration_id, _json(o.to_dict())),
            )
        return None if old is None else _observation(old[0])

    async def get(self, token: bytes) -> Observation | None:
        row = self._conn.execute("SELECT data FROM observations WHERE token = ?", (token,)).fetchone()
        return None if row is None else _observation(row[0])

    async def for_endpoint(self, endpoint: str) -> list[Observation]:
        rows = self._conn.execute(
            "SELECT data FROM observations WHERE endpoint = ? ORDER BY seq", (endpoint,)
        ).fetchall()
        return [_observation(d) for (d,) in rows]

    async def all(self) -> list[Observation]:
        rows = self._conn.execute("SELECT data FROM observations ORDER BY seq").fetchall()
        return [_observation(d) for (d,) in rows]

    async def chunks(self, size: int) -> AsyncIterator[list[Observation]]:
        after = 0
        while True:
            rows = self._conn.execute(
                "SELECT seq, data FROM observations WHERE seq > ? ORDER BY seq LIMIT ?", (after, size)
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [_observation(d) for _, d in rows]

    async def remove(self, token: bytes) -> Observation | None:
        cur = self._conn.execute("DELETE FROM observations WHERE token = ? RETURNING data", (token,))
        row = _one(cur)
        return None if row is None else _observation(row[0])

    async def remove_endpoint(self, endpoint: str, registration_id: str | None = None) -> list[Observation]:
        where, args = "endpoint = ?", [endpoint]
        if registration_id is not None:
            where, args = "endpoint = ? AND registration_id = ?", [endpoint, registration_id]
        with _transaction(self._conn) as c:
            rows = c.execute(f"SELECT data FROM observations WHERE {where} ORDER BY seq", args).fetchall()
            c.execute(f"DELETE FROM observations WHERE {where}", args)
        return [_observation(d) for (d,) in rows]


class SqliteHistoryStore:
    def __init__(self, conn: sqlite3.Connection, retention: HistoryRetention | None = None) -> None:
        self._conn = conn
        self.retention = retention or HistoryRetention()
        # Rows per endpoint, counted once and then kept up to date here, so that
        # count retention costs no COUNT(*) per append. Another process appending to
        # the same file makes it low; prune() counts afresh.
        self._counts: dict[str, int] = {}
        self._pending: list[tuple[str, str, float, float, str, str, bytes]] = []  # add()ed, not written
        self._texts: dict[tuple[int | str, ...], str] = {}  # str(path) by (prefix and) path IDs, for add()

    async def append(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        check_query(None, source)
        self.add(endpoint, records, source=source, received_at=received_at)
        self._write()

    def add(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        if source != "notify":
            check_query(None, source)
        pending = self._pending
        texts = self._texts
        for r in records:
            value = r.value
            if value is None:
                continue
            path = r.path
            ids: tuple[int | str, ...] = path.ids if not path.prefix else (path.prefix, *path.ids)
            text = texts.get(ids)
            if text is None:
                if len(texts) >= 4096:
                    texts.clear()
                text = texts[ids] = str(path)
            tv = type(value)
            # tv is float there, which mypy does not carry over to value: a finite float.
            if r.time is None and (tv in _AS_IS or (tv is float and value - value == 0)):  # type: ignore[operator]
                # What record_row makes of the usual value, sooner (a notification's path repeats).
                data = _encode({"path": text, "value": value})
                kind = "FLOAT" if tv is float else ""
                time = received_at
            else:
                data, kind = record_row(r)
                time = received_at if r.time is None else r.time
            pending.append((endpoint, text, time, received_at, source, kind, data))
        if len(pending) >= MAX_PENDING:
            self._write()

    async def flush(self) -> None:
        self._write()

    def _write(self) -> None:
        """Insert the rows kept back, in arrival order, with one commit; trim what retention says."""
        rows = self._pending
        if not rows:
            return
        self._pending = []
        limit = self.retention.max_records
        try:
            with _transaction(self._conn) as c:
                c.executemany(
                    "INSERT INTO history (endpoint, path, time, received_at, source, kind, record)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                if limit is not None:
                    added: dict[str, int] = {}
                    for row in rows:
                        added[row[0]] = added.get(row[0], 0) + 1
                    for endpoint, n in added.items():
                        count = self._counts.get(endpoint)
                        if count is None:
                            count = c.execute(
                                "SELECT COUNT(*) FROM history WHERE endpoint = ?", (endpoint,)
                            ).fetchone()[0]
                        else:
                            count += n
                        if count > limit:
                            self._trim(c, endpoint, count - limit)
                            count = limit
                        self._counts[endpoint] = count
        except BaseException:
            # Rolled back: keep the rows for the next write, ahead of any added meanwhile.
            self._pending[:0] = rows
            self._counts.clear()
            raise

    @staticmethod
    def _trim(c: sqlite3.Connection, endpoint: str, excess: int) -> None:
        c.execute(
            "DELETE FROM history WHERE seq IN"
            " (SELECT seq FROM history WHERE endpoint = ? ORDER BY seq LIMIT ?)",
            (endpoint, excess),
        )

    async def query(
        self,
        endpoint: str,
        path: Path = ROOT,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[HistoryEntry]:
        check_query(limit)
        self._write()
        where = ["endpoint = ?"]
        args: list[object] = [endpoint]
        if not path.is_root or path.prefix:
            # "0" follows "/": the range holds every path below p, and not "/33" when p is "/3"
            # (nor "/dev10/..." when p is the end device "/dev1").
            p = str(path)
            where.append("(path = ? OR (path >= ? AND path < ?))")
            args += [p, p + "/", p + "0"]
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if until is not None:
            where.append("time < ?")
            args.append(until)
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT record, kind, source, received_at FROM history WHERE {' AND '.join(where)}"
            f" ORDER BY time {order}, seq {order}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._conn.execute(sql, args).fetchall()
        return [HistoryEntry(endpoint, record_from_row(data, kind), src, at) for data, kind, src, at in rows]

    async def prune(self, now: float) -> int:
        self._write()
        removed = 0
        with _transaction(self._conn) as c:
            if self.retention.max_age is not None:
                cur = c.execute("DELETE FROM history WHERE received_at < ?", (now - self.retention.max_age,))
                removed += cur.rowcount
            limit = self.retention.max_records
            if limit is not None:
                over = c.execute(
                    "SELECT endpoint, COUNT(*) FROM history GROUP BY endpoint HAVING COUNT(*) > ?", (limit,)
                ).fetchall()
                for endpoint, count in over:
                    self._trim(c, endpoint, count - limit)
                    removed += count - limit
        self._counts.clear()
        return removed

    async def clear(self, endpoint: str) -> int:
        self._write()
        cur = self._conn.execute("DELETE FROM history WHERE endpoint = ?", (endpoint,))
        self._counts.pop(endpoint, None)
        return cur.rowcount


class SqliteSecurityStore:
    """Security information, keys included, in the database file: keep that file private."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def put(self, info: SecurityInfo) -> SecurityInfo | None:
        try:
            with _transaction(self._conn) as c:
                old = _one(
                    c.execute("DELETE FROM security WHERE endpoint = ? RETURNING data", (info.endpoint,))
                )
                if info.oscore is not None and old is not None:
                    info = dataclasses.replace(info, oscore=info.oscore.keeping(_security(old[0]).oscore))
                c.execute(
                    "INSERT INTO security (endpoint, psk_identity, rpk, oscore_id, data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        info.endpoint,
                        info.psk_identity,
                        info.rpk,
                        _oscore_id(info),
                        _json(info.to_dict(with_key=True)),
                    ),
                )
        except sqlite3.IntegrityError:
            if info.oscore is not None:
                what = f"OSCORE identity {info.oscore.identity!r}"
            else:
                what = "the public key" if info.rpk is not None else f"PSK identity {info.psk_identity!r}"
            raise IdentityInUse(f"{what} is in use by another endpoint") from None
        return None if old is None else _security(old[0])

    async def get(self, endpoint: str) -> SecurityInfo | None:
        row = self._conn.execute("SELECT data FROM security WHERE endpoint = ?", (endpoint,)).fetchone()
        return None if row is None else _security(row[0])

    async def get_by_identity(self, psk_identity: str) -> SecurityInfo | None:
        row = self._conn.execute(
            "SELECT data FROM security WHERE psk_identity = ?", (psk_identity,)
        ).fetchone()
        return None if row is None else _security(row[0])

    async def get_by_public_key(self, rpk: bytes) -> SecurityInfo | None:
        row = self._conn.execute("SELECT data FROM security WHERE rpk = ?", (rpk,)).fetchone()
        return None if row is None else _security(row[0])

    async def get_by_oscore(self, identity: str) -> SecurityInfo | None:
        row = self._conn.execute("SELECT data FROM security WHERE oscore_id = ?", (identity,)).fetchone()
        return None if row is None else _security(row[0])

    async def reserve_oscore_sequence(
        self, endpoint: str, oscore: OscoreSecrets, above: int, count: int
    ) -> int | None:
        # In one IMMEDIATE transaction: no other process writes the entry in between.
        with _transaction(self._conn) as c:
            row = c.execute("SELECT data FROM security WHERE endpoint = ?", (endpoint,)).fetchone()
            info = None if row is None else _security(row[0])
            if info is None or info.oscore is None or not info.oscore.same_context(oscore):
                return None
            start, limit = reserve_range(info.oscore.sequence, above, count)
            info = dataclasses.replace(info, oscore=dataclasses.replace(info.oscore, sequence=limit))
            c.execute(
                "UPDATE security SET data = ? WHERE endpoint = ?",
                (_json(info.to_dict(with_key=True)), endpoint),
            )
        return start

    async def remove(self, endpoint: str) -> SecurityInfo | None:
        row = _one(self._conn.execute("DELETE FROM security WHERE endpoint = ? RETURNING data", (endpoint,)))
        return None if row is None else _security(row[0])

    async def all(self) -> list[SecurityInfo]:
        rows = self._conn.execute("SELECT data FROM security ORDER BY endpoint").fetchall()
        return [_security(d) for (d,) in rows]


class SqliteDtlsSessionStore:
    """Saved DTLS sessions and ticket keys in the database file: key material, like the security
    table's; keep that file private."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def save(self, sessions: Iterable[SavedDtlsSession]) -> None:
        with _transaction(self._conn) as c:
            c.execute("DELETE FROM dtls_sessions")
            for session in sessions:
                cid = bytes(session.cid) or None
                if cid is not None:
                    c.execute("DELETE FROM dtls_sessions WHERE cid = ?", (cid,))  # one session per CID
                c.execute(
                    "INSERT OR REPLACE INTO dtls_sessions (address, cid, state) VALUES (?, ?, ?)",
                    (_json(list(session.address)).decode(), cid, bytes(session.state)),
                )

    async def take(self) -> list[SavedDtlsSession]:
        with _transaction(self._conn) as c:
            rows = c.execute("DELETE FROM dtls_sessions RETURNING address, cid, state").fetchall()
        taken = []
        for address, cid, state in rows:
            try:
                peer = msgspec.json.decode(address)
            except msgspec.DecodeError:
                continue  # a row no version of this program wrote
            if isinstance(peer, list) and isinstance(state, bytes):
                taken.append(SavedDtlsSession(tuple(peer), bytes(cid or b""), state))
        return taken

    async def put_ticket_keys(self, keys: bytes) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO dtls_keys (name, value) VALUES ('tickets', ?)", (bytes(keys),)
        )

    async def ticket_keys(self) -> bytes | None:
        row = self._conn.execute("SELECT value FROM dtls_keys WHERE name = 'tickets'").fetchone()
        return None if row is None or not isinstance(row[0], bytes) else row[0]

    # --- shared between the servers using this file (DtlsSessionStore) ---

    async def publish(self, key: str, saved: bytes, base: int, holder: str, ttl: float) -> None:
        now = time.time()
        with _transaction(self._conn) as c:
            c.execute("DELETE FROM dtls_shared WHERE expires <= ?", (now,))
            c.execute(
                "INSERT OR REPLACE INTO dtls_shared (key, saved, base, takers, holder, expires)"
                " VALUES (?, ?, ?, 0, ?, ?)",
                (key, bytes(saved), base, holder, now + ttl),
            )

    async def refresh(
        self, entries: Sequence[tuple[str, bytes]], holder: str, ttl: float
    ) -> list[bool | None]:
        now = time.time()
        kept: list[bool | None] = []
        with _transaction(self._conn) as c:
            for key, saved in entries:
                row = c.execute(
                    "SELECT holder FROM dtls_shared WHERE key = ? AND expires > ?", (key, now)
                ).fetchone()
                if row is None:
                    kept.append(None)
                    continue
                kept.append(row[0] == holder)
                if row[0] == holder:
                    c.execute(
                        "UPDATE dtls_shared SET saved = ?, expires = ? WHERE key = ?",
                        (bytes(saved), now + ttl, key),
                    )
        return kept

    async def peek(self, key: str) -> TakenDtlsSession | None:
        row = self._conn.execute(
            "SELECT saved, base, takers FROM dtls_shared WHERE key = ? AND expires > ?", (key, time.time())
        ).fetchone()
        if row is None or not isinstance(row[0], bytes):
            return None
        return TakenDtlsSession(row[0], int(row[1]), int(row[2]))

    async def take_over(self, key: str, holder: str, ttl: float) -> TakenDtlsSession | None:
        now = time.time()
        with _transaction(self._conn) as c:
            row = c.execute(
                "UPDATE dtls_shared SET takers = takers + 1, holder = ?, expires = ?"
                " WHERE key = ? AND expires > ? RETURNING saved, base, takers",
                (holder, now + ttl, key, now),
            ).fetchone()
        if row is None or not isinstance(row[0], bytes):
            return None
        return TakenDtlsSession(row[0], int(row[1]), int(row[2]))

    async def forget(self, key: str, holder: str) -> None:
        with _transaction(self._conn) as c:
            c.execute("DELETE FROM dtls_shared WHERE key = ? AND holder = ?", (key, holder))


class _Checkpointer:
    """Checkpoints the WAL of the database at ``path`` every ``every`` seconds from a thread and a
    connection of its own. PASSIVE (SQLite's wal_checkpoint): it copies what no reader still
    needs and never waits for, nor blocks, the store's connection on the event loop."""

    def __init__(self, path: str, every: float = CHECKPOINT_EVERY) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, every, self._stop), name="lwm2m-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _run(path: str, every: float, stop: threading.Event) -> None:
        # Nothing of the store is held here: a store dropped without close() is still collected
        # (and its finalizer sets ``stop``).
        try:
            conn = sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("%s: WAL checkpoints left to SQLite's automatic one: %s", path, exc)
            return
        try:
            while not stop.wait(every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the file gone or locked a moment: the next one
                    log.debug("%s: WAL checkpoint failed: %s", path, exc)
        finally:
            conn.close()

    def stop(self) -> None:
        """Let the thread end after its checkpoint under way, if any (a store collected unclosed)."""
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self._thread.join(5.0)


class SqliteStore:
    """One SQLite database file with the stores: ``.registrations``, ``.observations``, ``.history``,
    ``.security``, ``.bootstrap_configs``, ``.dtls_sessions``, ``.queued_requests``.

    ``path`` ``":memory:"`` gives a private, non-durable database (for tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_retention: HistoryRetention | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = os.fspath(path)
        # isolation_level=None: autocommit, so a single statement is committed when it
        # returns and multi-statement writes say BEGIN/COMMIT themselves.
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal" and self.path != ":memory:":
                raise StoreError(f"{self.path}: SQLite could not switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: database schema version {version} is newer than this program's "
                    f"({SCHEMA_VERSION})"
                )
            with _transaction(conn):
                _migrate_1_to_2(conn)
                _migrate_2_to_3(conn)
                for statement in (_SCHEMA + REQUESTS_SCHEMA).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._checkpointer = None if self.path == ":memory:" else _Checkpointer(self.path)
        if self._checkpointer is not None:
            weakref.finalize(self, self._checkpointer.stop)
        self.registrations = SqliteRegistrationStore(conn)
        self.observations = SqliteObservationStore(conn)
        self.history = SqliteHistoryStore(conn, history_retention)
        self.security = SqliteSecurityStore(conn)
        self.bootstrap_configs = SqliteBootstrapConfigStore(conn)
        self.dtls_sessions = SqliteDtlsSessionStore(conn)
        self.queued_requests = SqliteQueuedRequestStore(conn)
        self.firmware = SqlitePackageStore(conn, firmware_folder(self.path))  # files in firmware/ beside
        self.labels = SqliteLabelStore(conn)
        self.webhooks = SqliteWebhookStore(conn)  # its tables made if missing
        self.campaigns = SqliteCampaignStore(conn)

    def close(self) -> None:
        try:
            self.registrations.write_pending()  # a group whose commit was still to come
            self.history._write()  # what add() kept back
        finally:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
