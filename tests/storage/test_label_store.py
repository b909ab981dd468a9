"""The label store's contract (labels by endpoint name, replaced whole, selected by key and value
with AND), the same for the memory, SQLite and Redis backends (one server and a Cluster); SQLite
and Redis keep them over a reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.redis_labels import _index
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


async def test_labels_are_kept_by_endpoint_and_replaced_whole(store: AnyStore) -> None:
    labels = store.labels
    assert await labels.get("lamp-1") == {}
    await labels.put("lamp-1", {"site": "north", "hw": "rev2"})
    await labels.put("lamp-2", {"site": "south"})
    assert await labels.get("lamp-1") == {"site": "north", "hw": "rev2"}
    await labels.put("lamp-1", {"site": "east"})
    assert await labels.get("lamp-1") == {"site": "east"}
    assert await labels.get("lamp-2") == {"site": "south"}
    await labels.put("lamp-1", {})
    assert await labels.get("lamp-1") == {}


async def test_a_selector_picks_endpoints_with_every_label(store: AnyStore) -> None:
    labels = store.labels
    await labels.put("a", {"site": "north", "hw": "rev2"})
    await labels.put("b", {"site": "north", "hw": "rev1"})
    await labels.put("c", {"site": "south", "hw": "rev2"})
    await labels.put("d", {"hw": "rev2"})
    assert await labels.matching({"site": "north"}) == {"a", "b"}
    assert await labels.matching({"site": "north", "hw": "rev2"}) == {"a"}
    assert await labels.matching({"hw": "rev2"}) == {"a", "c", "d"}
    assert await labels.matching({"site": "west"}) == set()
    assert await labels.matching({"site": "north", "nope": "x"}) == set()
    # A change moves the endpoint out of the old selection and into the new one.
    await labels.put("a", {"site": "south"})
    assert await labels.matching({"site": "north"}) == {"b"}
    assert await labels.matching({"site": "south"}) == {"a", "c"}
    await labels.put("c", {})
    assert await labels.matching({"site": "south"}) == {"a"}
    with pytest.raises(ValueError):
        await labels.matching({})


async def test_keys_and_values_are_not_confused(store: AnyStore) -> None:
    await store.labels.put("a", {"k": "x=y"})
    await store.labels.put("b", {"k=x": "y"})
    assert await store.labels.matching({"k": "x=y"}) == {"a"}
    assert await store.labels.matching({"k=x": "y"}) == {"b"}


async def test_sqlite_keeps_labels_over_a_reopen(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as s:
        await s.labels.put("lamp", {"site": "north"})
    with SqliteStore(tmp_path / "lwm2m.db") as s:
        assert await s.labels.get("lamp") == {"site": "north"}
        assert await s.labels.matching({"site": "north"}) == {"lamp"}


async def test_redis_keeps_labels_for_a_new_store_object(redis_url: str) -> None:
    with RedisStore(redis_url) as s:
        await s.labels.put("lamp", {"site": "north"})
    with RedisStore(redis_url) as s:
        assert await s.labels.get("lamp") == {"site": "north"}
        assert await s.labels.matching({"site": "north"}) == {"lamp"}


async def test_redis_index_entries_left_by_a_crash_are_not_answers(redis_url: str) -> None:
    with RedisStore(redis_url) as s:
        await s.labels.put("real", {"site": "north"})
        # An index entry whose record write never happened (a crash between the two writes).
        await s.link.client().sadd(_index("site", "north"), "ghost")  # type: ignore[misc]
        assert await s.labels.matching({"site": "north"}) == {"real"}
