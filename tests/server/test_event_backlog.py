"""What the server keeps for readers of its events is bounded, however slowly they read; so is
its history, by age when the store's retention says so."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from lwm2m.errors import ConfigError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server import role as server_module
from lwm2m.server.backlog import Backlog
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import EVENT_BACKLOG, ClientAwake, EventSink, EventStream, EventTap, ServerEvent
from lwm2m.server.role import Server
from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.memory import MemoryStore
from lwm2m.web.sse import EVENTS_DROPPED, event_stream


def test_backlog_counts_what_it_drops() -> None:
    backlog: Backlog[int] = Backlog(3)
    for i in range(10):
        backlog.put(i)
    assert len(backlog) == 3
    assert backlog.dropped == 7
    assert [backlog.pop() for _ in range(3)] == [7, 8, 9]  # the newest stay


def test_unbounded_backlog_drops_nothing() -> None:
    backlog: Backlog[int] = Backlog()
    for i in range(1000):
        backlog.put(i)
    assert len(backlog) == 1000 and backlog.dropped == 0


async def test_event_stream_keeps_at_most_its_backlog() -> None:
    subscribers: set[Backlog[ServerEvent]] = set()
    stream = EventStream(subscribers, backlog=100)
    for i in range(1000):
        for backlog in subscribers:
            backlog.put(ClientAwake(f"ep-{i}"))
    assert stream.pending == 100
    assert stream.dropped == 900
    first = await anext(stream)
    assert first == ClientAwake("ep-900")  # the oldest unread that is left
    stream.close()
    assert not subscribers


async def test_server_events_are_bounded_by_default() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        for i in range(EVENT_BACKLOG + 500):
            server._publish(ClientAwake(f"ep-{i}"))
        assert events.pending == EVENT_BACKLOG
        assert events.dropped == 500
        small = server.events(backlog=10)
        for i in range(25):
            server._publish(ClientAwake(f"again-{i}"))
        assert small.pending == 10 and small.dropped == 15
        events.close()
        small.close()


def test_an_event_tap_keeps_at_most_its_limit_from_one_look_to_the_next() -> None:
    subscribers: set[EventSink] = set()
    tap = EventTap(subscribers, limit=100)
    for i in range(250):
        for subscriber in subscribers:
            subscriber.put(ClientAwake(f"ep-{i}"))
    assert tap.pending == 250  # appended as they come; the bound applies when taken
    taken = tap.take_all()
    assert [e.endpoint for e in taken] == [f"ep-{i}" for i in range(150, 250)]  # the newest stay
    assert tap.dropped == 150 and tap.pending == 0
    for subscriber in subscribers:
        subscriber.put(ClientAwake("next"))
    assert tap.take_all() == [ClientAwake("next")] and tap.dropped == 150
    assert tap.take_all() == []
    tap.close()
    assert not subscribers
    with pytest.raises(ConfigError):
        EventTap(subscribers, limit=0)


async def test_server_event_taps_see_what_streams_see() -> None:
    async with Server(ServerConfig(port=0)) as server:
        stream = server.events()
        tap = server.tap_events(limit=10)
        for i in range(25):
            server._publish(ClientAwake(f"ep-{i}"))
        assert [e.endpoint for e in tap.take_all()] == [f"ep-{i}" for i in range(15, 25)]
        assert tap.dropped == 15 and stream.pending == 25 and stream.dropped == 0
        tap.close()
        server._publish(ClientAwake("after"))
        assert tap.take_all() == [] and stream.pending == 26
        stream.close()


async def test_an_event_hook_is_called_in_the_emitting_step_until_closed() -> None:
    async with Server(ServerConfig(port=0)) as server:
        seen: list[str] = []
        hook = server.hook_events(lambda event: seen.append(getattr(event, "endpoint", "?")))
        server._publish(ClientAwake("a"))
        assert seen == ["a"]  # no task in between: kept before the emitter goes on
        hook.close()
        server._publish(ClientAwake("b"))
        assert seen == ["a"]


class _Server:
    """What ``event_stream`` needs of a server: ``events()``, here with a small backlog."""

    def __init__(self) -> None:
        self.subscribers: set[Backlog[Any]] = set()

    def events(self) -> EventStream:
        return EventStream(self.subscribers, backlog=5)

    def publish(self, event: Any) -> None:
        for backlog in self.subscribers:
            backlog.put(event)


async def test_sse_tells_a_slow_client_what_it_lost() -> None:
    server = _Server()
    stream = event_stream(server, keepalive=60)  # type: ignore[arg-type]
    assert await anext(stream) == b": subscribed\n\n"
    # The client reads nothing while 20 events come: only the newest 5 are kept.
    for i in range(20):
        server.publish(ClientAwake(f"ep-{i}"))
    await asyncio.sleep(0)
    chunks = [await anext(stream) for _ in range(6)]
    # First what was lost, then the newest 5, in order.
    assert chunks[0] == f'event: {EVENTS_DROPPED}\ndata: {{"count": 15}}\n\n'.encode()
    awake = [c.decode() for c in chunks[1:]]
    assert awake == [f'event: AWAKE\ndata: {{"endpoint": "ep-{i}"}}\n\n' for i in range(15, 20)]
    # Later events come without a drop notice.
    server.publish(ClientAwake("late"))
    assert await anext(stream) == b'event: AWAKE\ndata: {"endpoint": "late"}\n\n'
    assert sum(len(b) for b in server.subscribers) <= 5
    await stream.aclose()
    assert not server.subscribers


async def test_the_server_prunes_history_older_than_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "HISTORY_PRUNE_INTERVAL", 0.02)
    store = MemoryStore.create(history_retention=HistoryRetention(max_records=None, max_age=60.0))
    now = time.time()
    temperature = Path.parse("/3303/0/5700")
    for i in range(100):
        store.history.add("old", [Record(temperature, float(i))], received_at=now - 3600 + i)
        store.history.add("new", [Record(temperature, float(i))], received_at=now - 30)
    async with Server(ServerConfig(port=0, expiry_interval=0.01), store):
        for _ in range(500):
            if not await store.history.query("old"):
                break
            await asyncio.sleep(0.01)
        assert await store.history.query("old") == []
        assert len(await store.history.query("new")) == 100
