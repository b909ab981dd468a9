"""Device labels: the :class:`LabelStore` role, in memory and in SQLite (Redis:
:mod:`lwm2m.storage.redis_labels`).

A label is a key and a value an operator gives a device (``site=north``, ``hw=rev2``) to pick
devices out of the fleet: listing, campaigns. Labels belong to the endpoint name, not to a
registration: they are kept in a role of their own, so a device that registers again (or a
server that restarts) finds its labels where they were. The rules a label set follows (count,
key and value forms) are checked above the store, in :mod:`lwm2m.fleet.labels`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Protocol

__all__ = ["LabelStore", "MemoryLabelStore", "SqliteLabelStore"]


class LabelStore(Protocol):
    """The labels of each endpoint, kept apart from its registration."""

    async def get(self, endpoint: str) -> dict[str, str]:
        """The endpoint's labels (empty when it has none)."""
        ...

    async def put(self, endpoint: str, labels: Mapping[str, str]) -> None:
        """Replace the endpoint's labels with ``labels`` (empty: remove them all)."""
        ...

    async def matching(self, selector: Mapping[str, str]) -> set[str]:
        """The endpoints whose labels hold every key of ``selector`` with its value (AND);
        ``selector`` is not empty."""
        ...


def _check_selector(selector: Mapping[str, str]) -> None:
    if not selector:
        raise ValueError("a label selector names at least one label")


class MemoryLabelStore:
    """Labels in the process: they live as long as the store object."""

    def __init__(self) -> None:
        self._labels: dict[str, dict[str, str]] = {}

    async def get(self, endpoint: str) -> dict[str, str]:
        return dict(self._labels.get(endpoint, {}))

    async def put(self, endpoint: str, labels: Mapping[str, str]) -> None:
        if labels:
            self._labels[endpoint] = dict(labels)
        else:
            self._labels.pop(endpoint, None)

    async def matching(self, selector: Mapping[str, str]) -> set[str]:
        _check_selector(selector)
        wanted = tuple(selector.items())
        return {
            endpoint
            for endpoint, labels in self._labels.items()
            if all(labels.get(k) == v for k, v in wanted)
        }


# --- SQLite ----------------------------------------------------------------------------------

# A new table only (made if missing), so the schema version stays: an older program ignores it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (endpoint, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS labels_key_value ON labels (key, value);
"""


class SqliteLabelStore:
    """Labels in the ``labels`` table of an open SQLite connection (autocommit): one row per
    label, indexed by key and value so that a selector is answered from the index."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)

    async def get(self, endpoint: str) -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT key, value FROM labels WHERE endpoint = ? ORDER BY key", (endpoint,)
        ).fetchall()
        return {str(k): str(v) for k, v in rows}

    async def put(self, endpoint: str, labels: Mapping[str, str]) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM labels WHERE endpoint = ?", (endpoint,))
            c.executemany(
                "INSERT INTO labels (endpoint, key, value) VALUES (?, ?, ?)",
                [(endpoint, k, v) for k, v in labels.items()],
            )
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    async def matching(self, selector: Mapping[str, str]) -> set[str]:
        _check_selector(selector)
        pairs = list(selector.items())
        where = " OR ".join("(key = ? AND value = ?)" for _ in pairs)
        rows = self._conn.execute(
            f"SELECT endpoint FROM labels WHERE {where} GROUP BY endpoint HAVING count(*) = ?",
            [*(x for pair in pairs for x in pair), len(pairs)],
        ).fetchall()
        return {str(endpoint) for (endpoint,) in rows}
