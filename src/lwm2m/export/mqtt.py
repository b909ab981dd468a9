"""The server's events published to an MQTT broker, and device commands taken from it.

``lwm2m server --mqtt-url mqtt://[user:pass@]host[:1883][/prefix]`` (``mqtts://`` for TLS,
port 8883 by default) connects the server to a broker as one MQTT client (MQTT 3.1.1) and

- publishes every server event, QoS 1, under ``{prefix}/{ep}/...`` (the prefix is ``lwm2m``
  unless the URL's path names one):

  ======================================  =============================================
  topic                                   event
  ======================================  =============================================
  ``lwm2m/{ep}/registered``               Register (LwM2M-TS-Core 1.2 §6.2.1)
  ``lwm2m/{ep}/updated``                  Update (§6.2.2)
  ``lwm2m/{ep}/deregistered``             De-register (§6.2.3)
  ``lwm2m/{ep}/expired``                  its lifetime ran out
  ``lwm2m/{ep}/awake``, ``.../asleep``    a queue-mode client reachable or not (§6.5)
  ``lwm2m/{ep}/notify/{path}``            a notification of ``/{path}`` (§6.4.2);
                                          ``.../notify/composite`` for Observe-Composite
  ``lwm2m/{ep}/observation-ended``        an observation ended (cancelled, failed, ...)
  ``lwm2m/{ep}/send``                     values the client pushed with Send (§6.4.6)
  ``lwm2m/{ep}/reply``                    the answer to a command (below)
  ``lwm2m/$fleet/{kind}``                 fleet-wide events of :meth:`MqttExport.publish`
  ======================================  =============================================

  The payloads are the JSON of the REST API's event stream (``/api/events``: the same keys,
  records as ``{"path", "value", "time"}``) with ``"event"`` (its SSE name,
  ``REGISTRATION``, ``NOTIFICATION``, ...) and ``"receivedAt"`` (Unix time) added. An
  endpoint name is one topic level: ``%``, ``/``, ``+``, ``#``, ``$`` and NUL in it are
  written ``%25``, ``%2F``, ``%2B``, ``%23``, ``%24``, ``%00`` (:func:`topic_level`).

- takes commands published to ``{prefix}/{ep}/cmd``: a JSON object ``{"id", "op", "path",
  ...}`` whose ``op`` is ``read``, ``discover``, ``write`` (``value`` with ``type`` when the
  resource has no model, or ``records``; ``replace``, default true), ``create``
  (``records``), ``delete``, ``execute`` (``args``), ``write-attributes`` (``attributes``:
  ``{"pmin": 10, "gt": null}``, null removes), ``observe`` and ``cancel`` (``active``);
  ``format`` and ``timeout`` (seconds) are optional. The answer goes to
  ``{prefix}/{ep}/reply`` with the command's ``id``: ``{"id", "ok": true, "result": {"code":
  "2.05", "records": [...], ...}}`` (the device's answer, as the REST API gives it, whatever
  its code), or ``{"id", "ok": false, "error": {"type", "message"}}`` when the command could
  not be carried out (not JSON, an unknown ``op``, no such client, a timeout ...). A command
  for a sleeping queue-mode client waits for it to wake, up to its ``timeout``. In a cluster
  (a shared store) every node has every command and the node serving the device carries it
  out and answers; a command for a device no node serves gets no answer there.

Commands are as strong as the REST API: let only the trusted publish to ``{prefix}/+/cmd``
(the broker's access control lists), or turn them off (``commands=False``,
``--no-mqtt-commands``).

Nothing on the server's ingest path waits for the broker: a task takes the events from the
server's event stream into a bounded queue in memory (``MqttConfig.queue_size``), which
another task publishes from, ``window`` messages awaiting their PUBACK at once; an event is
turned into its topic and JSON only when its turn to be published comes. While the broker
cannot be reached, the queue keeps the newest messages: the oldest are dropped and counted
(``MqttExport.dropped``); a message published but not acknowledged when the connection broke
is published again (at least once). The connection is made again with a back-off doubling
from ``reconnect_initial`` to ``reconnect_max`` seconds.

This module needs ``aiomqtt`` (``pip install 'lwm2m[mqtt]'``): import it only when MQTT is
wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from lwm2m.errors import ConfigError, LwM2MError, MqttCommandError, ObserveRefused
from lwm2m.model.jsonform import records_from_json, typed_from_json
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.events import (
    ClientAwake,
    ClientDeregistered,
    ClientRegistered,
    ClientSleeping,
    ClientUpdated,
    NotificationReceived,
    ObservationEnded,
    RegistrationExpired,
    SendReceived,
    ServerEvent,
)
from lwm2m.server.jsonform import event_view, response_view
from lwm2m.server.management import DEFAULT_TIMEOUT
from lwm2m.server.observation import ServerObservation
from lwm2m.server.role import Server

__all__ = [
    "COMMANDS",
    "FLEET_LEVEL",
    "MqttCommands",
    "MqttConfig",
    "MqttExport",
    "event_message",
    "topic_level",
]

log = logging.getLogger(__name__)

FLEET_LEVEL = "$fleet"  # the topic level of events of no one device (an endpoint's "$" is escaped)
# The topic level of each event type and its name on the REST API's event stream.
# The topic level of each kind of event (its name is the event stream's, EVENT_NAMES).
_LEVELS: dict[type, str] = {
    ClientRegistered: "registered",
    ClientUpdated: "updated",
    ClientDeregistered: "deregistered",
    RegistrationExpired: "expired",
    ClientAwake: "awake",
    ClientSleeping: "asleep",
    NotificationReceived: "notify",
    ObservationEnded: "observation-ended",
    SendReceived: "send",
}
_ESCAPES = {"%": "%25", "/": "%2F", "+": "%2B", "#": "%23", "$": "%24", "\0": "%00"}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def topic_level(name: str) -> str:
    """``name`` as one MQTT topic level: the characters that would split it or act as a
    wildcard (MQTT 3.1.1 §4.7) percent-escaped, and ``$`` (topics of the broker begin with
    it), so that :data:`FLEET_LEVEL` is no endpoint's level."""
    return name.translate(_ESCAPE_TABLE)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where the broker is and how the export behaves.

    ``prefix``: the first topic level(s); ``client_id``: the MQTT client identifier (default:
    ``lwm2m-server-`` and a random part); ``queue_size``: messages kept while they cannot be
    published, the oldest dropped beyond; ``window``: QoS 1 messages awaiting their PUBACK at
    once; ``reconnect_initial``/``reconnect_max``: the back-off, seconds, between connection
    attempts; ``commands``: take commands on ``{prefix}/+/cmd``; ``max_commands``: commands
    carried out at once (one more is answered with an error); ``command_timeout``: seconds a
    device operation may take when the command gives no ``timeout``."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    prefix: str = "lwm2m"
    client_id: str | None = None
    queue_size: int = 10_000
    window: int = 100
    keepalive: int = 30
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    commands: bool = True
    max_commands: int = 64
    command_timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("the MQTT broker's host is missing")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port}: between 1 and 65535")
        levels = self.prefix.split("/")
        if not self.prefix or any(not level or set(level) & set("+#\0") for level in levels):
            raise ConfigError(f"prefix {self.prefix!r}: topic levels without '+', '#' or empty ones")
        if self.prefix.startswith("$"):
            raise ConfigError(f"prefix {self.prefix!r}: topics beginning with '$' are the broker's")
        for name, value in (("queue_size", self.queue_size), ("window", self.window)):
            if value < 1:
                raise ConfigError(f"{name} {value}: at least 1")
        if self.max_commands < 1:
            raise ConfigError(f"max_commands {self.max_commands}: at least 1")
        if not 0 < self.reconnect_initial <= self.reconnect_max or not math.isfinite(self.reconnect_max):
            raise ConfigError("reconnect_initial and reconnect_max: 0 < initial <= max, finite")
        if not 0 < self.command_timeout < math.inf:
            raise ConfigError(f"command_timeout {self.command_timeout!r}: a positive number of seconds")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MqttConfig:
        """``mqtt://[user[:password]@]host[:port][/prefix]``, or ``mqtts://`` (TLS, port 8883 by
        default, the system's authorities); user and password percent-decoded."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"MQTT URL {shown_url(url)}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"MQTT URL {shown_url(url)}: the scheme is mqtt:// or mqtts://")
        if "?" in url or "#" in url:
            raise ConfigError(f"MQTT URL {shown_url(url)}: no query or fragment (a topic has no wildcard)")
        tls = scheme == "mqtts"
        prefix = unquote(parts.path.strip("/")) or "lwm2m"
        try:
            return cls(
                host=parts.hostname or "",
                port=port if port is not None else (8883 if tls else 1883),
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password is not None else None,
                tls=tls,
                prefix=prefix,
                **options,
            )
        except ConfigError as exc:
            raise ConfigError(f"MQTT URL {shown_url(url)}: {exc}") from None


def shown_url(url: str) -> str:
    """``url`` with its password hidden, to be logged or printed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()


# --- the JSON of the events (as lwm2m.web.shapes gives the event stream) -------------------------


def event_message(event: ServerEvent, prefix: str = "lwm2m") -> tuple[str, dict[str, Any]]:
    """The topic and the JSON data of ``event`` (without ``receivedAt``): the event stream's
    form (:func:`lwm2m.server.jsonform.event_view`) with its name as ``event``."""
    name, view = event_view(event)
    endpoint = view["endpoint"]
    topic = f"{prefix}/{topic_level(endpoint)}/{_LEVELS[type(event)]}"
    if isinstance(event, NotificationReceived):
        below = str(event.paths[0]).strip("/") if len(event.paths) == 1 else "composite"
        topic = f"{topic}/{below}" if below else topic
    return topic, {"event": name, **view}


def _payload(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# --- commands -------------------------------------------------------------------------------------


def _path(command: Mapping[str, Any]) -> Path:
    raw = command.get("path")
    if not isinstance(raw, str):
        raise MqttCommandError('"path": a string like "/3/0/1" is needed')
    return Path.parse(raw)


def _timeout(command: Mapping[str, Any], default: float) -> float:
    raw = command.get("timeout", default)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < math.inf:
        raise MqttCommandError(f'"timeout": {raw!r} is not a positive number of seconds')
    return float(raw)


def _format(command: Mapping[str, Any]) -> int | str | None:
    raw = command.get("format")
    if raw is None or isinstance(raw, str) or (isinstance(raw, int) and not isinstance(raw, bool)):
        return raw
    raise MqttCommandError(f'"format": {raw!r} is not a content format number or name')


def _flag(command: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = command.get(name, default)
    if not isinstance(raw, bool):
        raise MqttCommandError(f'"{name}": {raw!r} is not true or false')
    return raw


def _records(command: Mapping[str, Any], server: Server) -> list[Record]:
    if "records" not in command:
        raise MqttCommandError('"records": [{"path": ..., "value": ...}, ...] is needed')
    return records_from_json(command["records"], server.models)


def _write_records(command: Mapping[str, Any], path: Path, server: Server) -> list[Record]:
    if "value" not in command:
        return _records(command, server)
    if "records" in command:
        raise MqttCommandError('give either "value" or "records", not both')
    if not (path.is_resource or path.is_resource_instance):
        raise MqttCommandError(f'"value" writes one resource; {path} is not a resource')
    assert path.object_id is not None and path.resource_id is not None
    definition = server.models.resource(path.object_id, path.resource_id)
    model = definition.type if definition else None
    return [Record(path, typed_from_json(command["value"], command.get("type"), model, str(path)))]


Operation = Callable[["MqttCommands", str, Mapping[str, Any], float], Awaitable[dict[str, Any]]]


async def _read(commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float) -> dict[str, Any]:
    answer = await commands.server.read(ep, _path(command), format=_format(command), timeout=wait)
    return response_view(answer)


async def _discover(
    commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float
) -> dict[str, Any]:
    return response_view(await commands.server.discover(ep, _path(command), timeout=wait))


async def _write(commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float) -> dict[str, Any]:
    path = _path(command)
    records = _write_records(command, path, commands.server)
    replace = _flag(command, "replace", True)  # false: a partial update (§6.3.3)
    fmt = _format(command)
    return response_view(
        await commands.server.write(ep, path, records, replace=replace, format=fmt, timeout=wait)
    )


async def _create(commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float) -> dict[str, Any]:
    path = _path(command)
    records = _records(command, commands.server) if "records" in command else []
    return response_view(
        await commands.server.create(ep, path, records, format=_format(command), timeout=wait)
    )


async def _delete(commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float) -> dict[str, Any]:
    return response_view(await commands.server.delete(ep, _path(command), timeout=wait))


async def _execute(
    commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float
) -> dict[str, Any]:
    args = command.get("args", "")
    if not isinstance(args, str):
        raise MqttCommandError(f'"args": {args!r} is not a string like "0=\'x\',1"')
    return response_view(await commands.server.execute(ep, _path(command), args, timeout=wait))


async def _write_attributes(
    commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float
) -> dict[str, Any]:
    given = command.get("attributes")
    if not isinstance(given, dict) or not given:
        raise MqttCommandError('"attributes": an object like {"pmin": 10, "gt": null} is needed')
    return response_view(await commands.server.write_attributes(ep, _path(command), given, timeout=wait))


async def _observe(
    commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float
) -> dict[str, Any]:
    path = _path(command)
    try:
        observation = await commands.server.observe(ep, path, format=_format(command), timeout=wait)
    except ObserveRefused as exc:
        return response_view(exc.response)
    await commands.keep(ep, path, observation)
    assert observation.response is not None  # a new observation has its first answer
    return {**response_view(observation.response), "token": observation.token.hex()}


async def _cancel(commands: MqttCommands, ep: str, command: Mapping[str, Any], wait: float) -> dict[str, Any]:
    path = _path(command)
    active = _flag(command, "active", False)
    if not await commands.cancel(ep, path, active=active, timeout=wait):
        raise MqttCommandError(f"no observation of {path} on {ep!r} made by a command")
    return {"cancelled": str(path), "active": active}


COMMANDS: dict[str, Operation] = {
    "read": _read,
    "discover": _discover,
    "write": _write,
    "create": _create,
    "delete": _delete,
    "execute": _execute,
    "write-attributes": _write_attributes,
    "observe": _observe,
    "cancel": _cancel,
}


# --- the export -----------------------------------------------------------------------------------


Done = Callable[[], None]  # called once a message is acknowledged by the broker, or dropped


def _nothing() -> None:
    return None


class _Event:
    """A server event waiting in the queue as it came: turned into its topic and JSON only when
    it is published, so that an event dropped from a full queue costs no encoding."""

    __slots__ = ("at", "done", "event")

    def __init__(self, event: ServerEvent, at: float, done: Done = _nothing) -> None:
        self.event = event
        self.at = at
        self.done = done

    def message(self, prefix: str) -> tuple[str, bytes]:
        topic, data = event_message(self.event, prefix)
        data["receivedAt"] = round(self.at, 3)
        return topic, _payload(data)


class _Ready:
    """A message with its topic and payload made already (a reply, a fleet event, one given back)."""

    __slots__ = ("done", "payload", "topic")

    def __init__(self, topic: str, payload: bytes, done: Done = _nothing) -> None:
        self.topic = topic
        self.payload = payload
        self.done = done

    def message(self, prefix: str) -> tuple[str, bytes]:
        return self.topic, self.payload


_Item = _Ready | _Event


class _Outbox:
    """Messages waiting for the broker, oldest first, at most ``size``: beyond, the oldest is
    dropped and counted."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.dropped = 0
        self._items: deque[_Item] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: _Item) -> None:
        self._items.append(item)
        self._trim()
        self._ready.set()

    def take(self, count: int) -> list[_Item]:
        items = self._items
        batch = [items.popleft() for _ in range(min(count, len(items)))]
        if not items:
            self._ready.clear()
        return batch

    def give_back(self, batch: list[_Item]) -> None:
        """Messages taken and not acknowledged: first again, before those that came since."""
        self._items.extendleft(reversed(batch))
        self._trim()
        if self._items:
            self._ready.set()

    def _trim(self) -> None:
        while len(self._items) > self.size:
            self._items.popleft().done()  # dropped: nobody waits for it any more
            self.dropped += 1

    async def wait(self) -> None:
        await self._ready.wait()


Forward = Callable[[str, bytes], None]  # a command's endpoint and payload, to another process


class MqttExport:
    """One server's events to an MQTT broker, and the commands of its ``cmd`` topics to the
    server (see the module's documentation). ``start()`` (or ``async with``) subscribes to
    the server's events and starts connecting; ``close()`` stops, dropping what was not
    published.

    Without a ``server`` (the export worker, :mod:`lwm2m.export.worker`), events come through
    :meth:`take` and each command goes to ``forward``; its answer comes back to :meth:`reply`."""

    def __init__(self, server: Server | None, config: MqttConfig, *, forward: Forward | None = None) -> None:
        self.server = server
        self.config = config
        self.client_id = config.client_id or f"lwm2m-server-{uuid.uuid4().hex[:12]}"
        self.connected = False
        self.connections = 0  # connections made to the broker so far
        self.published = 0  # messages the broker acknowledged
        self._outbox = _Outbox(config.queue_size)
        self._inflight = 0  # messages published and not acknowledged yet
        self._tasks: list[asyncio.Task[None]] = []
        self._forward = forward
        self._commands = MqttCommands(server, config, self.reply) if server is not None else None
        self._forwarded = 0  # commands handed to ``forward``
        self._tls = ssl.create_default_context() if config.tls else None

    @property
    def commands(self) -> int:
        """Commands taken (answered or not yet)."""
        return self._commands.taken if self._commands is not None else self._forwarded

    @property
    def dropped(self) -> int:
        """Messages lost because ``queue_size`` newer ones waited for the broker."""
        return self._outbox.dropped

    @property
    def pending(self) -> int:
        """Messages waiting to be published or for their PUBACK."""
        return len(self._outbox) + self._inflight

    async def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._connect())]
        if self.server is not None:
            self._tasks.append(loop.create_task(self._follow(self.server.events())))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._commands is not None:
            await self._commands.close()
        self.connected = False

    async def __aenter__(self) -> MqttExport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- publishing ------------------------------------------------------------------------------

    def publish(self, kind: str, data: Mapping[str, Any], endpoint: str | None = None) -> None:
        """Queue an event of another part of the server (a campaign's progress, ...): on
        ``{prefix}/{ep}/{kind}`` for a device, else ``{prefix}/$fleet/{kind}``; ``kind`` is
        one or more topic levels. The JSON of ``data`` gets ``receivedAt``."""
        body = {**data, "receivedAt": round(time.time(), 3)}
        self.publish_body(kind, _payload(body), endpoint)

    def publish_body(self, kind: str, body: bytes, endpoint: str | None = None) -> None:
        """:meth:`publish` of a payload made already."""
        if not kind or any(not level or set(level) & set("+#\0") for level in kind.split("/")):
            raise ConfigError(f"event kind {kind!r}: topic levels without '+', '#' or empty ones")
        where = FLEET_LEVEL if endpoint is None else topic_level(endpoint)
        self._outbox.put(_Ready(f"{self.config.prefix}/{where}/{kind}", body))

    def take(self, event: ServerEvent, at: float, done: Done = _nothing) -> bool:
        """Queue ``event`` (taken at Unix time ``at``); ``done`` is called once the broker
        acknowledged it, or it was dropped. False (and no call) for a kind of event this module
        does not publish."""
        if type(event) not in _LEVELS:
            return False
        self._outbox.put(_Event(event, at, done))
        return True

    def reply(self, endpoint: str, body: bytes) -> None:
        """Publish the answer to a command on ``{prefix}/{ep}/reply``."""
        self._outbox.put(_Ready(f"{self.config.prefix}/{topic_level(endpoint)}/reply", body))

    async def _follow(self, stream: Any) -> None:
        put = self._outbox.put
        commands = self._commands
        try:
            async for event in stream:
                if type(event) not in _LEVELS:  # a kind of event this module does not know yet
                    continue
                put(_Event(event, time.time()))
                if isinstance(event, ObservationEnded) and commands is not None:
                    commands.forget(event.endpoint, event.token)
        finally:
            stream.close()

    async def _connect(self) -> None:
        """Connect, publish and take commands; again after a back-off when the broker goes."""
        config = self.config
        delay = config.reconnect_initial
        while True:
            try:
                async with aiomqtt.Client(
                    config.host,
                    config.port,
                    username=config.username,
                    password=config.password,
                    identifier=self.client_id,
                    keepalive=config.keepalive,
                    tls_context=self._tls,
                    timeout=10.0,
                    max_inflight_messages=config.window,
                    # Without it, Nagle's algorithm holds each small PUBLISH until the broker's
                    # (delayed) ACK of the one before: tens of milliseconds a window.
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                ) as client:
                    client.pending_calls_threshold = config.window + config.max_commands + 10
                    delay = config.reconnect_initial
                    log.info("MQTT: connected to %s:%d as %s", config.host, config.port, self.client_id)
                    await self._session(client)
            except* (aiomqtt.MqttError, OSError) as group:
                log.warning("MQTT broker %s:%d: %s", config.host, config.port, group.exceptions[0])
            except* Exception:  # a defect: logged, and the export goes on
                log.exception("MQTT export to %s:%d failed", config.host, config.port)
            finally:
                self.connected = False
            # A random part keeps many servers from coming back at the same instant.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, config.reconnect_max)

    async def _session(self, client: aiomqtt.Client) -> None:
        if self.config.commands:
            await client.subscribe(f"{self.config.prefix}/+/cmd", qos=1)
        self.connected = True  # and subscribed
        self.connections += 1
        async with asyncio.TaskGroup() as tasks:
            # Without a subscription no command comes, but the loop over the messages still
            # ends the session as soon as the connection breaks.
            tasks.create_task(self._take_commands(client))
            tasks.create_task(self._drain(client))

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish from the queue, ``window`` messages awaiting their PUBACK at once: the next
        goes as soon as one is acknowledged. A message whose publish fails goes back to the
        queue's head; those in flight when the session ends go back too (at least once)."""
        outbox, prefix = self._outbox, self.config.prefix
        room = asyncio.Semaphore(self.config.window)
        flying: dict[asyncio.Task[None], _Ready] = {}
        loop = asyncio.get_running_loop()

        def landed(task: asyncio.Task[None]) -> None:
            message = flying.pop(task, None)
            if message is None:  # done as the session ended: given back to the queue already
                return
            self._inflight = len(flying)
            room.release()
            if task.cancelled():
                return
            error = task.exception()
            if error is None:
                self.published += 1
                message.done()
            else:
                log.debug("MQTT publish on %s failed: %s; it goes again", message.topic, error)
                outbox.give_back([message])

        try:
            while True:
                await outbox.wait()
                await room.acquire()
                taken = outbox.take(1)
                if not taken:  # emptied while waiting for room (a session that ended)
                    room.release()
                    continue
                item = taken[0]
                topic, payload = item.message(prefix)
                task = loop.create_task(client.publish(topic, payload, qos=1))
                flying[task] = item if isinstance(item, _Ready) else _Ready(topic, payload, item.done)
                self._inflight = len(flying)
                task.add_done_callback(landed)
        finally:
            # In flight when the session ends: they go again, before what came since.
            unacknowledged: list[_Item] = list(flying.values())
            for task in list(flying):
                task.remove_done_callback(landed)
                task.cancel()
            flying.clear()
            self._inflight = 0
            outbox.give_back(unacknowledged)

    # --- commands --------------------------------------------------------------------------------

    async def _take_commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            levels = str(message.topic).split("/")
            endpoint = unquote(levels[-2])
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if self._commands is not None:
                self._commands.take(endpoint, payload)
            elif self._forward is not None:
                self._forwarded += 1
                self._forward(endpoint, payload)


class MqttCommands:
    """Carries out the commands taken on ``{prefix}/{ep}/cmd`` through ``server``'s API and
    hands each answer's JSON to ``reply`` (the endpoint and the body of ``{prefix}/{ep}/reply``);
    keeps the observations commands made, for ``cancel`` commands. It runs in the server's
    process: beside :class:`MqttExport` there, or fed by the export worker over its channel."""

    def __init__(self, server: Server, config: MqttConfig, reply: Callable[[str, bytes], None]) -> None:
        self.server = server
        self.config = config
        self.taken = 0  # commands of devices this node serves
        self._reply_to = reply
        self._running: set[asyncio.Task[None]] = set()  # commands being carried out
        self._observations: dict[tuple[str, Path], ServerObservation] = {}

    def take(self, endpoint: str, payload: bytes) -> None:
        """Start carrying a command out (its answer comes to ``reply``), unless another node
        serves the device."""
        if self.server.config.shared_store and endpoint not in self.server.registrar.peers:
            # A node of a cluster: every node has the command, the one serving the device
            # (the only one that can reach it) carries it out and answers.
            return
        self.taken += 1
        if len(self._running) >= self.config.max_commands:
            busy = MqttCommandError(f"{len(self._running)} commands are being carried out: try again")
            self._reply(endpoint, _command_id(payload), error=busy)
            return
        task = asyncio.get_running_loop().create_task(self._command(endpoint, payload))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def close(self) -> None:
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._observations.clear()  # they belong to the server, which keeps their records

    async def _command(self, endpoint: str, payload: bytes) -> None:
        """Carry a command out and answer it; whatever goes wrong is its error reply."""
        ident = _command_id(payload)
        try:
            command = _parse(payload)
            operation = COMMANDS.get(command["op"])
            if operation is None:
                raise MqttCommandError(f'"op": {command["op"]!r} is not one of {", ".join(COMMANDS)}')
            wait = _timeout(command, self.config.command_timeout)
            async with asyncio.timeout(wait + 1.0):  # the operation's own timeout comes first
                result = await operation(self, endpoint, command, wait)
        except (LwM2MError, ValueError, TypeError, KeyError, TimeoutError) as exc:
            self._reply(endpoint, ident, error=exc)
        except Exception as exc:  # a defect: logged, and answered all the same
            log.exception("MQTT command for %r failed", endpoint)
            self._reply(endpoint, ident, error=exc)
        else:
            self._reply(endpoint, ident, result=result)

    def _reply(
        self,
        endpoint: str,
        ident: Any,
        *,
        result: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        body: dict[str, Any] = {"id": ident, "ok": error is None}
        if error is None:
            body["result"] = result
        else:
            message = str(error) or type(error).__name__
            body["error"] = {"type": type(error).__name__, "message": message}
        self._reply_to(endpoint, _payload(body))

    # --- observations made by commands -------------------------------------------------------

    async def keep(self, endpoint: str, path: Path, observation: ServerObservation) -> None:
        """Keep an observation made by a command, to cancel it by another; a new one of the same
        path replaces (and cancels) the old."""
        old = self._observations.pop((endpoint, path), None)
        self._observations[endpoint, path] = observation
        if old is not None and old is not observation:
            await old.cancel()

    async def cancel(self, endpoint: str, path: Path, *, active: bool, timeout: float) -> bool:
        observation = self._observations.pop((endpoint, path), None)
        if observation is None:
            return False
        async with asyncio.timeout(timeout):
            await observation.cancel(active=active)
        return True

    def forget(self, endpoint: str, token: bytes) -> None:
        """An observation ended: a command no longer cancels it."""
        for key, observation in list(self._observations.items()):
            if key[0] == endpoint and observation.token == token:
                del self._observations[key]


def _command_id(payload: bytes) -> Any:
    """The ``id`` of a command, if one can be read from it (an error reply carries it too)."""
    with contextlib.suppress(ValueError):
        command = json.loads(payload)
        if isinstance(command, dict):
            ident = command.get("id")
            if isinstance(ident, str | int | float) or ident is None:
                return ident
    return None


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        command = json.loads(payload)
    except ValueError as exc:
        raise MqttCommandError(f"a command is a JSON object: {exc}") from None
    if not isinstance(command, dict):
        raise MqttCommandError('a command is a JSON object {"id", "op", "path", ...}')
    ident = command.get("id")
    if isinstance(ident, bool) or not isinstance(ident, str | int | float):
        raise MqttCommandError('"id": a string or a number is needed, to find the reply by')
    if not isinstance(command.get("op"), str):
        raise MqttCommandError(f'"op": one of {", ".join(COMMANDS)} is needed')
    return command
