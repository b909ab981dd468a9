"""The shared DTLS sessions of the DTLS session store (``publish``, ``refresh``, ``peek``,
``take_over``, ``forget``): what the nodes of a cluster share so that one can take over another's
session (docs/cluster.md, "DTLS session takeover"). The same contract on the memory, SQLite and
Redis backends (one server, and a Redis Cluster: each script touches one key); takeovers are
counted atomically (never the same count twice), which with ``taker_range`` gives every holder
its own write sequence range (RFC 6347 §4.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.storage.base import TakenDtlsSession
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.dtls.takeover import taker_range

AnyStore = MemoryStore | SqliteStore | RedisStore
KEY = "c:01a1b2c3d4e5"
BASE = (1 << 20) + 17


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[AnyStore]:
    if request.param.startswith("redis"):
        s: AnyStore = redis_store(request, request.param)
    else:
        s = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


async def test_takeovers_are_counted_and_each_gets_its_own_range(store: AnyStore) -> None:
    sessions = store.dtls_sessions
    assert await sessions.peek(KEY) is None and await sessions.take_over(KEY, "2:b", 60) is None
    await sessions.publish(KEY, b"state-a", BASE, "1:a", 60)
    assert await sessions.peek(KEY) == TakenDtlsSession(b"state-a", BASE, 0)  # nothing claimed
    first = await sessions.take_over(KEY, "2:b", 60)
    second = await sessions.take_over(KEY, "3:c", 60)
    assert first == TakenDtlsSession(b"state-a", BASE, 1)
    assert second == TakenDtlsSession(b"state-a", BASE, 2)
    a, b, c = (taker_range(BASE, n) for n in (0, 1, 2))
    assert a.stop <= b.start and b.stop <= c.start  # disjoint, the maker's range below
    assert BASE in a  # the maker's exported write sequence number is in its own range


async def test_only_the_holder_refreshes_and_forgets(store: AnyStore) -> None:
    sessions = store.dtls_sessions
    await sessions.publish(KEY, b"state-a", BASE, "1:a", 60)
    assert await sessions.refresh([(KEY, b"state-a2"), ("c:000000000000", b"x")], "1:a", 60) == [True, None]
    assert (await sessions.peek(KEY)) == TakenDtlsSession(b"state-a2", BASE, 0)
    await sessions.take_over(KEY, "2:b", 60)
    assert await sessions.refresh([(KEY, b"state-a3")], "1:a", 60) == [False]  # a lost it
    await sessions.forget(KEY, "1:a")  # not a's to forget any more
    assert await sessions.refresh([(KEY, b"state-b")], "2:b", 60) == [True]
    assert await sessions.peek(KEY) == TakenDtlsSession(b"state-b", BASE, 1)
    await sessions.forget(KEY, "2:b")
    assert await sessions.peek(KEY) is None


async def test_a_new_handshake_replaces_the_entry_and_entries_expire(store: AnyStore) -> None:
    sessions = store.dtls_sessions
    await sessions.publish(KEY, b"state-a", BASE, "1:a", 60)
    await sessions.take_over(KEY, "2:b", 60)
    await sessions.publish(KEY, b"state-new", 5, "3:c", 0.2)
    assert await sessions.peek(KEY) == TakenDtlsSession(b"state-new", 5, 0)
    await asyncio.sleep(0.3)
    assert await sessions.peek(KEY) is None
    assert await sessions.take_over(KEY, "2:b", 60) is None
    assert await sessions.refresh([(KEY, b"x")], "3:c", 60) == [None]


async def test_concurrent_takeovers_never_get_the_same_count(store: AnyStore) -> None:
    sessions = store.dtls_sessions
    await sessions.publish(KEY, b"state-a", BASE, "1:a", 60)
    taken = await asyncio.gather(*(sessions.take_over(KEY, f"{n}:x", 60) for n in range(2, 22)))
    assert sorted(t.takeover for t in taken if t is not None) == list(range(1, 21))
