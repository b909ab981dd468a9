"""Export in a worker process (lwm2m.export.handoff, lwm2m.export.worker): a real webhook receiver
gets the events the worker posts; a kill -9 of the worker under a stream of events loses nothing
(the server sends again what was not acknowledged, with the same delivery ids); a stopped worker
(SIGSTOP) meets a bounded queue whose drops are counted; the counters reach /metrics; the
worker's log records reach the server's logging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import httpx
import pytest
from tests.helpers.client import until
from tests.helpers.server import Device, register
from tests.helpers.webhook_receiver import Receiver, receiver

from lwm2m.coap.numbers import Code
from lwm2m.errors import ConfigError
from lwm2m.export.handoff import ExportConfig, ExportWorker
from lwm2m.export.webhooks import WebhookConfig, Webhooks, verify
from lwm2m.server.config import ServerConfig
from lwm2m.server.jsonform import EVENT_NAMES, event_view
from lwm2m.server.role import Server
from lwm2m.storage.base import Store
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import open_udp_endpoint

HOOKS = WebhookConfig(flush_delay=0.01, backoff=0.05, backoff_cap=0.2, poll=0.05, timeout=2.0, lease=2.5)
FAST = ExportConfig(
    webhooks=HOOKS, flush_interval=0.01, restart_initial=0.05, restart_max=0.2, counters_every=0.05
)


@contextlib.asynccontextmanager
async def worked(
    store: Store, config: ExportConfig = FAST
) -> AsyncIterator[tuple[Server, Webhooks, ExportWorker]]:
    async with Server(ServerConfig(host="127.0.0.1", port=0), store) as server:
        webhooks = Webhooks(server, store.webhooks, EVENT_NAMES, event_view, config.webhooks, deliver=False)
        export = ExportWorker(server, config, webhooks)
        await webhooks.start()
        await export.start()
        try:
            await asyncio.wait_for(export.wait_ready(), 30)
            yield server, webhooks, export
        finally:
            await export.close()
            await webhooks.close()


async def register_devices(server: Server, names: list[str]) -> None:
    async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as device:
        for ep in names:
            answer = await device.request(register(ep), ("127.0.0.1", server.port))
            assert answer.code == Code.CREATED


def endpoints(got: Receiver) -> set[str]:
    return {json.loads(p.body)["data"]["endpoint"] for p in got.posts}


async def test_the_worker_posts_the_events_signed_and_its_counters_come_back() -> None:
    async with receiver() as got, worked(MemoryStore.create()) as (server, webhooks, export):
        assert export.pid is not None and export.pid != os.getpid()
        await webhooks.add(got.url, ["REGISTRATION"], "s3cret")
        await asyncio.sleep(0.05)  # the hooks reach the worker
        await register_devices(server, ["dev-1"])
        (post,) = await got.wait_for(1)
        assert verify("s3cret", post.body, post.headers["x-lwm2m-signature"])
        body = json.loads(post.body)
        assert body["event"] == "REGISTRATION" and body["data"]["registration"]["endpoint"] == "dev-1"
        assert body["id"] == post.headers["x-lwm2m-delivery"] and len(body["id"]) == 32
        await until(lambda: webhooks.counters.delivered == 1)
        await until(lambda: export.counters.queue == 0)
        assert export.counters.events >= 1 and export.counters.dropped == 0


async def test_a_kill_9_of_the_worker_under_a_stream_of_events_loses_nothing(tmp_path: FsPath) -> None:
    path = tmp_path / "lwm2m.db"
    config = ExportConfig(
        store_url=f"sqlite://{path}",
        webhooks=HOOKS,
        flush_interval=0.01,
        restart_initial=0.05,
        restart_max=0.2,
        counters_every=0.05,
    )
    names = [f"dev-{i:03d}" for i in range(60)]
    with SqliteStore(path) as store:
        async with receiver() as got, worked(store, config) as (server, webhooks, export):
            await webhooks.add(got.url, ["REGISTRATION"])
            await asyncio.sleep(0.05)
            await register_devices(server, names[:20])
            first = export.pid
            assert first is not None
            # Idle before it is stopped: a worker stopped inside its write to the SQLite file would
            # hold the file's write lock until it dies, and the server's writes would wait for it.
            await until(lambda: endpoints(got) == set(names[:20]) and export.counters.queue == 0)
            await asyncio.sleep(0.1)  # its last acknowledgements written
            # Stopped first, so that some batches are sent to it and not acknowledged when it dies.
            os.kill(first, signal.SIGSTOP)
            await register_devices(server, names[20:30])
            await until(lambda: export.counters.queue > 0)
            os.kill(first, signal.SIGKILL)
            await register_devices(server, names[30:40])
            await until(lambda: export.pid not in (None, first), timeout=10)
            await register_devices(server, names[40:])
            await until(lambda: endpoints(got) == set(names), timeout=20)
            assert export.counters.restarts >= 1 and export.counters.dropped == 0
            # An event posted twice (written by the killed worker, sent again to the new one)
            # has the same delivery id each time: the receiver dedupes by it.
            ids: dict[str, set[str]] = {}
            for post in got.posts:
                ids.setdefault(json.loads(post.body)["data"]["endpoint"], set()).add(
                    post.headers["x-lwm2m-delivery"]
                )
            assert all(len(seen) == 1 for seen in ids.values()), ids


async def test_a_stopped_worker_meets_a_bounded_queue_and_the_drops_are_counted() -> None:
    config = ExportConfig(
        webhooks=HOOKS, flush_interval=0.01, queue_batches=4, window=1, counters_every=0.05, restart_max=0.2
    )
    async with receiver() as got, worked(MemoryStore.create(), config) as (server, webhooks, export):
        await webhooks.add(got.url, ["REGISTRATION"])
        await asyncio.sleep(0.05)
        pid = export.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(8):  # one batch each: the flush runs between them
                await register_devices(server, [f"late-{i}"])
                await asyncio.sleep(0.03)
            await until(lambda: export.counters.dropped > 0)
            assert export.counters.queue <= 4
        finally:
            os.kill(pid, signal.SIGCONT)
        await until(lambda: export.counters.queue == 0)
        await until(lambda: "late-7" in endpoints(got))  # the newest were kept
        assert len(endpoints(got)) + export.counters.dropped == 8
        assert export.pid == pid  # stopped, not dead: the same worker


async def test_nothing_is_taken_from_the_server_while_no_hook_wants_events() -> None:
    async with worked(MemoryStore.create()) as (server, webhooks, _export):
        alone = len(server._subscribers)
        hook = await webhooks.add("http://127.0.0.1:9/x", ["SEND"])
        assert len(server._subscribers) == alone + 1
        await webhooks.remove(hook.hook_id)
        assert len(server._subscribers) == alone


async def test_the_worker_logs_into_the_server_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with worked(MemoryStore.create()) as (server, webhooks, _):
        await webhooks.add("http://127.0.0.1:9/refused", ["REGISTRATION"])
        await asyncio.sleep(0.05)
        await register_devices(server, ["dev-log"])
        await until(lambda: "export worker: webhooks: http://127.0.0.1:9/refused" in caplog.text)


async def test_the_counters_are_on_metrics() -> None:
    pytest.importorskip("prometheus_client")
    from lwm2m.export.metrics import MetricsConfig, ServerMetrics
    from lwm2m.web.app import create_app

    async with receiver() as got, Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        metrics = ServerMetrics(server, MetricsConfig(process=False))
        webhooks = Webhooks(server, server.store.webhooks, EVENT_NAMES, event_view, HOOKS, deliver=False)
        export = ExportWorker(server, FAST, webhooks)
        app = create_app(server, metrics=metrics, webhooks=webhooks, export=export)
        async with app.router.lifespan_context(app):
            await export.wait_ready()
            await webhooks.add(got.url, ["REGISTRATION"])
            await asyncio.sleep(0.05)
            await register_devices(server, ["dev-m"])
            await got.wait_for(1)
            await until(lambda: webhooks.counters.delivered == 1)
            text = metrics.exposition().decode()
            assert "lwm2m_export_events_total 1.0" in text
            assert "lwm2m_export_batches_total 1.0" in text
            assert "lwm2m_export_dropped_total 0.0" in text
            assert "lwm2m_export_worker_up 1.0" in text
            assert "lwm2m_webhook_delivered_total 1.0" in text
            assert "lwm2m_mqtt_published_total 0.0" in text


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="flush_interval"):
        ExportConfig(flush_interval=0)
    with pytest.raises(ConfigError, match="window"):
        ExportConfig(queue_batches=4, window=4)
    with pytest.raises(ConfigError, match="restart_initial"):
        ExportConfig(restart_initial=5, restart_max=1)


async def test_a_worker_that_cannot_set_up_is_started_again_and_says_why(
    tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    config = ExportConfig(
        store_url=f"sqlite://{tmp_path / 'no-such-folder' / 'lwm2m.db'}",
        webhooks=HOOKS,
        restart_initial=0.05,
        restart_max=0.1,
    )
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        webhooks = Webhooks(server, server.store.webhooks, EVENT_NAMES, event_view, HOOKS, deliver=False)
        export = ExportWorker(server, config, webhooks)
        await export.start()
        try:
            await until(lambda: export.counters.restarts >= 2, timeout=30)
            assert "export worker: the export worker failed" in caplog.text
            assert "no folder" in caplog.text
            assert not export.counters.worker_up
        finally:
            await export.close()


async def test_lwm2m_server_export_in_process(tmp_path: FsPath) -> None:
    from tests.helpers.cli import interrupt, line_with, lwm2m_process
    from tests.helpers.mosquitto import mosquitto
    from tests.helpers.ports import free_tcp_port, free_udp_port

    with mosquitto(tmp_path) as broker:
        coap, http = free_udp_port(), free_tcp_port()
        proc = await lwm2m_process(
            "server",
            "--coap-port",
            str(coap),
            "--http-port",
            str(http),
            "--store",
            "memory",
            "--mqtt-url",
            broker.url,
            "--export-in-process",
        )
        try:
            assert proc.stdout is not None
            seen: list[str] = []
            await line_with(proc.stdout, "Ctrl-C stops it.", seen)
            assert not any("export worker" in line for line in seen), seen
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}") as api:
                text = (await api.get("/metrics")).text
            assert "lwm2m_mqtt_published_total" in text and "lwm2m_export_events_total" not in text
        finally:
            await interrupt(proc)
        assert proc.returncode == 0


async def test_mqtt_through_the_worker_events_commands_and_counters(tmp_path: FsPath) -> None:
    aiomqtt = pytest.importorskip("aiomqtt")
    pytest.importorskip("prometheus_client")
    from tests.helpers.client import temperature
    from tests.helpers.mosquitto import mosquitto

    from lwm2m.client import Client
    from lwm2m.export.handoff_metrics import ExportCollector
    from lwm2m.export.metrics import MetricsConfig, ServerMetrics
    from lwm2m.export.mqtt import MqttConfig

    with mosquitto(tmp_path) as broker:
        mqtt = MqttConfig.from_url(broker.url, reconnect_initial=0.05, reconnect_max=0.2)
        config = ExportConfig(mqtt=mqtt, flush_interval=0.01, counters_every=0.05)
        async with (
            aiomqtt.Client("127.0.0.1", broker.port) as user,
            Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        ):
            await user.subscribe("lwm2m/#", qos=1)
            got: asyncio.Queue[tuple[str, dict[str, object]]] = asyncio.Queue()

            async def read() -> None:
                async for message in user.messages:
                    assert isinstance(message.payload, bytes)
                    got.put_nowait((str(message.topic), json.loads(message.payload)))

            async def expect(topic: str) -> dict[str, object]:
                async with asyncio.timeout(10):
                    while True:
                        seen, data = await got.get()
                        if seen == topic:
                            return data

            reader = asyncio.create_task(read())
            export = ExportWorker(server, config)
            metrics = ServerMetrics(server, MetricsConfig(process=False))
            metrics.register(ExportCollector(lambda: export.counters))
            await export.start()
            try:
                await export.wait_ready()
                await until(lambda: export.counters.mqtt_connected, timeout=10)
                temp = temperature()
                async with Client("mw-1", server.uri, [temp]) as client:
                    await client.wait_registered(5)
                    registered = await expect("lwm2m/mw-1/registered")
                    assert registered["event"] == "REGISTRATION" and registered["endpoint"] == "mw-1"
                    command = {"id": "o1", "op": "observe", "path": "/3303/0/5700"}
                    await user.publish("lwm2m/mw-1/cmd", json.dumps(command), qos=1)
                    reply = await expect("lwm2m/mw-1/reply")
                    assert reply["id"] == "o1" and reply["ok"] is True
                    temp.set(5700, 24.5)
                    notified = await expect("lwm2m/mw-1/notify/3303/0/5700")
                    assert notified["records"] == [{"path": "/3303/0/5700", "value": 24.5}]
                    export.publish("campaign", {"state": "started"})
                    fleet = await expect("lwm2m/$fleet/campaign")
                    assert fleet["state"] == "started" and float(fleet["receivedAt"]) > 0  # type: ignore[arg-type]
                await until(lambda: export.counters.published >= 5 and export.counters.mqtt_commands == 1)
                text = metrics.exposition().decode()
                assert "lwm2m_mqtt_connected 1.0" in text and "lwm2m_mqtt_commands_total 1.0" in text
                assert "lwm2m_mqtt_published_total 0.0" not in text
            finally:
                await export.close()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await reader


async def test_the_queue_in_front_of_a_stopped_worker_is_bounded_in_bytes_too() -> None:
    config = ExportConfig(
        webhooks=HOOKS, flush_interval=0.01, queue_bytes=1500, window=1, counters_every=0.05
    )
    async with receiver() as got, worked(MemoryStore.create(), config) as (server, webhooks, export):
        await webhooks.add(got.url, ["REGISTRATION"])
        await asyncio.sleep(0.05)
        pid = export.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(8):  # each batch of one registration is a few hundred bytes
                await register_devices(server, [f"big-{i}"])
                await asyncio.sleep(0.03)
            await until(lambda: export.counters.dropped > 0)
            assert export._queued <= 1500 or export.counters.queue == 1  # the one in flight stays
        finally:
            os.kill(pid, signal.SIGCONT)
        await until(lambda: export.counters.queue == 0)
        await until(lambda: "big-7" in endpoints(got))
        assert len(endpoints(got)) + export.counters.dropped == 8


async def test_batches_through_the_export_worker() -> None:
    async with receiver() as got, worked(MemoryStore.create()) as (server, webhooks, _):
        await webhooks.add(
            got.url, ["REGISTRATION"], "s", batch=(3, 2.0)
        )  # one post of 3, even if they come apart
        for i in range(3):
            await register_devices(server, [f"dev-{i}"])
        (post,) = await got.wait_for(1)
        events = json.loads(post.body)
        assert sorted(e["data"]["endpoint"] for e in events) == ["dev-0", "dev-1", "dev-2"]
        assert len({e["id"] for e in events}) == 3 and verify(
            "s", post.body, post.headers["x-lwm2m-signature"]
        )
        await until(lambda: webhooks.counters.delivered == 3)
