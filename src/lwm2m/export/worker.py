"""The export worker: the process the server starts (``python -m lwm2m.export.worker --fd N``,
by :class:`~lwm2m.export.handoff.ExportWorker`) to post webhooks and publish to MQTT off its
ingest path.

It reads the server's frames (:mod:`lwm2m.export.channel`) on the inherited socket: a
``Setup`` first, then batches of events, which it decodes, turns into their JSON forms
(:mod:`lwm2m.server.jsonform`), writes to the webhook outbox (the server's store opened again
from its URL, or an outbox of its own in memory) and queues for the broker; it acknowledges a
batch once its events are in the outbox and the broker acknowledged (or the bounded MQTT queue
dropped) each of its messages. It posts the outbox (:class:`~lwm2m.export.webhooks.Webhooks`)
and publishes (:class:`~lwm2m.export.mqtt.MqttExport`) as the in-process export does; the
MQTT commands it takes go to the server, whose answers come back to be published. Its log
records and counters go to the server. It ends when the server says ``Stop`` (after writing
what it holds) or closes the channel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lwm2m.errors import ExportChannelError, StoreError
from lwm2m.export.channel import (
    Ack,
    Batch,
    Command,
    Counters,
    FrameReader,
    Hooks,
    Log,
    Message,
    Publish,
    Ready,
    Reply,
    Setup,
    Stop,
    check_version,
    decode_events,
    frame,
)
from lwm2m.export.webhooks import WebhookConfig, Webhooks
from lwm2m.server.jsonform import EVENT_NAMES, event_view
from lwm2m.storage.base import Store
from lwm2m.storage.webhooks import MemoryWebhookStore, Webhook, WebhookStore
from lwm2m.transport.pipe import open_inherited

if TYPE_CHECKING:
    from lwm2m.export.mqtt import MqttExport

__all__ = ["main", "run_worker"]

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 3.0  # seconds the worker's close may take once the server said Stop or went


class _ChannelLog(logging.Handler):
    """Log records of this process, sent to the server's logging."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(Log(record.name, record.levelno, self.format(record)))
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _BatchAck:
    """A batch's parts not done yet (its webhook write, each of its MQTT messages); the last one
    done sends the acknowledgement."""

    __slots__ = ("_left", "_send", "seq")

    def __init__(self, seq: int, send: Callable[[Message], None]) -> None:
        self.seq = seq
        self._left = 1  # the batch itself, done once all its parts are taken
        self._send = send

    def part(self) -> Callable[[], None]:
        self._left += 1
        return self.done

    def done(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._send(Ack(self.seq))


class _Worker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.events = 0
        self.store: Store | None = None
        self.outbox: WebhookStore | None = None
        self.webhooks: Webhooks | None = None
        self.mqtt: MqttExport | None = None
        self._messages: list[Message] = []

    def send(self, message: Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(message))

    async def next_message(self) -> Message | None:
        while not self._messages:
            data = await self.reader.read(1 << 16)
            if not data:
                return None
            self._messages = self.frames.feed(data)
        return self._messages.pop(0)

    async def set_up(self, setup: Setup) -> None:
        if setup.webhooks is not None:
            if setup.store_url is not None:
                from lwm2m.storage.url import open_store

                self.store = open_store(setup.store_url)
                self.outbox = self.store.webhooks
            else:
                self.outbox = MemoryWebhookStore()
            config = WebhookConfig(**setup.webhooks)
            self.webhooks = Webhooks(None, self.outbox, EVENT_NAMES, event_view, config)
            await self.webhooks.start()
        if setup.mqtt is not None:
            from lwm2m.export.mqtt import MqttConfig, MqttExport

            forward = self._forward
            self.mqtt = MqttExport(None, MqttConfig(**setup.mqtt), forward=forward)
            await self.mqtt.start()

    def _forward(self, endpoint: str, payload: bytes) -> None:
        self.send(Command(endpoint, payload))

    async def hooks(self, message: Hooks) -> None:
        if self.webhooks is None or self.outbox is None:
            return
        if isinstance(self.outbox, MemoryWebhookStore):  # the server's hooks are ours to keep
            given = {hook.hook_id: hook for hook in map(Webhook.from_json, message.hooks)}
            for hook in await self.outbox.hooks():
                if hook.hook_id not in given:
                    await self.outbox.delete_hook(hook.hook_id)
            for hook in given.values():
                await self.outbox.put_hook(hook)
        await self.webhooks.refresh()

    async def batch(self, message: Batch) -> None:
        events = decode_events(message.events)
        self.events += len(events)
        ack = _BatchAck(message.seq, self.send)
        webhooks, mqtt, at = self.webhooks, self.mqtt, message.at
        prefix = f"{message.prefix}{message.seq & 0xFFFFFFFF:08x}"
        for i, event in enumerate(events):
            if webhooks is not None:
                webhooks.take(event, at, f"{prefix}{i:08x}")
            if mqtt is not None:
                done = ack.part()
                if not mqtt.take(event, at, done):
                    done()
        if webhooks is not None and not await webhooks.write():
            return  # not in the outbox: not acknowledged, the server keeps it
        ack.done()

    def counters(self) -> Counters:
        w, m = self.webhooks, self.mqtt
        return Counters(
            events=self.events,
            delivered=w.counters.delivered if w else 0,
            failed=w.counters.failed if w else 0,
            retried=w.counters.retried if w else 0,
            hook_dropped=w.counters.dropped if w else 0,
            outbox=w.counters.outbox if w else 0,
            published=m.published if m else 0,
            mqtt_dropped=m.dropped if m else 0,
            mqtt_pending=m.pending if m else 0,
            mqtt_connected=m.connected if m else False,
            mqtt_commands=m.commands if m else 0,
        )

    async def report(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.send(self.counters())

    async def close(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.close()  # writes what waits in memory
        if self.mqtt is not None:
            await self.mqtt.close()
        if self.store is not None:
            self.store.close()
        self.send(self.counters())
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        self.writer.close()


async def run_worker(fd: int) -> int:
    """Serve the server on the inherited socket ``fd`` until it says ``Stop`` or goes."""
    reader, writer = await open_inherited(fd)
    worker = _Worker(reader, writer)
    handler = _ChannelLog(worker.send)
    root = logging.getLogger()
    root.addHandler(handler)
    reporter: asyncio.Task[None] | None = None
    try:
        setup = await worker.next_message()
        if not isinstance(setup, Setup):
            raise ExportChannelError(f"the first message is a Setup, not {type(setup).__name__}")
        check_version(setup)
        logging.getLogger("lwm2m").setLevel(setup.log_level)
        await worker.set_up(setup)
        worker.send(Ready())
        reporter = asyncio.get_running_loop().create_task(worker.report(setup.counters_every))
        while (message := await worker.next_message()) is not None:
            if isinstance(message, Batch):
                await worker.batch(message)
            elif isinstance(message, Hooks):
                await worker.hooks(message)
            elif isinstance(message, Reply) and worker.mqtt is not None:
                worker.mqtt.reply(message.endpoint, message.body)
            elif isinstance(message, Publish) and worker.mqtt is not None:
                worker.mqtt.publish_body(message.kind, message.body, message.endpoint)
            elif isinstance(message, Stop):
                break
    except ExportChannelError:
        log.exception("the channel to the server broke")
        return 2
    except StoreError as exc:  # the store away (a Redis restart): said to the server, which starts anew
        log.warning("the export worker could not use the store: %s", exc)
        return 1
    except Exception:  # the store cannot be opened, a defect: said to the server, which starts anew
        log.exception("the export worker failed")
        return 1
    finally:
        if reporter is not None:
            reporter.cancel()
        # Bounded: a close that hangs (a broker or a store that never answers) must not keep a
        # worker alive after its server is gone; what it could not write in time is lost.
        closing = asyncio.ensure_future(worker.close())
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT)
        root.removeHandler(handler)
        if not done:
            log.warning("the export worker could not close within %g s: it leaves without", CLOSE_TIMEOUT)
            logging.shutdown()
            os._exit(3)  # a task that ignores cancellation would keep asyncio.run from returning
        with contextlib.suppress(Exception):
            closing.result()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the export worker of an lwm2m server")
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket to the server")
    args = parser.parse_args(argv)
    from lwm2m.transport.eventloop import run

    return run(run_worker(args.fd))


if __name__ == "__main__":
    raise SystemExit(main())
