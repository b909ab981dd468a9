"""History, security information, bootstrap configurations and DTLS sessions in Redis (the key
layout is in :mod:`lwm2m.storage.redis`). The index-first write order of
:mod:`lwm2m.storage.redis_registrations` holds here too."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import redis as redis_sync
from redis.exceptions import RedisError

from lwm2m.errors import IdentityInUse, StoreError
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.storage.base import (
    MAX_OSCORE_SEQUENCE,
    HistoryEntry,
    HistoryRetention,
    OscoreSecrets,
    SavedDtlsSession,
    SecurityInfo,
    Source,
    TakenDtlsSession,
    check_query,
    record_from_row,
    record_row,
)
from lwm2m.storage.bootstrap import _config
from lwm2m.storage.redis_link import (
    CAS_DELETE,
    CHUNK,
    HASH_TAKE,
    RedisLink,
    fetch_all,
    guarded,
    index,
    key,
    raw,
    sync_client,
    text,
    walk_lex,
)

# HistoryStore.add keeps entries back until flush() or until this many wait (then it flushes
# on the running loop without being awaited).
MAX_PENDING = 2048
PUSH_CHUNK = 1000  # entries per RPUSH
FLUSH_GROUP = 500  # endpoints per pipeline of a history flush: what one failed round trip restores
MAX_KEPT = 16 * MAX_PENDING  # values add() keeps at most while Redis cannot be reached
# Values a list may hold beyond ``max_records`` (an eighth of it at most) before a flush trims
# it: a trim at every write would cost a command per value; reads take the newest
# ``max_records`` only, so no reader sees the slack.
TRIM_SLACK = 256


def trim_slack(limit: int) -> int:
    return max(1, min(TRIM_SLACK, limit // 8))


# KEYS[1] hist:{ep}; ARGV[1] max records ('' none), ARGV[2..] entries in arrival order. Answers
# the received_at of the oldest entry kept (each entry starts "received_at|").
# Retention on one endpoint: drop entries from the oldest arrival while received before ARGV[1]
# ('' none), then keep the newest ARGV[2] ('' all). Answers {removed, oldest received_at or ''}.
_HIST_PRUNE = """
local removed = 0
if ARGV[1] ~= '' then
  local cutoff = tonumber(ARGV[1])
  while true do
    local head = redis.call('LINDEX', KEYS[1], 0)
    if not head or tonumber(string.match(head, '^([^|]*)|')) >= cutoff then break end
    redis.call('LPOP', KEYS[1])
    removed = removed + 1
  end
end
if ARGV[2] ~= '' then
  local over = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[2])
  if over > 0 then
    redis.call('LTRIM', KEYS[1], over, -1)
    removed = removed + over
  end
end
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return {removed, ''} end
return {removed, string.match(head, '^([^|]*)|')}
"""

# ARGV[1] max records ('' none): a list may hold more until a flush trims it; those are no
# values of the history (reads skip them) and are not counted.
_HIST_CLEAR = """
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
if ARGV[1] ~= '' then n = math.min(n, tonumber(ARGV[1])) end
return n
"""

# KEYS[1] the saved sessions' hash, replaced by the ARGV field/value pairs.
_HASH_REPLACE = """
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
"""


def _push(pipe: Any, hist: str, entries: list[bytes], limit: int | None) -> int:
    """Queue on ``pipe`` the RPUSHes of ``entries`` to the list ``hist`` and its trim to the
    newest ``limit`` (None: no trim); answers how many commands were queued."""
    queued = 0
    for i in range(0, len(entries), PUSH_CHUNK):
        pipe.rpush(hist, *entries[i : i + PUSH_CHUNK])
        queued += 1
    if limit is not None:
        pipe.ltrim(hist, -limit, -1)
        queued += 1
    return queued


def history_entry(record: Record, source: str, received_at: float) -> bytes:
    """``received_at|time|source|kind|path|record``: the head a Lua script reads for retention,
    the path and time a query filters on without decoding, then :func:`record_row`'s JSON."""
    data, kind = record_row(record)
    time = "" if record.time is None else repr(record.time)
    return f"{received_at!r}|{time}|{source}|{kind}|{record.path}|".encode() + data


def entry_from_history(endpoint: str, entry: bytes) -> HistoryEntry:
    at, _, source, kind, _, data = entry.split(b"|", 5)
    return HistoryEntry(endpoint, record_from_row(data, kind.decode()), source.decode(), float(at))  # type: ignore[arg-type]


class RedisHistoryStore:
    """Per endpoint, a list in arrival order (``hist:{ep}``), trimmed to ``max_records`` by the
    write that takes it beyond :func:`trim_slack` more (reads see the newest ``max_records``);
    the index ``history`` gives each endpoint with entries a score never later than its
    oldest entry's arrival, so that age retention reads only the endpoints it trims."""

    def __init__(self, link: RedisLink, retention: HistoryRetention | None = None) -> None:
        self.link = link
        self.retention = retention or HistoryRetention()
        self._pending: list[tuple[str, bytes, float]] = []  # add()ed, not written
        self._flushing: set[asyncio.Task[None]] = set()

    async def append(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        check_query(None, source)
        self.add(endpoint, records, source=source, received_at=received_at)
        await self.flush()

    def add(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        if source != "notify":
            check_query(None, source)
        pending = self._pending
        for r in records:
            if r.value is not None:
                pending.append((endpoint, history_entry(r, source, received_at), received_at))
        if len(pending) >= MAX_PENDING:
            try:
                task = asyncio.get_running_loop().create_task(self.flush())
            except RuntimeError:
                return  # no loop: the next flush() or close() writes them
            self._flushing.add(task)
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if not task.cancelled():
            task.exception()  # a failed write kept its values for the next flush: nothing to raise

    def _batches(self) -> list[tuple[str, float, list[bytes]]]:
        """The pending entries by endpoint, in arrival order, with the earliest arrival; taken."""
        rows, self._pending = self._pending, []
        grouped: dict[str, tuple[float, list[bytes]]] = {}
        for endpoint, entry, at in rows:
            first, entries = grouped.setdefault(endpoint, (at, []))
            entries.append(entry)
            if at < first:
                grouped[endpoint] = (at, entries)
        return [(e, first, entries) for e, (first, entries) in grouped.items()]

    @guarded
    async def flush(self) -> None:
        """The pending entries written, a pipeline (one round trip) per :data:`FLUSH_GROUP`
        endpoints: their index entries (one ZADD), then each one's RPUSH. A list that the push
        took more than :func:`trim_slack` beyond ``max_records`` is trimmed to ``max_records``
        in a second round trip (one LTRIM per such list, every few hundred values of a full
        one). Only the owner of an endpoint writes its list, so the push and trim need no
        script."""
        batches = self._batches()
        if not batches:
            return
        limit = self.retention.max_records
        done = 0  # batches written
        try:
            while done < len(batches):
                group = batches[done : done + FLUSH_GROUP]
                pipe = self.link.client().pipeline(transaction=False)
                # The index first, one command for the group (each command costs the client more
                # than Redis: a cluster node writes a value per notification).
                pipe.zadd(index("history"), {endpoint: first for endpoint, first, _ in group}, lt=True)
                lengths_at: list[int] = []  # per endpoint, where its last RPUSH's answer is
                at = 0
                for endpoint, _, entries in group:
                    at += _push(pipe, key("hist", endpoint), entries, None)
                    lengths_at.append(at)
                answers = await pipe.execute()
                done += len(group)
                if limit is not None:
                    most = limit + trim_slack(limit)
                    over = [
                        ep for (ep, _, _), i in zip(group, lengths_at, strict=True) if int(answers[i]) > most
                    ]
                    if over:
                        trim = self.link.client().pipeline(transaction=False)
                        for endpoint in over:
                            trim.ltrim(key("hist", endpoint), -limit, -1)
                        await trim.execute()
        except BaseException:
            self._restore(batches[done:])
            raise

    def _restore(self, batches: list[tuple[str, float, list[bytes]]]) -> None:
        """Keep what a failed write did not write for the next one, ahead of anything added
        meanwhile (the group whose round trip failed may have landed without an answer, and
        may then land twice). While Redis stays unreachable, the newest ``MAX_KEPT`` values
        wait: memory stays bounded."""
        kept: list[tuple[str, bytes, float]] = []
        for endpoint, first, entries in batches:
            kept += [(endpoint, e, first) for e in entries]
        self._pending[:0] = kept
        if len(self._pending) > MAX_KEPT:
            del self._pending[: len(self._pending) - MAX_KEPT]

    def flush_blocking(self) -> None:
        """:meth:`flush` from plain code (``close()``), through a short-lived blocking client."""
        batches = self._batches()
        if not batches:
            return
        client: redis_sync.Redis | redis_sync.RedisCluster | None = None
        try:
            client = sync_client(self.link.url, self.link.known_nodes())  # connects: inside the try
            for endpoint, first, entries in batches:
                client.zadd(index("history"), {endpoint: first}, lt=True)
                pipe = client.pipeline(transaction=False)
                _push(pipe, key("hist", endpoint), entries, self.retention.max_records)
                pipe.execute()
        except (RedisError, OSError) as exc:
            n = sum(len(entries) for _, _, entries in batches)
            raise StoreError(
                f"the Redis store {self.link.shown}: {n} history values not written: {exc}"
            ) from exc
        finally:
            if client is not None:
                client.close()

    @guarded
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
        await self.flush()
        # The newest max_records: a list may hold a few more until a flush trims it.
        newest = self.retention.max_records
        rows = [raw(r) for r in await self.link.client().lrange(key("hist", endpoint), -(newest or 0), -1)]
        under = None if path.is_root and not path.prefix else str(path).encode()
        below = None if under is None else under + b"/"
        found: list[tuple[float, bytes]] = []
        for row in reversed(rows) if newest_first else rows:
            at, t, _, _, p, _ = row.split(b"|", 5)
            if under is not None and p != under and not p.startswith(below):  # type: ignore[arg-type]
                continue
            when = float(t or at)
            if (since is None or when >= since) and (until is None or when < until):
                found.append((when, row))
        # A stable sort on time alone: equal times keep arrival order (reversed for newest first).
        found.sort(key=_first, reverse=newest_first)
        if limit is not None:
            found = found[:limit]
        return [entry_from_history(endpoint, row) for _, row in found]

    @guarded
    async def prune(self, now: float) -> int:
        """Apply the retention. By age, values go from the oldest arrival on while they are too
        old (as in the memory store), reading only the endpoints the index says hold such
        values: the cost grows with what goes. ``max_records`` the writes keep, within a slack
        (what a list held beyond it, not yet trimmed, counts as removed here); without a
        ``max_age`` this walks every endpoint with history (ZSCAN), for a limit lowered since."""
        await self.flush()
        limit = "" if self.retention.max_records is None else str(self.retention.max_records)
        c = self.link.client()
        removed = 0
        if self.retention.max_age is not None:
            cutoff = now - self.retention.max_age
            while True:
                # Each endpoint read leaves the range (its oldest value is then recent enough).
                got = await c.zrangebyscore(index("history"), "-inf", f"({cutoff!r}", start=0, num=CHUNK)
                for member in got:
                    removed += await self._prune_one(text(member), repr(cutoff), limit)
                if len(got) < CHUNK:
                    return removed
        if limit:
            async for member, _ in c.zscan_iter(index("history"), count=CHUNK):
                removed += await self._prune_one(text(member), "", limit)
        return removed

    async def _prune_one(self, endpoint: str, cutoff: str, limit: str) -> int:
        c = self.link.client()
        n, head = await self.link.run(_HIST_PRUNE, [key("hist", endpoint)], [cutoff, limit])
        if text(head) == "":
            await c.zrem(index("history"), endpoint)
            if await c.exists(key("hist", endpoint)):  # an add() on another node meanwhile
                await c.zadd(index("history"), {endpoint: float("-inf")})
        else:
            await c.zadd(index("history"), {endpoint: float(text(head))}, xx=True)
        return int(n)

    @guarded
    async def clear(self, endpoint: str) -> int:
        await self.flush()
        limit = "" if self.retention.max_records is None else str(self.retention.max_records)
        n = int(await self.link.run(_HIST_CLEAR, [key("hist", endpoint)], [limit]))
        c = self.link.client()
        await c.zrem(index("history"), endpoint)
        if await c.exists(key("hist", endpoint)):
            await c.zadd(index("history"), {endpoint: float("-inf")})
        return n


def _first(item: tuple[float, bytes]) -> float:
    return item[0]


# --- security information -------------------------------------------------------------------------


def _identity_index(info: SecurityInfo) -> str | None:
    """The index key of what a peer proves it holds: its PSK identity, its public key (by
    SHA-256, to keep the key name short) or its OSCORE identity."""
    if info.psk_identity is not None:
        return index("psk", info.psk_identity)
    if info.rpk is not None:
        return index("rpk", hashlib.sha256(info.rpk).hexdigest())
    if info.oscore is not None:
        return index("osc", info.oscore.identity)
    return None


def _what(info: SecurityInfo) -> str:
    if info.oscore is not None:
        return f"OSCORE identity {info.oscore.identity!r}"
    return f"PSK identity {info.psk_identity!r}" if info.rpk is None else "the public key"


def _security(data: Any) -> SecurityInfo:
    return SecurityInfo.from_dict(msgspec.json.decode(data))


# OscoreSecrets.fingerprint of the stored entry's "oscore" object (its JSON form).
_FINGERPRINT = """
local function fingerprint(o)
  return o.masterSecret .. '|' .. o.masterSalt .. '|' .. o.senderId .. '|' .. o.recipientId .. '|'
    .. (o.idContext or '-')
end
"""

# KEYS[1] sec:{ep}; ARGV[1] the entry's JSON, ARGV[2] its OSCORE fingerprint ('' for none), ARGV[3]
# its sequence limit. Stores the entry, keeping the stored limit when that is higher and the
# stored entry derives the same context (RFC 8613 Appendix B.1.1); answers the old entry.
_SEC_PUT = (
    _FINGERPRINT
    + """
local old = redis.call('GET', KEYS[1])
local new = ARGV[1]
if old and ARGV[2] ~= '' then
  local o = cjson.decode(old).oscore
  if type(o) == 'table' and fingerprint(o) == ARGV[2] and tonumber(o.sequence) > tonumber(ARGV[3]) then
    local entry = cjson.decode(new)
    entry.oscore.sequence = o.sequence
    new = cjson.encode(entry)
  end
end
redis.call('SET', KEYS[1], new)
return old
"""
)

# KEYS[1] sec:{ep}; ARGV[1] the OSCORE fingerprint, ARGV[2] above, ARGV[3] count, ARGV[4] the
# highest limit. SecurityStore.reserve_oscore_sequence: the start of the range, or nil.
_SEC_RESERVE = (
    _FINGERPRINT
    + """
local old = redis.call('GET', KEYS[1])
if not old then return false end
local entry = cjson.decode(old)
local o = entry.oscore
if type(o) ~= 'table' or fingerprint(o) ~= ARGV[1] then return false end
local stored = tonumber(o.sequence) or 0
local start = math.max(stored, tonumber(ARGV[2]))
o.sequence = math.min(math.max(start + tonumber(ARGV[3]), stored), tonumber(ARGV[4]))
redis.call('SET', KEYS[1], cjson.encode(entry))
return tostring(start)
"""
)


class RedisSecurityStore:
    """Entries under their endpoint (``sec:{ep}``, keys included: protect the Redis as the
    keys), indexed by PSK identity, by public key, by OSCORE identity and in name order."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def put(self, info: SecurityInfo) -> SecurityInfo | None:
        c = self.link.client()
        ident = _identity_index(info)
        if ident is not None:
            owner = await c.get(ident)
            if owner is not None and text(owner) != info.endpoint:
                theirs = await c.get(key("sec", text(owner)))
                if theirs is not None and _identity_index(_security(theirs)) == ident:
                    raise IdentityInUse(f"{_what(info)} is in use by {text(owner)!r}")
            await c.set(ident, info.endpoint)
        await c.zadd(index("security"), {info.endpoint: 0})
        oscore = info.oscore
        old_data = await self.link.run(
            _SEC_PUT,
            [key("sec", info.endpoint)],
            [
                msgspec.json.encode(info.to_dict(with_key=True)),
                "" if oscore is None else oscore.fingerprint,
                0 if oscore is None else oscore.sequence,
            ],
        )
        await c.zadd(index("security"), {info.endpoint: 0})  # again: see ``unlist``
        if old_data is None:
            return None
        old = _security(old_data)
        old_ident = _identity_index(old)
        if old_ident is not None and old_ident != ident:
            await self.link.run(CAS_DELETE, [old_ident], [info.endpoint])
        return old

    @guarded
    async def get(self, endpoint: str) -> SecurityInfo | None:
        data = await self.link.client().get(key("sec", endpoint))
        return None if data is None else _security(data)

    async def _by_index(self, ident: str) -> SecurityInfo | None:
        owner = await self.link.client().get(ident)
        if owner is None:
            return None
        found = await self.get(text(owner))
        return found if found is not None and _identity_index(found) == ident else None

    @guarded
    async def get_by_identity(self, psk_identity: str) -> SecurityInfo | None:
        return await self._by_index(index("psk", psk_identity))

    @guarded
    async def get_by_public_key(self, rpk: bytes) -> SecurityInfo | None:
        return await self._by_index(index("rpk", hashlib.sha256(rpk).hexdigest()))

    @guarded
    async def get_by_oscore(self, identity: str) -> SecurityInfo | None:
        return await self._by_index(index("osc", identity))

    @guarded
    async def reserve_oscore_sequence(
        self, endpoint: str, oscore: OscoreSecrets, above: int, count: int
    ) -> int | None:
        start = await self.link.run(
            _SEC_RESERVE, [key("sec", endpoint)], [oscore.fingerprint, above, count, MAX_OSCORE_SEQUENCE]
        )
        return None if start is None else int(start)

    @guarded
    async def remove(self, endpoint: str) -> SecurityInfo | None:
        c = self.link.client()
        old_data = await c.getdel(key("sec", endpoint))
        if old_data is None:
            return None
        old = _security(old_data)
        ident = _identity_index(old)
        if ident is not None:
            await self.link.run(CAS_DELETE, [ident], [endpoint])
        await unlist(self.link, "security", key("sec", endpoint), endpoint)
        return old

    @guarded
    async def all(self) -> list[SecurityInfo]:
        found: list[SecurityInfo] = []
        async for names in walk_lex(self.link, index("security")):
            blobs = await fetch_all(self.link, [("GET", (key("sec", n),)) for n in names])
            found += [_security(b) for b in blobs if b is not None]
        return found


async def unlist(link: RedisLink, listing: str, record: str, endpoint: str) -> None:
    """Take ``endpoint`` out of the name listing after its record went; put it back if a write on
    another node stored a new record meanwhile. (A write lists its endpoint before its record
    and again after it, so a removal's check that ran before that record landed hides nothing.)"""
    c = link.client()
    await c.zrem(index(listing), endpoint)
    if await c.exists(record):
        await c.zadd(index(listing), {endpoint: 0})


# --- bootstrap configurations -----------------------------------------------------------------------


class RedisBootstrapConfigStore:
    """Configurations as their JSON form under their endpoint (``bs:{ep}``; "*" is the default
    one), listed in name order; secrets included, like the SQLite table."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def get(self, endpoint: str) -> BootstrapConfig | None:
        data = await self.link.client().get(key("bs", endpoint))
        return None if data is None else _config(endpoint, raw(data))

    @guarded
    async def put(self, endpoint: str, config: BootstrapConfig) -> BootstrapConfig | None:
        c = self.link.client()
        await c.zadd(index("bootstrap"), {endpoint: 0})
        old = await c.set(key("bs", endpoint), msgspec.json.encode(config.to_json()), get=True)
        await c.zadd(index("bootstrap"), {endpoint: 0})  # again: see ``unlist``
        return None if old is None else _config(endpoint, raw(old))

    @guarded
    async def remove(self, endpoint: str) -> BootstrapConfig | None:
        old = await self.link.client().getdel(key("bs", endpoint))
        if old is None:
            return None
        await unlist(self.link, "bootstrap", key("bs", endpoint), endpoint)
        return _config(endpoint, raw(old))

    @guarded
    async def all(self) -> dict[str, BootstrapConfig]:
        found: dict[str, BootstrapConfig] = {}
        async for names in walk_lex(self.link, index("bootstrap")):
            blobs = await fetch_all(self.link, [("GET", (key("bs", n),)) for n in names])
            found.update((n, _config(n, raw(b))) for n, b in zip(names, blobs, strict=True) if b is not None)
        return found


# --- DTLS sessions ------------------------------------------------------------------------------------


class RedisDtlsSessionStore:
    """Saved sessions in one hash (peer address as JSON -> [cid, state] as MessagePack) and the
    ticket keys in one string: key material, like the security entries."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def save(self, sessions: Iterable[SavedDtlsSession]) -> None:
        kept: dict[bytes, tuple[bytes, bytes]] = {}
        by_cid: dict[bytes, bytes] = {}
        for session in sessions:
            address = msgspec.json.encode(list(session.address))
            cid = bytes(session.cid)
            if cid and cid in by_cid:
                del kept[by_cid[cid]]  # one session per CID: the last one given
            kept[address] = (cid, bytes(session.state))
            if cid:
                by_cid[cid] = address
        args: list[Any] = []
        for address, pair in kept.items():
            args += [address, msgspec.msgpack.encode(pair)]
        await self.link.run(_HASH_REPLACE, [index("dtls:sessions")], args)

    @guarded
    async def take(self) -> list[SavedDtlsSession]:
        flat = await self.link.run(HASH_TAKE, [index("dtls:sessions")], [])
        taken = []
        for i in range(0, len(flat), 2):
            peer = msgspec.json.decode(flat[i])
            cid, state = msgspec.msgpack.decode(flat[i + 1])
            if isinstance(peer, list) and isinstance(state, bytes) and isinstance(cid, bytes):
                taken.append(SavedDtlsSession(tuple(peer), cid, state))
        return taken

    @guarded
    async def put_ticket_keys(self, keys: bytes) -> None:
        await self.link.client().set(index("dtls:tickets"), bytes(keys))

    @guarded
    async def ticket_keys(self) -> bytes | None:
        value = await self.link.client().get(index("dtls:tickets"))
        return None if value is None else raw(value)

    # --- shared between the nodes (DtlsSessionStore): one hash per session, with a TTL ---

    @guarded
    async def publish(self, key: str, saved: bytes, base: int, holder: str, ttl: float) -> None:
        await self.link.run(_DTLS_PUBLISH, [index("dtls:s", key)], [bytes(saved), base, holder, _ms(ttl)])

    @guarded
    async def refresh(
        self, entries: Sequence[tuple[str, bytes]], holder: str, ttl: float
    ) -> list[bool | None]:
        ms = _ms(ttl)
        commands = [
            ("EVAL", (_DTLS_REFRESH, 1, index("dtls:s", key), bytes(saved), holder, ms))
            for key, saved in entries
        ]
        return [None if reply == -1 else reply == 1 for reply in await fetch_all(self.link, commands)]

    @guarded
    async def peek(self, key: str) -> TakenDtlsSession | None:
        saved, base, takers = await self.link.client().hmget(index("dtls:s", key), ["s", "b", "t"])
        if saved is None or base is None or takers is None:
            return None
        return TakenDtlsSession(raw(saved), int(base), int(takers))

    @guarded
    async def take_over(self, key: str, holder: str, ttl: float) -> TakenDtlsSession | None:
        reply = await self.link.run(_DTLS_TAKE, [index("dtls:s", key)], [holder, _ms(ttl)])
        if not reply:
            return None
        saved, base, takers = reply
        return TakenDtlsSession(raw(saved), int(base), int(takers))

    @guarded
    async def forget(self, key: str, holder: str) -> None:
        await self.link.run(_DTLS_FORGET, [index("dtls:s", key)], [holder])


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


# A shared DTLS session: KEYS[1] lwm2m:dtls:s:<key>, a hash of s (saved state), b (base write
# sequence number), t (takeovers counted), h (holder). Each script touches that one key only.
# ARGV saved, base, holder, ttl ms: a new session (a handshake), no takeover yet.
_DTLS_PUBLISH = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', ARGV[1], 'b', ARGV[2], 't', 0, 'h', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
# ARGV saved, holder, ttl ms: newer state from its holder; 0 when another node holds it, -1 gone.
_DTLS_REFRESH = """
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return -1 end
if h ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# ARGV holder, ttl ms: one more takeover, counted atomically; answers {saved, base, count}.
_DTLS_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local n = redis.call('HINCRBY', KEYS[1], 't', 1)
redis.call('HSET', KEYS[1], 'h', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local got = redis.call('HMGET', KEYS[1], 's', 'b')
return {got[1], got[2], n}
"""
# ARGV holder: the session ended at its holder.
_DTLS_FORGET = """
if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
