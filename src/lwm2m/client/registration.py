"""The client's registration with one more LwM2M server (LwM2M-TS-Core 1.2 §6.2, multi-server).

A client registers with every server it has an account for: each Security (0)
instance that is not the bootstrap account, paired with the Server (1)
instance of the same Short Server ID. Each account gets a :class:`ServerRegistration`:
its own loop with its own lifetime, binding, Updates, 4.04 re-registration,
exponential back-off and De-register on stop. :class:`~lwm2m.client.role.Client`
holds one for its first account (``registration``: with bootstrap, queue mode and the state
its callers watch) and one for each further account (``others``); the loop is the same.

A plain CoAP server is reached from the client's own endpoint (one socket for
all plain servers): requests are told apart by the server's address. A coaps://
server, or one the client's socket cannot reach (another address family), gets
an endpoint of its own with that account's credentials (§E.1); every request
arriving on it is that server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from lwm2m.client.connection import ServerUri, dtls_for, oscore_for
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.timer import Flag, alarms
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, code_text
from lwm2m.codec.base import ContentFormat
from lwm2m.errors import (
    ClientBootstrapError,
    EndpointClosed,
    OscoreError,
    RegistrationFailed,
    RequestAborted,
    RequestReset,
    RequestTimeout,
)
from lwm2m.model.value import ObjLink
from lwm2m.protocol.registration import DeregisterRequest, ObjectList, RegisterRequest, UpdateRequest
from lwm2m.transport.address import normalize, resolve
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
from lwm2m.transport.tcp import CoapTcpEndpoint, own_tcp_endpoint
from lwm2m.transport.udp import CoapUdpEndpoint

if TYPE_CHECKING:
    from lwm2m.client.config import ClientConfig
    from lwm2m.client.handler import RequestHandler
    from lwm2m.client.instance import ObjectInstance
    from lwm2m.client.objects import ObjectTree
    from lwm2m.client.queue_mode import QueueMode
    from lwm2m.client.reporting import Reporter
    from lwm2m.coap.events import Event
    from lwm2m.protocol.registration import ObjectLink
    from lwm2m.transport.dtls.config import DtlsClientConfig

log = logging.getLogger(__name__)

DEREGISTER_TIMEOUT = 2.0  # seconds a De-register on stop may take
# The format announced in the root link's ct (LwM2M-TS-Core 1.2 §6.2.1): the one preferred, as a
# bare integer as in the Core TS's registration examples (</>;rt="oma.lwm2m";ct=110). Some servers
# (Wakaama) refuse a quoted list; the client still takes every format it implements.
ANNOUNCED_FORMAT = ContentFormat.SENML_CBOR


class ClientState(Enum):
    STOPPED = "stopped"
    REGISTERING = "registering"
    REGISTERED = "registered"
    SLEEPING = "sleeping"
    RETRYING = "retrying"
    BOOTSTRAPPING = "bootstrapping"


def register_request(client: Host, account: ServerAccount) -> RegisterRequest:
    """The Register of ``client`` with the server of ``account`` (§6.2.1)."""
    return RegisterRequest(
        ep=client.endpoint_name,
        lt=account.lifetime,
        lwm2m=client.config.lwm2m_version,
        b=account.binding.replace("Q", "") or "U",
        Q=client.config.queue_mode,
        objects=client.object_links(),
        content_formats=() if client.config.lwm2m_version == "1.0" else (int(ANNOUNCED_FORMAT),),
    )


# Answers that say "not now" (the server busy), not "not you": the request is sent again later.
_TRY_LATER = frozenset({Code.SERVICE_UNAVAILABLE, Code.TOO_MANY_REQUESTS})


def retry_after(response: Message) -> float | None:
    """The seconds a 4.29 Too Many Requests asks to wait: its Max-Age, 60 when it has none
    (RFC 8516 §3, RFC 7252 §5.10.5); those of a 5.03 Service Unavailable's Max-Age (RFC 7252
    §5.9.3.4: a server too busy now), None when it has none; None for any other answer."""
    max_age = response.max_age
    if response.code == Code.SERVICE_UNAVAILABLE:
        return None if max_age is None else float(max_age)
    if response.code != Code.TOO_MANY_REQUESTS:
        return None
    return 60.0 if max_age is None else float(max_age)


def location_of(response: Message) -> tuple[str, ...]:
    """The registration's Location-Path segments. Some servers put "rd/5" in one option; RFC 7252
    §5.10.7 wants one per segment: both are taken. RegistrationFailed without one."""
    if response.code != Code.CREATED:
        raise RegistrationFailed(
            f"Register refused: {describe(response)}",
            response.code,
            diagnostic(response),
            retry_after(response),
        )
    segments = tuple(p for s in response.location_path for p in s.split("/") if p)
    if not segments:
        raise RegistrationFailed("Register answered without a location")
    return segments


def at_location(message: Message, location_path: tuple[str, ...]) -> Message:
    """``message`` sent to the registration's Location-Path as the server gave it."""
    options = [o for o in message.options if o[0] != OptionNumber.URI_PATH]
    options += [(OptionNumber.URI_PATH, s.encode()) for s in location_path]
    options.sort(key=lambda o: o[0])
    return dataclasses.replace(message, options=tuple(options))


def diagnostic(response: Message) -> str:
    return response.payload.decode("utf-8", "replace") if response.payload else ""


def describe(response: Message) -> str:
    """``4.00 Bad Request "lifetime ..."``: the code and the diagnostic payload (RFC 7252 §5.5.2)."""
    text = diagnostic(response)
    return f'{code_text(response.code)} "{text}"' if text else code_text(response.code)


def update_delay(lifetime: int) -> float:
    """Seconds from a registration to its Update: room for retransmissions to a busy server
    before it would expire us, a quarter of the lifetime between 1 s and 60 s."""
    margin = min(max(lifetime * 0.25, 1.0), 60.0)
    return max(lifetime - margin, lifetime / 2)


class Host(Protocol):
    """What a registration uses of its client (:class:`~lwm2m.client.role.Client`),
    named here so that this module need not import the client's."""

    endpoint_name: str
    config: ClientConfig
    handler: RequestHandler
    queue: QueueMode
    reporter: Reporter
    _coap: CoapUdpEndpoint | CoapTcpEndpoint | None  # the client's own endpoint, shared by plain CoAP servers
    _bind_host: str
    tree: ObjectTree
    _dtls: DtlsClientConfig | None

    @property
    def sleeping(self) -> bool: ...

    def object_links(self) -> tuple[ObjectLink, ...]: ...

    def touch(self) -> None: ...

    def trigger_update(self) -> None: ...

    def request_bootstrap(self) -> None: ...

    def _on_event(self, event: Event) -> None: ...

    async def _bootstrap_if_due(self) -> bool: ...


class ServerRegistration:
    """The registration of ``client`` with the server of one account: the loop of §6.2.

    The ``primary`` one (the client's first account) runs on the client's own endpoint and
    also bootstraps when due (§6.1.4) and wakes the client from queue-mode sleep; its account
    is None until a bootstrap gives one. Any other one may open an endpoint of its own.
    """

    # One per simulated device: no dict of attributes.
    __slots__ = (
        "_next_update",
        "_oscore",
        "_own",
        "_parked",
        "_registered",
        "_state",
        "_task",
        "_wake",
        "account",
        "addr",
        "bootstrap_now",
        "client",
        "errors",
        "failed_in_a_row",
        "last_error",
        "location",
        "location_path",
        "objects_dirty",
        "params_dirty",
        "primary",
        "registrations",
        "security",
        "server_uri",
        "update_now",
        "updates",
    )

    def __init__(
        self,
        client: Host,
        account: ServerAccount | None,
        security: ObjectInstance | None,
        *,
        primary: bool = False,
    ) -> None:
        self.client = client
        self.primary = primary
        self.account: ServerAccount | None = None
        self.security: ObjectInstance | None = None
        self.server_uri: ServerUri | None = None
        self.addr: Any = None
        self._state = ClientState.STOPPED
        self.location: str | None = None  # the registration's /rd/{location}
        self.location_path: tuple[str, ...] = ()  # every segment the server gave
        self.registrations = 0  # successful Registers
        self.updates = 0  # successful Updates
        self.errors = 0  # failed registration exchanges
        self.failed_in_a_row = 0
        self.last_error: Exception | None = None  # why the latest one failed
        self.bootstrap_now = False  # a bootstrap was asked for (primary only)
        # An endpoint of its own (DTLS, TCP, another address family).
        self._own: CoapUdpEndpoint | CoapTcpEndpoint | None = None
        self._oscore: Any = None  # the account's OSCORE context (lwm2m.coap.oscore), made once
        self._task: asyncio.Task[None] | None = None
        # The token of the loop's alarm (lwm2m.transport.alarms.Alarms) while the loop is parked
        # until its next Update, without a task; 0 otherwise.
        self._parked = 0
        self._wake = Flag()
        self._registered = Flag()
        self.update_now = False
        self.objects_dirty = False
        self.params_dirty = False
        self._next_update = 0.0
        if account is not None:
            self.bind(account, security)

    def bind(self, account: ServerAccount, security: ObjectInstance | None) -> None:
        """Register with the server of ``account`` (a bootstrap may give the primary a new one)."""
        self.account = account
        if security is not self.security:
            self._oscore = None
        self.security = security
        if security is not None:
            self.server_uri = ServerUri.parse(str(security.get(Security.URI, "")))
        account.on_update_trigger = self._update_triggered
        account.on_registration_change = self._params_written
        account.on_bootstrap_trigger = self._bootstrap_triggered

    def _update_triggered(self, _: ServerAccount) -> None:
        """The Registration Update Trigger (/1/x/8) was executed."""
        (self.client.trigger_update if self.primary else self.trigger_update)()

    def _bootstrap_triggered(self, _: ServerAccount) -> None:
        """The Bootstrap-Request Trigger (/1/x/9) was executed."""
        self.client.request_bootstrap()

    def __repr__(self) -> str:
        uri = self.server_uri
        where = f"{uri.scheme}://{uri.host}" if uri is not None else "-"
        return f"<ServerRegistration {self.short_server_id} {where}>"

    @property
    def state(self) -> ClientState:
        """Its registration's state; asleep with the client's socket in queue mode (§6.5)."""
        asleep = self._own is None and self._state is ClientState.REGISTERED and self.client.queue.asleep
        # A further registration sleeps with the first one, whose Update wakes the client.
        if asleep and (self.primary or self.client.sleeping):
            return ClientState.SLEEPING
        return self._state

    @state.setter
    def state(self, state: ClientState) -> None:
        self._state = state

    @property
    def short_server_id(self) -> int | None:
        return self.account.short_server_id if self.account is not None else None

    @property
    def coap(self) -> CoapUdpEndpoint | CoapTcpEndpoint | None:
        """The endpoint this server is reached from."""
        return self._own if self._own is not None else self.client._coap

    @property
    def registered(self) -> bool:
        return self.location is not None

    async def wait_registered(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._registered.wait()

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loop. A further account's loop resolves the server and opens an endpoint of
        its own when it needs one (a name that does not resolve yet is retried with back-off, as
        an unreachable server)."""
        if self.running:
            return
        if not self.primary:
            self.state = ClientState.REGISTERING
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._task_name())

    def _task_name(self) -> str:
        name = f"lwm2m-client-{self.client.endpoint_name}"
        return name if self.primary else f"{name}-{self.short_server_id}"

    @property
    def running(self) -> bool:
        return self._task is not None or self._parked != 0

    def _park(self, until: float) -> None:
        """End the loop's task until loop time ``until`` or a wake-up (:meth:`_poke`), whichever
        comes first: the loop then starts again from the top, as it would after its wait."""
        self._task = None
        self._parked = alarms().add(until, self)

    def alarm(self, token: int) -> None:
        if token == self._parked:
            self._parked = 0
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._task_name())

    def _poke(self) -> None:
        """Wake the loop (its flag set), starting it again if it is parked."""
        self._wake.set()
        token = self._parked
        if token:
            alarms().cancel(token)
            self.alarm(token)

    async def _connect(self) -> None:
        assert self.server_uri is not None and self.security is not None
        addr = await resolve((self.server_uri.host, self.server_uri.port))
        dtls = dtls_for(self.security)
        client = self.client
        linked = dtls is None and isinstance(self.security.get(Security.OSCORE), ObjLink)
        oscore = self._oscore_context() if linked else None
        shared = client._coap
        if self.server_uri.tcp:
            # A connection of its own to a coap+tcp:// or coaps+tcp:// server (RFC 8323), with
            # an OSCORE layer of its own for a coap+tcp:// one linking OSCORE (RFC 8613).
            layer = self._tcp_oscore_layer(addr, oscore) if oscore is not None else None
            self._own = own_tcp_endpoint(dtls, self._serve, client._on_event, client.config.tcp, layer)
            self.addr = addr
            return
        if isinstance(shared, CoapTcpEndpoint):
            shared = None  # the client's is a connection to its first server: this one is UDP
        family_ok = shared is not None and (len(addr) == 4) == (":" in client._bind_host)
        if oscore is not None and (not family_ok or shared is None or shared.oscore is None):
            # RFC 8613: an endpoint whose OSCORE layer protects what goes to this server and
            # verifies what comes from it (LwM2M-TS-Core 1.2 §E.5).
            self._own = await self._oscore_endpoint(addr, oscore, family_ok)
        elif dtls is not None or client._dtls is not None or not family_ok:
            host = "::" if len(addr) == 4 else "0.0.0.0"
            if client.config.local_host is not None and family_ok:
                host = client.config.local_host
            config = client.config.coap_config
            if dtls is not None:
                self._own = await CoapDtlsEndpoint.create(
                    host, 0, client=dtls, handler=self._serve, on_event=client._on_event, config=config
                )
            else:
                self._own = await CoapUdpEndpoint.create(
                    host, 0, handler=self._serve, on_event=client._on_event, config=config
                )
        self.addr = addr

    def _oscore_context(self) -> Any:
        """The OSCORE context of this account's Security instance (/0/x/17 -> /21/y), made once:
        its sender sequence numbers go on across reconnections; None without one."""
        if self._oscore is None:
            security = self.security
            if security is None:  # a server given by URI: its Security instance by Short Server ID
                ssid = self.short_server_id
                found = [
                    i
                    for i in self.client.tree.instances(0)
                    if not i.get(Security.BOOTSTRAP) and i.get(Security.SHORT_SERVER_ID) == ssid
                ]
                security = found[0] if found else None
            if security is not None:
                try:
                    self._oscore = oscore_for(
                        security, self.client.tree, self.client.config.oscore_sequence_file
                    )
                except ValueError as exc:
                    raise ClientBootstrapError(f"/0/{security.id}: {exc}") from None
        return self._oscore

    def _bind_oscore(self) -> None:
        """Protect what goes to this server with its OSCORE context, on the endpoint used."""
        coap = self.coap
        if coap is None or coap.oscore is None or self.addr is None:
            return
        # Over TCP the connection names its peer by the normalized address.
        peer = normalize(self.addr) or self.addr if isinstance(coap, CoapTcpEndpoint) else self.addr
        context = self._oscore_context()
        if context is not None and coap.oscore.context_for(peer) is not context:
            coap.oscore.add(context, peer=peer)

    @staticmethod
    def _tcp_oscore_layer(addr: Any, context: Any) -> Any:
        """An OSCORE layer protecting what goes over the connection to ``addr`` (as the
        connection names its peer) with ``context``."""
        from lwm2m.coap.oscore import OscoreLayer

        layer = OscoreLayer()
        layer.add(context, peer=normalize(addr) or addr)
        return layer

    async def _oscore_endpoint(self, addr: Any, context: Any, family_ok: bool) -> CoapUdpEndpoint:
        from lwm2m.coap.oscore import OscoreLayer

        client = self.client
        host = "::" if len(addr) == 4 else "0.0.0.0"
        if client.config.local_host is not None and family_ok:
            host = client.config.local_host
        layer = OscoreLayer()
        layer.add(context, peer=addr)
        return await CoapUdpEndpoint.create(
            host,
            0,
            handler=self._serve,
            on_event=client._on_event,
            config=client.config.coap_config,
            oscore=layer,
        )

    def _serve(self, event: Any) -> Any:
        """A request on this registration's own endpoint: this server's."""
        self.client.touch()
        return self.client.handler(event, self.short_server_id)

    async def cancel(self) -> None:
        """Stop the loop (the registration stays, as the server knows it)."""
        task, self._task = self._task, None
        if self._parked:
            alarms().cancel(self._parked)
            self._parked = 0
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def deregister(self) -> None:
        """De-register (§6.2.3) if registered, briefly, whatever the answer."""
        coap = self.coap
        if self.location is not None and coap is not None:
            coap.receiving = True
            with contextlib.suppress(Exception):
                message = at_location(DeregisterRequest(self.location).to_message(), self.location_path)
                await coap.request(message, self.addr, timeout=DEREGISTER_TIMEOUT)

    def forget(self) -> None:
        """The registration is gone (de-registered, or left to expire)."""
        self.location = None
        self._registered.clear()

    async def stop(self, *, deregister: bool = True) -> None:
        await self.cancel()
        if deregister:
            await self.deregister()
        if self._own is not None:
            await self._own.close()
            self._own = None
        self.forget()
        self.state = ClientState.STOPPED

    def trigger_update(self) -> None:
        self.update_now = True
        self._poke()

    def request_bootstrap(self) -> None:
        self.bootstrap_now = True
        self._poke()

    def objects_changed(self) -> None:
        self.objects_dirty = True
        self.trigger_update()

    def _params_written(self, _: ServerAccount) -> None:
        self.params_dirty = True
        (self.client.trigger_update if self.primary else self.trigger_update)()

    # --- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        client = self.client
        backoff = client.config.retry_initial
        loop = asyncio.get_running_loop()
        while True:
            try:
                # The primary bootstraps first when that is due (LwM2M-TS-Core 1.2 §6.1.4).
                if not (self.primary and await client._bootstrap_if_due()):
                    if self.addr is None:
                        await self._connect()
                    if self.location is None:
                        await self._register()
                    elif self.update_now or loop.time() >= self._next_update:
                        await self._update()
                backoff = client.config.retry_initial
                self.failed_in_a_row = 0
            except (
                RequestTimeout,
                RequestReset,
                RequestAborted,
                RegistrationFailed,
                ClientBootstrapError,
                OscoreError,  # no sequence number could be stored (RFC 8613 Appendix B.1.1)
                OSError,
            ) as exc:
                if isinstance(exc, EndpointClosed):
                    return
                self.errors += 1
                self.last_error = exc
                self.failed_in_a_row += 1
                self.state = ClientState.RETRYING
                delay = backoff * random.uniform(0.75, 1.25)
                backoff = min(backoff * 2, client.config.retry_max)
                if isinstance(exc, RegistrationFailed) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)  # 4.29: not before its Max-Age (RFC 8516 §3)
                log.info("%s: %s; retrying in %.1f s", self._name(), exc, delay)
                self._wake.clear()
                await self._wake.wait(delay)
                continue
            self._wake.clear()
            if self.update_now or self.bootstrap_now:
                continue
            # Nothing to do before the next Update: the task ends, an alarm starts the loop again.
            self._park(self._next_update)
            return

    def _name(self) -> str:
        if self.primary:
            return self.client.endpoint_name
        return f"{self.client.endpoint_name} (server {self.short_server_id})"

    async def exchange(self, message: Message) -> Message:
        """A request to this server, from the endpoint it is reached from."""
        coap = self.coap
        if coap is None:
            raise EndpointClosed("the client is stopped")
        coap.receiving = True
        response = await coap.request(message, self.addr, timeout=self.client.config.request_timeout)
        self.client.touch()
        return response

    def _schedule_next_update(self) -> None:
        assert self.account is not None
        self._next_update = asyncio.get_running_loop().time() + update_delay(self.account.lifetime)

    async def _register(self) -> None:
        assert self.account is not None
        self.state = ClientState.REGISTERING
        self.objects_dirty = self.params_dirty = self.update_now = False
        self._bind_oscore()
        response = await self.exchange(register_request(self.client, self.account).to_message())
        self.location_path = location_of(response)
        self.location = self.location_path[-1]
        self.registrations += 1
        self._registered.set()
        self.state = ClientState.REGISTERED
        self._schedule_next_update()
        if self.primary:
            self.client.queue.wake()
            log.info("%s registered at /rd/%s", self.client.endpoint_name, self.location)
        else:
            log.info("%s registered at /rd/%s", self._name(), self.location)

    async def _update(self) -> None:
        assert self.location is not None and self.account is not None
        client = self.client
        objects = ObjectList(client.object_links()) if self.objects_dirty else None
        params = self.params_dirty
        self.objects_dirty = self.params_dirty = self.update_now = False
        request = UpdateRequest(
            self.location,
            lt=self.account.lifetime if params else None,
            b=(self.account.binding.replace("Q", "") or "U") if params else None,
            objects=objects,
        )
        try:
            response = await self.exchange(
                at_location(request.to_message(lwm2m_version=client.config.lwm2m_version), self.location_path)
            )
        except BaseException:
            # Not sent: the next try carries the changes again.
            self.objects_dirty |= objects is not None
            self.params_dirty |= params
            raise
        if response.code == Code.NOT_FOUND:
            # §6.2.2: the server forgot us; register anew, at once.
            log.info("%s: Update answered 4.04; registering again", self._name())
            self.forget()
            self.update_now = True
            return
        if response.code >> 5 != 2:
            self.objects_dirty |= objects is not None
            self.params_dirty |= params
            if response.code in _TRY_LATER:
                # The server is busy, not done with us (RFC 7252 §5.9.3.4, RFC 8516 §3): the
                # same Update after its Max-Age; registering again would cost it more and end
                # the observations the registration holds.
                self.update_now = True
            else:
                self.forget()  # a refused Update leaves the registration in doubt: register again
            raise RegistrationFailed(
                f"Update refused: {describe(response)}",
                response.code,
                diagnostic(response),
                retry_after(response),
            )
        self.updates += 1
        self.state = ClientState.REGISTERED
        self._schedule_next_update()
        if self.primary:
            client.queue.wake()
            client.reporter.flush()  # what was held while asleep (§6.5)
