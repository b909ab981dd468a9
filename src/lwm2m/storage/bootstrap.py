"""Bootstrap configurations by endpoint: the :class:`~lwm2m.storage.base.BootstrapConfigStore` backends.

The SQLite one shares the connection of :class:`~lwm2m.storage.sqlite.SqliteStore`
and keeps each configuration as its JSON form (secrets included: the file is
as sensitive as the keys it hands out).
"""

from __future__ import annotations

import sqlite3
import time

import msgspec

from lwm2m.errors import ConfigError, StoreError
from lwm2m.protocol.bootstrap_config import BootstrapConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bootstrap_configs (
    endpoint TEXT PRIMARY KEY,      -- "*" is the default configuration
    updated_at REAL NOT NULL,
    data BLOB NOT NULL              -- BootstrapConfig.to_json() as JSON
)
"""


_SELECT = "SELECT data FROM bootstrap_configs WHERE endpoint = ?"


class MemoryBootstrapConfigStore:
    def __init__(self) -> None:
        self._configs: dict[str, BootstrapConfig] = {}

    async def get(self, endpoint: str) -> BootstrapConfig | None:
        return self._configs.get(endpoint)

    async def put(self, endpoint: str, config: BootstrapConfig) -> BootstrapConfig | None:
        old = self._configs.get(endpoint)
        self._configs[endpoint] = config
        return old

    async def remove(self, endpoint: str) -> BootstrapConfig | None:
        return self._configs.pop(endpoint, None)

    async def all(self) -> dict[str, BootstrapConfig]:
        return dict(sorted(self._configs.items()))


def _config(endpoint: str, data: bytes) -> BootstrapConfig:
    try:
        return BootstrapConfig.from_json(msgspec.json.decode(data))
    except (ConfigError, msgspec.DecodeError) as exc:
        raise StoreError(f"the stored bootstrap configuration of {endpoint!r} is unreadable: {exc}") from None


class SqliteBootstrapConfigStore:
    """Configurations in the ``bootstrap_configs`` table of an open SQLite connection (autocommit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute(_SCHEMA)

    async def get(self, endpoint: str) -> BootstrapConfig | None:
        row = self._conn.execute(
            "SELECT data FROM bootstrap_configs WHERE endpoint = ?", (endpoint,)
        ).fetchone()
        return None if row is None else _config(endpoint, row[0])

    async def put(self, endpoint: str, config: BootstrapConfig) -> BootstrapConfig | None:
        data = msgspec.json.encode(config.to_json())
        conn = self._conn
        # IMMEDIATE: no other writer between reading the old row and replacing it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT data FROM bootstrap_configs WHERE endpoint = ?", (endpoint,)
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO bootstrap_configs (endpoint, updated_at, data) VALUES (?, ?, ?)",
                (endpoint, time.time(), data),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return None if row is None else _config(endpoint, row[0])

    async def remove(self, endpoint: str) -> BootstrapConfig | None:
        rows = self._conn.execute(
            "DELETE FROM bootstrap_configs WHERE endpoint = ? RETURNING data", (endpoint,)
        ).fetchall()
        return _config(endpoint, rows[0][0]) if rows else None

    async def all(self) -> dict[str, BootstrapConfig]:
        rows = self._conn.execute("SELECT endpoint, data FROM bootstrap_configs ORDER BY endpoint").fetchall()
        return {endpoint: _config(endpoint, data) for endpoint, data in rows}
