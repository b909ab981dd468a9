"""Node identity: ids, one-byte numbers shared out in Redis, heartbeats and the reuse of a dead
node's byte; on a single Redis and on a Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lwm2m.cluster import ClusterConfig, NodeIdentity
from lwm2m.cluster.node import NODES_KEY, generate_node_id, heartbeat_key
from lwm2m.errors import ConfigError, NodeNotJoined, NoNodeByte
from lwm2m.storage.redisconn import RedisClient

TTL = 60.0  # long: a test that wants a heartbeat gone deletes the key, as its expiry would


def _node(clients: Callable[[], RedisClient], node_id: str | None = None, **config: float) -> NodeIdentity:
    settings = {"heartbeat_interval": 20.0, "node_ttl": TTL, **config}
    return NodeIdentity(clients(), ClusterConfig(node_id=node_id, **settings))


async def test_nodes_get_distinct_bytes_and_see_each_other(clients: Callable[[], RedisClient]) -> None:
    a, b, c = (_node(clients, name) for name in ("a", "b", "c"))
    assert [await n.join() for n in (a, b, c)] == [1, 2, 3]
    assert (a.byte, b.byte, c.byte) == (1, 2, 3)
    assert await b.alive_nodes() == {"a": 1, "b": 2, "c": 3}
    ttl = await clients().pttl(heartbeat_key("a"))
    assert 0 < ttl <= TTL * 1000  # the heartbeat lapses by itself
    for node in (a, b, c):
        await node.leave()


async def test_nodes_joining_at_once_get_distinct_bytes(clients: Callable[[], RedisClient]) -> None:
    nodes = [_node(clients, f"n{i}") for i in range(20)]
    bytes_ = await asyncio.gather(*(n.join() for n in nodes))
    assert sorted(bytes_) == list(range(1, 21))
    for node in nodes:
        await node.leave()


async def test_a_generated_id_is_short_and_fresh(clients: Callable[[], RedisClient]) -> None:
    ids = {generate_node_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 8 for i in ids)
    node = _node(clients)
    assert len(node.node_id) == 8
    with pytest.raises(NodeNotJoined):
        node.byte  # noqa: B018
    async with node:
        assert node.byte == 1
    with pytest.raises(NodeNotJoined):
        node.byte  # noqa: B018


async def test_a_node_restarted_under_its_id_gets_its_byte_back(clients: Callable[[], RedisClient]) -> None:
    a, b = _node(clients, "a"), _node(clients, "b")
    await a.join()
    await b.join()
    await b.stop()  # killed: no leave
    again = _node(clients, "b")
    assert await again.join() == 2
    assert await a.alive_nodes() == {"a": 1, "b": 2}
    await again.leave()
    await a.leave()


async def test_a_dead_nodes_byte_is_reused_once_its_heartbeat_lapsed(
    clients: Callable[[], RedisClient],
) -> None:
    redis = clients()
    a, b, c = _node(clients, "a"), _node(clients, "b"), _node(clients, "c")
    await a.join()
    await b.join()
    await a.stop()  # a dies; its heartbeat key still runs: its byte stays taken
    assert await c.join() == 3
    await c.leave()
    await redis.delete(heartbeat_key("a"))  # what the key's TTL does node_ttl after the last beat
    assert await b.alive_nodes() == {"b": 2}
    assert await c.join() == 1  # a's byte, given again
    assert await redis.hgetall(NODES_KEY) == {b"b": b"2", b"c": b"1"}

    # a was only cut off: its next beat finds its byte gone and it joins again, with another.
    assert await a.heartbeat() == 3
    assert a.byte == 3
    assert await b.alive_nodes() == {"a": 3, "b": 2, "c": 1}
    for node in (a, b, c):
        await node.leave()


async def test_leave_gives_the_byte_back_at_once(clients: Callable[[], RedisClient]) -> None:
    a, b = _node(clients, "a"), _node(clients, "b")
    await a.join()
    await b.join()
    await a.leave()
    assert await b.alive_nodes() == {"b": 2}
    c = _node(clients, "c")
    assert await c.join() == 1
    await c.leave()
    await b.leave()
    assert await b.alive_nodes() == {}


async def test_no_byte_left_when_255_nodes_are_alive(clients: Callable[[], RedisClient]) -> None:
    redis = clients()
    pipe = redis.pipeline(transaction=False)
    for byte in range(1, 256):
        pipe.hset(NODES_KEY, f"n{byte}", byte)
        pipe.set(heartbeat_key(f"n{byte}"), byte, px=60_000)
    await pipe.execute()
    late = _node(clients, "late")
    with pytest.raises(NoNodeByte):
        await late.join()
    await redis.delete(heartbeat_key("n200"))
    assert await late.join() == 200
    await late.leave()


async def test_the_heartbeat_task_keeps_the_key_alive(clients: Callable[[], RedisClient]) -> None:
    redis = clients()
    node = _node(clients, "a", heartbeat_interval=0.02, node_ttl=5.0)
    await node.join()
    await redis.delete(heartbeat_key("a"))
    async with asyncio.timeout(10):
        while not await redis.exists(heartbeat_key("a")):
            await asyncio.sleep(0.01)
    assert await node.alive_nodes() == {"a": 1}
    await node.leave()
    assert not await redis.exists(heartbeat_key("a"))


def test_the_config_is_checked_on_construction() -> None:
    with pytest.raises(ConfigError, match="node id"):
        ClusterConfig(node_id="a}b")
    with pytest.raises(ConfigError, match="node id"):
        ClusterConfig(node_id="")
    with pytest.raises(ConfigError, match="heartbeat_interval"):
        ClusterConfig(heartbeat_interval=0)
    with pytest.raises(ConfigError, match="node_ttl"):
        ClusterConfig(heartbeat_interval=5, node_ttl=5)


async def test_the_link_address_travels_with_the_heartbeat(clients: Callable[[], RedisClient]) -> None:
    a, b = _node(clients, "a"), _node(clients, "b")
    a.link = "127.0.0.1:7001"
    await a.join()
    await b.join()
    entries = await b.alive_entries()
    assert (entries["a"].byte, entries["a"].link) == (1, "127.0.0.1:7001")
    assert (entries["b"].byte, entries["b"].link) == (2, "")  # none published
    await b.publish_link("[::1]:7002")  # joined: published at once
    assert (await a.alive_entries())["b"].link == "[::1]:7002"
    assert await a.alive_nodes() == {"a": 1, "b": 2}
    await b.stop()
    await clients().delete(heartbeat_key("b"))  # what its TTL does once it stops beating
    assert list(await a.alive_entries()) == ["a"]
    await a.leave()
