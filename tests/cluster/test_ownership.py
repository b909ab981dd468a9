"""Ownership: claims fence the previous owner, leases run out on the injected clock, renewals
batch; each test runs on a single Redis and on a three-master Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.cluster.fakes import FakeClock

from lwm2m.cluster import Owner, Ownership, OwnershipConfig
from lwm2m.cluster import ownership as ownership_module
from lwm2m.cluster.ownership import owner_key
from lwm2m.errors import ConfigError
from lwm2m.storage.redisconn import RedisClient

LEASE = 30.0


def _nodes(
    clients: Callable[[], RedisClient], clock: FakeClock, *names: str, lease: float = LEASE
) -> list[Ownership]:
    config = OwnershipConfig(lease=lease, retention=3600)
    return [Ownership(clients(), name, config, clock=clock) for name in names]


async def test_a_claim_by_another_node_fences_the_previous_owner(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    a, b = _nodes(clients, clock, "node-a", "node-b")
    epoch_a = await a.claim("dev-1")
    assert epoch_a == 1
    assert await a.owner("dev-1") == Owner("node-a", 1, clock.now + LEASE)
    assert await a.check("dev-1", epoch_a) and await a.renew("dev-1", epoch_a)

    epoch_b = await b.claim("dev-1")
    assert epoch_b == 2
    assert await a.owner("dev-1") == Owner("node-b", 2, clock.now + LEASE)
    assert not await a.renew("dev-1", epoch_a)
    assert not await a.check("dev-1", epoch_a)
    assert not await a.release("dev-1", epoch_a)
    assert await b.owner("dev-1") == Owner("node-b", 2, clock.now + LEASE)  # A's tries changed nothing
    assert await b.check("dev-1", epoch_b)
    # An epoch is this node's only: B's epoch in A's hands fences A all the same.
    assert not await a.check("dev-1", epoch_b) and not await a.renew("dev-1", epoch_b)


async def test_claims_of_the_same_node_also_move_the_epoch(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    (a,) = _nodes(clients, clock, "node-a")
    first = await a.claim("dev-1")
    second = await a.claim("dev-1")
    assert second == first + 1
    assert not await a.check("dev-1", first) and await a.check("dev-1", second)


async def test_the_lease_runs_out_on_the_clock_and_a_renewal_extends_it(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    a, b = _nodes(clients, clock, "node-a", "node-b")
    epoch = await a.claim("dev-1")
    clock.advance(LEASE - 0.01)
    assert await b.owner("dev-1") == Owner("node-a", epoch, clock.now + 0.01)
    clock.advance(0.01)
    assert await b.owner("dev-1") is None  # lapsed: nobody is known to serve the device

    # A lapsed lease fences nothing: only a claim does. The device's traffic renews it.
    assert await a.check("dev-1", epoch)
    assert await a.renew("dev-1", epoch)
    assert await b.owner("dev-1") == Owner("node-a", epoch, clock.now + LEASE)

    clock.advance(LEASE + 5)
    assert await b.owner("dev-1") is None
    epoch_b = await b.claim("dev-1")
    assert epoch_b == epoch + 1 and not await a.renew("dev-1", epoch)


async def test_release_keeps_the_epoch_so_the_old_owner_stays_fenced(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    a, b = _nodes(clients, clock, "node-a", "node-b")
    epoch = await a.claim("dev-1")
    assert await a.release("dev-1", epoch)
    assert await b.owner("dev-1") is None
    assert not await a.check("dev-1", epoch) and not await a.renew("dev-1", epoch)
    assert not await a.release("dev-1", epoch)
    assert await b.claim("dev-1") == epoch + 1


async def test_the_holder_outlives_its_lease_until_released_or_claimed(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    a, b = _nodes(clients, clock, "node-a", "node-b")
    assert await b.holder("dev-1") is None
    epoch = await a.claim("dev-1")
    clock.advance(LEASE + 5)
    assert await b.owner("dev-1") is None  # the lease lapsed (a quiet device)...
    assert await b.holder("dev-1") == Owner("node-a", epoch, clock.now - 5)  # ...its node holds it
    assert await b.claim("dev-1") == epoch + 1
    assert (await a.holder("dev-1") or Owner("", 0, 0)).node == "node-b"
    assert await b.release("dev-1", epoch + 1)
    assert await a.holder("dev-1") is None


async def test_unknown_endpoints_have_no_owner_and_fence_every_epoch(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    (a,) = _nodes(clients, clock, "node-a")
    assert await a.owner("nobody") is None
    assert not await a.check("nobody", 1) and not await a.renew("nobody", 1)
    assert not await a.release("nobody", 1)


@pytest.mark.parametrize("chunk", [256, 7])  # one pipeline; several, the last one short
async def test_renewals_batch_in_pipelines_across_slots(
    clients: Callable[[], RedisClient], clock: FakeClock, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ownership_module, "RENEW_CHUNK", chunk)
    a, b = _nodes(clients, clock, "node-a", "node-b")
    names = [f"dev-{i}" for i in range(40)]  # spread over the cluster's three masters
    epochs = {name: await a.claim(name) for name in names}
    taken = set(names[::3])
    for name in taken:
        await b.claim(name)
    clock.advance(LEASE - 1)
    answers = await a.renew_many((name, epochs[name]) for name in names)
    assert answers == [name not in taken for name in names]
    clock.advance(2)  # past the first lease, within the renewed one
    for name in names:
        found = await b.owner(name)
        if name in taken:
            assert found is None  # B's claim was not renewed: its lease ran out
        else:
            assert found == Owner("node-a", epochs[name], clock.now - 2 + LEASE)
    assert await a.renew_many([]) == []


async def test_batched_renewals_survive_an_emptied_script_cache(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    (a,) = _nodes(clients, clock, "node-a")
    epochs = {name: await a.claim(name) for name in ("x", "y", "z")}
    redis = clients()
    await redis.script_flush()  # as after a Redis restart (on every master of a cluster)
    assert await a.renew_many(epochs.items()) == [True, True, True]
    await redis.script_flush()
    assert await a.renew("x", epochs["x"])


async def test_endpoint_names_with_braces_keep_their_own_slot_and_record(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    a, b = _nodes(clients, clock, "node-a", "node-b")
    await a.claim("{x}")
    await b.claim("x")
    assert (await a.owner("{x}"), await a.owner("x")) == (
        Owner("node-a", 1, clock.now + LEASE),
        Owner("node-b", 1, clock.now + LEASE),
    )
    assert owner_key("{x}") != owner_key("x")


async def test_the_record_expires_after_lease_and_retention(
    clients: Callable[[], RedisClient], clock: FakeClock
) -> None:
    a = Ownership(clients(), "node-a", OwnershipConfig(lease=10, retention=20), clock=clock)
    await a.claim("dev-1")
    ttl = await clients().pttl(owner_key("dev-1"))
    assert 20_000 < ttl <= 30_000


def test_the_config_is_checked_on_construction() -> None:
    with pytest.raises(ConfigError, match="lease"):
        OwnershipConfig(lease=0)
    with pytest.raises(ConfigError, match="retention"):
        OwnershipConfig(lease=60, retention=30)
    with pytest.raises(ConfigError, match="node id"):
        Ownership(None, "a{b}")  # type: ignore[arg-type]  # refused before the client is used
