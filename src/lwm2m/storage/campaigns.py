"""The ``campaigns`` storage role: firmware update campaigns and the state of each of their devices.

A campaign and each of its devices are kept as one encoded record apiece (the JSON form that
:mod:`lwm2m.fleet.campaigns` writes), so that a device's step is saved without rewriting the
campaign, and a server that restarts finds every running campaign where it was.

Exactly one runner drives a campaign at a time: it holds the campaign's lease (``acquire``, a
fencing token back; ``renew`` while it runs; ``release`` when it stops). A write that names a
``fence`` (the token its runner got) is refused with :class:`~lwm2m.errors.CampaignFenced` once
a newer token was given out (another runner took the campaign over after the lease lapsed),
so that a runner that lost its lease never writes between the new runner's writes. The memory
and SQLite stores serve one node: their leases live in the process (:class:`LocalLeases`); the
Redis store's are shared by every node (:mod:`lwm2m.storage.redis_campaigns`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Protocol

from lwm2m.errors import CampaignFenced

__all__ = ["CampaignStore", "LocalLeases", "MemoryCampaignStore", "SqliteCampaignStore"]


class CampaignStore(Protocol):
    """Where campaigns live. Records are opaque bytes to the store. ``fence``: the token of the
    writer's lease; a write with a token older than the newest given out raises
    :class:`~lwm2m.errors.CampaignFenced` (None: not checked)."""

    async def save(self, campaign_id: str, record: bytes, *, fence: int | None = None) -> None: ...

    async def load(self, campaign_id: str) -> bytes | None: ...

    async def ids(self) -> list[str]:
        """The campaigns' ids, oldest first."""
        ...

    async def save_device(
        self, campaign_id: str, endpoint: str, record: bytes, *, fence: int | None = None
    ) -> None: ...

    async def devices(self, campaign_id: str) -> dict[str, bytes]: ...

    async def remove(self, campaign_id: str) -> bool:
        """Forget the campaign, its devices and its lease."""
        ...

    async def acquire(self, campaign_id: str, holder: str, ttl: float) -> int | None:
        """The campaign's lease for ``holder``, for ``ttl`` seconds, if nobody holds it: its
        fencing token (greater than every token given out before); None when it is held."""
        ...

    async def renew(self, campaign_id: str, holder: str, token: int, ttl: float) -> bool:
        """Another ``ttl`` seconds of the lease ``token``; False when it is not held any more."""
        ...

    async def release(self, campaign_id: str, holder: str, token: int) -> None:
        """Give the lease ``token`` up (nothing when it is not held any more)."""
        ...

    async def holder(self, campaign_id: str) -> str | None:
        """Who holds the campaign's lease now (None: nobody)."""
        ...


class LocalLeases:
    """Campaign leases and fencing tokens in this process's memory: the memory and SQLite stores,
    which serve one node, keep them here (a restart begins with no lease held)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, int, float]] = {}  # id -> holder, token, lapses at
        self._fences: dict[str, int] = {}  # id -> the newest token given out

    def _held(self, campaign_id: str) -> tuple[str, int, float] | None:
        lease = self._leases.get(campaign_id)
        if lease is not None and lease[2] <= self._clock():
            del self._leases[campaign_id]
            return None
        return lease

    def acquire(self, campaign_id: str, holder: str, ttl: float) -> int | None:
        if self._held(campaign_id) is not None:
            return None
        token = self._fences[campaign_id] = self._fences.get(campaign_id, 0) + 1
        self._leases[campaign_id] = (holder, token, self._clock() + ttl)
        return token

    def renew(self, campaign_id: str, holder: str, token: int, ttl: float) -> bool:
        lease = self._held(campaign_id)
        if lease is None or lease[:2] != (holder, token):
            return False
        self._leases[campaign_id] = (holder, token, self._clock() + ttl)
        return True

    def release(self, campaign_id: str, holder: str, token: int) -> None:
        lease = self._held(campaign_id)
        if lease is not None and lease[:2] == (holder, token):
            del self._leases[campaign_id]

    def holder(self, campaign_id: str) -> str | None:
        lease = self._held(campaign_id)
        return None if lease is None else lease[0]

    def check(self, campaign_id: str, fence: int | None) -> None:
        """CampaignFenced when ``fence`` is older than the newest token of the campaign."""
        if fence is not None and fence < self._fences.get(campaign_id, 0):
            raise CampaignFenced(
                f"campaign {campaign_id}: another runner took it over (lease {fence} is old)"
            )

    def forget(self, campaign_id: str) -> None:
        self._leases.pop(campaign_id, None)
        self._fences.pop(campaign_id, None)


class MemoryCampaignStore:
    """Campaigns in this process's memory (they survive a runner's restart, not the process's)."""

    def __init__(self) -> None:
        self._campaigns: dict[str, bytes] = {}
        self._devices: dict[str, dict[str, bytes]] = {}
        self.leases = LocalLeases()

    async def save(self, campaign_id: str, record: bytes, *, fence: int | None = None) -> None:
        self.leases.check(campaign_id, fence)
        self._campaigns[campaign_id] = record
        self._devices.setdefault(campaign_id, {})

    async def load(self, campaign_id: str) -> bytes | None:
        return self._campaigns.get(campaign_id)

    async def ids(self) -> list[str]:
        return list(self._campaigns)

    async def save_device(
        self, campaign_id: str, endpoint: str, record: bytes, *, fence: int | None = None
    ) -> None:
        self.leases.check(campaign_id, fence)
        if campaign_id in self._campaigns:
            self._devices[campaign_id][endpoint] = record

    async def devices(self, campaign_id: str) -> dict[str, bytes]:
        return dict(self._devices.get(campaign_id, {}))

    async def remove(self, campaign_id: str) -> bool:
        self._devices.pop(campaign_id, None)
        self.leases.forget(campaign_id)
        return self._campaigns.pop(campaign_id, None) is not None

    async def acquire(self, campaign_id: str, holder: str, ttl: float) -> int | None:
        return self.leases.acquire(campaign_id, holder, ttl)

    async def renew(self, campaign_id: str, holder: str, token: int, ttl: float) -> bool:
        return self.leases.renew(campaign_id, holder, token, ttl)

    async def release(self, campaign_id: str, holder: str, token: int) -> None:
        self.leases.release(campaign_id, holder, token)

    async def holder(self, campaign_id: str) -> str | None:
        return self.leases.holder(campaign_id)


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    data BLOB NOT NULL              -- the campaign without its devices, as JSON
)""",
    """CREATE TABLE IF NOT EXISTS campaign_devices (
    campaign_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    data BLOB NOT NULL,             -- one device's progress, as JSON
    PRIMARY KEY (campaign_id, endpoint)
)""",
)


class SqliteCampaignStore:
    """Campaigns in the ``campaigns`` and ``campaign_devices`` tables of an open SQLite connection
    (autocommit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.leases = LocalLeases()  # one node's file: its leases live in its process
        for statement in _SCHEMA:
            conn.execute(statement)

    async def save(self, campaign_id: str, record: bytes, *, fence: int | None = None) -> None:
        self.leases.check(campaign_id, fence)
        self._conn.execute(
            "INSERT INTO campaigns (id, created_at, data) VALUES (?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            (campaign_id, time.time(), record),
        )

    async def load(self, campaign_id: str) -> bytes | None:
        row = self._conn.execute("SELECT data FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        return None if row is None else bytes(row[0])

    async def ids(self) -> list[str]:
        rows = self._conn.execute("SELECT id FROM campaigns ORDER BY created_at, rowid").fetchall()
        return [campaign_id for (campaign_id,) in rows]

    async def save_device(
        self, campaign_id: str, endpoint: str, record: bytes, *, fence: int | None = None
    ) -> None:
        self.leases.check(campaign_id, fence)
        self._conn.execute(
            "INSERT INTO campaign_devices (campaign_id, endpoint, data)"
            " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM campaigns WHERE id = ?)"
            " ON CONFLICT (campaign_id, endpoint) DO UPDATE SET data = excluded.data",
            (campaign_id, endpoint, record, campaign_id),
        )

    async def devices(self, campaign_id: str) -> dict[str, bytes]:
        rows = self._conn.execute(
            "SELECT endpoint, data FROM campaign_devices WHERE campaign_id = ? ORDER BY rowid", (campaign_id,)
        ).fetchall()
        return {endpoint: bytes(data) for endpoint, data in rows}

    async def remove(self, campaign_id: str) -> bool:
        with self._conn:
            self._conn.execute("DELETE FROM campaign_devices WHERE campaign_id = ?", (campaign_id,))
            gone = self._conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,)).rowcount
        self.leases.forget(campaign_id)
        return gone > 0

    async def acquire(self, campaign_id: str, holder: str, ttl: float) -> int | None:
        return self.leases.acquire(campaign_id, holder, ttl)

    async def renew(self, campaign_id: str, holder: str, token: int, ttl: float) -> bool:
        return self.leases.renew(campaign_id, holder, token, ttl)

    async def release(self, campaign_id: str, holder: str, token: int) -> None:
        self.leases.release(campaign_id, holder, token)

    async def holder(self, campaign_id: str) -> str | None:
        return self.leases.holder(campaign_id)
