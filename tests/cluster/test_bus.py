"""The request bus: answers between nodes, errors and timeouts, the reclaim of what a crashed
incarnation read and never acknowledged, bounded streams; on a single Redis and on a Redis
Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tests.cluster.fakes import FakeClock

from lwm2m.cluster import BusConfig, Payload, RequestBus
from lwm2m.cluster.bus import GROUP, reply_stream, request_stream
from lwm2m.errors import (
    BusClosed,
    BusTimeout,
    ClusterPayloadError,
    ConfigError,
    RemoteHandlerError,
    RequestTimeout,
)
from lwm2m.storage.redisconn import RedisClient

CONFIG = BusConfig(block=0.05)  # short blocking reads: close() and retries stay quick

BusFactory = Callable[..., Awaitable[RequestBus]]


async def _echo(payload: Payload) -> Payload:
    if isinstance(payload, bytes):
        return payload[::-1]
    return {"echo": payload}


async def _acknowledged(redis: RedisClient, node: str) -> None:
    """Wait until ``node``'s group has nothing pending."""
    async with asyncio.timeout(10):
        while (await redis.xpending(request_stream(node), GROUP))["pending"]:
            await asyncio.sleep(0.005)


@pytest.fixture
async def buses(clients: Callable[[], RedisClient]) -> AsyncIterator[BusFactory]:
    """Starts a bus for a node (each with its own client) and closes them all after the test."""
    started: list[RequestBus] = []

    async def make(node: str, handler: Any = _echo, **kwargs: Any) -> RequestBus:
        bus = RequestBus(clients(), node, kwargs.pop("config", CONFIG), **kwargs)
        await bus.start(handler)
        started.append(bus)
        return bus

    yield make
    for bus in started:
        await bus.close()


async def test_a_request_gets_the_other_nodes_answer(buses: BusFactory) -> None:
    a, b = await buses("a"), await buses("b")
    assert await a.request("b", {"op": "read", "path": "/3/0/0"}, timeout=10) == {
        "echo": {"op": "read", "path": "/3/0/0"}
    }
    assert await b.request("a", b"\x00\x01\xff", timeout=10) == b"\xff\x01\x00"
    assert await a.request("a", {"to": "myself"}, timeout=10) == {"echo": {"to": "myself"}}


async def test_concurrent_requests_each_get_their_own_answer(buses: BusFactory) -> None:
    a, b = await buses("a"), await buses("b")
    await buses("c")
    calls = [(sender, target, i) for i in range(30) for sender in (a, b) for target in ("b", "c")]
    answers = await asyncio.gather(*(s.request(t, {"i": i, "to": t}, timeout=10) for s, t, i in calls))
    assert answers == [{"echo": {"i": i, "to": t}} for _, t, i in calls]


async def test_a_failing_handler_answers_with_its_error(buses: BusFactory) -> None:
    async def fails(payload: Payload) -> Payload:
        raise LookupError("no such device: dev-9")

    a = await buses("a")
    await buses("b", fails)
    with pytest.raises(RemoteHandlerError) as caught:
        await a.request("b", {"ep": "dev-9"}, timeout=10)
    assert (caught.value.node, caught.value.kind) == ("b", "LookupError")
    assert "no such device: dev-9" in str(caught.value)


async def test_a_handler_answer_that_is_no_payload_is_an_error_answer(buses: BusFactory) -> None:
    async def wrong(payload: Payload) -> Payload:
        return ["not", "a", "dict"]  # type: ignore[return-value]

    a = await buses("a")
    await buses("b", wrong)
    with pytest.raises(RemoteHandlerError, match="ClusterPayloadError"):
        await a.request("b", {}, timeout=10)


async def test_no_answer_from_a_node_that_is_gone_is_a_timeout(buses: BusFactory) -> None:
    a = await buses("a")
    with pytest.raises(BusTimeout) as caught:
        await a.request("never-started", {"op": "read"}, timeout=0.2)
    assert isinstance(caught.value, RequestTimeout) and isinstance(caught.value, TimeoutError)

    b = await buses("b")
    await b.close()
    with pytest.raises(BusTimeout, match="'b'"):
        await a.request("b", b"x", timeout=0.2)


async def test_a_request_sent_before_its_node_started_is_served_when_it_starts(
    buses: BusFactory, clients: Callable[[], RedisClient]
) -> None:
    a = await buses("a")
    waiting = asyncio.create_task(a.request("late", {"n": 1}, timeout=10))
    redis = clients()
    async with asyncio.timeout(10):
        while not await redis.exists(request_stream("late")):
            await asyncio.sleep(0.005)
    await buses("late")
    assert await waiting == {"echo": {"n": 1}}


async def test_a_request_read_by_a_crashed_incarnation_is_reclaimed_by_the_next(
    buses: BusFactory, clients: Callable[[], RedisClient]
) -> None:
    a = await buses("a")
    taken = asyncio.Event()

    async def hangs(payload: Payload) -> Payload:
        taken.set()
        await asyncio.Event().wait()  # the node dies while handling
        raise AssertionError("unreachable")

    crashed = await buses("b", hangs)
    waiting = asyncio.create_task(a.request("b", {"op": "write", "value": 7}, timeout=20))
    await taken.wait()
    await crashed.close()  # read, never acknowledged, never answered

    redis = clients()
    pending = await redis.xpending(request_stream("b"), GROUP)
    assert pending["pending"] == 1
    assert [c["name"] for c in pending["consumers"]] == [crashed.consumer.encode()]
    assert not waiting.done()

    restarted = await buses("b")
    assert await waiting == {"echo": {"op": "write", "value": 7}}
    await _acknowledged(redis, "b")  # the answer goes out first, the XACK right after
    consumers = [c["name"] for c in await redis.xinfo_consumers(request_stream("b"), GROUP)]
    assert consumers == [restarted.consumer.encode()]  # the crashed incarnation's is gone


async def test_a_reclaimed_request_past_its_deadline_is_dropped_unhandled(
    buses: BusFactory, clients: Callable[[], RedisClient]
) -> None:
    clock = FakeClock()
    a = await buses("a", clock=clock)
    redis = clients()
    await redis.xgroup_create(request_stream("b"), GROUP, id="0", mkstream=True)
    with pytest.raises(BusTimeout):
        await a.request("b", {"op": "execute"}, timeout=0.1)
    # A consumer read it and crashed.
    assert await redis.xreadgroup(GROUP, "b.dead", {request_stream("b"): ">"}, count=10)
    clock.advance(0.1)  # now past the request's deadline
    handled: list[Payload] = []

    async def records(payload: Payload) -> Payload:
        handled.append(payload)
        return payload

    await buses("b", records, clock=clock)
    await _acknowledged(redis, "b")
    assert handled == []
    assert await redis.xlen(reply_stream("a")) == 0  # nobody was waiting: no answer sent


@pytest.mark.parametrize(
    "fields",
    [
        {b"m": b"no line of its own"},
        {b"m": b"rid a 1e99\n"},  # three words where four go
        {b"m": b"rid a never j\n{}"},  # a deadline that is no number
        {b"m": b"rid {a} 1e99 j\n{}"},  # a sender that is no node id
        {b"m": b"rid a 1e99 j\n\xff"},  # JSON that is not even text
        {b"m": b"\xff a 1e99 b\n"},  # a head that is not text
        {b"id": b"rid", b"from": b"a"},  # no field m
    ],
)
async def test_a_malformed_request_entry_is_acknowledged_and_the_next_one_served(
    buses: BusFactory, clients: Callable[[], RedisClient], fields: dict[bytes, bytes]
) -> None:
    redis = clients()
    await buses("b")
    await redis.xadd(request_stream("b"), fields)  # type: ignore[arg-type]
    a = await buses("a")
    assert await a.request("b", b"ok", timeout=5) == b"ko"
    await _acknowledged(redis, "b")


async def test_a_malformed_reply_is_dropped_and_the_next_one_answers(
    buses: BusFactory, clients: Callable[[], RedisClient]
) -> None:
    redis = clients()
    a = await buses("a")
    for fields in ({b"m": b"rid"}, {b"m": b"\xff b 1 b\n"}, {b"x": b"y"}):
        await redis.xadd(reply_stream("a"), fields)  # type: ignore[arg-type]
    await buses("b")
    assert await a.request("b", b"ok", timeout=5) == b"ko"


async def test_payloads_are_bytes_or_json_dicts(buses: BusFactory) -> None:
    a = await buses("a")
    with pytest.raises(ClusterPayloadError):
        await a.request("a", {"when": object()}, timeout=1)
    with pytest.raises(ClusterPayloadError):
        await a.request("a", ["a", "list"], timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="node id"):
        await a.request("b}", b"", timeout=1)


async def test_a_closed_bus_refuses_requests_and_fails_those_waiting(
    clients: Callable[[], RedisClient],
) -> None:
    bus = RequestBus(clients(), "a", CONFIG)
    with pytest.raises(BusClosed):
        await bus.request("b", b"x", timeout=1)
    await bus.start()  # no handler: it asks, it serves nothing
    waiting = asyncio.create_task(bus.request("nobody", b"x", timeout=20))
    redis = clients()
    async with asyncio.timeout(10):
        while not await redis.exists(request_stream("nobody")):
            await asyncio.sleep(0.005)
    await bus.close()
    with pytest.raises(BusClosed):
        await waiting


async def test_close_stops_the_bus_at_any_moment_after_start(clients: Callable[[], RedisClient]) -> None:
    # redis-py 8.2 can swallow a cancellation that lands while it opens a connection; the read
    # loops must end all the same.
    for steps in range(12):
        bus = RequestBus(clients(), "a", CONFIG)
        await bus.start(_echo)
        for _ in range(steps):
            await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await bus.close()


async def test_streams_are_bounded(buses: BusFactory, clients: Callable[[], RedisClient]) -> None:
    config = BusConfig(block=0.05, maxlen=10, stream_ttl=60)
    a, _ = await buses("a", config=config), await buses("b", config=config)
    for i in range(300):
        await a.request("b", {"i": i}, timeout=10)
    redis = clients()
    # MAXLEN ~ trims whole macro nodes (100 entries by default): about maxlen, never all 300.
    assert await redis.xlen(request_stream("b")) <= 110
    assert await redis.xlen(reply_stream("a")) <= 110
    assert 0 < await redis.pttl(reply_stream("a")) <= 60_000
    assert 0 < await redis.pttl(request_stream("b")) <= 60_000
    await redis.persist(request_stream("b"))
    b_again = await buses("b", config=config)  # a running node keeps its stream's TTL fresh
    async with asyncio.timeout(10):
        while await redis.pttl(request_stream("b")) < 0:
            await asyncio.sleep(0.005)
    await b_again.close()


def test_the_config_is_checked_on_construction() -> None:
    for bad in ({"maxlen": 0}, {"batch": 0}, {"concurrency": 1.5}, {"block": 0}, {"stream_ttl": -1}):
        with pytest.raises(ConfigError):
            BusConfig(**bad)  # type: ignore[arg-type]
