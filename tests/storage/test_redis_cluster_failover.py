"""A Redis Cluster of three masters with one replica each loses a master (kill -9); its replica
is promoted, and the same ``RedisStore`` (and the same clients of the cluster layer: endpoint
ownership, the request bus, the fleet's events) carries on: what was written before is read
back, and new writes, expiry sweeps, claims, renewals, bus requests and events work.

"Acknowledged" here: a write whose call returned (its master applied it) and which the
replicas have applied too. Redis replicates asynchronously (Redis Cluster specification,
"Write safety"): a write that a master answered and lost before a replica received it is gone
after the failover, and no client can tell. So the test waits, before the kill, until every
replica's replication offset has reached its master's (``RedisCluster.wait_replicated``), and
what it checks afterwards is that nothing so acknowledged is lost and that the client follows
the slots to their new master (MOVED, a refreshed slot map) without being rebuilt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path as FsPath
from typing import Any

import pytest
from redis.crc import key_slot
from tests.helpers.redis import RedisCluster, redis_cluster
from tests.storage.test_stores import obs, reg

from lwm2m.cluster import BusConfig, EventsConfig, FleetEvents, Ownership, Payload, RequestBus
from lwm2m.cluster.bus import request_stream
from lwm2m.cluster.events import EVENTS_KEY
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import Registration
from lwm2m.storage.base import HistoryEntry, SecurityInfo
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.redis_link import index, key
from lwm2m.storage.redisconn import RedisClient, connect

ENDPOINTS = [f"dev-{i}" for i in range(12)]
SHORT = {"dev-0", "dev-1", "dev-2"}  # registered with a short lifetime: the sweep after takes them
AT = 1000.0
PSK = bytes(range(16))


@pytest.fixture
def cluster(tmp_path: FsPath) -> Iterator[RedisCluster]:
    """Its own cluster (the test kills one of its masters), with failover in about 2 s."""
    with redis_cluster(tmp_path / "cluster", replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.fixture
async def clients(cluster: RedisCluster) -> AsyncIterator[list[RedisClient]]:
    """Two cluster-layer clients, one per simulated server node."""
    made = [connect(cluster.url), connect(cluster.url)]
    yield made
    for client in made:
        await client.aclose()


def _registration(endpoint: str, n: int) -> Registration:
    return reg(endpoint, f"r-{endpoint}", at=AT, lifetime=10 if endpoint in SHORT else 600 + n)


def _records(endpoint: str) -> list[Record]:
    return [Record(Path.parse("/3303/0/5700"), 20.0 + i, AT + i) for i in range(3)] + [
        Record(Path.parse("/3/0/1"), f"model of {endpoint}", AT - 1)
    ]


def _values(found: list[Record] | list[HistoryEntry]) -> list[tuple[str, object, float | None]]:
    """(path, value, time) of records or of history entries (whose time is the record's, or its
    arrival), in a fixed order."""
    rows = [(str(r.path), r.value, r.time) for r in found if isinstance(r, Record)]
    rows += [(str(e.record.path), e.record.value, e.time) for e in found if isinstance(e, HistoryEntry)]
    return sorted(rows, key=repr)


def slot(name: str) -> int:
    """The Redis Cluster slot of the key ``name``."""
    return key_slot(name.encode())


async def _next(stream: AsyncIterator[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    return await anext(stream)


async def _echo(payload: Payload) -> Payload:
    return payload[::-1] if isinstance(payload, bytes) else {"echo": payload}


async def test_a_failover_of_one_master_loses_nothing_acknowledged_and_the_same_clients_go_on(
    cluster: RedisCluster, clients: list[RedisClient]
) -> None:
    started = time.monotonic()
    store = RedisStore(cluster.url)
    a_redis, b_redis = clients
    try:
        # The master to kill: the one that holds the fleet's event stream (and whatever else is
        # in its slots); its endpoints and a bus stream are chosen to live there too.
        doomed = cluster.master_of(slot(EVENTS_KEY))
        heirs = cluster.replicas_of(doomed)
        assert heirs, "the master to kill has no replica"
        on_doomed = [ep for ep in ENDPOINTS if cluster.master_of(slot(key("reg", ep))) == doomed]
        assert 2 <= len(on_doomed) < len(ENDPOINTS), on_doomed  # endpoints on every side of the loss
        assert {cluster.master_of(slot(key("reg", ep))).name for ep in ENDPOINTS} == {
            m.name for m in cluster.masters()
        }
        node_a = next(n for n in "abcdefghijk" if cluster.master_of(slot(request_stream(n))) == doomed)
        node_b = next(n for n in "abcdefghijk" if n != node_a)

        # --- written, and replicated, before the loss -------------------------------------------
        for n, ep in enumerate(ENDPOINTS):
            assert await store.registrations.add(_registration(ep, n)) is None
            await store.observations.add(obs(f"tok-{ep}".encode(), ep, at=float(n)))
            await store.history.append(ep, _records(ep), received_at=AT + n)
            await store.security.put(SecurityInfo(ep, f"id-{ep}", PSK))
        ownership_a = Ownership(a_redis, node_a)
        ownership_b = Ownership(b_redis, node_b)
        epochs = {ep: await ownership_a.claim(ep) for ep in ENDPOINTS}
        # Renewed before: the renewal script is loaded on every master (SCRIPT LOAD goes to each),
        # not on their replicas, so the promoted one answers NOSCRIPT to the pipelined EVALSHA.
        assert await ownership_a.renew(ENDPOINTS[0], epochs[ENDPOINTS[0]])
        assert await ownership_a.renew_many(epochs.items()) == [True] * len(ENDPOINTS)
        bus_a = RequestBus(a_redis, node_a, BusConfig(block=0.1))
        bus_b = RequestBus(b_redis, node_b, BusConfig(block=0.1))
        await bus_a.start(_echo)
        await bus_b.start(_echo)
        events_a, events_b = FleetEvents(a_redis, EventsConfig(block=0.1)), FleetEvents(b_redis)
        before_ids = [await events_a.publish({"type": "registered", "endpoint": ep}) for ep in on_doomed]
        assert await bus_b.request(node_a, {"op": "read"}, timeout=5) == {"echo": {"op": "read"}}
        # A subscriber that reads through the loss (its blocking read fails and is issued again).
        subscription = events_a.subscribe(before_ids[-1])
        reading = asyncio.create_task(_next(subscription))
        await asyncio.sleep(0.2)
        cluster.wait_replicated()

        # --- kill -9 of the master, and the promotion of its replica -----------------------------
        doomed.stop(kill=True)
        promoted = cluster.wait_failover(doomed)
        assert promoted in heirs
        assert cluster.master_of(slot(EVENTS_KEY)) == promoted

        # --- the same store: everything written before is there --------------------------------
        for n, ep in enumerate(ENDPOINTS):
            assert await store.registrations.get(ep) == _registration(ep, n)
            assert (await store.registrations.get_by_id(f"r-{ep}")) == _registration(ep, n)
            assert await store.observations.get(f"tok-{ep}".encode()) == obs(
                f"tok-{ep}".encode(), ep, at=float(n)
            )
            history = await store.history.query(ep, newest_first=False)
            assert _values(history) == _values(_records(ep)), ep
            assert await store.security.get_by_identity(f"id-{ep}") == SecurityInfo(ep, f"id-{ep}", PSK)
        page = await store.registrations.page(limit=100)
        assert [r.endpoint for r in page.registrations] == sorted(ENDPOINTS)
        assert [o.token for o in await store.observations.all()] == [f"tok-{ep}".encode() for ep in ENDPOINTS]

        # --- new writes, an Update, the expiry sweep -------------------------------------------
        moved = on_doomed[-1]
        newcomer = next(
            f"new-{i}" for i in range(100) if cluster.master_of(slot(key("reg", f"new-{i}"))) == promoted
        )
        assert await store.registrations.add(reg(newcomer, "r-new", at=AT, lifetime=600)) is None
        updated = reg(moved, f"r-{moved}", at=AT + 5, lifetime=900)
        assert (await store.registrations.update(updated)) is not None
        assert await store.registrations.get(moved) == updated
        await store.observations.add(obs(b"tok-after", newcomer, at=100.0))
        assert (await store.observations.get(b"tok-after")) is not None
        swept = await store.registrations.remove_expired(AT + 60, limit=100)
        assert sorted(r.endpoint for r in swept) == sorted(SHORT)
        assert await store.registrations.get("dev-1") is None
        assert await store.registrations.get_by_id("r-dev-1") is None
        assert await store.registrations.get(newcomer) is not None
        await store.history.append(newcomer, _records(newcomer), received_at=AT)
        assert _values(await store.history.query(newcomer)) == _values(_records(newcomer))
        assert await store.link.client().zscore(index("expiry"), newcomer) is not None

        # --- ownership: the owner renews, the other node claims and fences it -----------------
        for ep in ENDPOINTS:
            owner = await ownership_b.owner(ep)
            assert owner is not None and (owner.node, owner.epoch) == (node_a, epochs[ep])
        assert await ownership_a.renew_many(epochs.items()) == [True] * len(ENDPOINTS)
        assert await ownership_a.renew(on_doomed[0], epochs[on_doomed[0]])
        epoch = await ownership_b.claim(on_doomed[0])
        assert epoch == epochs[on_doomed[0]] + 1
        assert not await ownership_a.check(on_doomed[0], epochs[on_doomed[0]])
        assert await ownership_b.check(on_doomed[0], epoch)

        # --- the bus: each node asks the other (node_a's request stream moved with the slot) ----
        assert await bus_b.request(node_a, {"op": "write"}, timeout=10) == {"echo": {"op": "write"}}
        assert await bus_a.request(node_b, b"\x01\x02", timeout=10) == b"\x02\x01"

        # --- events: the subscriber that read through the loss, and a new one on the other node -
        after_id = await events_b.publish({"type": "updated", "endpoint": moved})
        assert await asyncio.wait_for(reading, 10) == (after_id, {"type": "updated", "endpoint": moved})
        resumed = events_b.subscribe(before_ids[0])
        seen = [await asyncio.wait_for(anext(resumed), 10) for _ in range(len(before_ids))]
        assert [i for i, _ in seen] == [*before_ids[1:], after_id]
        await resumed.aclose()
        await subscription.aclose()
        await bus_a.close()
        await bus_b.close()

        # --- values kept back by history.add are written by close() -----------------------------
        last = Record(Path.parse("/3303/0/5700"), 99.5, AT + 50)
        store.history.add(moved, [last], received_at=AT + 50)
        store.close()
        with RedisStore(f"redis+cluster://{promoted.name}") as again:
            assert (await again.history.query(moved, limit=1))[0].record == last
    finally:
        store.close()
    assert time.monotonic() - started < 40


def test_a_store_that_outlives_the_masters_loss_in_plain_code_starts_again_from_the_nodes_it_knew(
    cluster: RedisCluster,
) -> None:
    """The store of the CLI: opened in plain code and used by one ``asyncio.run()`` after another,
    each with a new client. When the node its URL names is the master that was lost, the new
    client (and the blocking one ``close()`` writes kept-back history with) must learn the
    cluster from the nodes the earlier client knew, not from the URL alone."""
    url_node = cluster.server(cluster.url.partition("://")[2])
    assert url_node in cluster.masters() and cluster.replicas_of(url_node)
    endpoints = [ep for ep in ENDPOINTS if cluster.master_of(slot(key("reg", ep))) == url_node]
    assert endpoints
    store = RedisStore(cluster.url)
    try:

        async def write() -> None:
            for n, ep in enumerate(endpoints):
                await store.registrations.add(_registration(ep, n))

        asyncio.run(write())
        cluster.wait_replicated()
        url_node.stop(kill=True)
        cluster.wait_failover(url_node)

        async def read() -> list[Registration | None]:
            store.history.add(endpoints[0], _records(endpoints[0]), received_at=AT)  # kept back
            return [await store.registrations.get(ep) for ep in endpoints]

        assert asyncio.run(read()) == [_registration(ep, n) for n, ep in enumerate(endpoints)]
        store.close()  # writes the kept-back values
    finally:
        store.close()

    async def history() -> list[HistoryEntry]:
        with RedisStore(f"redis+cluster://{cluster.masters()[0].name}") as again:
            return await again.history.query(endpoints[0])

    assert _values(asyncio.run(history())) == _values(_records(endpoints[0]))
