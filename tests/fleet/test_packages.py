"""``lwm2m.fleet.Packages``: what it takes, the bounds, the device URIs, the bodies it keeps for the
server's CoAP blocks, and two cluster nodes on one Redis serving the same packages."""

from __future__ import annotations

import hashlib

import pytest

from lwm2m.errors import ConfigError, InvalidPackage, PackageNotFound, PackageTooLarge, TooManyPackages
from lwm2m.fleet.packages import PackageConfig, Packages, file_segment, reachable
from lwm2m.storage.firmware import MemoryPackageStore
from lwm2m.storage.redis import RedisStore


async def test_add_gives_an_id_the_size_and_the_sha256() -> None:
    packages = Packages(MemoryPackageStore())
    data = b"\x00firmware" * 100
    stored = await packages.add("lamp", "2.1.0-rc.1+b7", data)
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.created_at > 0 and len(stored.id) == 22
    assert await packages.get(stored.id) == stored
    assert await packages.read(stored, 1, 9) == b"firmware"
    assert await packages.all() == [stored]
    assert await packages.remove(stored.id) == stored
    with pytest.raises(PackageNotFound):
        await packages.get(stored.id)
    with pytest.raises(PackageNotFound):
        await packages.remove(stored.id)
    with pytest.raises(PackageNotFound):
        await packages.get("../../etc/passwd")


@pytest.mark.parametrize(
    ("name", "version"),
    [("", "1"), ("lamp", ""), ("lamp fw", "1"), ("lamp", "1 2"), ("a@b", "1"), ("lamp", "1@2"), ("-x", "1")],
)
async def test_bad_names_and_versions_are_refused(name: str, version: str) -> None:
    packages = Packages(MemoryPackageStore())
    with pytest.raises(InvalidPackage):
        await packages.add(name, version, b"x")
    assert await packages.all() == []


async def test_the_bounds() -> None:
    packages = Packages(MemoryPackageStore(), PackageConfig(max_size=10, max_packages=2))
    with pytest.raises(InvalidPackage, match="empty"):
        await packages.add("lamp", "1", b"")
    with pytest.raises(PackageTooLarge, match="at most 10 bytes"):
        await packages.add("lamp", "1", b"x" * 11)
    await packages.add("lamp", "1", b"x" * 10)
    await packages.add("lamp", "2", b"y")
    with pytest.raises(TooManyPackages):
        await packages.add("lamp", "3", b"z")
    for wrong in ({"max_size": 0}, {"max_packages": 0}, {"cache_bytes": -1}):
        with pytest.raises(ConfigError):
            PackageConfig(**wrong)


async def test_device_uris_end_with_name_at_version() -> None:
    packages = Packages(MemoryPackageStore())
    stored = await packages.add("lamp", "2.1.0+b7", b"x")
    assert file_segment(stored) == "lamp@2.1.0%2Bb7"
    uris = packages.uris(stored, coap="coap://192.0.2.1:5683", http="http://192.0.2.1:8080/")
    assert uris == {
        "coap": f"coap://192.0.2.1:5683/fw/{stored.id}/lamp@2.1.0%2Bb7",
        "http": f"http://192.0.2.1:8080/fw/{stored.id}/lamp@2.1.0%2Bb7",
    }


async def test_hosted_bodies_are_kept_within_the_cache_and_deletion_is_seen() -> None:
    store = MemoryPackageStore()
    packages = Packages(store, PackageConfig(cache_bytes=250))
    a = await packages.add("a", "1", b"a" * 100)
    b = await packages.add("b", "1", b"b" * 100)
    big = await packages.add("c", "1", b"c" * 300)
    hosted_a = await packages.hosted(a.id)
    assert hosted_a is not None and hosted_a.body == b"a" * 100
    assert hosted_a.sha256 == bytes.fromhex(a.sha256)
    assert await packages.hosted(b.id) is not None
    assert await packages.hosted(a.id) is hosted_a  # kept
    hosted_big = await packages.hosted(big.id)  # over the cache alone: served, not kept
    assert hosted_big is not None and await packages.hosted(big.id) is not hosted_big
    assert packages._cached == 200
    await store.remove(a.id)  # as another node would: the cache does not outlive the package
    assert await packages.hosted(a.id) is None
    assert packages._cached == 100
    assert await packages.hosted("not an id") is None


async def test_two_nodes_on_one_redis_serve_the_same_packages(redis_url: str) -> None:
    data = bytes(range(256)) * 9000  # over two chunks of 1 MiB
    with RedisStore(redis_url) as one, RedisStore(redis_url) as two:
        first, second = Packages(one.firmware), Packages(two.firmware)
        stored = await first.add("lamp", "2.1.0", data)
        assert await second.get(stored.id) == stored
        hosted = await second.hosted(stored.id)
        assert hosted is not None and hosted.body == data
        assert await second.read(stored, 1_048_570, 1_048_590) == data[1_048_570:1_048_590]
        await first.remove(stored.id)
        assert await second.hosted(stored.id) is None
        assert await second.all() == []


def test_an_any_address_becomes_one_a_device_can_reach() -> None:
    assert reachable("coap://0.0.0.0:5683", "192.0.2.7") == "coap://192.0.2.7:5683"
    assert reachable("coaps://[::]:5684", "2001:db8::1") == "coaps://[2001:db8::1]:5684"
    assert reachable("coap://127.0.0.1:5683", "192.0.2.7") == "coap://127.0.0.1:5683"
    assert reachable(None, "192.0.2.7") is None
