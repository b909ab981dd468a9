"""BootstrapConfigStore: memory, SQLite and Redis alike; SQLite keeps configurations across a reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.stores import redis_store

from lwm2m.errors import StoreError
from lwm2m.protocol.bootstrap_config import DEFAULT_ENDPOINT, BootstrapConfig
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore


def config(ssid: int = 101) -> BootstrapConfig:
    return BootstrapConfig.from_json(
        {
            "servers": [
                {
                    "uri": "coaps://h:5684",
                    "shortServerId": ssid,
                    "security": {"mode": "psk", "identity": "id", "key": "abcd"},
                }
            ]
        }
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "redis":
        opened: MemoryStore | SqliteStore | RedisStore = redis_store(request, "redis")
    else:
        opened = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "db.sqlite")
    yield opened.bootstrap_configs
    opened.close()


async def test_put_get_replace_remove_all(store: Any) -> None:
    assert await store.get("a") is None
    assert await store.put("a", config(101)) is None
    assert await store.get("a") == config(101)
    assert await store.put("a", config(102)) == config(101)
    assert await store.put("a", config(102)) == config(102)  # the same again: still the old one back
    await store.put(DEFAULT_ENDPOINT, config(5))
    await store.put("0-first", config(6))
    assert list(await store.all()) == [DEFAULT_ENDPOINT, "0-first", "a"]
    assert await store.remove("a") == config(102)
    assert await store.remove("a") is None
    assert list(await store.all()) == [DEFAULT_ENDPOINT, "0-first"]


def test_sqlite_keeps_configurations_across_a_reopen(tmp_path: Path) -> None:
    import asyncio

    async def write() -> None:
        with SqliteStore(tmp_path / "db.sqlite") as db:
            await db.bootstrap_configs.put("dev", config(7))

    async def read() -> BootstrapConfig | None:
        with SqliteStore(tmp_path / "db.sqlite") as db:
            return await db.bootstrap_configs.get("dev")

    asyncio.run(write())
    assert asyncio.run(read()) == config(7)


async def test_an_unreadable_row_is_a_store_error(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite") as db:
        db._conn.execute("INSERT INTO bootstrap_configs VALUES ('bad', 0, '{\"servers\": []}')")
        with pytest.raises(StoreError, match="'bad'"):
            await db.bootstrap_configs.get("bad")
