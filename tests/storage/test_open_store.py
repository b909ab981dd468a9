"""open_store: a Store from a URL (memory://, sqlite://PATH, redis://…); anything else is a ConfigError."""

from __future__ import annotations

import re
from pathlib import Path as FsPath

import pytest

from lwm2m.errors import ConfigError
from lwm2m.protocol.registration import Registration
from lwm2m.storage import Store, open_store
from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore


def _registration(endpoint: str) -> Registration:
    return Registration(endpoint=endpoint, registration_id="r1", address=("127.0.0.1", 5683), lifetime=60)


def test_memory_url_opens_the_memory_stores() -> None:
    store: Store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    store.close()


async def test_sqlite_url_opens_a_database_file_that_survives_a_reopen(tmp_path: FsPath) -> None:
    url = f"sqlite://{tmp_path / 'lwm2m.db'}"
    store = open_store(url)
    assert isinstance(store, SqliteStore) and store.path == str(tmp_path / "lwm2m.db")
    await store.registrations.add(_registration("dev-1"))
    store.close()
    again = open_store(url)
    try:
        found = await again.registrations.get("dev-1")
        assert found is not None and found.endpoint == "dev-1"
    finally:
        again.close()


def test_sqlite_url_may_name_a_private_database() -> None:
    store = open_store("sqlite://:memory:")
    assert isinstance(store, SqliteStore)
    store.close()


@pytest.mark.parametrize("url", ["memory://", "sqlite://:memory:", "redis"])
def test_history_retention_reaches_the_history_store(url: str, request: pytest.FixtureRequest) -> None:
    if url == "redis":
        url = request.getfixturevalue("redis_url")
    store = open_store(url, history_retention=HistoryRetention(max_records=3))
    try:
        assert store.history.retention == HistoryRetention(max_records=3)
    finally:
        store.close()


def test_scheme_is_case_insensitive() -> None:
    open_store("MEMORY://").close()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgres://db/lwm2m", "postgres"),
        ("lwm2m.db", "lwm2m.db"),
        ("memory://somewhere", "memory://somewhere"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_bad_urls_are_config_errors_naming_them(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        open_store(url)


@pytest.mark.parametrize("scheme", ["redis", "rediss", "redis+cluster", "REDIS"])
def test_redis_urls_open_the_redis_store_without_connecting(scheme: str) -> None:
    store = open_store(f"{scheme}://127.0.0.1:1/0")  # nothing listens there: opening does not connect
    try:
        assert isinstance(store, RedisStore)
        assert store.history.retention == HistoryRetention()
    finally:
        store.close()


async def test_redis_url_opens_a_store_that_survives_a_reopen(redis_url: str) -> None:
    store = open_store(redis_url, history_retention=HistoryRetention(max_records=3))
    assert store.history.retention == HistoryRetention(max_records=3)
    await store.registrations.add(_registration("dev-1"))
    store.close()
    again = open_store(redis_url)
    try:
        found = await again.registrations.get("dev-1")
        assert found is not None and found.endpoint == "dev-1"
    finally:
        again.close()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://", "no host"),
        ("redis://h:port/0", "port"),
        ("redis://h:6379/zero", "is not a number"),
        ("redis+cluster://h:6379/2", "database 0 only"),
    ],
)
def test_bad_redis_urls_are_config_errors_naming_them(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(url)) as caught:
        open_store(url)
    assert named in str(caught.value)


def test_a_missing_folder_is_named(tmp_path: FsPath) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="nowhere"):
        open_store(f"sqlite://{missing / 'lwm2m.db'}")
    assert not missing.exists()


def test_a_folder_is_not_a_database(tmp_path: FsPath) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        open_store(f"sqlite://{tmp_path}")


def test_a_file_that_is_no_database_is_named(tmp_path: FsPath) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(ConfigError, match=re.escape("junk.db")):
        open_store(f"sqlite://{junk}")


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@127.0.0.1:6379/x",
        "redis://:s3cret@127.0.0.1:notaport/0",
        "redis+cluster://:s3cret@127.0.0.1:7000/3",
        "rediz://:s3cret@127.0.0.1:7000/0",
    ],
)
def test_a_redis_password_never_shows_in_the_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)
