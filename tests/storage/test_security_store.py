"""The security store's contract, the same for the memory, SQLite and Redis backends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.storage.base import OscoreSecrets, SecurityInfo
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore

AnyStore = MemoryStore | SqliteStore | RedisStore

KEY = bytes(range(16))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[AnyStore]:
    if request.param == "redis":
        s: AnyStore = redis_store(request, "redis")
    else:
        s = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


async def test_put_get_remove(store: AnyStore) -> None:
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


async def test_a_psk_identity_belongs_to_one_endpoint(store: AnyStore) -> None:
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


RPK = bytes.fromhex(
    "3059301306072a8648ce3d020106082a8648ce3d03010703420004" + "11" * 32 + "22" * 32
)  # a P-256 SubjectPublicKeyInfo's shape (the point need not be on the curve for the store)
OTHER_RPK = RPK[:-1] + b"\x33"


async def test_raw_public_key_entries(store: AnyStore) -> None:
    security = store.security
    await security.put(SecurityInfo("tracker-1", rpk=RPK))
    await security.put(SecurityInfo("dev-1", "id-1", KEY))
    assert (await security.get("tracker-1")) == SecurityInfo("tracker-1", rpk=RPK)
    assert (await security.get_by_public_key(RPK)).endpoint == "tracker-1"  # type: ignore[union-attr]
    assert await security.get_by_public_key(OTHER_RPK) is None
    # One key, one endpoint.
    with pytest.raises(ValueError, match="public key is in use"):
        await security.put(SecurityInfo("tracker-2", rpk=RPK))
    # A new key replaces the old one, which then stands for nobody; a PSK may replace a key.
    await security.put(SecurityInfo("tracker-1", rpk=OTHER_RPK))
    assert await security.get_by_public_key(RPK) is None
    await security.put(SecurityInfo("tracker-2", rpk=RPK))
    await security.put(SecurityInfo("tracker-2", "id-2", KEY))
    assert await security.get_by_public_key(RPK) is None
    assert (await security.remove("tracker-1")).rpk == OTHER_RPK  # type: ignore[union-attr]
    assert await security.get_by_public_key(OTHER_RPK) is None


def test_raw_public_key_values() -> None:
    info = SecurityInfo("tracker-1", rpk=RPK)
    assert info.mode == "rpk" and info.to_dict() == {
        "endpoint": "tracker-1",
        "mode": "rpk",
        "x509": False,
        "rpk": RPK.hex(),
    }
    assert SecurityInfo.from_dict(info.to_dict(with_key=True)) == info
    for bad in (
        {"rpk": RPK, "x509": True},
        {"rpk": RPK, "nosec": True},
        {"rpk": RPK, "psk_identity": "id", "psk_key": KEY},
        {"rpk": RPK[:-1]},
    ):
        with pytest.raises(ValueError):
            SecurityInfo("tracker-1", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rpk"):
        SecurityInfo.from_dict({"endpoint": "tracker-1", "rpk": "xyz"})


async def test_a_schema_1_database_takes_raw_public_keys(tmp_path: FsPath) -> None:
    import sqlite3

    path = tmp_path / "lwm2m.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE security (endpoint TEXT PRIMARY KEY, psk_identity TEXT UNIQUE, data BLOB NOT NULL);"
        "PRAGMA user_version=1;"
    )
    old.execute(
        "INSERT INTO security VALUES ('dev-1', 'id-1', ?)",
        (b'{"endpoint": "dev-1", "mode": "psk", "x509": false, "pskIdentity": "id-1", "pskKey": "00"}',),
    )
    old.commit()
    old.close()
    with SqliteStore(path) as store:
        assert (await store.security.get_by_identity("id-1")).endpoint == "dev-1"  # type: ignore[union-attr]
        await store.security.put(SecurityInfo("tracker-1", rpk=RPK))
        with pytest.raises(ValueError, match="in use"):
            await store.security.put(SecurityInfo("tracker-2", rpk=RPK))
    with SqliteStore(path) as store:  # opened again: migrated once, nothing lost
        assert (await store.security.get_by_public_key(RPK)).endpoint == "tracker-1"  # type: ignore[union-attr]
        assert len(await store.security.all()) == 2


async def test_oscore_entries_and_their_stored_sequence(store: AnyStore) -> None:
    # RFC 8613: the parameters as the device holds them; the server's sequence limit goes with them.
    oscore = OscoreSecrets(KEY, b"\x01", b"", b"salt", id_context=b"\xab", sequence=2048)
    await store.security.put(SecurityInfo("osc-1", oscore=oscore))
    got = await store.security.get("osc-1")
    assert got is not None and got.oscore == oscore and got.mode == "oscore"
    await store.security.put(SecurityInfo("osc-1", oscore=dataclasses.replace(oscore, sequence=3072)))
    assert (await store.security.all())[0].oscore.sequence == 3072  # type: ignore[union-attr]


def test_oscore_values_never_show_the_secret() -> None:
    info = SecurityInfo("osc-1", oscore=OscoreSecrets(KEY, b"\x01", b"\x02", b"salt"))
    shown = info.to_dict()
    assert shown["oscore"] == {"senderId": "01", "recipientId": "02"} and KEY.hex() not in repr(info)
    assert SecurityInfo.from_dict(info.to_dict(with_key=True)) == info
    with pytest.raises(ValueError, match="differ"):
        OscoreSecrets(KEY, b"\x01", b"\x01")
    with pytest.raises(ValueError, match=r"not both|not several"):
        SecurityInfo("osc-1", "id", KEY, oscore=info.oscore)
    with pytest.raises(ValueError, match=r"oscore\.senderId"):
        SecurityInfo.from_dict({"endpoint": "e", "oscore": {"masterSecret": "00", "recipientId": "01"}})


async def test_oscore_entries_are_found_by_their_identity(store: AnyStore) -> None:
    # The identity is the device's Sender ID (its requests' kid), after its ID Context if any.
    security = store.security
    plain = OscoreSecrets(KEY, b"\x01", b"\x02")
    with_context = OscoreSecrets(KEY, b"\x01", b"\x02", id_context=b"\xab")
    await security.put(SecurityInfo("osc-1", oscore=plain))
    await security.put(SecurityInfo("osc-2", oscore=with_context))
    await security.put(SecurityInfo("dev-1", "01", KEY))  # a PSK identity spelt alike: another index
    assert (await security.get_by_oscore("01")).endpoint == "osc-1"  # type: ignore[union-attr]
    assert (await security.get_by_oscore("ab:01")).endpoint == "osc-2"  # type: ignore[union-attr]
    assert await security.get_by_oscore("02") is None and await security.get_by_oscore("cd:01") is None
    with pytest.raises(ValueError, match="OSCORE identity '01' is in use"):
        await security.put(SecurityInfo("osc-3", oscore=OscoreSecrets(b"other", b"\x01", b"\x03")))
    # A new Sender ID frees the old identity; a removed entry stands for nobody.
    await security.put(SecurityInfo("osc-1", oscore=OscoreSecrets(KEY, b"\x05", b"\x02")))
    assert await security.get_by_oscore("01") is None
    assert (await security.get_by_oscore("05")).endpoint == "osc-1"  # type: ignore[union-attr]
    await security.put(SecurityInfo("osc-3", oscore=OscoreSecrets(b"other", b"\x01", b"\x03")))
    assert (await security.get_by_oscore("01")).endpoint == "osc-3"  # type: ignore[union-attr]
    await security.put(SecurityInfo("osc-3", "id-3", KEY))  # another mode: no OSCORE identity
    assert await security.get_by_oscore("01") is None
    await security.remove("osc-2")
    assert await security.get_by_oscore("ab:01") is None


async def test_a_schema_2_database_indexes_its_oscore_entries(tmp_path: FsPath) -> None:
    import sqlite3

    path = tmp_path / "lwm2m.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE security (endpoint TEXT PRIMARY KEY, psk_identity TEXT UNIQUE, data BLOB NOT NULL,"
        " rpk BLOB UNIQUE); PRAGMA user_version=2;"
    )
    entry = SecurityInfo("osc-1", oscore=OscoreSecrets(KEY, b"\x01", b"\x02", sequence=1024))
    old.execute(
        "INSERT INTO security VALUES ('osc-1', NULL, ?, NULL)",
        (json.dumps(entry.to_dict(with_key=True)).encode(),),
    )
    old.commit()
    old.close()
    with SqliteStore(path) as store:
        assert await store.security.get_by_oscore("01") == entry
        with pytest.raises(ValueError, match="in use"):
            await store.security.put(SecurityInfo("osc-2", oscore=OscoreSecrets(KEY, b"\x01", b"\x03")))


async def test_sequence_ranges_are_reserved_atomically(store: AnyStore) -> None:
    # RFC 8613 Appendix B.1.1 with several holders of one context: each range its own, and a put
    # of the same parameters at the same moment never lowers the stored limit.
    security = store.security
    oscore = OscoreSecrets(KEY, b"\x01", b"\x02", b"salt", id_context=b"\xab")
    await security.put(SecurityInfo("osc-1", oscore=oscore))
    assert await security.reserve_oscore_sequence("osc-1", oscore, 0, 100) == 0
    assert await security.reserve_oscore_sequence("osc-1", oscore, 0, 100) == 100  # another holder
    assert await security.reserve_oscore_sequence("osc-1", oscore, 1000, 100) == 1000
    got = await security.get("osc-1")
    assert got is not None and got.oscore is not None and got.oscore.sequence == 1100
    assert got == SecurityInfo("osc-1", oscore=dataclasses.replace(oscore, sequence=1100))
    starts = await asyncio.gather(
        *(security.reserve_oscore_sequence("osc-1", oscore, 0, 10) for _ in range(20)),
        *(security.put(SecurityInfo("osc-1", oscore=oscore)) for _ in range(5)),
    )
    assert sorted(starts[:20]) == list(range(1100, 1300, 10))  # type: ignore[type-var]
    assert (await security.get("osc-1")).oscore.sequence == 1300  # type: ignore[union-attr]
    # The highest limit there is, never passed.
    assert await security.reserve_oscore_sequence("osc-1", oscore, (1 << 40) - 5, 100) == (1 << 40) - 5
    assert (await security.get("osc-1")).oscore.sequence == (1 << 40) - 1  # type: ignore[union-attr]
    # Other parameters: a new context, its own limit; the old one's holders get nothing.
    other = dataclasses.replace(oscore, master_secret=b"another secret")
    await security.put(SecurityInfo("osc-1", oscore=other))
    assert (await security.get("osc-1")).oscore.sequence == 0  # type: ignore[union-attr]
    assert await security.reserve_oscore_sequence("osc-1", oscore, 0, 10) is None
    assert await security.reserve_oscore_sequence("osc-1", other, 0, 10) == 0
    await security.put(SecurityInfo("osc-1", "id-1", KEY))
    assert await security.reserve_oscore_sequence("osc-1", other, 0, 10) is None
    assert await security.reserve_oscore_sequence("nobody", other, 0, 10) is None
    assert await security.get("osc-1") == SecurityInfo("osc-1", "id-1", KEY)
