"""The campaigns store's contract, the same for the memory, SQLite and Redis (one server and a
Redis Cluster) backends: a campaign's record, its devices' records, the listing, removal, and
the one lease per campaign whose token fences the writes of a runner that lost it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.errors import CampaignFenced
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


async def test_one_lease_per_campaign_and_writes_fenced_by_its_token(store: AnyStore) -> None:
    campaigns = store.campaigns
    await campaigns.save("c1", b"created")
    first = await campaigns.acquire("c1", "node-a", 30.0)
    assert first is not None and first > 0
    assert await campaigns.holder("c1") == "node-a"
    assert await campaigns.acquire("c1", "node-b", 30.0) is None  # held: nobody else gets it
    assert await campaigns.acquire("c2", "node-b", 30.0) is not None  # one lease per campaign
    assert await campaigns.renew("c1", "node-a", first, 30.0) is True
    assert await campaigns.renew("c1", "node-b", first, 30.0) is False  # not its lease
    await campaigns.save("c1", b"by a", fence=first)
    await campaigns.save_device("c1", "lamp-1", b"a's step", fence=first)
    await campaigns.release("c1", "node-b", first)  # not its lease: nothing happens
    assert await campaigns.holder("c1") == "node-a"
    await campaigns.release("c1", "node-a", first)
    assert await campaigns.holder("c1") is None
    assert await campaigns.renew("c1", "node-a", first, 30.0) is False  # given up
    second = await campaigns.acquire("c1", "node-b", 30.0)
    assert second is not None and second > first
    # A's writes now come too late: refused, never mixed with B's.
    with pytest.raises(CampaignFenced):
        await campaigns.save("c1", b"late a", fence=first)
    with pytest.raises(CampaignFenced):
        await campaigns.save_device("c1", "lamp-1", b"late a", fence=first)
    await campaigns.save("c1", b"by b", fence=second)
    await campaigns.save_device("c1", "lamp-2", b"b's step", fence=second)
    assert await campaigns.load("c1") == b"by b"
    assert await campaigns.devices("c1") == {"lamp-1": b"a's step", "lamp-2": b"b's step"}
    await campaigns.remove("c1")  # its lease and its tokens go with it
    assert await campaigns.holder("c1") is None


async def test_a_lease_that_is_not_renewed_lapses_and_is_taken_over(store: AnyStore) -> None:
    campaigns = store.campaigns
    await campaigns.save("c1", b"created")
    first = await campaigns.acquire("c1", "node-a", 0.15)
    assert first is not None
    await asyncio.sleep(0.3)  # node-a was killed: nothing renews its lease
    assert await campaigns.holder("c1") is None
    assert await campaigns.renew("c1", "node-a", first, 30.0) is False
    second = await campaigns.acquire("c1", "node-b", 30.0)
    assert second is not None and second > first and await campaigns.holder("c1") == "node-b"
    with pytest.raises(CampaignFenced):
        await campaigns.save("c1", b"late a", fence=first)
