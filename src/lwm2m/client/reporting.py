"""What the client does between registrations: it serves the server's requests, keeps
queue mode (LwM2M-TS-Core 1.2 §6.5: asleep after ``awake_time``, notifications held and
sent after the waking Update) and reports (notifications, Send).

A mixin of :class:`lwm2m.client.client.LwM2MClient`, which holds the state it works on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from lwm2m.client.observer import RelationKey
from lwm2m.coap.events import Event, ObservationCancelled, RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record

if TYPE_CHECKING:
    from lwm2m.client.bootstrap import ClientBootstrap
    from lwm2m.client.core.server import ServerAccount
    from lwm2m.client.handler import RequestHandler
    from lwm2m.client.objects import ObjectTree
    from lwm2m.client.observer import Observer
    from lwm2m.client.registration import ServerRegistration
    from lwm2m.model.registry import ObjectRegistry
    from lwm2m.transport.udp import CoapUdpEndpoint

log = logging.getLogger(__name__)

SEND_PATH = "dp"  # LwM2M-TS-Transport 1.2 §6.4: Send is a POST to /dp


class ClientState(Enum):
    STOPPED = "stopped"
    REGISTERING = "registering"
    REGISTERED = "registered"
    SLEEPING = "sleeping"
    RETRYING = "retrying"
    BOOTSTRAPPING = "bootstrapping"


class Reporting:
    """Serving, queue mode, notifications and Send, on the client's state."""

    if TYPE_CHECKING:
        endpoint_name: str
        queue_mode: bool
        awake_time: float
        request_timeout: float | None
        location: str | None
        state: ClientState
        tree: ObjectTree
        models: ObjectRegistry
        handler: RequestHandler
        observer: Observer | None
        bootstrapper: ClientBootstrap
        _coap: CoapUdpEndpoint | None
        _server_addr: Any
        _sleep_timer: asyncio.TimerHandle | None
        _held: dict[RelationKey, tuple[Message, bool]]
        account: ServerAccount | None
        others: list[ServerRegistration]

        def trigger_update(self) -> None: ...

        def server_id_of(self, addr: Any) -> int | None: ...

        def registration_of(self, server_id: int) -> ServerRegistration | None: ...

    # --- queue mode ------------------------------------------------------------------------------

    def _touch(self) -> None:
        """An exchange happened: stay awake ``awake_time`` more seconds (queue mode)."""
        if not self.config.queue_mode or self._coap is None:
            return
        self._cancel_sleep()
        self._sleep_timer = asyncio.get_running_loop().call_later(self.config.awake_time, self._fall_asleep)

    def _cancel_sleep(self) -> None:
        if self._sleep_timer is not None:
            self._sleep_timer.cancel()
            self._sleep_timer = None

    def _fall_asleep(self) -> None:
        self._sleep_timer = None
        if self._coap is None or self.location is None:
            return
        self._coap.receiving = False
        self.state = ClientState.SLEEPING
        log.info("%s sleeps", self.endpoint_name)

    @property
    def sleeping(self) -> bool:
        return self.state is ClientState.SLEEPING

    def _flush_held(self) -> None:
        held, self._held = self._held, {}
        for key, (message, con) in held.items():
            self._emit(key, message, con)

    # --- serving ------------------------------------------------------------------------------------

    def _handle(self, event: RequestReceived) -> Any:
        self._touch()
        if self.bootstrapper.serving(event.addr):
            return self.bootstrapper(event)
        # The request is its server's, known by its address (LwM2M-TS-Core 1.2 §7.3).
        return self.handler(event, self.server_id_of(event.addr))

    def _on_event(self, event: Event) -> None:
        if type(event) is ObservationCancelled and self.observer is not None:
            self.observer.remove(event.relation)

    def _emit(self, key: RelationKey, message: Message, confirmable: bool) -> bool:
        coap = self._coap
        if self.others:
            # A relation of a server reached from an endpoint of its own goes out there.
            server = self.server_id_of(key[0])
            other = self.registration_of(server) if server is not None else None
            if other is not None:
                coap = other.coap
        if coap is None:
            return False
        if self.state is ClientState.SLEEPING:
            # §6.5: keep the notification and wake up by sending an Update.
            self._held[key] = (message, confirmable)
            self.trigger_update()
            return True
        self._touch()
        return coap.notify(key, message, confirmable=confirmable)

    # --- information reporting: Send --------------------------------------------------------------------

    async def send(
        self,
        paths: Sequence[str | Path] = (),
        *,
        records: Iterable[Record] = (),
        format: ContentFormat = ContentFormat.SENML_CBOR,
        timeout: float | None = None,
        server: int | None = None,
    ) -> Message:
        """Send (LwM2M-TS-Core 1.2 §6.4.6): POST /dp with the current values of ``paths``,
        timestamped now, and/or ``records`` as given (historical values with their times).
        ``server`` is the Short Server ID of the server to send to (default: the first).

        Returns the server's answer; raises RequestTimeout when none came.
        """
        if self._coap is None:
            raise RuntimeError("the client is not started")
        coap, addr = self._coap, self._server_addr
        if server is not None and (self.account is None or server != self.account.short_server_id):
            other = self.registration_of(server)
            if other is None or other.coap is None:
                raise ValueError(f"Send: no registration with server {server}")
            coap, addr = other.coap, other.addr
        now = time.time()
        out: list[Record] = []
        for p in paths:
            out += [Record(r.path, r.value, now) for r in self.tree.read(Path.parse(p))]
        out += list(records)
        if not out:
            raise ValueError("Send: nothing to send")
        payload = get_codec(format).encode(out, ROOT, self.models)
        message = Message.build(
            Type.CON, Code.POST, uri_path=[SEND_PATH], content_format=format, payload=payload
        )
        if self.state is ClientState.SLEEPING:
            self.trigger_update()
        return await coap.request(message, addr, timeout=timeout or self.config.request_timeout)
