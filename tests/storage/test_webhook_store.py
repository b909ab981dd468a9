"""The webhook store's contract (hooks by ID; an outbox written in batches, claimed for a lease,
removed when delivered, bounded per hook and in all), the same for the memory, SQLite, Redis and
Redis Cluster backends; SQLite keeps the outbox over a reopen of its file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.errors import ConfigError
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.storage.webhooks import (
    MemoryWebhookStore,
    OutboxEntry,
    OutboxLimits,
    Retry,
    SqliteWebhookStore,
    Webhook,
)

AnyStore = MemoryStore | SqliteStore | RedisStore
Limited = Callable[[OutboxLimits], AnyStore]


def hook(hook_id: str = "h1", at: float = 1.0) -> Webhook:
    return Webhook(hook_id, f"http://127.0.0.1:9/{hook_id}", ("NOTIFICATION", "REGISTRATION"), "s3cret", at)


def entry(n: int, hook_id: str = "h1", at: float = 100.0) -> OutboxEntry:
    return OutboxEntry(hook_id, f"ev{n}", at + n, b'{"n": %d, "text": "\xc3\xa9"}' % n, next_at=at + n)


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def limited(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[Limited]:
    opened: list[AnyStore] = []

    def make(limits: OutboxLimits) -> AnyStore:
        if request.param == "memory":
            s: AnyStore = MemoryStore.create()
            s.webhooks = MemoryWebhookStore(limits)
        elif request.param == "sqlite":
            s = SqliteStore(tmp_path / "lwm2m.db")
            s.webhooks = SqliteWebhookStore(s._conn, limits)
        else:
            s = redis_store(request, request.param)
            s.webhooks.limits = limits
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(limited: Limited) -> AnyStore:
    return limited(OutboxLimits())


async def test_hooks_by_id_oldest_first(store: AnyStore) -> None:
    hooks = store.webhooks
    await hooks.put_hook(hook("b", at=2.0))
    await hooks.put_hook(hook("a", at=3.0))
    assert [h.hook_id for h in await hooks.hooks()] == ["b", "a"]
    assert await hooks.get_hook("a") == hook("a", at=3.0)
    assert await hooks.get_hook("zz") is None
    assert await hooks.delete_hook("b") is True
    assert await hooks.delete_hook("b") is False
    assert [h.hook_id for h in await hooks.hooks()] == ["a"]


async def test_a_hooks_batch_settings_are_kept(store: AnyStore) -> None:
    batched = dataclasses.replace(hook("b"), batch_events=100, batch_delay=0.5)
    await store.webhooks.put_hook(batched)
    await store.webhooks.put_hook(hook("a"))
    assert await store.webhooks.get_hook("b") == batched
    assert (await store.webhooks.get_hook("a")) == hook("a")
    # Written by a program without batches: read as one event per post.
    old = b'{"id":"o","url":"http://h/o","events":["SEND"],"secret":"k","at":1.0}'
    assert Webhook.from_json(old) == Webhook("o", "http://h/o", ("SEND",), "k", 1.0, 1, 0.0)
    assert b"batch" not in hook("a").to_json()


async def test_outbox_claim_deliver_retry(store: AnyStore) -> None:
    box = store.webhooks
    await box.put_hook(hook())
    assert await box.enqueue([entry(i) for i in range(5)]) == 0
    assert await box.size() == 5
    # Due at 100 + n: at 102.5 three are due; a claim takes two, in writing order.
    got = await box.claim(102.5, 2, lease=30.0)
    assert [e.event_id for e in got] == ["ev0", "ev1"]
    assert got[0].body == entry(0).body and got[0].hook_id == "h1" and got[0].attempts == 0
    assert got[0].created_at == 100.0 and got[0].seq < got[1].seq
    # Claimed ones are not due again before the lease ends.
    again = await box.claim(102.5, 10, lease=30.0)
    assert [e.event_id for e in again] == ["ev2"]
    await box.delivered([got[0].seq])
    assert await box.size() == 4
    await box.retry([Retry(got[1].seq, 1, 110.0)])
    assert [e.event_id for e in await box.claim(109.0, 10, lease=30.0)] == ["ev3", "ev4"]
    later = await box.claim(110.0, 10, lease=30.0)
    assert [(e.event_id, e.attempts) for e in later] == [("ev1", 1)]
    # The leases end: everything left comes due again.
    assert {e.event_id for e in await box.claim(200.0, 10, lease=30.0)} == {"ev1", "ev2", "ev3", "ev4"}
    await box.delivered([e.seq for e in later])
    await box.retry([Retry(later[0].seq, 2, 0.0)])  # removed meanwhile: stays removed
    assert await box.size() == 3


async def test_deleting_a_hook_drops_its_entries(store: AnyStore) -> None:
    box = store.webhooks
    await box.put_hook(hook("h1"))
    await box.put_hook(hook("h2"))
    await box.enqueue([entry(0, "h1"), entry(1, "h2"), entry(2, "h1")])
    assert await box.delete_hook("h1")
    assert await box.size() == 1
    assert [e.event_id for e in await box.claim(1e9, 10, 1.0)] == ["ev1"]


async def test_bounds_drop_the_oldest(limited: Limited) -> None:
    box = limited(OutboxLimits(per_hook=3, total=5)).webhooks
    assert await box.enqueue([entry(i, "h1") for i in range(5)]) == 2
    assert await box.enqueue([entry(i, "h2") for i in range(5, 8)]) == 1  # total 6 > 5
    left = await box.claim(1e9, 100, 1.0)
    assert [e.event_id for e in left] == ["ev3", "ev4", "ev5", "ev6", "ev7"]
    assert await box.size() == 5


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError):
        OutboxLimits(per_hook=0)


async def test_sqlite_outbox_survives_a_reopen(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as first:
        await first.webhooks.put_hook(hook())
        await first.webhooks.enqueue([entry(1), entry(2)])
        await first.webhooks.claim(1e9, 1, 30.0)  # claimed, never delivered: comes due again
    with SqliteStore(tmp_path / "lwm2m.db") as second:
        assert await second.webhooks.get_hook("h1") == hook()
        assert [e.event_id for e in await second.webhooks.claim(2e9, 10, 1.0)] == ["ev1", "ev2"]
