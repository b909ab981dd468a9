"""The DTLS session store's contract (sessions saved at a clean stop, taken once; ticket keys),
the same for the memory, SQLite and Redis backends; SQLite keeps them over a reopen of its file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.storage.base import SavedDtlsSession
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore

AnyStore = MemoryStore | SqliteStore | RedisStore

A = SavedDtlsSession(("127.0.0.1", 40001), b"\x01abcde", b"state-a")
B = SavedDtlsSession(("::1", 40002, 0, 0), b"", b"state-b")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[AnyStore]:
    if request.param == "redis":
        s: AnyStore = redis_store(request, "redis")
    else:
        s = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


def by_address(sessions: list[SavedDtlsSession]) -> dict[tuple[object, ...], SavedDtlsSession]:
    return {s.address: s for s in sessions}


async def test_sessions_are_taken_once(store: AnyStore) -> None:
    sessions = store.dtls_sessions
    assert await sessions.take() == []
    await sessions.save([A, B])
    assert by_address(await sessions.take()) == {A.address: A, B.address: B}
    assert await sessions.take() == []  # a second start finds nothing to take up twice


async def test_a_save_replaces_what_was_kept_and_keeps_one_session_per_address_and_cid(
    store: AnyStore,
) -> None:
    sessions = store.dtls_sessions
    await sessions.save([A, B])
    moved = SavedDtlsSession(("127.0.0.1", 40009), A.cid, b"state-a2")  # A's CID, from elsewhere
    again = SavedDtlsSession(B.address, b"", b"state-b2")
    await sessions.save([A, moved, B, again])
    assert by_address(await sessions.take()) == {moved.address: moved, B.address: again}
    await sessions.save([A])
    await sessions.save([])
    assert await sessions.take() == []


async def test_ticket_keys(store: AnyStore) -> None:
    sessions = store.dtls_sessions
    assert await sessions.ticket_keys() is None
    await sessions.put_ticket_keys(b"k" * 41)
    await sessions.put_ticket_keys(b"j" * 73)
    assert await sessions.ticket_keys() == b"j" * 73
    await sessions.take()
    assert await sessions.ticket_keys() == b"j" * 73  # taking sessions leaves the keys


async def test_sqlite_keeps_them_over_a_reopen_and_skips_foreign_rows(tmp_path: FsPath) -> None:
    path = tmp_path / "lwm2m.db"
    with SqliteStore(path) as store:
        await store.dtls_sessions.save([A, B])
        await store.dtls_sessions.put_ticket_keys(b"keys")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO dtls_sessions (address, cid, state) VALUES ('not json', NULL, x'00')")
    conn.execute("INSERT INTO dtls_sessions (address, cid, state) VALUES ('{}', NULL, x'00')")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        assert by_address(await store.dtls_sessions.take()) == {A.address: A, B.address: B}
        assert await store.dtls_sessions.ticket_keys() == b"keys"
    with SqliteStore(path) as store:
        assert await store.dtls_sessions.take() == []
