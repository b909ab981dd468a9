"""The security store's contract, the same for the memory and SQLite backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest

from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore

KEY = bytes(range(16))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[MemoryStore | SqliteStore]:
    s: MemoryStore | SqliteStore = (
        MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    )
    yield s
    s.close()


async def test_put_get_remove(store: MemoryStore | SqliteStore) -> None:
    security = store.security
    assert await security.put(SecurityInfo("dev-1", "id-1", KEY)) is None
    assert await security.put(SecurityInfo("cam-1", x509=True)) is None
    assert (await security.get("dev-1")) == SecurityInfo("dev-1", "id-1", KEY)
    assert (await security.get_by_identity("id-1")).endpoint == "dev-1"  # type: ignore[union-attr]
    assert [i.endpoint for i in await security.all()] == ["cam-1", "dev-1"]
    # A new key for the endpoint replaces the old entry, and the old identity goes with it.
    old = await security.put(SecurityInfo("dev-1", "id-1b", bytes(16)))
    assert old is not None and old.psk_identity == "id-1"
    assert await security.get_by_identity("id-1") is None
    assert (await security.remove("dev-1")).psk_identity == "id-1b"  # type: ignore[union-attr]
    assert await security.remove("dev-1") is None
    assert await security.get_by_identity("id-1b") is None


async def test_a_psk_identity_belongs_to_one_endpoint(store: MemoryStore | SqliteStore) -> None:
    await store.security.put(SecurityInfo("dev-1", "shared", KEY))
    with pytest.raises(ValueError, match="in use"):
        await store.security.put(SecurityInfo("dev-2", "shared", KEY))
    assert (await store.security.get("dev-1")) is not None and await store.security.get("dev-2") is None


def test_values_never_show_the_key() -> None:
    info = SecurityInfo("dev-1", "id-1", bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90"))
    assert "a1b2c3" not in repr(info)
    shown = info.to_dict()
    assert "pskKey" not in shown and shown["pskKeyHint"] == "a1… (16 bytes)"
    assert SecurityInfo.from_dict(info.to_dict(with_key=True)) == info
    with pytest.raises(ValueError):
        SecurityInfo("dev-1", "id-1", KEY, x509=True)
    with pytest.raises(ValueError):
        SecurityInfo("dev-1")
    with pytest.raises(ValueError):
        SecurityInfo("dev-1", "id-1", bytes(65))


async def test_sqlite_keeps_entries_across_reopening(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as first:
        await first.security.put(SecurityInfo("dev-1", "id-1", KEY))
    with SqliteStore(tmp_path / "lwm2m.db") as second:
        assert await second.security.get("dev-1") == SecurityInfo("dev-1", "id-1", KEY)
