"""The queued request store's contract (requests for sleeping clients: queued in order, taken
once, their outcome kept for a while, bounded per endpoint and in all), the same for the memory,
SQLite and Redis backends; SQLite keeps them over a reopen of its file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.errors import RequestQueueFull, TableFull
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.redisconn import endpoint_tag
from lwm2m.storage.requests import (
    MemoryQueuedRequestStore,
    RequestQueueLimits,
    SqliteQueuedRequestStore,
    StoredRequest,
)
from lwm2m.storage.sqlite import SqliteStore

AnyStore = MemoryStore | SqliteStore | RedisStore
Limited = Callable[[RequestQueueLimits], AnyStore]


def call(request_id: str, endpoint: str = "sleepy", at: float = 1000.0) -> StoredRequest:
    return StoredRequest(
        request_id,
        endpoint,
        at,
        "PUT",
        f"/api/clients/{endpoint}/3/0/14",
        "timeout=5",
        b'{"value": "+02:00"}',
        (("content-type", "application/json"),),
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
def limited(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[Limited]:
    """A store whose queued requests have the given limits."""
    opened: list[AnyStore] = []

    def make(limits: RequestQueueLimits) -> AnyStore:
        if request.param == "memory":
            s: AnyStore = MemoryStore.create()
            s.queued_requests = MemoryQueuedRequestStore(limits)
        elif request.param == "sqlite":
            s = SqliteStore(tmp_path / "lwm2m.db")
            s.queued_requests = SqliteQueuedRequestStore(s._conn, limits)
        else:
            s = redis_store(request, "redis")
            s.queued_requests.limits = limits
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(limited: Limited) -> AnyStore:
    return limited(RequestQueueLimits())


async def test_a_request_is_kept_as_its_call_and_listed_in_order(store: AnyStore) -> None:
    requests = store.queued_requests
    first, second, other = call("n1~01"), call("n1~02", at=1001.0), call("n2~03", "other")
    for r in (first, second, other):
        await requests.add(r)
    assert await requests.pending("sleepy") == [first, second]
    assert await requests.pending("other") == [other]
    assert await requests.pending("nobody") == []
    got = await requests.get("n1~02")
    assert got == second and got.body == b'{"value": "+02:00"}' and got.state == "queued"
    assert got.headers == (("content-type", "application/json"),) and got.query == "timeout=5"
    assert await requests.get("n1~99") is None
    assert await requests.waiting() >= 3


async def test_a_request_is_taken_once_and_its_outcome_kept(store: AnyStore) -> None:
    requests = store.queued_requests
    await requests.add(call("n1~01"))
    await requests.add(call("n1~02"))
    taken = await requests.take("n1~01", "b")
    assert (
        taken is not None and taken.request_id == "n1~01" and (taken.state, taken.runner) == ("running", "b")
    )
    assert await requests.take("n1~01", "c") is None  # another node comes too late
    assert await requests.take("n1~99", "c") is None
    assert [r.request_id for r in await requests.pending("sleepy")] == ["n1~02"]
    running = await requests.get("n1~01")
    assert running is not None and (running.state, running.runner, running.result) == ("running", "b", None)

    result = {"code": "2.04"}
    now = time.time()
    assert await requests.finish("n1~01", "done", result, now)
    done = await requests.get("n1~01")
    assert done is not None and (done.state, done.result, done.finished_at) == ("done", result, now)
    assert await requests.take("n1~01", "c") is None  # finished: nobody runs it again
    assert not await requests.finish("n1~99", "failed", {"error": "x", "httpStatus": 504}, now)
    with pytest.raises(ValueError):
        await requests.finish("n1~02", "running", {}, now)


async def test_racing_takers_get_a_request_once(store: AnyStore) -> None:
    requests = store.queued_requests
    for i in range(10):
        await requests.add(call(f"n1~{i:02d}"))
    takers = [requests.take(f"n1~{i:02d}", node) for i in range(10) for node in ("a", "b", "c")]
    taken = [t for t in await asyncio.gather(*takers) if t is not None]
    assert sorted(t.request_id for t in taken) == [f"n1~{i:02d}" for i in range(10)]
    assert await requests.pending("sleepy") == []


async def test_requests_are_bounded_per_endpoint_and_in_all(limited: Limited) -> None:
    requests = limited(RequestQueueLimits(per_endpoint=2, total=3)).queued_requests
    await requests.add(call("n1~01"))
    await requests.add(call("n1~02"))
    with pytest.raises(RequestQueueFull) as refused:
        await requests.add(call("n1~03"))
    assert isinstance(refused.value, TableFull)  # the API answers 503
    assert await requests.get("n1~03") is None
    await requests.take("n1~01", "a")  # no longer waiting: room for one more of this endpoint
    await requests.add(call("n1~04"))
    with pytest.raises(RequestQueueFull):
        await requests.add(call("n2~05", "other"))  # three kept in all
    assert [r.request_id for r in await requests.pending("sleepy")] == ["n1~02", "n1~04"]


async def test_outcomes_and_untaken_requests_expire(limited: Limited) -> None:
    requests = limited(RequestQueueLimits(max_age=1.0)).queued_requests
    await requests.add(call("n1~01"))
    await requests.add(call("n1~02"))
    await requests.add(call("n1~03"))
    assert await requests.take("n1~01", "a") is not None
    assert await requests.take("n1~03", "a") is not None
    now = time.time()
    # The request table's own keep time; the store's (an hour) without one.
    assert await requests.finish("n1~01", "failed", {"error": "gone", "httpStatus": 404}, now, keep=1.0)
    assert await requests.finish("n1~03", "done", {"code": "2.05"}, now)
    await asyncio.sleep(1.2)
    assert await requests.get("n1~01") is None
    assert await requests.get("n1~02") is None
    kept = await requests.get("n1~03")
    assert kept is not None and kept.state == "done"
    assert await requests.pending("sleepy") == []
    assert await requests.take("n1~02", "a") is None


async def test_sqlite_keeps_queued_requests_over_a_reopen(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as first:
        await first.queued_requests.add(call("01"))
        await first.queued_requests.add(call("02"))
        await first.queued_requests.take("01", "")
    with SqliteStore(tmp_path / "lwm2m.db") as again:
        assert [r.request_id for r in await again.queued_requests.pending("sleepy")] == ["02"]
        assert await again.queued_requests.waiting() == 1
        taken = await again.queued_requests.get("01")
        assert taken is not None and taken.state == "running"


async def test_redis_keeps_an_endpoints_request_under_its_hash_tag(request: pytest.FixtureRequest) -> None:
    store = redis_store(request, "redis")
    try:
        await store.queued_requests.add(call("n1~01", "dev{x}"))
        tag = endpoint_tag("dev{x}")
        client = store.link.client()
        names = sorted([k.decode() async for k in client.scan_iter("lwm2m:rq*")])
        assert names == [f"lwm2m:rq:{tag}:n1~01", "lwm2m:rqid:n1~01", f"lwm2m:rqn:{tag}", f"lwm2m:rqq:{tag}"]
        assert all([await client.ttl(n) > 0 for n in names])  # nothing kept for ever
    finally:
        store.close()


async def test_requests_a_runner_left_running_are_failed_once(store: AnyStore) -> None:
    requests = store.queued_requests
    for i in range(4):
        await requests.add(call(f"n1~{i:02d}"))
    await requests.take("n1~00", "a")
    await requests.take("n1~01", "a")
    await requests.take("n1~02", "b")
    now = time.time()
    await requests.finish("n1~01", "done", {"code": "2.05"}, now)
    stopped = {"error": "the server stopped", "httpStatus": 503}
    assert await requests.abandon("a", stopped, now) == ["n1~00"]  # not the finished one
    failed = await requests.get("n1~00")
    assert failed is not None and (failed.state, failed.result) == ("failed", stopped)
    assert await requests.abandon("a", stopped, now) == []
    assert (await requests.get("n1~02")).state == "running"  # type: ignore[union-attr]  # b's
    assert [r.request_id for r in await requests.pending("sleepy")] == ["n1~03"]  # untouched
