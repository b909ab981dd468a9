"""Export off the ingest path: webhooks and MQTT run in a worker process that the server starts
and supervises; the server only hands the events over.

Server side (:class:`ExportWorker`, in the server's event loop):

- it subscribes to the server's events only while some hook or the MQTT export wants some,
  and looks at them every ``flush_interval`` seconds: the event types nobody wants are left,
  the others are encoded once per batch (MessagePack, :mod:`lwm2m.export.channel`, no JSON)
  and written to the worker over a Unix socket pair in length-prefixed frames;
- it keeps each batch until the worker acknowledges it (written to the webhook outbox and,
  for MQTT, acknowledged by the broker, or dropped from the worker's bounded MQTT queue) and
  sends the unacknowledged batches again to a worker started anew: at least once;
- in front of the worker, the batches waiting (sent or not) are bounded (``queue_batches``,
  ``queue_bytes``): when the worker is slow or stopped, the oldest not sent yet are dropped
  and counted, never more memory, and the loop never waits for the worker (a sender task
  does, ``window`` batches sent and not acknowledged at most);
- the worker that dies is started again after a back-off doubling from ``restart_initial``
  to ``restart_max``; it is stopped (``Stop``, then killed after ``stop_timeout``) with the
  server; its log records come back over the channel to the server's logging, and its
  counters every ``counters_every`` seconds (:class:`ExportCounters`, on ``/metrics``);
- the MQTT commands the worker takes come to the server, which carries them out through its
  own API (:class:`~lwm2m.export.mqtt.MqttCommands`) and sends the answer back to be
  published; webhooks registered through the REST API reach the worker as the list of hooks
  (``Hooks``) after each change.

Worker side: :mod:`lwm2m.export.worker`.

What a ``kill -9`` loses: of the server, the batches not yet acknowledged (events of at most
``flush_interval`` and those in flight to the worker); of the worker, nothing acknowledged
(the server sends again what the worker had not acknowledged, so a receiver may get an event
twice, with the same delivery id: a batch's events keep their ids when it is sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import secrets
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from lwm2m.errors import ConfigError, ExportChannelError
from lwm2m.export.channel import (
    EVENT_KINDS,
    WIRE_VERSION,
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
    encode_wanted,
    frame,
)
from lwm2m.export.webhooks import WebhookConfig, Webhooks
from lwm2m.server.events import EventTap, ObservationEnded, ServerEvent
from lwm2m.server.role import Server
from lwm2m.storage.webhooks import Webhook
from lwm2m.transport.pipe import spawn_with_stream

if TYPE_CHECKING:  # needs aiomqtt: imported only when MQTT is wanted
    from lwm2m.export.mqtt import MqttCommands, MqttConfig

__all__ = ["ExportConfig", "ExportCounters", "ExportWorker"]

_EVERY_KIND = frozenset(EVENT_KINDS)  # what the MQTT export wants: the handoff then filters nothing

log = logging.getLogger(__name__)

WRITE_LIMIT = 4 << 20  # bytes a stalled worker may leave in our write buffer for small messages


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """``store_url``: the store whose webhook outbox the worker opens (``sqlite://…``,
    ``redis://…``; None: an outbox in the worker's memory, for the memory store); ``webhooks``
    and ``mqtt``: their settings (``mqtt`` None: no MQTT export); ``flush_interval``: seconds
    between two looks at the events; ``batch_events``: events per batch at most;
    ``queue_batches`` and ``queue_bytes``: batches, and bytes of them, waiting for the worker's
    acknowledgement at most (beyond, the oldest not sent yet are dropped); ``window``: batches
    sent and not acknowledged at most;
    ``backlog``: events waiting between two looks at most (the oldest dropped beyond);
    ``restart_initial``/``restart_max``: the back-off, seconds, before a dead worker is started
    again; ``ready_timeout``: seconds a new worker may take to set up;
    ``stop_timeout``: seconds a stopping worker may take before it is killed;
    ``counters_every``: seconds between two reports of the worker's counters; ``python``: the
    interpreter that runs the worker."""

    store_url: str | None = None
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    mqtt: MqttConfig | None = None
    flush_interval: float = 0.03
    batch_events: int = 4096
    queue_batches: int = 256
    queue_bytes: int = 32 << 20
    window: int = 16
    backlog: int = 200_000
    restart_initial: float = 0.2
    restart_max: float = 10.0
    ready_timeout: float = 30.0
    stop_timeout: float = 4.0
    counters_every: float = 1.0
    python: str = sys.executable

    def __post_init__(self) -> None:
        seconds = {
            "flush_interval": self.flush_interval,
            "restart_initial": self.restart_initial,
            "restart_max": self.restart_max,
            "ready_timeout": self.ready_timeout,
            "stop_timeout": self.stop_timeout,
            "counters_every": self.counters_every,
        }
        for name, value in seconds.items():
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}: {value!r} must be a positive number of seconds")
        if self.restart_initial > self.restart_max:
            raise ConfigError("restart_initial must not exceed restart_max")
        if not 0 < self.window < self.queue_batches:
            raise ConfigError(f"window {self.window}: at least 1 and less than queue_batches")
        for name, count in (
            ("batch_events", self.batch_events),
            ("queue_batches", self.queue_batches),
            ("queue_bytes", self.queue_bytes),
            ("backlog", self.backlog),
        ):
            if count < 1:
                raise ConfigError(f"{name} {count}: at least 1")


@dataclass(slots=True)
class ExportCounters:
    """Since the server started. Handoff: ``events`` handed to the worker, ``batches`` sent,
    ``dropped`` events lost before the worker had them (the queue in front of it full, or the
    subscription's backlog), ``queue`` batches waiting for its acknowledgement (gauge),
    ``restarts`` of the worker, ``worker_up``. MQTT (reported by the worker): ``published``
    messages the broker acknowledged, ``mqtt_dropped`` (its queue full), ``mqtt_pending``
    (gauge), ``mqtt_connected``, ``mqtt_commands`` taken."""

    events: int = 0
    batches: int = 0
    dropped: int = 0
    queue: int = 0
    restarts: int = 0
    worker_up: bool = False
    published: int = 0
    mqtt_dropped: int = 0
    mqtt_pending: int = 0
    mqtt_connected: bool = False
    mqtt_commands: int = 0


class ExportWorker:
    """The export worker of ``server``: started by :meth:`start`, stopped by :meth:`close`.

    ``webhooks``, the server's registrations (made with ``deliver=False``), say which event
    types the hooks want; the worker posts to them. ``config.mqtt`` turns the MQTT export on."""

    def __init__(self, server: Server, config: ExportConfig, webhooks: Webhooks | None = None) -> None:
        if webhooks is not None and webhooks.deliver:
            raise ConfigError("the export worker posts the webhooks: make them with deliver=False")
        self.server = server
        self.config = config
        self.webhooks = webhooks
        self.counters = ExportCounters()
        self.pid: int | None = None  # the worker's process id while it runs
        self._mqtt_types: frozenset[type] = _EVERY_KIND if config.mqtt is not None else frozenset()
        self._wanted: frozenset[type] = self._mqtt_types
        self._tap: EventTap | None = None
        self._backlog_dropped = 0  # of the tap, counted already
        self._seq = 0
        self._id_prefix = secrets.token_hex(8)  # the delivery ids of this run's events begin with it
        self._pending: dict[int, tuple[int, bytes]] = {}  # seq -> (events, frame), oldest first
        self._queued = 0  # bytes of the frames in _pending
        self._unsent: deque[int] = deque()
        self._inflight: set[int] = set()  # sent to the worker, not acknowledged yet
        self._wake = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._hooks: list[Webhook] = []
        self._base = Counters()  # the totals of the workers before this one
        self._last = Counters()
        self._commands: MqttCommands | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._ready = asyncio.Event()
        if webhooks is not None:
            webhooks.watch(self._hooks_changed)

    # --- running --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        if self.config.mqtt is not None and self.config.mqtt.commands:
            from lwm2m.export.mqtt import MqttCommands  # needs aiomqtt, as the MQTT export does

            self._commands = MqttCommands(self.server, self.config.mqtt, self._reply)
        self._follow()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise()), loop.create_task(self._flush_loop())]

    async def close(self) -> None:
        """Hand over what waits, stop the worker (it writes and publishes what it holds), stop."""
        if not self._tasks:
            return
        self._flush()
        self._stopping = True
        if self._tap is not None:
            self._tap.close()
            self._tap = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.stop_timeout / 2):
                while self._pending and self._writer is not None:  # acknowledged before the stop
                    await asyncio.sleep(0.01)
        supervisor, flusher = self._tasks
        self._tasks = []
        writer = self._writer
        if writer is None:  # no worker takes messages (one starting, or none): ended at once
            supervisor.cancel()
        else:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(frame(Stop()))
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        try:
            async with asyncio.timeout(self.config.stop_timeout):
                await asyncio.shield(supervisor)
        except TimeoutError:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        except asyncio.CancelledError:
            if not supervisor.cancelled():
                raise
        if self._commands is not None:
            await self._commands.close()

    async def wait_ready(self) -> None:
        """Return once a worker runs and takes batches."""
        await self._ready.wait()

    # --- the events -----------------------------------------------------------------------------

    def _hooks_changed(self, hooks: list[Webhook]) -> None:
        if hooks == self._hooks:  # read again, unchanged
            return
        self._hooks = hooks
        names = {name for hook in hooks for name in hook.events}
        assert self.webhooks is not None
        by_name = self.webhooks.names
        self._wanted = self._mqtt_types | {cls for cls, name in by_name.items() if name in names}
        self._follow()
        self._send_now(Hooks([hook.to_json() for hook in hooks]))

    def _follow(self) -> None:
        """Subscribed to the server's events only while some are wanted: with none, the server
        has no subscriber more to feed per event."""
        if self._stopping:
            return
        if self._wanted and self._tap is None:
            self._tap = self.server.tap_events(limit=self.config.backlog)
            self._backlog_dropped = 0
        elif not self._wanted and self._tap is not None:
            self._tap.close()
            self._tap = None

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            try:
                self._flush()
            except Exception:  # a defect: logged, and the handoff goes on
                log.exception("export: a batch of events could not be handed over")

    def _flush(self) -> None:
        """The events since the last look, wanted ones only, into batches for the worker."""
        tap = self._tap
        if tap is None:
            return
        events = tap.take_all()
        if tap.dropped != self._backlog_dropped:
            self.counters.dropped += tap.dropped - self._backlog_dropped
            self._backlog_dropped = tap.dropped
        if not events:
            return
        # One pass over them: the filter (none when every kind is wanted) in the encoding.
        wanted = None if self._wanted == _EVERY_KIND else self._wanted
        ended: list[ObservationEnded] | None = [] if self._commands is not None else None
        size = self.config.batch_events
        at = time.time()
        for start in range(0, len(events), size):
            self._queue(events[start : start + size], at, wanted, ended)
        if ended and self._commands is not None:
            for e in ended:
                self._commands.forget(e.endpoint, e.token)

    def _queue(
        self,
        events: list[ServerEvent],
        at: float,
        wanted: frozenset[type] | None = None,
        ended: list[ObservationEnded] | None = None,
    ) -> None:
        """Those of ``events`` whose type is ``wanted`` (all when None) as one batch."""
        encoded, count = encode_wanted(events, wanted, ended)
        if not count:
            return
        self._seq += 1
        seq = self._seq
        batch = Batch(self._id_prefix, seq, at, count, encoded)
        data = frame(batch)
        self._pending[seq] = (count, data)
        self._queued += len(data)
        self._unsent.append(seq)
        self.counters.events += count
        self.counters.batches += 1
        config = self.config
        if len(self._pending) > config.queue_batches or self._queued > config.queue_bytes:
            # The oldest batches not sent yet go: those in flight stay, to be sent again to a
            # new worker (queue_batches > window: there is always one not sent to drop).
            lost = 0
            for old in [s for s in self._pending if s not in self._inflight]:
                if len(self._pending) <= config.queue_batches and self._queued <= config.queue_bytes:
                    break
                events_lost, dropped = self._pending.pop(old)
                self._queued -= len(dropped)
                lost += events_lost
            self.counters.dropped += lost
            log.warning(
                "export: %d events dropped: %d batches (%d bytes) wait for the worker already",
                lost,
                len(self._pending),
                self._queued,
            )
        self.counters.queue = len(self._pending)
        self._wake.set()

    # --- the worker -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.config.restart_initial
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_worker()
            except (ConnectionError, TimeoutError) as exc:  # it died, or did not set up in time
                log.warning("export: the worker's channel: %s", str(exc) or type(exc).__name__)
            except Exception:
                log.exception("export: the worker could not be run")
            self._ready.clear()
            self.counters.worker_up = False
            if self._stopping:
                break
            self.counters.restarts += 1
            if time.monotonic() - started > 30 * self.config.restart_max:
                delay = self.config.restart_initial  # it ran long: start again soon
            log.warning("export: the worker stopped; started again in %.1f s", delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.restart_max)

    def _setup(self) -> Setup:
        config = self.config
        return Setup(
            config.store_url,
            dataclasses.asdict(config.webhooks) if self.webhooks is not None else None,
            dataclasses.asdict(config.mqtt) if config.mqtt is not None else None,
            config.counters_every,
            logging.getLogger("lwm2m").getEffectiveLevel(),
            WIRE_VERSION,
        )

    async def _run_worker(self) -> None:
        argv = [self.config.python, "-m", "lwm2m.export.worker"]
        process, reader, writer = await spawn_with_stream(argv)
        self.pid = process.pid
        tasks: list[asyncio.Task[None]] = []
        try:
            writer.write(frame(self._setup()))
            writer.write(frame(Hooks([hook.to_json() for hook in self._hooks])))
            frames = FrameReader()
            async with asyncio.timeout(self.config.ready_timeout):
                while not any(isinstance(m, Ready) for m in await self._read(reader, frames)):
                    pass
            # A new worker: whatever the last one did not acknowledge goes again, in order.
            self._unsent = deque(self._pending)
            self._inflight.clear()
            self._wake.set()
            self._writer = writer
            self._ready.set()
            self.counters.worker_up = True
            log.info("export: worker %d runs", process.pid)
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self._send(writer)), loop.create_task(self._receive(reader, frames))]
            done, _ = await asyncio.wait(
                [*tasks, loop.create_task(process.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if not task.cancelled() and isinstance(task.exception(), ExportChannelError):
                    log.error("export: %s", task.exception())
        finally:
            self._writer = None
            self._base = _added(self._base, self._last)
            self._last = Counters()
            for task in tasks:
                task.cancel()
            writer.close()
            if process.returncode is None:
                try:
                    async with asyncio.timeout(self.config.stop_timeout if self._stopping else 0.5):
                        await process.wait()
                except TimeoutError:  # it does not end by itself (stopped, stuck): killed
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                except asyncio.CancelledError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                    raise
            if process.returncode not in (0, None) and not self._stopping:
                log.warning("export: worker %d ended with status %s", process.pid, process.returncode)
            self.pid = None

    async def _read(self, reader: asyncio.StreamReader, frames: FrameReader) -> list[Message]:
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("the export worker closed its channel")
        messages = frames.feed(data)
        for message in messages:
            self._on_message(message)
        return messages

    async def _receive(self, reader: asyncio.StreamReader, frames: FrameReader) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await self._read(reader, frames)

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        pending, inflight, window = self._pending, self._inflight, self.config.window
        with contextlib.suppress(ConnectionError):
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._unsent and len(inflight) < window:
                    seq = self._unsent.popleft()
                    entry = pending.get(seq)
                    if entry is not None:  # else dropped meanwhile
                        inflight.add(seq)
                        writer.write(entry[1])
                        await writer.drain()

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Ack):
            done = self._pending.pop(message.seq, None)
            if done is not None:
                self._queued -= len(done[1])
            self._inflight.discard(message.seq)
            self.counters.queue = len(self._pending)
            self._wake.set()
        elif isinstance(message, Counters):
            self._report(message)
        elif isinstance(message, Command):
            if self._commands is not None:
                self._commands.take(message.endpoint, message.payload)
        elif isinstance(message, Log):
            logging.getLogger(message.logger).log(message.level, "export worker: %s", message.message)

    def _report(self, latest: Counters) -> None:
        self._last = latest
        total = _added(self._base, latest)
        c = self.counters
        c.published, c.mqtt_dropped = total.published, total.mqtt_dropped
        c.mqtt_commands = total.mqtt_commands
        c.mqtt_pending, c.mqtt_connected = latest.mqtt_pending, latest.mqtt_connected
        if self.webhooks is not None:
            w = self.webhooks.counters
            w.delivered, w.failed, w.retried = total.delivered, total.failed, total.retried
            w.dropped, w.outbox = total.hook_dropped, latest.outbox

    # --- small messages -------------------------------------------------------------------------

    def _reply(self, endpoint: str, body: bytes) -> None:
        self._send_now(Reply(endpoint, body))

    def publish(self, kind: str, data: Mapping[str, Any], endpoint: str | None = None) -> None:
        """An event of another part of the server (a campaign's progress, ...) for the MQTT
        export, as :meth:`lwm2m.export.mqtt.MqttExport.publish` takes it."""
        if self.config.mqtt is not None:
            body = msgspec.json.encode({**data, "receivedAt": round(time.time(), 3)})
            self._send_now(Publish(kind, endpoint, body))

    def _send_now(self, message: Message) -> None:
        """A small message, written at once when a worker runs (the list of hooks also goes to
        each new worker; a reply for a worker that is gone, or stalled, is lost)."""
        writer = self._writer
        if writer is None or writer.transport.get_write_buffer_size() > WRITE_LIMIT:
            if isinstance(message, Reply | Publish):
                log.warning("export: no worker takes messages now: a %s is lost", type(message).__name__)
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(frame(message))


def _added(a: Counters, b: Counters) -> Counters:
    """The counts of ``a`` and ``b`` added (the gauges are ``b``'s)."""
    return Counters(
        events=a.events + b.events,
        delivered=a.delivered + b.delivered,
        failed=a.failed + b.failed,
        retried=a.retried + b.retried,
        hook_dropped=a.hook_dropped + b.hook_dropped,
        outbox=b.outbox,
        published=a.published + b.published,
        mqtt_dropped=a.mqtt_dropped + b.mqtt_dropped,
        mqtt_pending=b.mqtt_pending,
        mqtt_connected=b.mqtt_connected,
        mqtt_commands=a.mqtt_commands + b.mqtt_commands,
    )
