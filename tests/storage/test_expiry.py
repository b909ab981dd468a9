"""Expired registrations from the stores' expiry index: the same answers as a scan of them all,
under any sequence of Register, Update, re-Register and removal, for memory, SQLite and Redis alike."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.redis import RedisServer
from tests.helpers.stores import redis_store

from lwm2m.protocol.registration import Registration
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore

Store = MemoryStore | SqliteStore | RedisStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[Store]:
    if request.param == "redis":
        s: Store = redis_store(request, "redis")
    else:
        s = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


def reg(endpoint: str, rid: str, *, at: float, lifetime: int = 60) -> Registration:
    return Registration(
        endpoint=endpoint,
        registration_id=rid,
        address=("192.0.2.1", 5683),
        lifetime=lifetime,
        registered_at=at,
        last_update=at,
    )


def updated(r: Registration, *, at: float, lifetime: int | None = None) -> Registration:
    data = {**r.to_dict(), "last_update": at}
    if lifetime is not None:
        data["lifetime"] = lifetime
    return Registration.from_dict(data)


async def test_limit_answers_the_soonest_expired(store: Store) -> None:
    rs = store.registrations
    for i in range(10):
        await rs.add(reg(f"d{i}", f"r{i}", at=float(100 - i)))  # d9 expires first
    assert [r.endpoint for r in await rs.expired(200.0, limit=3)] == ["d9", "d8", "d7"]
    assert await rs.expired(200.0, limit=0) == []
    assert len(await rs.expired(200.0, limit=100)) == 10
    # Only what expired, even with room to spare in the limit.
    assert [r.endpoint for r in await rs.expired(154.5, limit=5)] == ["d9", "d8", "d7", "d6"]
    with pytest.raises(ValueError, match="limit"):
        await rs.expired(200.0, limit=-1)


async def test_a_query_removes_nothing(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg("a", "1", at=0.0))
    assert [r.endpoint for r in await rs.expired(100.0, limit=1)] == ["a"]
    assert [r.endpoint for r in await rs.expired(100.0, limit=1)] == ["a"]
    assert await rs.get("a") is not None


async def test_update_re_register_and_remove_move_the_expiry(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg("a", "1", at=0.0))  # expires 60
    await rs.add(reg("b", "2", at=10.0))  # expires 70
    await rs.add(reg("c", "3", at=20.0))  # expires 80
    a = await rs.get("a")
    assert a is not None
    await rs.update(updated(a, at=100.0))  # now 160: the old expiry no longer counts
    await rs.add(reg("b", "4", at=200.0))  # a new Register: expires 260
    await rs.remove("c")
    assert await rs.expired(150.0) == []
    assert [(r.endpoint, r.registration_id) for r in await rs.expired(1000.0)] == [("a", "1"), ("b", "4")]
    # An Update that keeps the expiry time (same moment, same lifetime) keeps one entry.
    a = await rs.get("a")
    assert a is not None
    await rs.update(updated(a, at=100.0))
    assert [r.endpoint for r in await rs.expired(1000.0)] == ["a", "b"]
    # An Update of a registration replaced meanwhile changes nothing.
    await rs.update(updated(reg("b", "2", at=10.0), at=500.0))
    assert [r.last_update for r in await rs.expired(1000.0)] == [100.0, 200.0]


async def test_a_refused_register_leaves_the_index_as_it_was(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg("a", "same", at=0.0))
    await rs.add(reg("b", "mine", at=10.0))
    with pytest.raises(ValueError, match="in use"):
        await rs.add(reg("b", "same", at=500.0))  # another endpoint's ID
    assert await rs.get_by_id("mine") == reg("b", "mine", at=10.0)
    assert [r.endpoint for r in await rs.expired(100.0)] == ["a", "b"]


async def test_remove_expired_takes_a_batch(store: Store) -> None:
    rs = store.registrations
    for i in range(10):
        await rs.add(reg(f"d{i}", f"r{i}", at=float(100 - i)))  # d9 expires first, at 151
    taken = await rs.remove_expired(154.5, limit=3)
    assert [r.endpoint for r in taken] == ["d9", "d8", "d7"]
    for r in taken:
        assert await rs.get(r.endpoint) is None
        assert await rs.get_by_id(r.registration_id) is None
    assert [r.endpoint for r in await rs.remove_expired(154.5, limit=3)] == ["d6"]
    assert await rs.remove_expired(154.5, limit=3) == []
    assert await rs.remove_expired(1000.0, limit=0) == []
    assert len(await rs.all()) == 6
    # The names are free again: a new Register of one is a new registration.
    assert await rs.add(reg("d9", "r9", at=500.0)) is None


async def test_equal_expiry_times_are_all_answered_once(store: Store) -> None:
    rs = store.registrations
    for i in range(50):
        await rs.add(reg(f"d{i:02d}", f"r{i}", at=0.0))
    seen: list[str] = []
    while batch := await rs.expired(60.0, limit=7):
        for r in batch:
            assert await rs.remove(r.endpoint, registration_id=r.registration_id) == r
            seen.append(r.endpoint)
    assert sorted(seen) == [f"d{i:02d}" for i in range(50)]


# --- a model: the brute-force scan the index replaces ---------------------------------------------

ENDPOINTS = ["a", "b", "c", "d", "e"]
ops = st.lists(
    st.one_of(
        # Register (new ID each time; may replace the endpoint's registration)
        st.tuples(st.just("register"), st.sampled_from(ENDPOINTS), st.integers(0, 40), st.integers(1, 30)),
        # Update: moves last_update, maybe the lifetime
        st.tuples(
            st.just("update"),
            st.sampled_from(ENDPOINTS),
            st.integers(0, 40),
            st.one_of(st.none(), st.integers(1, 30)),
        ),
        st.tuples(st.just("remove"), st.sampled_from(ENDPOINTS)),
        # The sweep's own use: read expired ones (maybe a batch) and remove them
        st.tuples(st.just("sweep"), st.integers(0, 80), st.one_of(st.none(), st.integers(0, 3))),
        # The registrar's step: take (remove and answer) a batch
        st.tuples(st.just("take"), st.integers(0, 80), st.integers(0, 3)),
        st.tuples(
            st.just("query"), st.integers(0, 80), st.integers(0, 10), st.one_of(st.none(), st.integers(0, 4))
        ),
    ),
    max_size=40,
)


def _scan(model: dict[str, Registration], now: float, grace: float) -> list[Registration]:
    return sorted((r for r in model.values() if r.expires_at <= now - grace), key=lambda r: r.expires_at)


async def _check(store: Store, operations: list[tuple]) -> None:  # type: ignore[type-arg]
    rs = store.registrations
    model: dict[str, Registration] = {}
    serial = 0
    for op in operations:
        kind = op[0]
        if kind == "register":
            _, endpoint, at, lifetime = op
            serial += 1
            r = reg(endpoint, f"r{serial}", at=float(at), lifetime=lifetime)
            assert await rs.add(r) == model.get(endpoint)
            model[endpoint] = r
        elif kind == "update":
            _, endpoint, at, lifetime = op
            old = model.get(endpoint)
            if old is None:
                continue
            new = updated(old, at=float(at), lifetime=lifetime)
            assert await rs.update(new) == old
            model[endpoint] = new
        elif kind == "remove":
            assert await rs.remove(op[1]) == model.pop(op[1], None)
        elif kind == "take":
            _, now, limit = op
            got = await rs.remove_expired(float(now), limit=limit)
            want = _scan(model, float(now), 0.0)[:limit]
            assert [r.expires_at for r in got] == [r.expires_at for r in want]
            assert {r.endpoint for r in got} == {r.endpoint for r in want} or _ties(got, want)
            for r in got:
                assert model.pop(r.endpoint) == r
        else:
            now = float(op[1])
            grace = float(op[2]) if kind == "query" else 0.0
            limit = op[-1]
            got = await rs.expired(now, grace, limit=limit)
            want = _scan(model, now, grace)[:limit]
            # Equal expiry times come in no set order: compare the times, and the set.
            assert [r.expires_at for r in got] == [r.expires_at for r in want]
            assert {r.endpoint for r in got} == {r.endpoint for r in want} or _ties(got, want)
            for r in got:
                assert model[r.endpoint] == r  # the live registration, never a stale one
            assert len({r.endpoint for r in got}) == len(got)
            if kind == "sweep":
                for r in got:
                    assert await rs.remove(r.endpoint, registration_id=r.registration_id) == r
                    del model[r.endpoint]
    rest = await rs.expired(1e9)
    assert [r.expires_at for r in rest] == [r.expires_at for r in _scan(model, 1e9, 0.0)]
    assert {r.endpoint for r in rest} == set(model)


def _ties(got: list[Registration], want: list[Registration]) -> bool:
    """A limit may cut a run of equal expiry times anywhere: outside that last time the sets agree."""
    if not got:
        return not want
    last = got[-1].expires_at
    return {r.endpoint for r in got if r.expires_at != last} == {
        r.endpoint for r in want if r.expires_at != last
    }


@settings(max_examples=150, deadline=None)
@given(ops)
def test_memory_matches_a_scan(operations: list[tuple]) -> None:  # type: ignore[type-arg]
    store = MemoryStore.create()
    asyncio.run(_check(store, operations))


@settings(max_examples=60, deadline=None)
@given(ops)
def test_sqlite_matches_a_scan(operations: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(FsPath(tmp) / "lwm2m.db")
        try:
            asyncio.run(_check(store, operations))
        finally:
            store.close()


@settings(max_examples=40, deadline=None)
@given(ops)
def test_redis_matches_a_scan(redis_server_session: RedisServer, operations: list[tuple]) -> None:  # type: ignore[type-arg]
    redis_server_session.cli("flushall")
    store = RedisStore(redis_server_session.url)
    try:
        asyncio.run(_check(store, operations))
    finally:
        store.close()
