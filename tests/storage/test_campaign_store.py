"""The campaigns store's contract, the same for the memory, SQLite and Redis (one server and a
Redis Cluster) backends: a campaign's record, its devices' records, the listing, and removal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore

AnyStore = MemoryStore | SqliteStore | RedisStore


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[AnyStore]:
    if request.param.startswith("redis"):
        s: AnyStore = redis_store(request, request.param)
    else:
        s = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


async def test_save_load_list_and_remove(store: AnyStore) -> None:
    campaigns = store.campaigns
    assert await campaigns.ids() == [] and await campaigns.load("c1") is None
    await campaigns.save("c1", b'{"status":"running"}')
    await campaigns.save("c2", b"{}")
    await campaigns.save("c1", b'{"status":"paused"}')  # replaced, keeps its place
    assert await campaigns.ids() == ["c1", "c2"]
    assert await campaigns.load("c1") == b'{"status":"paused"}'
    await campaigns.save_device("c1", "lamp-1", b"one")
    await campaigns.save_device("c1", "lamp-2", b"two")
    await campaigns.save_device("c1", "lamp-1", b"one again")
    await campaigns.save_device("nope", "lamp-1", b"orphan")  # no campaign: not kept
    assert await campaigns.devices("c1") == {"lamp-1": b"one again", "lamp-2": b"two"}
    assert await campaigns.devices("c2") == {} and await campaigns.devices("nope") == {}
    assert await campaigns.remove("c1") is True
    assert await campaigns.remove("c1") is False
    assert await campaigns.ids() == ["c2"]
    assert await campaigns.load("c1") is None and await campaigns.devices("c1") == {}


async def test_sqlite_campaigns_outlive_the_process(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as first:
        await first.campaigns.save("c1", b"header")
        await first.campaigns.save_device("c1", "lamp-1", b"device")
    with SqliteStore(tmp_path / "lwm2m.db") as second:
        assert await second.campaigns.ids() == ["c1"]
        assert await second.campaigns.load("c1") == b"header"
        assert await second.campaigns.devices("c1") == {"lamp-1": b"device"}
