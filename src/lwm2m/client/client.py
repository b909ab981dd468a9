"""The LwM2M client: registers with a server, answers its requests, notifies and sends.

::

    async with LwM2MClient("sensor-1", "coap://127.0.0.1:5683", objects=[Temperature(0)]) as client:
        await client.wait_registered()
        client.tree.instance(3303, 0).set(5700, 22.5)  # observers are notified

The registration follows LwM2M-TS-Core 1.2 §6.2: Register, an Update before
the lifetime runs out (and at once when objects, the lifetime or the binding
change, or when the Registration Update Trigger /1/x/8 is executed), a new
Register when the server answers an Update with 4.04, retries with
exponential back-off while the server is unreachable, De-register on stop.
In queue mode (§6.5) the client sleeps ``awake_time`` seconds after its last
exchange, hearing nothing, and wakes by sending an Update; notifications due
while it sleeps are kept (the latest per observation) and sent on waking.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from lwm2m.client.bootstrap import BootstrapFailed, ClientBootstrap
from lwm2m.client.connection import ServerUri, credentials, dtls_for, unusable
from lwm2m.client.core.device import Device
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.errors import MethodNotAllowed, RegistrationFailed
from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.observer import Observer, RelationKey
from lwm2m.client.reporting import ClientState, Reporting
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, code_text
from lwm2m.codec.base import ContentFormat
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.attributes import Attributes
from lwm2m.protocol.registration import (
    SUPPORTED_VERSIONS,
    DeregisterRequest,
    ObjectLink,
    ObjectList,
    RegisterRequest,
    UpdateRequest,
)
from lwm2m.transport.address import resolve
from lwm2m.transport.dtls.config import DtlsClientConfig, PskCredentials, X509Credentials
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
from lwm2m.transport.udp import CoapUdpEndpoint, EndpointClosed, RequestAborted, RequestReset, RequestTimeout

log = logging.getLogger(__name__)

DEFAULT_AWAKE_TIME = 93.0  # MAX_TRANSMIT_WAIT of RFC 7252 with its default parameters (§6.5)
DEFAULT_SERVER = "coap://127.0.0.1:5683"  # when neither a server nor a bootstrap server is given
# The format announced in the root link's ct (LwM2M-TS-Core 1.2 §6.2.1): the one preferred, as a
# bare integer as in the Core TS's registration examples (</>;rt="oma.lwm2m";ct=110). Some servers
# (Wakaama) refuse a quoted list; the client still takes every format it implements.
ANNOUNCED_FORMAT = ContentFormat.SENML_CBOR


class LwM2MClient(Reporting):
    """One LwM2M client device on its own UDP port.

    ``objects`` are instances (or whole :class:`LwM2MObject` with a factory);
    a Security (0), Server (1) and Device (3) instance are added when not given.
    ``lifetime`` and ``binding`` seed the Server object; afterwards that object is
    what counts (the server may write it).

    ``bootstrap`` (``coap://host:5685``) adds a bootstrap server account (or give a
    ``Security(..., bootstrap=True)`` instance). Without ``server`` the client then starts
    with that account only: it bootstraps (LwM2M-TS-Core 1.2 §6.1, see
    :mod:`lwm2m.client.bootstrap`), then registers with the server it was given. With
    both, it registers first and bootstraps after ``bootstrap_after_failures`` failed
    attempts in a row, or when a server executes the Bootstrap-Request Trigger (/1/x/9).
    """

    def __init__(
        self,
        endpoint: str,
        server: str | None = None,
        objects: Iterable[ObjectInstance | LwM2MObject] = (),
        *,
        lifetime: int = 86400,
        binding: str = "U",
        queue_mode: bool = False,
        lwm2m_version: str = "1.2",
        awake_time: float = DEFAULT_AWAKE_TIME,
        local_host: str | None = None,
        local_port: int = 0,
        models: ObjectRegistry | None = None,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        coap_config: EndpointConfig | None = None,
        on_request: Callable[[RequestReceived, Message], None] | None = None,
        request_timeout: float | None = None,
        bootstrap: str | None = None,
        bootstrap_timeout: float = 60.0,
        bootstrap_pack: bool = False,
        bootstrap_after_failures: int = 3,
        psk: PskCredentials | None = None,
        certificate: X509Credentials | None = None,
    ) -> None:
        if lwm2m_version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"lwm2m_version {lwm2m_version!r}: expected one of {', '.join(SUPPORTED_VERSIONS)}"
            )
        if not endpoint:
            raise ValueError("the endpoint name is empty")
        self.endpoint_name = endpoint
        self.server_uri: ServerUri | None = None  # None until a bootstrap gives a server account
        if server is not None:
            self.server_uri = ServerUri.parse(server)
            if (self.server_uri.scheme == "coaps") != (psk is not None or certificate is not None):
                raise ValueError(f"server {server!r}: coaps:// takes psk= or certificate=, coap:// neither")
        # DTLS credentials (RFC 7252 §9.1): a PSK or a certificate, never both.
        self._dtls: DtlsClientConfig | None = None
        if server is not None and (psk is not None or certificate is not None):
            self._dtls = DtlsClientConfig(psk=psk, certificate=certificate)
        if bootstrap is not None:
            scheme = ServerUri.parse(bootstrap).scheme
            # Without a server, psk= or certificate= are the bootstrap server account's credentials.
            if server is None and (scheme == "coaps") != (psk is not None or certificate is not None):
                raise ValueError(
                    f"bootstrap {bootstrap!r}: coaps:// takes psk= or certificate=, coap:// neither"
                )
            if server is not None and scheme == "coaps":
                # psk= and certificate= are the server's then; the bootstrap account needs its own keys.
                raise ValueError(
                    f"bootstrap {bootstrap!r}: with a server too, give the coaps:// bootstrap account as"
                    " a Security(..., bootstrap=True) instance with its keys"
                )
        self.bootstrap_timeout = bootstrap_timeout
        self.bootstrap_pack = bootstrap_pack
        self.bootstrap_after_failures = bootstrap_after_failures
        self.lwm2m_version = lwm2m_version
        self.queue_mode = queue_mode
        self.awake_time = awake_time
        self.local_host = local_host
        self.local_port = local_port
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.request_timeout = request_timeout
        self._coap_config = coap_config
        self.models = models or load_catalogue()
        self.tree = ObjectTree(self.models)
        for item in objects:
            if isinstance(item, LwM2MObject):
                obj = self.tree.declare(item.definition, item.factory)
                for inst in item.instances.values():
                    self.tree.add(inst)
                del obj
            else:
                self.tree.add(item)
        securities = self.tree.instances(0)
        if bootstrap is not None and not any(i.get(Security.BOOTSTRAP) for i in securities):
            # The bootstrap server account first, at /0/0 where bootstrap servers expect it.
            free = self.tree.objects[0].free_id() if securities else 0
            keys = credentials(psk, certificate) if server is None else {}
            self.tree.add(Security(free, uri=bootstrap, bootstrap=True, short_server_id=None, **keys))
        if server is None and not any(i.get(Security.BOOTSTRAP) for i in self.tree.instances(0)):
            server = DEFAULT_SERVER
            self.server_uri = ServerUri.parse(server)
        if server is not None:
            if all(i.get(Security.BOOTSTRAP) for i in self.tree.instances(0)):
                free = self.tree.objects[0].free_id() if 0 in self.tree.objects else 0
                self.tree.add(Security(free, uri=server, short_server_id=1, **credentials(psk, certificate)))
            if not self.tree.instances(1):
                self.tree.add(ServerAccount(0, short_server_id=1, lifetime=lifetime, binding=binding))
        if 3 not in self.tree.objects:
            self.tree.add(Device(manufacturer="lwm2m", model_number="python", binding_modes=binding))
        self.account: ServerAccount | None = self._account()
        self.handler = RequestHandler(self.tree, lwm2m_version=lwm2m_version, on_request=on_request)
        self.bootstrapper = ClientBootstrap(
            self.tree, self.handler, endpoint=endpoint, lwm2m_version=lwm2m_version, unusable=unusable
        )
        if self.server_uri is None and (found := self.bootstrapper.usable_account()) is not None:
            # Server accounts given as objects beside the bootstrap account (factory bootstrap).
            self.account, security = found
            self.server_uri = ServerUri.parse(str(security.get(Security.URI)))
        if self._dtls is None and self.server_uri is None and (bs := self.bootstrapper.account()) is not None:
            self._dtls = dtls_for(bs)  # the first exchange is with the bootstrap server
        self.bootstraps = 0  # accepted Bootstrap-Finish (or Bootstrap-Pack)
        self._bind_host = ""  # the local address, once started
        self._retired: set[asyncio.Task[None]] = set()  # endpoints closing after a credentials change
        self._bootstrap_now = False
        self._failed_in_a_row = 0
        self.observer: Observer | None = None
        self.state = ClientState.STOPPED
        self.location: str | None = None  # the registration's /rd/{location}
        self._location_path: tuple[str, ...] = ()  # every segment the server gave
        self.registrations = 0  # successful Registers
        self.updates = 0  # successful Updates
        self.errors = 0  # failed registration exchanges
        self.last_error: Exception | None = None  # why the latest one failed
        self._coap: CoapUdpEndpoint | None = None
        self._server_addr: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._objects_changed = False
        self._params_changed = False
        self._update_now = False
        self._next_update = 0.0
        self._sleep_timer: asyncio.TimerHandle | None = None
        self._held: dict[RelationKey, tuple[Message, bool]] = {}  # notifications kept while asleep
        self.tree.on_structure = self._structure_changed
        if self.account is not None:
            self._wire_account(self.account)

    # --- the server account -------------------------------------------------------------------

    def _account(self) -> ServerAccount | None:
        """The first server account; None when there is none yet (it comes from a bootstrap)."""
        instances = self.tree.instances(1)
        for inst in instances:
            if isinstance(inst, ServerAccount):
                return inst
        if not instances:
            return None
        raise ValueError("object 1 (LwM2M Server) instances must be lwm2m.client.core.server.ServerAccount")

    def _wire_account(self, account: ServerAccount) -> None:
        account.on_update_trigger = lambda _: self.trigger_update()
        account.on_registration_change = self._registration_params_changed
        account.on_bootstrap_trigger = lambda _: self.request_bootstrap()

    def _registration_params_changed(self, _: ServerAccount) -> None:
        self._params_changed = True
        self.trigger_update()

    def _structure_changed(self) -> None:
        self._objects_changed = True
        if self._task is not None:
            self.trigger_update()

    def _object_links(self) -> tuple[ObjectLink, ...]:
        links = self.tree.object_links()
        if self.lwm2m_version == "1.0":
            # LwM2M 1.0 registrations carry no object versions.
            links = tuple(ObjectLink(o.object_id, o.instance_id) for o in links if o.instance_id is not None)
        return links

    def _defaults(self) -> Attributes:
        if self.account is None:
            return Attributes()
        return Attributes(pmin=self.account.default_pmin, pmax=self.account.default_pmax)

    @property
    def lifetime(self) -> int:
        return self.account.lifetime if self.account is not None else 86400

    @property
    def binding(self) -> str:
        return self.account.binding if self.account is not None else "U"

    # --- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        first = self.server_uri or self._bootstrap_uri()
        if first is None:
            raise ValueError(f"{self.endpoint_name}: no server account and no bootstrap server account")
        addr = await resolve((first.host, first.port))
        self._server_addr = addr if self.server_uri is not None else None
        host = self._bind_host = self.local_host or ("::" if len(addr) == 4 else "0.0.0.0")
        self._coap = await self._open_coap(host)
        self.observer = Observer(self.handler, self._emit, defaults=self._defaults)
        self.handler.observer = self.observer
        self.tree.on_value = self.observer.value_changed
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"lwm2m-client-{self.endpoint_name}"
        )

    async def _open_coap(self, host: str) -> CoapUdpEndpoint:
        """Plain CoAP, or CoAP over DTLS for a coaps:// server (a session per peer, made on demand)."""
        if self._dtls is not None:
            return await CoapDtlsEndpoint.create(
                host,
                self.local_port,
                client=self._dtls,
                handler=self._handle,
                on_event=self._on_event,
                config=self._coap_config,
            )
        return await CoapUdpEndpoint.create(
            host, self.local_port, handler=self._handle, on_event=self._on_event, config=self._coap_config
        )

    async def stop(self, *, deregister: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cancel_sleep()
        for inst in self.tree:
            close = getattr(inst, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
        coap = self._coap
        if coap is not None:
            if deregister and self.location is not None:
                coap.receiving = True
                with contextlib.suppress(Exception):
                    await coap.request(
                        self._at_location(DeregisterRequest(self.location).to_message()),
                        self._server_addr,
                        timeout=2.0,
                    )
            await coap.close()
        self._coap = None
        for retiring in list(self._retired):
            retiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retiring
        self.location = None
        self._registered.clear()
        if self.observer is not None:
            self.observer.close()
        self.tree.on_value = None
        self.state = ClientState.STOPPED

    async def __aenter__(self) -> LwM2MClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._coap is None:
            raise RuntimeError("the client is not started")
        return self._coap.port

    @property
    def registered(self) -> bool:
        return self.location is not None

    async def wait_registered(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._registered.wait()

    def trigger_update(self) -> None:
        """Send an Update as soon as possible (Registration Update Trigger, object changes)."""
        self._update_now = True
        self._wake.set()

    # --- the registration loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.retry_initial
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._bootstrap_due():
                    await self._bootstrap()
                elif self.location is None:
                    await self._register()
                elif self._update_now or loop.time() >= self._next_update:
                    await self._update()
                backoff = self.retry_initial
                self._failed_in_a_row = 0
            except (
                RequestTimeout,
                RequestReset,
                RequestAborted,
                RegistrationFailed,
                BootstrapFailed,
                OSError,
            ) as exc:
                if isinstance(exc, EndpointClosed):
                    return
                self.errors += 1
                self.last_error = exc
                self._failed_in_a_row += 1
                self.state = ClientState.RETRYING
                delay = backoff * random.uniform(0.75, 1.25)
                backoff = min(backoff * 2, self.retry_max)
                log.info("%s: %s; retrying in %.1f s", self.endpoint_name, exc, delay)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            self._wake.clear()
            if self._update_now or self._bootstrap_now:
                continue
            delay = max(0.0, self._next_update - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    # --- bootstrap (LwM2M-TS-Core 1.2 §6.1) ---------------------------------------------------------

    def request_bootstrap(self) -> None:
        """Bootstrap again as soon as possible: the Bootstrap-Request Trigger (/1/x/9, §E.2)."""
        if self.bootstrapper.account() is None:
            raise MethodNotAllowed("no bootstrap server account to bootstrap with")
        self._bootstrap_now = True
        self._wake.set()

    def _bootstrap_uri(self) -> ServerUri | None:
        account = self.bootstrapper.account()
        if account is None:
            return None
        try:
            return ServerUri.parse(str(account.get(Security.URI, "")))
        except ValueError:
            return None

    def _bootstrap_due(self) -> bool:
        if self._bootstrap_now:
            return True
        if self.location is not None:
            return False
        if self.account is None or self._server_addr is None:
            return True  # nothing to register with: only a bootstrap can help
        # §6.1.4: a client that can no longer register with any server bootstraps again.
        failed = self._failed_in_a_row >= self.bootstrap_after_failures
        return failed and self.bootstrapper.account() is not None

    async def _bootstrap(self) -> None:
        """A client-initiated bootstrap, then the account it gave is the one registered with."""
        assert self._coap is not None
        self._bootstrap_now = False
        uri = self._bootstrap_uri()
        if uri is None:
            raise BootstrapFailed(
                "no usable bootstrap server account (a Security instance with Bootstrap-Server)"
            )
        if self.location is not None:
            # Leaving the server whose account the bootstrap may replace (§6.1.4, server-initiated).
            with contextlib.suppress(Exception):
                await self._exchange(self._at_location(DeregisterRequest(self.location).to_message()))
            self.location = None
            self._registered.clear()
        self.state = ClientState.BOOTSTRAPPING
        account = self.bootstrapper.account()
        assert account is not None
        await self._connect_for(account)
        assert self._coap is not None
        self._coap.receiving = True
        addr = await resolve((uri.host, uri.port))
        await self.bootstrapper.run(
            self._coap,
            addr,
            timeout=self.bootstrap_timeout,
            request_timeout=self.request_timeout,
            pack=self.bootstrap_pack,
        )
        self.bootstraps += 1
        found = self.bootstrapper.usable_account()
        if found is None:
            raise BootstrapFailed("the bootstrap gave no usable server account")
        self.account, security = found
        self._wire_account(self.account)
        self.server_uri = ServerUri.parse(str(security.get(Security.URI)))
        self._server_addr = await resolve((self.server_uri.host, self.server_uri.port))
        await self._connect_for(security)
        self._objects_changed = self._params_changed = False
        self._update_now = True  # register at once
        log.info("%s bootstrapped: registering with %s", self.endpoint_name, security.get(Security.URI))

    async def _connect_for(self, security: ObjectInstance) -> None:
        """Talk to the server of ``security`` from an endpoint with its credentials: plain CoAP, or
        DTLS with its PSK or certificate (LwM2M-TS-Core 1.2 §E.1: Security Mode, resources 3-5)."""
        try:
            dtls = dtls_for(security)
        except ValueError as exc:
            raise BootstrapFailed(f"/0/{security.id}: {exc}") from None
        if self._coap is not None and dtls == self._dtls:
            return
        old, self._dtls = self._coap, dtls
        self._coap = await self._open_coap(self._bind_host)
        if old is not None:
            # Kept a little: a retransmitted request of the previous peer still gets its answer.
            task = asyncio.get_running_loop().create_task(_close_later(old, 5.0))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    def _schedule_next_update(self) -> None:
        lifetime = self.lifetime
        # Leave room for retransmissions to a busy server before it would expire us: a quarter
        # of the lifetime, between 1 s and 60 s.
        margin = min(max(lifetime * 0.25, 1.0), 60.0)
        self._next_update = asyncio.get_running_loop().time() + max(lifetime - margin, lifetime / 2)

    async def _exchange(self, message: Message) -> Message:
        assert self._coap is not None
        self._coap.receiving = True
        response = await self._coap.request(message, self._server_addr, timeout=self.request_timeout)
        self._touch()
        return response

    async def _register(self) -> None:
        self.state = ClientState.REGISTERING
        self._objects_changed = self._params_changed = self._update_now = False
        request = RegisterRequest(
            ep=self.endpoint_name,
            lt=self.lifetime,
            lwm2m=self.lwm2m_version,
            b=self.binding.replace("Q", "") or "U",
            Q=self.queue_mode,
            objects=self._object_links(),
            content_formats=() if self.lwm2m_version == "1.0" else (int(ANNOUNCED_FORMAT),),
        )
        response = await self._exchange(request.to_message())
        if response.code != Code.CREATED:
            raise RegistrationFailed(
                f"Register refused: {_describe(response)}", response.code, _diagnostic(response)
            )
        # Some servers put "rd/5" in one Location-Path option; RFC 7252 §5.10.7 wants one per
        # segment. Both are taken, and Update and De-register go to exactly that path.
        segments = [p for s in response.location_path for p in s.split("/") if p]
        if not segments:
            raise RegistrationFailed("Register answered without a location")
        self.location = segments[-1]
        self._location_path = tuple(segments)
        self.registrations += 1
        self._registered.set()
        self.state = ClientState.REGISTERED
        self._schedule_next_update()
        log.info("%s registered at /rd/%s", self.endpoint_name, self.location)

    async def _update(self) -> None:
        assert self.location is not None
        objects = ObjectList(self._object_links()) if self._objects_changed else None
        params = self._params_changed
        self._objects_changed = self._params_changed = self._update_now = False
        request = UpdateRequest(
            self.location,
            lt=self.lifetime if params else None,
            b=(self.binding.replace("Q", "") or "U") if params else None,
            objects=objects,
        )
        try:
            response = await self._exchange(
                self._at_location(request.to_message(lwm2m_version=self.lwm2m_version))
            )
        except BaseException:
            # Not sent: the next try carries the changes again.
            self._objects_changed |= objects is not None
            self._params_changed |= params
            raise
        if response.code == Code.NOT_FOUND:
            # §6.2.2: the server forgot us; register anew, at once.
            log.info("%s: Update answered 4.04; registering again", self.endpoint_name)
            self.location = None
            self._registered.clear()
            self._update_now = True
            return
        if response.code >> 5 != 2:
            self._objects_changed |= objects is not None
            self._params_changed |= params
            self.location = None  # a refused Update leaves the registration in doubt: register again
            self._registered.clear()
            raise RegistrationFailed(
                f"Update refused: {_describe(response)}", response.code, _diagnostic(response)
            )
        self.updates += 1
        self.state = ClientState.REGISTERED
        self._schedule_next_update()
        self._flush_held()

    def _at_location(self, message: Message) -> Message:
        """``message`` sent to the registration's Location-Path as the server gave it."""
        options = [o for o in message.options if o[0] != OptionNumber.URI_PATH]
        options += [(OptionNumber.URI_PATH, s.encode()) for s in self._location_path]
        options.sort(key=lambda o: o[0])
        return dataclasses.replace(message, options=tuple(options))


async def _close_later(endpoint: CoapUdpEndpoint, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await endpoint.close()


def _diagnostic(response: Message) -> str:
    return response.payload.decode("utf-8", "replace") if response.payload else ""


def _describe(response: Message) -> str:
    """``4.00 Bad Request "lifetime ..."``: the code and the diagnostic payload (RFC 7252 §5.5.2)."""
    text = _diagnostic(response)
    return f'{code_text(response.code)} "{text}"' if text else code_text(response.code)
