"""The client's registration with one more LwM2M server (LwM2M-TS-Core 1.2 §6.2, multi-server).

A client registers with every server it has an account for: each Security (0)
instance that is not the bootstrap account, paired with the Server (1)
instance of the same Short Server ID. :class:`~lwm2m.client.client.LwM2MClient`
runs the registration with its first account itself (with bootstrap, queue mode
and the state its callers watch); each further account gets a
:class:`ServerRegistration`: its own loop with its own lifetime, binding,
Updates, 4.04 re-registration, exponential back-off and De-register on stop.

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
from typing import TYPE_CHECKING, Any

from lwm2m.client.connection import ServerUri, dtls_for
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.errors import RegistrationFailed
from lwm2m.client.reporting import ClientState
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber
from lwm2m.codec.base import ContentFormat
from lwm2m.protocol.registration import DeregisterRequest, ObjectList, RegisterRequest, UpdateRequest
from lwm2m.transport.address import resolve
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
from lwm2m.transport.udp import CoapUdpEndpoint, EndpointClosed, RequestAborted, RequestReset, RequestTimeout

if TYPE_CHECKING:
    from lwm2m.client.client import LwM2MClient
    from lwm2m.client.instance import ObjectInstance

log = logging.getLogger(__name__)

DEREGISTER_TIMEOUT = 2.0  # seconds a De-register on stop may take
# The format announced in the root link's ct (LwM2M-TS-Core 1.2 §6.2.1): the one preferred, as a
# bare integer as in the Core TS's registration examples (</>;rt="oma.lwm2m";ct=110). Some servers
# (Wakaama) refuse a quoted list; the client still takes every format it implements.
ANNOUNCED_FORMAT = ContentFormat.SENML_CBOR


def register_request(client: LwM2MClient, account: ServerAccount) -> RegisterRequest:
    """The Register of ``client`` with the server of ``account`` (§6.2.1)."""
    return RegisterRequest(
        ep=client.endpoint_name,
        lt=account.lifetime,
        lwm2m=client.config.lwm2m_version,
        b=account.binding.replace("Q", "") or "U",
        Q=client.config.queue_mode,
        objects=client._object_links(),
        content_formats=() if client.config.lwm2m_version == "1.0" else (int(ANNOUNCED_FORMAT),),
    )


def location_of(response: Message) -> tuple[str, ...]:
    """The registration's Location-Path segments. Some servers put "rd/5" in one option; RFC 7252
    §5.10.7 wants one per segment: both are taken. RegistrationFailed without one."""
    if response.code != Code.CREATED:
        text = response.payload.decode("utf-8", "replace") if response.payload else ""
        code = f"{response.code >> 5}.{response.code & 31:02d}"
        raise RegistrationFailed(f"Register refused: {code} {text}".strip(), response.code)
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


def update_delay(lifetime: int) -> float:
    """Seconds from a registration to its Update: room for retransmissions to a busy server
    before it would expire us, a quarter of the lifetime between 1 s and 60 s."""
    margin = min(max(lifetime * 0.25, 1.0), 60.0)
    return max(lifetime - margin, lifetime / 2)


class ServerRegistration:
    """The registration of ``client`` with the server of one further account."""

    def __init__(self, client: LwM2MClient, account: ServerAccount, security: ObjectInstance) -> None:
        self.client = client
        self.account = account
        self.security = security
        self.server_uri = ServerUri.parse(str(security.get(Security.URI, "")))
        self.addr: Any = None
        self._state = ClientState.STOPPED
        self.location: str | None = None
        self._location_path: tuple[str, ...] = ()
        self.registrations = 0
        self.updates = 0
        self.errors = 0
        self._own: CoapUdpEndpoint | None = None  # an endpoint of its own (DTLS, other family)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._update_now = False
        self._objects_changed = False
        self._params_changed = False
        self._next_update = 0.0
        account.on_update_trigger = lambda _: self.trigger_update()
        account.on_registration_change = self._params_written
        account.on_bootstrap_trigger = lambda _: client.request_bootstrap()

    def __repr__(self) -> str:
        return (
            f"<ServerRegistration {self.short_server_id} {self.server_uri.scheme}://{self.server_uri.host}>"
        )

    @property
    def state(self) -> ClientState:
        """Its registration's state; asleep with the client's socket in queue mode (§6.5)."""
        if self._own is None and self._state is ClientState.REGISTERED and self.client.sleeping:
            return ClientState.SLEEPING
        return self._state

    @state.setter
    def state(self, state: ClientState) -> None:
        self._state = state

    @property
    def short_server_id(self) -> int:
        return self.account.short_server_id

    @property
    def coap(self) -> CoapUdpEndpoint | None:
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
        """Start the loop: it resolves the server and opens an endpoint of its own when it needs one
        (a name that does not resolve yet is retried with back-off, as an unreachable server)."""
        if self._task is not None:
            return
        self.state = ClientState.REGISTERING
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"lwm2m-client-{self.client.endpoint_name}-{self.short_server_id}"
        )

    async def _connect(self) -> None:
        addr = await resolve((self.server_uri.host, self.server_uri.port))
        dtls = dtls_for(self.security)
        shared = self.client._coap
        family_ok = shared is not None and (len(addr) == 4) == (":" in self.client._bind_host)
        if dtls is not None or self.client._dtls is not None or not family_ok:
            host = "::" if len(addr) == 4 else "0.0.0.0"
            if self.client.config.local_host is not None and family_ok:
                host = self.client.config.local_host
            config = self.client.config.coap_config
            if dtls is not None:
                self._own = await CoapDtlsEndpoint.create(
                    host, 0, client=dtls, handler=self._serve, on_event=self.client._on_event, config=config
                )
            else:
                self._own = await CoapUdpEndpoint.create(
                    host, 0, handler=self._serve, on_event=self.client._on_event, config=config
                )
        self.addr = addr

    def _serve(self, event: Any) -> Any:
        """A request on this registration's own endpoint: this server's."""
        self.client._touch()
        return self.client.handler(event, self.short_server_id)

    async def stop(self, *, deregister: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        coap = self.coap
        if deregister and self.location is not None and coap is not None:
            coap.receiving = True
            with contextlib.suppress(Exception):
                message = at_location(DeregisterRequest(self.location).to_message(), self._location_path)
                await coap.request(message, self.addr, timeout=DEREGISTER_TIMEOUT)
        if self._own is not None:
            await self._own.close()
            self._own = None
        self.location = None
        self._registered.clear()
        self.state = ClientState.STOPPED

    def trigger_update(self) -> None:
        self._update_now = True
        self._wake.set()

    def objects_changed(self) -> None:
        self._objects_changed = True
        self.trigger_update()

    def _params_written(self, _: ServerAccount) -> None:
        self._params_changed = True
        self.trigger_update()

    # --- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        client = self.client
        backoff = client.config.retry_initial
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self.addr is None:
                    await self._connect()
                if self.location is None:
                    await self._register()
                elif self._update_now or loop.time() >= self._next_update:
                    await self._update()
                backoff = client.config.retry_initial
            except (RequestTimeout, RequestReset, RequestAborted, RegistrationFailed, OSError) as exc:
                if isinstance(exc, EndpointClosed):
                    return
                self.errors += 1
                self.state = ClientState.RETRYING
                delay = backoff * random.uniform(0.75, 1.25)
                backoff = min(backoff * 2, client.config.retry_max)
                log.info(
                    "%s (server %d): %s; retrying in %.1f s",
                    client.endpoint_name,
                    self.short_server_id,
                    exc,
                    delay,
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            self._wake.clear()
            if self._update_now:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._next_update - loop.time())):
                    await self._wake.wait()

    async def _exchange(self, message: Message) -> Message:
        coap = self.coap
        if coap is None:
            raise EndpointClosed("the client is stopped")
        coap.receiving = True
        response = await coap.request(message, self.addr, timeout=self.client.config.request_timeout)
        self.client._touch()
        return response

    async def _register(self) -> None:
        self.state = ClientState.REGISTERING
        self._objects_changed = self._params_changed = self._update_now = False
        response = await self._exchange(register_request(self.client, self.account).to_message())
        self._location_path = location_of(response)
        self.location = self._location_path[-1]
        self.registrations += 1
        self._registered.set()
        self.state = ClientState.REGISTERED
        self._next_update = asyncio.get_running_loop().time() + update_delay(self.account.lifetime)
        log.info(
            "%s registered with server %d at /rd/%s",
            self.client.endpoint_name,
            self.short_server_id,
            self.location,
        )

    async def _update(self) -> None:
        assert self.location is not None
        client = self.client
        objects = ObjectList(client._object_links()) if self._objects_changed else None
        params = self._params_changed
        self._objects_changed = self._params_changed = self._update_now = False
        request = UpdateRequest(
            self.location,
            lt=self.account.lifetime if params else None,
            b=(self.account.binding.replace("Q", "") or "U") if params else None,
            objects=objects,
        )
        try:
            response = await self._exchange(
                at_location(
                    request.to_message(lwm2m_version=client.config.lwm2m_version), self._location_path
                )
            )
        except BaseException:
            self._objects_changed |= objects is not None
            self._params_changed |= params
            raise
        if response.code == Code.NOT_FOUND:
            # §6.2.2: the server forgot us; register anew, at once.
            self.location = None
            self._registered.clear()
            self._update_now = True
            return
        if response.code >> 5 != 2:
            self._objects_changed |= objects is not None
            self._params_changed |= params
            self.location = None
            self._registered.clear()
            code = f"{response.code >> 5}.{response.code & 31:02d}"
            raise RegistrationFailed(f"Update refused: {code}", response.code)
        self.updates += 1
        self.state = ClientState.REGISTERED
        self._next_update = asyncio.get_running_loop().time() + update_delay(self.account.lifetime)
