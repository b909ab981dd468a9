"""In-process stores: fast, for tests and for servers that may forget everything on restart."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from lwm2m.errors import IdentityInUse
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
    reachable_of,
    reserve_range,
)
from lwm2m.storage.bootstrap import MemoryBootstrapConfigStore
from lwm2m.storage.campaigns import MemoryCampaignStore
from lwm2m.storage.firmware import MemoryPackageStore
from lwm2m.storage.labels import MemoryLabelStore
from lwm2m.storage.requests import MemoryQueuedRequestStore
from lwm2m.storage.sortedkeys import SortedKeys, TimedKeys
from lwm2m.storage.webhooks import MemoryWebhookStore

# Registrations a page walks between two yields to the event loop (~0.2 ms with a filter).
MEMORY_PAGE_CHUNK = 512


class MemoryRegistrationStore:
    def __init__(self) -> None:
        self._by_endpoint: dict[str, Registration] = {}
        self._by_id: dict[str, str] = {}  # registration ID -> endpoint
        self._order: SortedKeys[str] = SortedKeys()  # the endpoints, for pages
        # (expiry, endpoint) of every registration, soonest first: a sweep reads only what
        # expired, never the live ones. Kept exact (no stale entries to purge later), so an
        # Update flood grows nothing and no change ever rebuilds the index.
        self._expiry = TimedKeys()

    async def add(self, registration: Registration) -> Registration | None:
        old = self._by_endpoint.get(registration.endpoint)
        clash = self._by_id.get(registration.registration_id)
        if clash is not None and (old is None or old.registration_id != registration.registration_id):
            raise ValueError(f"registration ID {registration.registration_id!r} is in use by {clash!r}")
        if old is not None:
            del self._by_id[old.registration_id]
            self._expiry.discard(old.expires_at, old.endpoint)
        self._by_endpoint[registration.endpoint] = registration
        self._by_id[registration.registration_id] = registration.endpoint
        self._expiry.add(registration.expires_at, registration.endpoint)
        if old is None:
            self._order.add(registration.endpoint)
        return old

    async def get(self, endpoint: str) -> Registration | None:
        return self._by_endpoint.get(endpoint)

    async def get_by_id(self, registration_id: str) -> Registration | None:
        endpoint = self._by_id.get(registration_id)
        return None if endpoint is None else self._by_endpoint[endpoint]

    async def update(self, registration: Registration) -> Registration | None:
        old = self._by_endpoint.get(registration.endpoint)
        if old is None or old.registration_id != registration.registration_id:
            return None
        self._by_endpoint[registration.endpoint] = registration
        if registration.expires_at != old.expires_at:
            self._expiry.discard(old.expires_at, old.endpoint)
            self._expiry.add(registration.expires_at, registration.endpoint)
        return old

    async def remove(self, endpoint: str, *, registration_id: str | None = None) -> Registration | None:
        old = self._by_endpoint.get(endpoint)
        if old is None or (registration_id is not None and old.registration_id != registration_id):
            return None
        del self._by_endpoint[endpoint]
        del self._by_id[old.registration_id]
        self._order.discard(endpoint)
        self._expiry.discard(old.expires_at, endpoint)
        return old

    async def all(self) -> list[Registration]:
        return list(self._by_endpoint.values())

    async def reachable(self) -> list[Reachable]:
        return [reachable_of(r) for r in self._by_endpoint.values()]

    async def registration_at(self, address: tuple[str, int]) -> Registration | None:
        """The registration made from ``address``, if any (``AddressIndex``). A look through
        every registration: a memory store is shared only by the nodes of one process (tests),
        and a node asks only for a Send from an address it does not know."""
        wanted = (address[0], address[1])
        for registration in self._by_endpoint.values():
            if (registration.address[0], registration.address[1]) == wanted:
                return registration
        return None

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
        by_endpoint = self._by_endpoint
        named = None if glob is None else glob_matcher(glob)

        def fetch(cursor: str | None, n: int) -> list[Row]:
            found: list[Row] = []
            for endpoint in islice(self._order.after(cursor, start=start), n):
                if not endpoint.startswith(start):
                    break  # the keys with a prefix are contiguous: past them
                found.append((endpoint, by_endpoint[endpoint] if named is None or named(endpoint) else None))
            return found

        filtered = glob is not None or match is not None
        return await collect_page(
            fetch, after, limit, match, chunk=MEMORY_PAGE_CHUNK, filtered=filtered, scan=scan
        )

    async def expired(
        self, now: float, grace: float = 0.0, *, limit: int | None = None
    ) -> list[Registration]:
        check_query(limit)
        cutoff = now - grace
        by_endpoint = self._by_endpoint
        found = []
        for expires_at, endpoint in islice(self._expiry, limit):
            if expires_at > cutoff:
                break
            found.append(by_endpoint[endpoint])
        return found

    async def remove_expired(self, now: float, grace: float = 0.0, *, limit: int) -> list[Registration]:
        found = await self.expired(now, grace, limit=limit)
        for r in found:
            del self._by_endpoint[r.endpoint]
            del self._by_id[r.registration_id]
            self._order.discard(r.endpoint)
            self._expiry.discard(r.expires_at, r.endpoint)
        return found


class MemoryObservationStore:
    def __init__(self) -> None:
        self._by_token: dict[bytes, Observation] = {}  # insertion order is creation order
        # Each endpoint's tokens in creation order: the token itself while it has one (as most
        # have: a dict each would cost more than the observation's record).
        self._by_endpoint: dict[str, bytes | dict[bytes, None]] = {}

    async def add(self, observation: Observation) -> Observation | None:
        old = self._drop(observation.token)
        token, endpoint = observation.token, observation.endpoint
        self._by_token[token] = observation
        mine = self._by_endpoint.get(endpoint)
        if mine is None:
            self._by_endpoint[endpoint] = token
        elif type(mine) is bytes:
            self._by_endpoint[endpoint] = {mine: None, token: None}
        else:
            assert isinstance(mine, dict)
            mine[token] = None
        return old

    async def get(self, token: bytes) -> Observation | None:
        return self._by_token.get(token)

    async def for_endpoint(self, endpoint: str) -> list[Observation]:
        return [self._by_token[t] for t in self._tokens(self._by_endpoint.get(endpoint))]

    async def all(self) -> list[Observation]:
        return list(self._by_token.values())

    async def chunks(self, size: int) -> AsyncIterator[list[Observation]]:
        records = await self.all()
        for start in range(0, len(records), size):
            yield records[start : start + size]

    async def remove(self, token: bytes) -> Observation | None:
        return self._drop(token)

    async def remove_endpoint(self, endpoint: str, registration_id: str | None = None) -> list[Observation]:
        if registration_id is None:
            return [self._by_token.pop(t) for t in self._tokens(self._by_endpoint.pop(endpoint, None))]
        mine = [self._by_token[t] for t in self._tokens(self._by_endpoint.get(endpoint))]
        gone = [o for o in mine if o.registration_id == registration_id]
        for o in gone:
            self._drop(o.token)
        return gone

    @staticmethod
    def _tokens(mine: bytes | dict[bytes, None] | None) -> Iterable[bytes]:
        if mine is None:
            return ()
        if isinstance(mine, bytes):
            return (mine,)
        return list(mine)  # (a copy: the caller may change the store while it goes through)

    def _drop(self, token: bytes) -> Observation | None:
        old = self._by_token.pop(token, None)
        if old is not None:
            mine = self._by_endpoint[old.endpoint]
            if type(mine) is bytes:
                del self._by_endpoint[old.endpoint]
            else:
                assert isinstance(mine, dict)
                del mine[token]
                if not mine:
                    del self._by_endpoint[old.endpoint]
        return old


# One history entry: (path IDs, value, record time, received at, source). Plain tuples of
# numbers and strings, which the garbage collector stops tracking after one look: a
# history of millions of values then costs no time in full collections.
_Row = tuple[tuple[Any, ...], Any, float | None, float, str]  # (prefix and) path IDs, value, times, source


class MemoryHistoryStore:
    def __init__(self, retention: HistoryRetention | None = None) -> None:
        self.retention = retention or HistoryRetention()
        # Per endpoint, entries in arrival order (which breaks ties between equal times).
        self._entries: dict[str, deque[_Row]] = {}

    async def append(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        self.add(endpoint, records, source=source, received_at=received_at)

    def add(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        if source != "notify":
            check_query(None, source)
        entries = self._entries.get(endpoint)
        for r in records:
            if r.value is None:
                continue
            if entries is None:
                entries = self._entries[endpoint] = deque(maxlen=self.retention.max_records)
            entries.append((_key(r.path), r.value, r.time, received_at, source))

    async def flush(self) -> None:
        """Nothing is kept back here."""

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
        entries = self._entries.get(endpoint, ())
        prefix = _key(path)
        n = len(prefix)
        # A stable sort on time alone: equal times keep the order they are met in, which is
        # arrival order, or its reverse for newest first.
        found = []
        for row in reversed(entries) if newest_first else entries:
            ids, _, t, at, _ = row
            when = at if t is None else t
            if ids[:n] == prefix and (since is None or when >= since) and (until is None or when < until):
                found.append((when, row))
        found.sort(key=_first, reverse=newest_first)
        if limit is not None:
            found = found[:limit]
        paths: dict[tuple[int, ...], Path] = {}
        out = []
        for _, (ids, value, t, at, source) in found:
            p = paths.get(ids)
            if p is None:
                p = paths[ids] = Path(ids) if not ids or type(ids[0]) is int else Path(ids[1:], ids[0])
            out.append(HistoryEntry(endpoint, Record(p, value, t), source, at))  # type: ignore[arg-type]
        return out

    async def prune(self, now: float) -> int:
        """Apply the retention. By age, values go from the oldest arrival on while they are too
        old (the server calls this every minute: it costs what it removes, not what it keeps),
        so a value given an earlier ``received_at`` than one added before it stays until that
        one goes."""
        removed = 0
        max_age = self.retention.max_age
        for endpoint in list(self._entries):
            entries = self._entries[endpoint]
            before = len(entries)
            if entries.maxlen != self.retention.max_records:  # the limit was changed since
                entries = deque(entries, self.retention.max_records)
            if max_age is not None:
                cutoff = now - max_age
                while entries and entries[0][3] < cutoff:
                    entries.popleft()
            removed += before - len(entries)
            if entries:
                self._entries[endpoint] = entries
            else:
                del self._entries[endpoint]
        return removed

    async def clear(self, endpoint: str) -> int:
        return len(self._entries.pop(endpoint, ()))


def _first(item: tuple[float, _Row]) -> float:
    return item[0]


def _key(path: Path) -> tuple[Any, ...]:
    """A path as history keeps it: its IDs, after its prefix on an end device behind a gateway
    (so that the gateway's root holds its end devices' values too, and nothing else does)."""
    return (path.prefix, *path.ids) if path.prefix else path.ids


def _identity_key(info: SecurityInfo) -> tuple[str, str | bytes] | None:
    """What a peer proves it holds, unique across endpoints: a PSK identity, a public key, or an
    OSCORE identity (the device's Sender ID after its ID Context)."""
    if info.psk_identity is not None:
        return ("psk", info.psk_identity)
    if info.rpk is not None:
        return ("rpk", info.rpk)
    if info.oscore is not None:
        return ("oscore", info.oscore.identity)
    return None


_WHAT = {"psk": "PSK identity", "rpk": "the public key", "oscore": "OSCORE identity"}


class MemorySecurityStore:
    def __init__(self) -> None:
        self._by_endpoint: dict[str, SecurityInfo] = {}
        self._by_identity: dict[tuple[str, str | bytes], str] = {}  # identity key -> endpoint

    async def put(self, info: SecurityInfo) -> SecurityInfo | None:
        key = _identity_key(info)
        if key is not None:
            owner = self._by_identity.get(key)
            if owner is not None and owner != info.endpoint:
                what = _WHAT[key[0]] + ("" if key[0] == "rpk" else f" {key[1]!r}")
                raise IdentityInUse(f"{what} is in use by {owner!r}")
        old = self._by_endpoint.get(info.endpoint)
        old_key = None if old is None else _identity_key(old)
        if old_key is not None:
            del self._by_identity[old_key]
        if info.oscore is not None and old is not None:
            info = dataclasses.replace(info, oscore=info.oscore.keeping(old.oscore))
        self._by_endpoint[info.endpoint] = info
        if key is not None:
            self._by_identity[key] = info.endpoint
        return old

    async def get(self, endpoint: str) -> SecurityInfo | None:
        return self._by_endpoint.get(endpoint)

    async def get_by_identity(self, psk_identity: str) -> SecurityInfo | None:
        endpoint = self._by_identity.get(("psk", psk_identity))
        return None if endpoint is None else self._by_endpoint[endpoint]

    async def get_by_public_key(self, rpk: bytes) -> SecurityInfo | None:
        endpoint = self._by_identity.get(("rpk", rpk))
        return None if endpoint is None else self._by_endpoint[endpoint]

    async def get_by_oscore(self, identity: str) -> SecurityInfo | None:
        endpoint = self._by_identity.get(("oscore", identity))
        return None if endpoint is None else self._by_endpoint[endpoint]

    async def reserve_oscore_sequence(
        self, endpoint: str, oscore: OscoreSecrets, above: int, count: int
    ) -> int | None:
        info = self._by_endpoint.get(endpoint)
        if info is None or info.oscore is None or not info.oscore.same_context(oscore):
            return None
        start, limit = reserve_range(info.oscore.sequence, above, count)
        self._by_endpoint[endpoint] = dataclasses.replace(
            info, oscore=dataclasses.replace(info.oscore, sequence=limit)
        )
        return start

    async def remove(self, endpoint: str) -> SecurityInfo | None:
        old = self._by_endpoint.pop(endpoint, None)
        old_key = None if old is None else _identity_key(old)
        if old_key is not None:
            del self._by_identity[old_key]
        return old

    async def all(self) -> list[SecurityInfo]:
        return [self._by_endpoint[e] for e in sorted(self._by_endpoint)]


class MemoryDtlsSessionStore:
    """Saved DTLS sessions and ticket keys in memory: a server restarted in the same process
    (tests, an application that restarts its ``Server``) takes its sessions up again."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[Any, ...], SavedDtlsSession] = {}
        self._keys: bytes | None = None
        self._shared: dict[str, _SharedDtls] = {}
        self._swept_at = 64

    async def save(self, sessions: Iterable[SavedDtlsSession]) -> None:
        kept: dict[tuple[Any, ...], SavedDtlsSession] = {}
        by_cid: dict[bytes, tuple[Any, ...]] = {}
        for session in sessions:
            if session.cid and session.cid in by_cid:
                del kept[by_cid[session.cid]]  # one session per CID: the last one given
            kept[tuple(session.address)] = session
            if session.cid:
                by_cid[session.cid] = tuple(session.address)
        self._sessions = kept

    async def take(self) -> list[SavedDtlsSession]:
        taken, self._sessions = list(self._sessions.values()), {}
        return taken

    async def put_ticket_keys(self, keys: bytes) -> None:
        self._keys = bytes(keys)

    async def ticket_keys(self) -> bytes | None:
        return self._keys

    # --- shared between the servers of this process (DtlsSessionStore) ---

    def _live(self, key: str) -> _SharedDtls | None:
        entry = self._shared.get(key)
        if entry is not None and entry.expires <= time.monotonic():
            del self._shared[key]
            return None
        return entry

    async def publish(self, key: str, saved: bytes, base: int, holder: str, ttl: float) -> None:
        now = time.monotonic()
        if len(self._shared) >= self._swept_at * 2:  # expired entries go now and then: bounded
            self._shared = {k: e for k, e in self._shared.items() if e.expires > now}
            self._swept_at = max(64, len(self._shared))
        self._shared[key] = _SharedDtls(bytes(saved), base, 0, holder, now + ttl)

    async def refresh(
        self, entries: Sequence[tuple[str, bytes]], holder: str, ttl: float
    ) -> list[bool | None]:
        kept: list[bool | None] = []
        for key, saved in entries:
            entry = self._live(key)
            if entry is None:
                kept.append(None)
                continue
            ours = entry.holder == holder
            if ours:
                entry.saved = bytes(saved)
                entry.expires = time.monotonic() + ttl
            kept.append(ours)
        return kept

    async def peek(self, key: str) -> TakenDtlsSession | None:
        entry = self._live(key)
        return None if entry is None else TakenDtlsSession(entry.saved, entry.base, entry.takers)

    async def take_over(self, key: str, holder: str, ttl: float) -> TakenDtlsSession | None:
        entry = self._live(key)
        if entry is None:
            return None
        entry.takers += 1
        entry.holder = holder
        entry.expires = time.monotonic() + ttl
        return TakenDtlsSession(entry.saved, entry.base, entry.takers)

    async def forget(self, key: str, holder: str) -> None:
        entry = self._live(key)
        if entry is not None and entry.holder == holder:
            del self._shared[key]


@dataclass(slots=True)
class _SharedDtls:
    saved: bytes
    base: int
    takers: int
    holder: str
    expires: float  # time.monotonic()


@dataclass
class MemoryStore:
    """The memory stores together, shaped like :class:`~lwm2m.storage.sqlite.SqliteStore`."""

    registrations: MemoryRegistrationStore = field(default_factory=MemoryRegistrationStore)
    observations: MemoryObservationStore = field(default_factory=MemoryObservationStore)
    history: MemoryHistoryStore = field(default_factory=MemoryHistoryStore)
    security: MemorySecurityStore = field(default_factory=MemorySecurityStore)
    bootstrap_configs: MemoryBootstrapConfigStore = field(default_factory=MemoryBootstrapConfigStore)
    dtls_sessions: MemoryDtlsSessionStore = field(default_factory=MemoryDtlsSessionStore)
    queued_requests: MemoryQueuedRequestStore = field(default_factory=MemoryQueuedRequestStore)
    firmware: MemoryPackageStore = field(default_factory=MemoryPackageStore)
    labels: MemoryLabelStore = field(default_factory=MemoryLabelStore)
    webhooks: MemoryWebhookStore = field(default_factory=MemoryWebhookStore)
    campaigns: MemoryCampaignStore = field(default_factory=MemoryCampaignStore)

    @classmethod
    def create(cls, *, history_retention: HistoryRetention | None = None) -> MemoryStore:
        return cls(history=MemoryHistoryStore(history_retention))

    def close(self) -> None:
        """Nothing to release; here so that code can close any store."""
