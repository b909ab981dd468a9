"""Fleet events: one stream every node appends to; subscribers on any node read from now or
resume after an id (SSE's Last-Event-ID), also one that has been trimmed away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.redis import redis_server

from lwm2m.cluster import EventsConfig, FleetEvents
from lwm2m.cluster.events import EVENTS_KEY
from lwm2m.errors import ApiError, ClusterPayloadError, ConfigError, InvalidEventId
from lwm2m.storage.redisconn import RedisClient, connect

CONFIG = EventsConfig(block=0.05)


@pytest.fixture
def nodes(clients: Callable[[], RedisClient]) -> Callable[..., FleetEvents]:
    def make(config: EventsConfig = CONFIG) -> FleetEvents:
        return FleetEvents(clients(), config)

    return make


async def _take(
    stream: AsyncIterator[tuple[str, dict[str, Any]]], count: int
) -> list[tuple[str, dict[str, Any]]]:
    async with asyncio.timeout(10):
        return [await anext(stream) for _ in range(count)]


async def test_events_of_every_node_reach_a_subscriber_resumed_on_another_node(
    nodes: Callable[..., FleetEvents],
) -> None:
    a, b, c = nodes(), nodes(), nodes()
    ids = [
        await a.publish({"type": "registered", "endpoint": "dev-1"}),
        await b.publish({"type": "updated", "endpoint": "dev-2"}),
        await a.publish({"type": "notified", "endpoint": "dev-1", "value": 21.5}),
    ]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    first = c.subscribe("0-0")
    seen = await _take(first, 2)
    assert [i for i, _ in seen] == ids[:2]
    assert seen[1][1] == {"type": "updated", "endpoint": "dev-2"}
    await first.aclose()  # the browser went away after the second event

    # It reconnects to another node with Last-Event-ID: the second event's id.
    resumed = a.subscribe(seen[1][0])
    assert await _take(resumed, 1) == [(ids[2], {"type": "notified", "endpoint": "dev-1", "value": 21.5})]
    waiting = asyncio.create_task(_take(resumed, 1))
    later = await c.publish({"type": "deregistered", "endpoint": "dev-2"})
    assert await waiting == [(later, {"type": "deregistered", "endpoint": "dev-2"})]
    await resumed.aclose()


async def test_without_an_id_a_subscriber_starts_from_now(nodes: Callable[..., FleetEvents]) -> None:
    a, b = nodes(), nodes()
    await a.publish({"n": 0})
    stream = b.subscribe()
    first = asyncio.create_task(anext(stream))
    # The subscriber decides where "now" is when it first runs: publish until it has seen one.
    n = 0
    while not first.done():
        n += 1
        await a.publish({"n": n})
        await asyncio.wait({first}, timeout=0.02)
    _, event = first.result()
    assert event["n"] >= 1  # never the event published before it subscribed
    await stream.aclose()


async def test_an_id_trimmed_away_resumes_from_the_oldest_event_kept(
    nodes: Callable[..., FleetEvents], clients: Callable[[], RedisClient]
) -> None:
    a = nodes(EventsConfig(block=0.05, maxlen=10))
    ids = [await a.publish({"n": n}) for n in range(400)]
    redis = clients()
    kept = await redis.xlen(EVENTS_KEY)
    assert kept < 400  # trimmed (MAXLEN ~ trims whole macro nodes: about 10, never all)
    (oldest_id, _), *_ = await redis.xrange(EVENTS_KEY, count=1)
    oldest = ids.index(oldest_id.decode())
    assert oldest > 0
    stream = a.subscribe(ids[0])  # long gone
    assert await _take(stream, 2) == [(ids[oldest], {"n": oldest}), (ids[oldest + 1], {"n": oldest + 1})]
    await stream.aclose()


async def test_a_bad_event_id_is_refused(nodes: Callable[..., FleetEvents]) -> None:
    a = nodes()
    for bad in ("", "abc", "12-", "-1-0", "1-2-3", "$", ">"):
        with pytest.raises(InvalidEventId) as caught:
            await anext(a.subscribe(bad))
        assert isinstance(caught.value, ApiError) and caught.value.status == 400


async def test_an_event_is_a_dict_that_encodes_as_json(nodes: Callable[..., FleetEvents]) -> None:
    a = nodes()
    with pytest.raises(ClusterPayloadError):
        await a.publish({"at": object()})
    with pytest.raises(ClusterPayloadError):
        await a.publish(["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ClusterPayloadError):
        await a.publish({"x": float("nan")})


def test_the_config_is_checked_on_construction() -> None:
    for bad in ({"maxlen": 0}, {"batch": -1}, {"block": 0}):
        with pytest.raises(ConfigError):
            EventsConfig(**bad)  # type: ignore[arg-type]


async def test_a_subscriber_reads_on_across_a_redis_restart(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", appendonly=True) as server:
        fleet = FleetEvents(connect(server.url), CONFIG)
        stream = fleet.subscribe()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.1)  # its read is waiting
        await fleet.publish({"n": 1})
        assert (await asyncio.wait_for(first, 10))[1] == {"n": 1}
        following = asyncio.ensure_future(anext(stream))
        await asyncio.to_thread(server.restart)  # the subscriber's read fails meanwhile
        await fleet.publish({"n": 2})
        assert (await asyncio.wait_for(following, 10))[1] == {"n": 2}
        await stream.aclose()  # type: ignore[attr-defined]


async def test_events_published_together_keep_their_order(nodes: Callable[..., FleetEvents]) -> None:
    fleet = nodes()
    stream = fleet.subscribe("0-0")
    ids = await fleet.publish_many([{"n": i} for i in range(5)])
    assert len(ids) == 5 and ids == sorted(ids)
    got = await _take(stream, 5)
    assert [(i, e) for i, e in got] == [(ids[i], {"n": i}) for i in range(5)]
    assert await fleet.publish_many([]) == []
    await stream.aclose()  # type: ignore[attr-defined]
