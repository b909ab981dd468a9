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
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from lwm2m.client.bootstrap import BootstrapFailed, ClientBootstrap
from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import ServerUri, credentials, dtls_for, unusable
from lwm2m.client.core.device import Device
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.errors import MethodNotAllowed, RegistrationFailed
from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.observer import Observer, RelationKey
from lwm2m.client.registration import ServerRegistration, at_location, register_request, update_delay
from lwm2m.client.reporting import ClientState, Reporting
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, code_text
from lwm2m.errors import ConfigError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.attributes import Attributes
from lwm2m.protocol.registration import (
    DeregisterRequest,
    ObjectLink,
    ObjectList,
    UpdateRequest,
)
from lwm2m.transport.address import normalize, resolve
from lwm2m.transport.dtls.config import DtlsClientConfig
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
from lwm2m.transport.udp import CoapUdpEndpoint, EndpointClosed, RequestAborted, RequestReset, RequestTimeout

log = logging.getLogger(__name__)

DEFAULT_SERVER = "coap://127.0.0.1:5683"  # when neither a server nor a bootstrap server is given


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

    Several servers: give each account as a ``Security`` and a ``ServerAccount`` instance of the
    same Short Server ID (or let a bootstrap server write them). The client registers with
    every one (LwM2M-TS-Core 1.2 §6.2): the first through its own loop (``state``,
    ``location``, ...), each further one through a :class:`ServerRegistration` in
    ``others``. Each request is then the request of the server it came from, and Access
    Control (object 2, §7.3) decides it.
    """

    def __init__(
        self,
        endpoint: str,
        server: str | None = None,
        objects: Iterable[ObjectInstance | LwM2MObject] = (),
        *,
        bootstrap: str | None = None,
        models: ObjectRegistry | None = None,
        on_request: Callable[[RequestReceived, Message], None] | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        config = config or ClientConfig()
        self.config = config
        psk, certificate = config.psk, config.certificate
        if not endpoint:
            raise ConfigError("the endpoint name is empty")
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
        lifetime, binding, lwm2m_version = config.lifetime, config.binding, config.lwm2m_version
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
        given_accounts = [i for i in self.tree.instances(0) if not i.get(Security.BOOTSTRAP)]
        if server is None and not any(i.get(Security.BOOTSTRAP) for i in self.tree.instances(0)):
            if given_accounts and self.tree.instances(1):
                server = str(given_accounts[0].get(Security.URI, ""))  # accounts given as objects
            else:
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
        if (self.server_uri is None or given_accounts) and (found := self.bootstrapper.usable_account()):
            # Server accounts given as objects (factory bootstrap): the first usable one is the
            # one this object registers with; the others get a ServerRegistration each.
            self.account, security = found
            self.server_uri = ServerUri.parse(str(security.get(Security.URI)))
            if self._dtls is None:
                self._dtls = dtls_for(security)
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
        self.others: list[ServerRegistration] = []  # registrations with the further server accounts
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
        for other in self.others:
            other.objects_changed()

    def _object_links(self) -> tuple[ObjectLink, ...]:
        links = self.tree.object_links()
        if self.config.lwm2m_version == "1.0":
            # LwM2M 1.0 registrations carry no object versions.
            links = tuple(ObjectLink(o.object_id, o.instance_id) for o in links if o.instance_id is not None)
        return links

    def _defaults(self, server_id: int | None = None) -> Attributes:
        """pmin/pmax where no attribute sets them: the observing server's /1/x/2 and /1/x/3."""
        account = self.account
        if server_id is not None:
            account = self._account_of(server_id) or account
        if account is None:
            return Attributes()
        return Attributes(pmin=account.default_pmin, pmax=account.default_pmax)

    def _account_of(self, server_id: int) -> ServerAccount | None:
        for inst in self.tree.instances(1):
            if isinstance(inst, ServerAccount) and inst.short_server_id == server_id:
                return inst
        return None

    def server_id_of(self, addr: Any) -> int | None:
        """The Short Server ID of the server at ``addr`` (a request's or a relation's peer), or None."""
        if self.account is not None and addr == self._server_addr:  # the common case, no parsing
            return self.account.short_server_id
        addr = normalize(addr) or addr
        if self.account is not None and addr == self._server_addr:
            return self.account.short_server_id
        for other in self.others:
            if addr == other.addr:
                return other.short_server_id
        return None

    def registration_of(self, server_id: int) -> ServerRegistration | None:
        for other in self.others:
            if other.short_server_id == server_id:
                return other
        return None

    async def _start_others(self) -> None:
        """A registration with each further usable server account (§6.2: every server)."""
        accounts = [
            (srv, sec)
            for srv, sec in self.bootstrapper.server_accounts()
            if sec is not None and isinstance(srv, ServerAccount) and not unusable(sec)
        ]
        if len(accounts) > 1 and 2 not in self.tree.objects:
            # §7.3: Access Control decides the operations of each server once there are several.
            self.tree.declare(2)
        for srv, sec in accounts:
            if srv is self.account or self.registration_of(srv.short_server_id) is not None:
                continue
            other = ServerRegistration(self, srv, sec)
            self.others.append(other)
            await other.start()

    async def _stop_others(self, *, deregister: bool = True) -> None:
        others, self.others = self.others, []
        await asyncio.gather(*(o.stop(deregister=deregister) for o in others), return_exceptions=True)

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
        host = self._bind_host = self.config.local_host or ("::" if len(addr) == 4 else "0.0.0.0")
        self._coap = await self._open_coap(host)
        self.observer = Observer(
            self.handler, self._emit, defaults=self._defaults, server_of=lambda key: self.server_id_of(key[0])
        )
        self.handler.observer = self.observer
        self.tree.on_value = self.observer.value_changed
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"lwm2m-client-{self.endpoint_name}"
        )
        if self.server_uri is not None:
            await self._start_others()

    async def _open_coap(self, host: str) -> CoapUdpEndpoint:
        """Plain CoAP, or CoAP over DTLS for a coaps:// server (a session per peer, made on demand)."""
        if self._dtls is not None:
            return await CoapDtlsEndpoint.create(
                host,
                self.config.local_port,
                client=self._dtls,
                handler=self._handle,
                on_event=self._on_event,
                config=self.config.coap_config,
            )
        return await CoapUdpEndpoint.create(
            host,
            self.config.local_port,
            handler=self._handle,
            on_event=self._on_event,
            config=self.config.coap_config,
        )

    async def stop(self, *, deregister: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cancel_sleep()
        await self._stop_others(deregister=deregister)
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
        """Send an Update as soon as possible (Registration Update Trigger, object changes); asleep in
        queue mode, every server hears the client is awake again (§6.5)."""
        self._update_now = True
        self._wake.set()
        if self.state is ClientState.SLEEPING:
            for other in self.others:
                other.trigger_update()

    # --- the registration loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.config.retry_initial
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._bootstrap_due():
                    await self._bootstrap()
                elif self.location is None:
                    await self._register()
                elif self._update_now or loop.time() >= self._next_update:
                    await self._update()
                backoff = self.config.retry_initial
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
                backoff = min(backoff * 2, self.config.retry_max)
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
        failed = self._failed_in_a_row >= self.config.bootstrap_after_failures
        if any(other.registered for other in self.others):
            return False  # registered with another server: not "no server at all" (§6.1.4)
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
        await self._stop_others()  # the bootstrap may replace their accounts too
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
            timeout=self.config.bootstrap_timeout,
            request_timeout=self.config.request_timeout,
            pack=self.config.bootstrap_pack,
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
        await self._start_others()  # a configuration with several servers: a registration each

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
        self._next_update = asyncio.get_running_loop().time() + update_delay(self.lifetime)

    async def _exchange(self, message: Message) -> Message:
        assert self._coap is not None
        self._coap.receiving = True
        response = await self._coap.request(message, self._server_addr, timeout=self.config.request_timeout)
        self._touch()
        return response

    async def _register(self) -> None:
        self.state = ClientState.REGISTERING
        self._objects_changed = self._params_changed = self._update_now = False
        assert self.account is not None
        request = register_request(self, self.account)
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
                self._at_location(request.to_message(lwm2m_version=self.config.lwm2m_version))
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
        return at_location(message, self._location_path)


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
