"""SQLite registrations added together are committed together (a group commit), each ``add``
returning only after its group's commit; a clash or a locked file fails only what it should."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path as FsPath

import pytest

from lwm2m.errors import StoreError
from lwm2m.protocol.registration import Registration
from lwm2m.storage.sqlite import MAX_GROUP, SqliteStore


def reg(n: int, registration_id: str | None = None) -> Registration:
    return Registration(f"ep-{n}", registration_id or f"id-{n}", ("127.0.0.1", 5683 + n), lifetime=300)


def committed(path: FsPath) -> set[str]:
    """The endpoints another connection reads from the file: what was committed."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT endpoint FROM registrations")}
    finally:
        conn.close()


async def test_concurrent_adds_share_one_commit_and_return_after_it(tmp_path: FsPath) -> None:
    path = tmp_path / "group.db"
    with SqliteStore(path) as store:
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        seen: list[set[str]] = []

        async def add(n: int) -> None:
            assert await store.registrations.add(reg(n)) is None
            seen.append(committed(path))  # read by another connection as soon as add returned

        await asyncio.gather(*(add(n) for n in range(40)))
        store._conn.set_trace_callback(None)
        assert statements.count("COMMIT") == 1
        assert all(s == {f"ep-{n}" for n in range(40)} for s in seen)


async def test_a_group_is_at_most_max_group(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "big.db") as store:
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        await asyncio.gather(*(store.registrations.add(reg(n)) for n in range(MAX_GROUP + 1)))
        store._conn.set_trace_callback(None)
        assert statements.count("COMMIT") == 2
        assert len(await store.registrations.all()) == MAX_GROUP + 1


async def test_a_group_answers_each_the_registration_it_replaced(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "replace.db") as store:
        await store.registrations.add(reg(1))
        again = Registration("ep-1", "id-1b", ("127.0.0.1", 9))
        third = Registration("ep-1", "id-1c", ("127.0.0.1", 10))
        old = await asyncio.gather(
            store.registrations.add(again), store.registrations.add(reg(2)), store.registrations.add(third)
        )
        assert old == [reg(1), None, again]
        assert await store.registrations.get("ep-1") == third


async def test_a_clashing_id_fails_alone(tmp_path: FsPath) -> None:
    path = tmp_path / "clash.db"
    with SqliteStore(path) as store:
        await store.registrations.add(reg(0))
        results = await asyncio.gather(
            store.registrations.add(reg(1)),
            store.registrations.add(reg(2, registration_id="id-0")),  # ep-0's ID
            store.registrations.add(reg(3)),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ValueError) and "in use" in str(results[1])
        assert committed(path) == {"ep-0", "ep-1", "ep-3"}


async def test_a_locked_file_fails_the_whole_group_and_writes_nothing(tmp_path: FsPath) -> None:
    path = tmp_path / "locked.db"
    store = SqliteStore(path)
    blocker = sqlite3.connect(path, timeout=0)
    try:
        store._conn.execute("PRAGMA busy_timeout=0")
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        results = await asyncio.gather(
            *(store.registrations.add(reg(n)) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, StoreError) for r in results), results
        blocker.execute("ROLLBACK")
        assert committed(path) == set()
        assert await store.registrations.add(reg(9)) is None  # the next group goes through
    finally:
        blocker.close()
        store.close()


async def test_close_writes_a_group_still_waiting(tmp_path: FsPath) -> None:
    path = tmp_path / "close.db"
    store = SqliteStore(path)
    task = asyncio.ensure_future(store.registrations.add(reg(1)))
    await asyncio.sleep(0)  # the add is queued; its group's commit is still to come
    store.close()
    assert await task is None
    assert committed(path) == {"ep-1"}


@pytest.mark.parametrize("cancel", [True, False])
async def test_a_cancelled_add_is_written_all_the_same(tmp_path: FsPath, cancel: bool) -> None:
    path = tmp_path / "cancel.db"
    with SqliteStore(path) as store:
        task = asyncio.ensure_future(store.registrations.add(reg(1)))
        await asyncio.sleep(0)
        if cancel:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        assert committed(path) == {"ep-1"}
