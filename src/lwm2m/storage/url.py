"""Opening a :class:`~lwm2m.storage.base.Store` from a URL.

``memory://``
    the in-process stores: nothing survives the process.
``sqlite://PATH``
    one SQLite database file (``sqlite:///var/lib/lwm2m/lwm2m.db``: an absolute path,
    ``sqlite://lwm2m.db``: relative to the working directory; ``sqlite://:memory:``: a
    private database for tests). The folder must exist; the file is created.
``redis://HOST:PORT/DB``, ``rediss://…``
    the shared store of several server nodes (DESIGN.md, scale-out) on one Redis server;
    ``rediss`` with TLS. Opening does not connect: an unreachable Redis is a
    :class:`~lwm2m.errors.StoreError` naming the URL at the first call.
``redis+cluster://HOST:PORT[,HOST:PORT…]``, ``rediss+cluster://…``
    the same on a Redis Cluster, reached through any of the nodes named (the first that
    answers tells the client the others).
"""

from __future__ import annotations

import os
import sqlite3

from lwm2m.errors import ConfigError
from lwm2m.storage.base import HistoryRetention, Store
from lwm2m.storage.redisconn import shown_url

SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+cluster", "rediss+cluster")


def open_store(url: str, *, history_retention: HistoryRetention | None = None) -> Store:
    """The store ``url`` names, open; ``history_retention`` bounds its history (None: the
    backend's default). A URL of an unknown scheme, or a database that cannot be opened
    there, is a :class:`~lwm2m.errors.ConfigError` naming it."""
    shown = shown_url(url)  # messages never carry a password
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"store URL {shown!r}: give scheme://…, one of memory://, sqlite://PATH, redis://HOST:PORT/DB"
        )
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise ConfigError(f"store URL {shown!r}: memory:// takes no path")
        from lwm2m.storage.memory import MemoryStore

        return MemoryStore.create(history_retention=history_retention)
    if scheme == "sqlite":
        return _open_sqlite(url, rest, history_retention)
    if scheme in SCHEMES:
        try:
            from lwm2m.storage.redis import RedisStore
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ConfigError(f"store URL {shown!r}: {exc}; pip install 'lwm2m[cluster]'") from exc
        return RedisStore(url, history_retention=history_retention)  # ConfigError for a bad URL
    raise ConfigError(
        f"store URL {shown!r}: unknown scheme {scheme!r}; use memory://, sqlite://PATH or redis://HOST:PORT/DB"
    )


def _open_sqlite(url: str, path: str, retention: HistoryRetention | None) -> Store:
    from lwm2m.storage.sqlite import SqliteStore

    if not path:
        raise ConfigError(f"store URL {url!r}: give the database file, e.g. sqlite:///var/lib/lwm2m/lwm2m.db")
    if path != ":memory:":
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise ConfigError(f"store URL {url!r}: no folder {folder!r} for the database")
        if os.path.isdir(path):
            raise ConfigError(f"store URL {url!r}: {path!r} is a folder, not a database file")
    try:
        return SqliteStore(path, history_retention=retention)
    except (sqlite3.Error, OSError, RuntimeError) as exc:  # RuntimeError: StoreError (WAL, schema)
        raise ConfigError(f"store URL {url!r}: cannot open the SQLite database {path!r}: {exc}") from exc
