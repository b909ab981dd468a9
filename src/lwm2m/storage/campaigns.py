"""The ``campaigns`` storage role: firmware update campaigns and the state of each of their devices.

A campaign and each of its devices are kept as one encoded record apiece (the JSON form that
:mod:`lwm2m.fleet.campaigns` writes), so that a device's step is saved without rewriting the
campaign, and a server that restarts finds every running campaign where it was.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Protocol

__all__ = ["CampaignStore", "MemoryCampaignStore", "SqliteCampaignStore"]


class CampaignStore(Protocol):
    """Where campaigns live. Records are opaque bytes to the store."""

    async def save(self, campaign_id: str, record: bytes) -> None: ...

    async def load(self, campaign_id: str) -> bytes | None: ...

    async def ids(self) -> list[str]:
        """The campaigns' ids, oldest first."""
        ...

    async def save_device(self, campaign_id: str, endpoint: str, record: bytes) -> None: ...

    async def devices(self, campaign_id: str) -> dict[str, bytes]: ...

    async def remove(self, campaign_id: str) -> bool: ...


class MemoryCampaignStore:
    """Campaigns in this process's memory (they survive a runner's restart, not the process's)."""

    def __init__(self) -> None:
        self._campaigns: dict[str, bytes] = {}
        self._devices: dict[str, dict[str, bytes]] = {}

    async def save(self, campaign_id: str, record: bytes) -> None:
        self._campaigns[campaign_id] = record
        self._devices.setdefault(campaign_id, {})

    async def load(self, campaign_id: str) -> bytes | None:
        return self._campaigns.get(campaign_id)

    async def ids(self) -> list[str]:
        return list(self._campaigns)

    async def save_device(self, campaign_id: str, endpoint: str, record: bytes) -> None:
        if campaign_id in self._campaigns:
            self._devices[campaign_id][endpoint] = record

    async def devices(self, campaign_id: str) -> dict[str, bytes]:
        return dict(self._devices.get(campaign_id, {}))

    async def remove(self, campaign_id: str) -> bool:
        self._devices.pop(campaign_id, None)
        return self._campaigns.pop(campaign_id, None) is not None


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
        for statement in _SCHEMA:
            conn.execute(statement)

    async def save(self, campaign_id: str, record: bytes) -> None:
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

    async def save_device(self, campaign_id: str, endpoint: str, record: bytes) -> None:
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
        return gone > 0
