"""The firmware package store's contract, the same for the memory, SQLite and Redis (one server and
a Redis Cluster) backends; then what each backend does with the bytes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.errors import StoreError
from lwm2m.storage.firmware import FirmwarePackage, is_package_id, new_package_id
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.redis_firmware import CHUNK_BYTES
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.storage.url import open_store

AnyStore = MemoryStore | SqliteStore | RedisStore


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[AnyStore]:
    if request.param.startswith("redis"):
        s: AnyStore = redis_store(request, request.param)
    else:
        s = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


def package(
    data: bytes, *, name: str = "lamp", version: str = "2.1.0", at: float = 1000.0
) -> FirmwarePackage:
    return FirmwarePackage(
        id=new_package_id(),
        name=name,
        version=version,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=at,
    )


async def test_add_get_list_read_remove(store: AnyStore) -> None:
    data = bytes(range(256)) * 40
    first = package(data, at=1000.0)
    second = package(b"second", version="3", at=1001.0)
    await store.firmware.add(second, b"second")
    await store.firmware.add(first, data)
    assert await store.firmware.get(first.id) == first
    assert [p.id for p in await store.firmware.all()] == [first.id, second.id]  # oldest first
    assert await store.firmware.read(first.id) == data
    assert await store.firmware.read(first.id, 100, 300) == data[100:300]
    assert await store.firmware.read(first.id, 10_000) == data[10_000:]
    assert await store.firmware.read(first.id, 10_230, 99_999) == data[10_230:]  # cut at the end
    assert await store.firmware.read(first.id, 20_000) == b""
    assert await store.firmware.remove(first.id) == first
    assert await store.firmware.get(first.id) is None
    assert await store.firmware.read(first.id) is None
    assert await store.firmware.remove(first.id) is None
    assert [p.id for p in await store.firmware.all()] == [second.id]


async def test_unknown_and_malformed_ids_hold_nothing(store: AnyStore) -> None:
    for wrong in (new_package_id(), "../lwm2m.db", "", "a" * 200):
        assert await store.firmware.get(wrong) is None
        assert await store.firmware.read(wrong) is None
        assert await store.firmware.remove(wrong) is None


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_packages_survive_reopening(
    backend: str, request: pytest.FixtureRequest, tmp_path: FsPath
) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 17)  # several Redis chunks, the last one short
    kept = package(data)
    url = f"sqlite://{tmp_path / 'lwm2m.db'}" if backend == "sqlite" else request.getfixturevalue("redis_url")
    first = open_store(url)
    try:
        await first.firmware.add(kept, data)
    finally:
        first.close()
    again = open_store(url)
    try:
        assert await again.firmware.get(kept.id) == kept
        assert await again.firmware.read(kept.id) == data
        low = CHUNK_BYTES - 5  # a range across two chunks
        assert await again.firmware.read(kept.id, low, low + 10) == data[low : low + 10]
        assert await again.firmware.remove(kept.id) == kept
    finally:
        again.close()


async def test_sqlite_keeps_the_bytes_as_one_file_per_package_beside_the_database(tmp_path: FsPath) -> None:
    data = b"firmware bytes"
    kept = package(data)
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        await store.firmware.add(kept, data)
        folder = tmp_path / "firmware"
        assert sorted(p.name for p in folder.iterdir()) == [kept.id]  # no temporary file left
        assert (folder / kept.id).read_bytes() == data
        await store.firmware.remove(kept.id)
        assert list(folder.iterdir()) == []


async def test_sqlite_a_package_whose_file_cannot_be_written_is_not_listed(tmp_path: FsPath) -> None:
    (tmp_path / "firmware").write_text("a file where the folder should be")
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        with pytest.raises(StoreError, match="cannot write"):
            await store.firmware.add(package(b"x"), b"x")
        assert await store.firmware.all() == []


async def test_a_private_sqlite_database_keeps_the_bytes_in_the_process() -> None:
    data = b"in memory"
    kept = package(data)
    with SqliteStore(":memory:") as store:
        assert store.firmware.folder is None
        await store.firmware.add(kept, data)
        assert await store.firmware.read(kept.id, 3) == data[3:]


async def test_redis_keeps_the_bytes_in_chunks_under_the_package_hash_tag(redis_url: str) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 1)
    kept = package(data)
    with RedisStore(redis_url) as store:
        await store.firmware.add(kept, data)
        client = store.link.client()
        chunks = [await client.strlen(f"lwm2m:fwdata:{{{kept.id}}}:{n}") for n in range(4)]
        assert chunks == [CHUNK_BYTES, CHUNK_BYTES, 1, 0]
        await store.firmware.remove(kept.id)
        assert await client.exists(f"lwm2m:fwdata:{{{kept.id}}}:0") == 0


def test_ids_are_unguessable_and_url_safe() -> None:
    ids = {new_package_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_package_id(i) and len(i) == 22 for i in ids)
    with pytest.raises(ValueError):
        package(b"")


async def test_sqlite_a_row_that_cannot_be_written_leaves_no_file(tmp_path: FsPath) -> None:
    kept = package(b"x")
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        store._conn.execute("DROP TABLE firmware_packages")  # the INSERT fails after the file is written
        with pytest.raises(sqlite3.OperationalError):
            await store.firmware.add(kept, b"x")
        assert list((tmp_path / "firmware").iterdir()) == []
