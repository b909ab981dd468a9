"""Webhooks: events posted to a real HTTP receiver, signed (HMAC-SHA256 of the body), with an id
and a timestamp; retried with back-off after a 500; kept in the SQLite outbox over a server
restart and posted after it; batches (a JSON array per post, full or after the hook's delay,
retried as a unit, kept over a restart); ``/api/webhooks`` (register, list, one, delete, bad
input, batch settings)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import httpx
import pytest
from tests.helpers.client import until
from tests.helpers.server import Device, register
from tests.helpers.web import client_for
from tests.helpers.webhook_receiver import receiver

from lwm2m.coap.numbers import Code
from lwm2m.errors import ConfigError, InvalidWebhook, TooManyWebhooks
from lwm2m.export.webhooks import MAX_BATCH_EVENTS, WebhookConfig, Webhooks, verify
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import Store
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.storage.webhooks import OutboxEntry, OutboxLimits, Webhook
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web.app import create_app
from lwm2m.web.shapes import EVENT_NAMES, event_view

FAST = WebhookConfig(flush_delay=0.01, backoff=0.05, backoff_cap=0.2, poll=0.05, timeout=2.0)


@contextlib.asynccontextmanager
async def hooked(store: Store, config: WebhookConfig = FAST) -> AsyncIterator[tuple[Server, Webhooks]]:
    async with Server(ServerConfig(host="127.0.0.1", port=0), store) as server:
        webhooks = Webhooks(server, store.webhooks, EVENT_NAMES, event_view, config)
        await webhooks.start()
        try:
            yield server, webhooks
        finally:
            await webhooks.close()


async def register_device(server: Server, ep: str) -> None:
    async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as device:
        answer = await device.request(register(ep), ("127.0.0.1", server.port))
        assert answer.code == Code.CREATED


async def test_an_event_is_posted_signed_with_id_and_timestamp() -> None:
    async with receiver() as got, hooked(MemoryStore.create()) as (server, webhooks):
        hook = await webhooks.add(got.url, ["REGISTRATION"], "s3cret")
        other = await webhooks.add(got.url.replace("/hook", "/other"), ["NOTIFICATION"])
        before = time.time()
        await register_device(server, "dev-1")
        (post,) = await got.wait_for(1)
        await asyncio.sleep(0.1)
        assert len(got.posts) == 1  # the other hook wants no registration
        assert post.path == "/hook"
        expected = "sha256=" + hmac.new(b"s3cret", post.body, hashlib.sha256).hexdigest()
        assert post.headers["x-lwm2m-signature"] == expected
        assert verify("s3cret", post.body, post.headers["x-lwm2m-signature"])
        assert not verify(other.secret, post.body, post.headers["x-lwm2m-signature"])
        body = json.loads(post.body)
        assert body["event"] == "REGISTRATION" == post.headers["x-lwm2m-event"]
        assert body["id"] == post.headers["x-lwm2m-delivery"] and len(body["id"]) == 32
        assert before <= body["receivedAt"] <= time.time()
        assert abs(int(post.headers["x-lwm2m-timestamp"]) - time.time()) <= 2
        assert body["data"]["endpoint"] == "dev-1"
        assert body["data"]["registration"]["endpoint"] == "dev-1"
        assert post.headers["content-type"] == "application/json"
        assert hook.events == ("REGISTRATION",)
        await asyncio.sleep(0.05)
        assert webhooks.counters.delivered == 1 and webhooks.counters.failed == 0
        assert await webhooks.store.size() == 0


async def test_a_500_is_retried_with_back_off_then_delivered_once() -> None:
    async with receiver([500, 503]) as got, hooked(MemoryStore.create()) as (server, webhooks):
        await webhooks.add(got.url, ["REGISTRATION", "DEREGISTRATION"], "k")
        await register_device(server, "dev-2")
        posts = await got.wait_for(3)
        await asyncio.sleep(0.3)
        assert len(got.posts) == 3  # 500, 503, then 200: no more
        assert len({p.headers["x-lwm2m-delivery"] for p in posts}) == 1
        assert len({p.body for p in posts}) == 1
        counters = webhooks.counters
        assert (counters.delivered, counters.failed, counters.retried, counters.dropped) == (1, 2, 2, 0)
        assert await webhooks.store.size() == 0


def test_back_off_doubles_with_jitter_up_to_the_cap() -> None:
    hooks = Webhooks.__new__(Webhooks)
    hooks.config = WebhookConfig(backoff=1.0, backoff_cap=10.0)
    for attempts, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (40, 10.0)]:
        delays = [hooks.delay(attempts) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered


async def test_an_event_too_old_is_dropped_and_counted() -> None:
    store = MemoryStore.create()
    config = WebhookConfig(flush_delay=0.01, poll=0.05, max_age=5.0)
    async with receiver() as got, hooked(store, config) as (_, webhooks):
        hook = await webhooks.add(got.url, ["REGISTRATION"])
        await store.webhooks.enqueue([OutboxEntry(hook.hook_id, "old", time.time() - 10, b"{}")])
        webhooks._wake.set()
        for _ in range(100):
            if webhooks.counters.dropped:
                break
            await asyncio.sleep(0.02)
        assert webhooks.counters.dropped == 1 and not got.posts
        assert await store.webhooks.size() == 0


async def test_undelivered_events_survive_a_restart_in_the_sqlite_outbox(tmp_path: FsPath) -> None:
    path = tmp_path / "lwm2m.db"
    slow = WebhookConfig(flush_delay=0.01, backoff=30.0, poll=0.05, timeout=2.0)
    async with receiver([500] * 10) as got:
        with SqliteStore(path) as store:
            async with hooked(store, slow) as (server, webhooks):
                await webhooks.add(got.url, ["REGISTRATION"], "k")
                await register_device(server, "dev-a")
                await register_device(server, "dev-b")
                await got.wait_for(2)  # both refused: the next tries are 15 s away or more
                await asyncio.sleep(0.05)
                assert webhooks.counters.failed == 2 and webhooks.counters.delivered == 0
        with SqliteStore(path) as reopened:
            assert await reopened.webhooks.size() == 2
        got.statuses = []  # the receiver takes them from now on
        with SqliteStore(path) as store:
            # The restarted server posts them once their back-off is over (made due now here,
            # not to wait for it).
            store._conn.execute("UPDATE webhook_outbox SET next_at = 0")
            async with hooked(store) as (_, webhooks):
                posts = await got.wait_for(4)
                await asyncio.sleep(0.1)
                assert len(got.posts) == 4
                assert webhooks.counters.delivered == 2 and webhooks.counters.retried == 2
                assert await store.webhooks.size() == 0
        assert sorted(p.body for p in posts[:2]) == sorted(p.body for p in posts[2:])
        assert sorted(json.loads(p.body)["data"]["endpoint"] for p in posts[2:]) == ["dev-a", "dev-b"]


async def test_events_waiting_in_memory_are_written_at_close(tmp_path: FsPath) -> None:
    path = tmp_path / "lwm2m.db"
    with SqliteStore(path) as store:
        config = WebhookConfig(flush_delay=60.0)  # never written by the timer
        async with hooked(store, config) as (server, webhooks):
            await webhooks.add("http://127.0.0.1:9/never", ["REGISTRATION"])
            await register_device(server, "dev-c")
            for _ in range(100):
                if webhooks._buffer:
                    break
                await asyncio.sleep(0.01)
            assert await store.webhooks.size() == 0
    with SqliteStore(path) as store:
        assert await store.webhooks.size() == 1


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        WebhookConfig(backoff=0)
    with pytest.raises(ConfigError):
        WebhookConfig(timeout=30.0, lease=10.0)


# --- /api/webhooks ---------------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server, client_for(server, "tok") as client:
        client.headers["Authorization"] = "Bearer tok"
        yield client


async def test_register_list_get_delete(api: httpx.AsyncClient) -> None:
    made = await api.post(
        "/api/webhooks", json={"url": "https://example.com/in", "events": ["NOTIFICATION", "SEND"]}
    )
    assert made.status_code == 201
    hook = made.json()
    assert hook["url"] == "https://example.com/in" and hook["events"] == ["NOTIFICATION", "SEND"]
    assert len(hook["secret"]) >= 32 and made.headers["location"] == f"/api/webhooks/{hook['id']}"
    mine = await api.post("/api/webhooks", json={"url": "http://h/x", "events": ["AWAKE"], "secret": "abc"})
    assert mine.json()["secret"] == "abc"
    listed = (await api.get("/api/webhooks")).json()
    assert [h["id"] for h in listed] == [hook["id"], mine.json()["id"]]
    assert all("secret" not in h for h in listed)
    one = (await api.get(f"/api/webhooks/{hook['id']}")).json()
    assert one == {k: v for k, v in hook.items() if k != "secret"}
    assert (await api.delete(f"/api/webhooks/{hook['id']}")).json() == {"removed": hook["id"]}
    assert (await api.get(f"/api/webhooks/{hook['id']}")).status_code == 404
    assert (await api.delete(f"/api/webhooks/{hook['id']}")).status_code == 404
    assert len((await api.get("/api/webhooks")).json()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/", "events": ["NOTIFICATION"]},
        {"url": "http:///nohost", "events": ["NOTIFICATION"]},
        {"url": "http://example.com:99999/", "events": ["NOTIFICATION"]},
        {"url": "http://example.com/", "events": []},
        {"url": "http://example.com/", "events": ["NOPE"]},
        {"url": "http://example.com/", "events": "NOTIFICATION"},
        {"url": "http://example.com/", "events": ["NOTIFICATION"], "secret": ""},
        {"url": "http://example.com/", "events": ["NOTIFICATION"], "secret": 5},
        {"url": "http://example.com/", "events": ["NOTIFICATION"], "secret": None},
        {"url": "http://example.com/\nx", "events": ["NOTIFICATION"]},
        {"url": "http://example.com/", "events": ["NOTIFICATION"], "other": 1},
        {"events": ["NOTIFICATION"]},
    ],
)
async def test_bad_input_is_400(api: httpx.AsyncClient, body: dict[str, object]) -> None:
    answer = await api.post("/api/webhooks", json=body)
    assert answer.status_code == 400, body
    assert answer.json()["error"]
    assert (await api.get("/api/webhooks")).json() == []


async def test_hooks_are_bounded() -> None:
    store = MemoryStore.create()
    store.webhooks.limits = OutboxLimits(hooks=1)
    async with hooked(store) as (_, webhooks):
        await webhooks.add("http://h/1", ["SEND"])
        with pytest.raises(TooManyWebhooks):  # 507 through the API
            await webhooks.add("http://h/2", ["SEND"])


async def test_the_app_starts_them_and_counts_them_in_metrics() -> None:
    pytest.importorskip("prometheus_client")
    from lwm2m.export.metrics import MetricsConfig, ServerMetrics

    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        metrics = ServerMetrics(server, MetricsConfig(process=False))
        app = create_app(server, metrics=metrics)
        webhooks = app.state.api.webhooks
        webhooks.counters.delivered = 7
        webhooks.counters.outbox = 3
        text = metrics.exposition().decode()
        assert "lwm2m_webhook_delivered_total 7.0" in text
        assert "lwm2m_webhook_outbox 3.0" in text
        assert "lwm2m_webhook_dropped_total 0.0" in text


async def test_the_server_feeds_them_only_while_a_hook_exists() -> None:
    async with hooked(MemoryStore.create()) as (server, webhooks):
        alone = len(server._subscribers)
        hook = await webhooks.add("http://h/1", ["SEND"])
        assert len(server._subscribers) == alone + 1
        await webhooks.remove(hook.hook_id)
        assert len(server._subscribers) == alone
        # A hook another node added is seen at the next refresh.
        await webhooks.store.put_hook(hook)
        await webhooks.refresh()
        assert len(server._subscribers) == alone + 1
    assert len(server._subscribers) == alone


# --- batches ---------------------------------------------------------------------------------------


def entries(hook: Webhook, count: int, at: float | None = None) -> list[OutboxEntry]:
    """``count`` events for ``hook`` as the outbox keeps them (ids e0, e1, ...)."""
    now = time.time() if at is None else at
    return [
        OutboxEntry(hook.hook_id, f"e{i}", now, json.dumps({"event": "SEND", "id": f"e{i}"}).encode())
        for i in range(count)
    ]


async def test_events_are_posted_in_batches_signed_over_the_array() -> None:
    store = MemoryStore.create()
    async with receiver() as got, hooked(store) as (_, webhooks):
        hook = await webhooks.add(got.url, ["SEND"], "s3cret", batch=(10, 30.0))
        await store.webhooks.enqueue(entries(hook, 25))
        webhooks._wake.set()
        posts = await got.wait_for(2)  # two full batches at once, the 5 left wait for more
        await asyncio.sleep(0.2)
        assert len(got.posts) == 2
        for post in posts:
            assert verify("s3cret", post.body, post.headers["x-lwm2m-signature"])
            assert post.headers["x-lwm2m-batch"] == "10"
            assert "x-lwm2m-delivery" not in post.headers
            assert len(json.loads(post.body)) == 10
        ids = [e["id"] for p in posts for e in json.loads(p.body)]
        assert sorted(ids) == sorted(f"e{i}" for i in range(20))
        assert webhooks.counters.delivered == 20
        assert await store.webhooks.size() == 5


async def test_an_incomplete_batch_waits_for_its_delay() -> None:
    store = MemoryStore.create()
    async with receiver() as got, hooked(store) as (_, webhooks):
        hook = await webhooks.add(got.url, ["SEND"], "k", batch=(100, 0.4))
        start = time.monotonic()
        await store.webhooks.enqueue(entries(hook, 3))
        webhooks._wake.set()
        (post,) = await got.wait_for(1)
        assert time.monotonic() - start >= 0.35
        assert [e["id"] for e in json.loads(post.body)] == ["e0", "e1", "e2"]
        assert post.headers["x-lwm2m-batch"] == "3"
        await until(lambda: webhooks.counters.delivered == 3)
        assert await store.webhooks.size() == 0


async def test_an_incomplete_batch_is_posted_at_its_delay_not_at_the_next_poll() -> None:
    store = MemoryStore.create()
    slow_poll = WebhookConfig(flush_delay=0.01, poll=30.0, timeout=2.0)
    async with receiver() as got, hooked(store, slow_poll) as (_, webhooks):
        hook = await webhooks.add(got.url, ["SEND"], "k", batch=(100, 0.2))
        await store.webhooks.enqueue(entries(hook, 2))
        webhooks._wake.set()
        (post,) = await got.wait_for(1, timeout=2.0)
        assert len(json.loads(post.body)) == 2


async def test_events_put_back_come_due_with_the_oldest() -> None:
    store = MemoryStore.create()
    async with receiver() as got, hooked(store) as (_, webhooks):
        hook = await webhooks.add(got.url, ["SEND"], "k", batch=(100, 0.5))
        first, second = entries(hook, 2)
        await store.webhooks.enqueue([first])
        webhooks._wake.set()
        await asyncio.sleep(0.2)
        # Taken 0.2 s later: posted with the first, not 0.2 s after it.
        await store.webhooks.enqueue([dataclasses.replace(second, created_at=time.time())])
        webhooks._wake.set()
        (post,) = await got.wait_for(1)
        assert [e["id"] for e in json.loads(post.body)] == ["e0", "e1"]


async def test_a_failed_batch_is_retried_as_a_unit() -> None:
    store = MemoryStore.create()
    async with receiver([500, 503]) as got, hooked(store) as (_, webhooks):
        hook = await webhooks.add(got.url, ["SEND"], "k", batch=(4, 30.0))
        await store.webhooks.enqueue(entries(hook, 4))
        webhooks._wake.set()
        posts = await got.wait_for(3)
        await asyncio.sleep(0.3)
        assert len(got.posts) == 3  # 500, 503, then 200: no more
        assert len({p.body for p in posts}) == 1  # the same four events, in one post each time
        assert [e["id"] for e in json.loads(posts[0].body)] == ["e0", "e1", "e2", "e3"]
        counters = webhooks.counters
        assert (counters.delivered, counters.failed, counters.retried) == (4, 2, 2)
        assert await store.webhooks.size() == 0


async def test_a_retried_batch_is_posted_without_waiting_for_more() -> None:
    store = MemoryStore.create()
    async with receiver([500]) as got, hooked(store) as (_, webhooks):
        hook = await webhooks.add(got.url, ["SEND"], "k", batch=(50, 0.2))
        await store.webhooks.enqueue(entries(hook, 2, at=time.time() - 1))  # its delay is over
        webhooks._wake.set()
        first, again = await got.wait_for(2)
        assert first.body == again.body and len(json.loads(again.body)) == 2


async def test_undelivered_batched_events_survive_a_restart(tmp_path: FsPath) -> None:
    path = tmp_path / "lwm2m.db"
    # Both events written in one go (within flush_delay), so that they come due together as one batch.
    slow = WebhookConfig(flush_delay=1.0, backoff=30.0, poll=0.05, timeout=2.0)
    async with receiver([500] * 10) as got:
        with SqliteStore(path) as store:
            async with hooked(store, slow) as (server, webhooks):
                await webhooks.add(got.url, ["REGISTRATION"], "k", batch=(2, 30.0))
                await register_device(server, "dev-a")
                await register_device(server, "dev-b")
                await got.wait_for(1)  # refused: the next try is 15 s away or more
                await asyncio.sleep(0.05)
                assert webhooks.counters.failed == 1 and webhooks.counters.delivered == 0
        got.statuses = []
        with SqliteStore(path) as store:
            (kept,) = await store.webhooks.hooks()
            assert (kept.batch_events, kept.batch_delay) == (2, 30.0)
            assert await store.webhooks.size() == 2
            store._conn.execute("UPDATE webhook_outbox SET next_at = 0")  # not to wait for the back-off
            async with hooked(store) as (_, webhooks):
                first, again = await got.wait_for(2)
                await until(lambda: webhooks.counters.delivered == 2)
                assert await store.webhooks.size() == 0
    assert first.body == again.body
    assert sorted(e["data"]["endpoint"] for e in json.loads(again.body)) == ["dev-a", "dev-b"]


@pytest.mark.parametrize(
    "batch",
    [
        (1, 1.0),
        (MAX_BATCH_EVENTS + 1, 1.0),
        (10, -1.0),
        (10, 61.0),
        (10, float("nan")),
        (True, 1.0),
        [10, 1.0],
    ],
)
async def test_bad_batch_settings_are_refused(batch: object) -> None:
    async with hooked(MemoryStore.create(), FAST) as (_, webhooks):
        with pytest.raises(InvalidWebhook):
            await webhooks.add("http://h/1", ["SEND"], batch=batch)  # type: ignore[arg-type]
        assert await webhooks.all() == []


async def test_the_api_takes_and_shows_batches(api: httpx.AsyncClient) -> None:
    body = {"url": "http://h/x", "events": ["NOTIFICATION"], "batch": {"maxEvents": 100, "maxDelay": 1}}
    made = await api.post("/api/webhooks", json=body)
    assert made.status_code == 201
    assert made.json()["batch"] == {"maxEvents": 100, "maxDelay": 1.0}
    (listed,) = (await api.get("/api/webhooks")).json()
    assert listed["batch"] == {"maxEvents": 100, "maxDelay": 1.0}
    plain = await api.post("/api/webhooks", json={"url": "http://h/y", "events": ["SEND"]})
    assert "batch" not in plain.json()


@pytest.mark.parametrize(
    "batch",
    [
        {"maxEvents": 1, "maxDelay": 1},
        {"maxEvents": 100},
        {"maxEvents": 100, "maxDelay": 1, "other": 2},
        {"maxEvents": "100", "maxDelay": 1},
        {"maxEvents": 100, "maxDelay": 3600},
        [100, 1],
        None,
    ],
)
async def test_bad_batches_in_the_api_are_400(api: httpx.AsyncClient, batch: object) -> None:
    answer = await api.post("/api/webhooks", json={"url": "http://h/x", "events": ["SEND"], "batch": batch})
    assert answer.status_code == 400, batch
    assert "batch" in answer.json()["error"]
    assert (await api.get("/api/webhooks")).json() == []
