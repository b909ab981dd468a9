"""The LwM2M client: registers with a server, answers its requests, notifies and sends.

::

    async with Client("sensor-1", "coap://127.0.0.1:5683", objects=[Temperature(0)]) as client:
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
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from lwm2m.client.bootstrap import ClientBootstrap
from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import ServerUri, credentials, dtls_for, unusable
from lwm2m.client.core.device import Device
from lwm2m.client.core.oscore import Oscore
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.observer import Observer, RelationKey
from lwm2m.client.queue_mode import QueueMode
from lwm2m.client.registration import ClientState, ServerRegistration, at_location
from lwm2m.client.reporting import Reporter
from lwm2m.client.timer import LoopTimer
from lwm2m.coap.events import Event, ObservationCancelled, RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.errors import ClientBootstrapError, ConfigError, MethodNotAllowed
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink
from lwm2m.protocol.attributes import Attributes
from lwm2m.protocol.registration import DeregisterRequest, ObjectLink
from lwm2m.transport.address import normalize, resolve
from lwm2m.transport.dtls.config import DtlsClientConfig
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
from lwm2m.transport.shared import SharedUdp
from lwm2m.transport.tcp import CoapTcpEndpoint, own_tcp_endpoint
from lwm2m.transport.udp import CoapUdpEndpoint

log = logging.getLogger(__name__)

SEND_PATH = "dp"  # LwM2M-TS-Transport 1.2 §6.4: Send is a POST to /dp

DEFAULT_SERVER = "coap://127.0.0.1:5683"  # when neither a server nor a bootstrap server is given


class PrefixRoutes(Protocol):
    """What holds the end devices behind a gateway (``lwm2m.client.gateway.Gateway``): the
    client gives it every request and every ended observation before its own objects do."""

    def route(self, event: RequestReceived, server_id: int | None) -> Message | Awaitable[Message] | None:
        """The answer to a request to one of its end devices; None when the request is not one."""
        ...

    def cancelled(self, relation: RelationKey) -> None: ...


class Client:
    """One LwM2M client device on its own UDP port.

    ``objects`` are instances (or whole :class:`LwM2MObject` with a factory);
    a Security (0), Server (1) and Device (3) instance are added when not given.
    ``config`` (:class:`ClientConfig`) holds the rest: its ``lifetime`` and ``binding`` seed
    the Server object; afterwards that object is what counts (the server may write it).

    ``bootstrap`` (``coap://host:5685``) adds a bootstrap server account (or give a
    ``Security(..., bootstrap=True)`` instance). Without ``server`` the client then starts
    with that account only: it bootstraps (LwM2M-TS-Core 1.2 §6.1, see
    :mod:`lwm2m.client.bootstrap`), then registers with the server it was given. With
    both, it registers first and bootstraps after ``config.bootstrap_after_failures`` failed
    attempts in a row, or when a server executes the Bootstrap-Request Trigger (/1/x/9).

    Several servers: give each account as a ``Security`` and a ``ServerAccount`` instance of the
    same Short Server ID (or let a bootstrap server write them). The client registers with
    every one (LwM2M-TS-Core 1.2 §6.2), each through a :class:`ServerRegistration`: the first
    is ``registration`` (its ``state``, ``location``, ... are the client's), the further ones
    are in ``others``. Each request is then the request of the server it came from, and Access
    Control (object 2, §7.3) decides it.

    Its parts: ``queue`` (:class:`QueueMode`, §6.5), ``reporter`` (:class:`Reporter`: the
    observe relations, their timing, notifications held while asleep) and the registrations.
    The sans-IO parts are driven from here, on the loop's clock.
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
        psk, certificate, rpk = config.psk, config.certificate, config.rpk
        secure = psk is not None or certificate is not None or rpk is not None
        if not endpoint:
            raise ConfigError("the endpoint name is empty")
        self.endpoint_name = endpoint
        self.server_uri: ServerUri | None = None  # None until a bootstrap gives a server account
        if server is not None:
            self.server_uri = ServerUri.parse(server)
            if self.server_uri.secure != secure:
                raise ConfigError(
                    f"server {server!r}: coaps:// takes psk=, certificate= or rpk=, coap:// none of them"
                )
        # DTLS credentials (RFC 7252 §9.1): a PSK or a certificate, never both.
        self._dtls: DtlsClientConfig | None = None
        if server is not None and secure:
            self._dtls = DtlsClientConfig(psk=psk, certificate=certificate, rpk=rpk)
        if bootstrap is not None:
            bootstrap_uri = ServerUri.parse(bootstrap)
            # Without a server, psk= or certificate= are the bootstrap server account's credentials.
            if server is None and bootstrap_uri.secure != secure:
                raise ConfigError(
                    f"bootstrap {bootstrap!r}: coaps:// takes psk=, certificate= or rpk=,"
                    " coap:// none of them"
                )
            if server is not None and bootstrap_uri.secure:
                # psk= and certificate= are the server's then; the bootstrap account needs its own keys.
                raise ConfigError(
                    f"bootstrap {bootstrap!r}: with a server too, give the coaps:// bootstrap account as"
                    " a Security(..., bootstrap=True) instance with its keys"
                )
        lifetime, binding, lwm2m_version = config.lifetime, config.binding, config.lwm2m_version
        if self.server_uri is not None and self.server_uri.tcp and binding == "U":
            binding = "T"  # the default binding follows the URI: CoAP over TCP (LwM2M-TS-Core 1.2 §5.2.1.1)
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
            keys = credentials(psk, certificate, rpk) if server is None else {}
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
                keys = credentials(psk, certificate, rpk)
                if config.oscore is not None:
                    keys["oscore"] = self._add_oscore(config.oscore)
                self.tree.add(Security(free, uri=server, short_server_id=1, **keys))
            if not self.tree.instances(1):
                self.tree.add(ServerAccount(0, short_server_id=1, lifetime=lifetime, binding=binding))
        if 3 not in self.tree.objects:
            self.tree.add(Device(manufacturer="lwm2m", model_number="python", binding_modes=binding))
        account = self._account()
        primary_security: ObjectInstance | None = None
        self.handler = RequestHandler(self.tree, lwm2m_version=lwm2m_version, on_request=on_request)
        self.bootstrapper = ClientBootstrap(
            self.tree, self.handler, endpoint=endpoint, lwm2m_version=lwm2m_version, unusable=unusable
        )
        if (self.server_uri is None or given_accounts) and (found := self.bootstrapper.usable_account()):
            # Server accounts given as objects (factory bootstrap): the first usable one is the
            # one this object registers with; the others get a ServerRegistration each.
            account, primary_security = found
            self.server_uri = ServerUri.parse(str(primary_security.get(Security.URI)))
            if self._dtls is None:
                self._dtls = dtls_for(primary_security)
        if self._dtls is None and self.server_uri is None and (bs := self.bootstrapper.account()) is not None:
            self._dtls = dtls_for(bs)  # the first exchange is with the bootstrap server
        self.bootstraps = 0  # accepted Bootstrap-Finish (or Bootstrap-Pack)
        self._bind_host = ""  # the local address, once started
        # Endpoints closing after a credentials change; a dict as a set (an empty set is 216
        # bytes), made for the first.
        self._retired: dict[asyncio.Task[None], None] | None = None
        self._coap: CoapUdpEndpoint | CoapTcpEndpoint | None = None
        # The parts: queue mode (§6.5), notifications (§6.4), the registration with the first
        # server account and one with each further account (§6.2).
        self.queue = QueueMode(config.awake_time, enabled=config.queue_mode, fall_asleep=self._fall_asleep)
        self._queue_timer = LoopTimer(self.queue)
        self.reporter = Reporter(
            self.handler,
            self._notify,
            # Bound methods, not lambdas: a closure and its cell are twice a bound method.
            asleep=self._asleep,
            wake_up=self.trigger_update,
            defaults=self._defaults,
            server_of=self._server_of_relation,
            on_timer=self._reports_due,
        )
        self._report_timer = LoopTimer(self.reporter)
        self.registration = ServerRegistration(self, None, None, primary=True)
        self.others: list[ServerRegistration] = []  # registrations with the further server accounts
        self.tree.on_structure = self._structure_changed
        self.routes: PrefixRoutes | None = None  # end devices behind a gateway, by prefix
        if account is not None:
            self.registration.bind(account, primary_security)

    @property
    def account(self) -> ServerAccount | None:
        """The first server account; None until a bootstrap gives one."""
        return self.registration.account

    # --- the first registration's state, as callers watch it ------------------------------------

    @property
    def state(self) -> ClientState:
        return self.registration.state

    @property
    def location(self) -> str | None:
        """The registration's /rd/{location}."""
        return self.registration.location

    @property
    def registrations(self) -> int:
        """Successful Registers."""
        return self.registration.registrations

    @property
    def updates(self) -> int:
        """Successful Updates."""
        return self.registration.updates

    @property
    def errors(self) -> int:
        """Failed registration exchanges."""
        return self.registration.errors

    @property
    def last_error(self) -> Exception | None:
        """Why the latest one failed."""
        return self.registration.last_error

    @property
    def observer(self) -> Observer:
        """The observe relations and their timing."""
        return self.reporter.observer

    @property
    def sleeping(self) -> bool:
        return self.registration.state is ClientState.SLEEPING

    # --- the server account -------------------------------------------------------------------

    def _add_oscore(self, config: Any) -> int:
        """Object 21 holding ``config`` (an OscoreConfig, this device's side); its instance ID,
        for the Security instance's link (/0/x/17, LwM2M-TS-Core 1.2 §E.1)."""
        free = self.tree.objects[21].free_id() if 21 in self.tree.objects else 0
        self.tree.add(
            Oscore(
                free,
                master_secret=config.master_secret,
                sender_id=config.sender_id,
                recipient_id=config.recipient_id,
                master_salt=config.master_salt,
                id_context=config.id_context,
            )
        )
        return free

    def _account(self) -> ServerAccount | None:
        """The first server account; None when there is none yet (it comes from a bootstrap)."""
        instances = self.tree.instances(1)
        for inst in instances:
            if isinstance(inst, ServerAccount):
                return inst
        if not instances:
            return None
        raise ConfigError("object 1 (LwM2M Server) instances must be lwm2m.client.core.server.ServerAccount")

    def objects_changed(self) -> None:
        """What the object list stands for changed without the list itself (the objects of an
        end device behind a gateway, told by /25/x/3): the next Update carries the list all the
        same, so that every server looks again (LwM2M-TS-Core 1.2 §6.2.2)."""
        self._structure_changed()

    def _structure_changed(self) -> None:
        self.registration.objects_dirty = True
        if self.registration.running:
            self.trigger_update()
        for other in self.others:
            other.objects_changed()

    def object_links(self) -> tuple[ObjectLink, ...]:
        """The objects and instances a Register or Update lists (§6.2.1)."""
        links = self.tree.object_links()
        if self.config.lwm2m_version == "1.0":
            # LwM2M 1.0 registrations carry no object versions.
            links = tuple(ObjectLink(o.object_id, o.instance_id) for o in links if o.instance_id is not None)
        return links

    def notify(self, key: RelationKey, message: Message, confirmable: bool) -> bool:
        """A notification of the relation ``key`` as the client's own go: held while it sleeps
        (§6.5), sent when it wakes; for the end devices behind a gateway, whose observations
        are the client's relations too."""
        return self.reporter.emit(key, message, confirmable)

    def default_attributes(self, server_id: int | None = None) -> Attributes:
        """pmin/pmax where no attribute sets them (see ``_defaults``)."""
        return self._defaults(server_id)

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

    @property
    def _server_addr(self) -> Any:
        return self.registration.addr

    def _asleep(self) -> bool:
        return self.sleeping

    def _server_of_relation(self, key: RelationKey) -> int | None:
        return self.server_id_of(key[0])

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
        if self.registration.running:
            return
        first = self.server_uri or self._bootstrap_uri()
        if first is None:
            raise ConfigError(f"{self.endpoint_name}: no server account and no bootstrap server account")
        addr = await resolve((first.host, first.port))
        self.registration.addr = addr if self.server_uri is not None else None
        host = self._bind_host = self.config.local_host or ("::" if len(addr) == 4 else "0.0.0.0")
        self._coap = await self._open_coap(host, first)
        self.handler.observer = self.reporter.observer
        self.tree.on_value = self.reporter.observer.value_changed
        await self.registration.start()
        if self.server_uri is not None:
            await self._start_others()

    async def _open_coap(self, host: str, uri: ServerUri | None = None) -> CoapUdpEndpoint | CoapTcpEndpoint:
        """Plain CoAP, or CoAP over DTLS for a coaps:// server (a session per peer, made on demand);
        CoAP over TCP or TLS for a coap+tcp:// or coaps+tcp:// one (RFC 8323)."""
        config = self.config
        uri = uri if uri is not None else self.server_uri
        if uri is not None and uri.tcp:
            # Requests from the server come over the connection the client opens (RFC 8323).
            # OSCORE over coap+tcp:// as over coap:// (RFC 8613 works over any CoAP transport).
            oscore = self._oscore_layer() if self._dtls is None else None
            return own_tcp_endpoint(self._dtls, self._handle, self._on_event, config.tcp, oscore)
        if self._dtls is not None:
            return await CoapDtlsEndpoint.create(
                host,
                config.local_port,
                client=self._dtls,
                handler=self._handle,
                on_event=self._on_event,
                config=config.coap_config,
            )
        if config.shared_udp is not None:
            return self._shared_coap(config.shared_udp)
        return await CoapUdpEndpoint.create(
            host,
            config.local_port,
            handler=self._handle,
            on_event=self._on_event,
            config=config.coap_config,
            oscore=self._oscore_layer(),
        )

    def _shared_coap(self, shared: SharedUdp) -> CoapUdpEndpoint:
        """Plain CoAP at an address of its own on a socket shared with other clients."""
        return CoapUdpEndpoint.on_route(
            shared.route(),
            handler=self._handle,
            on_event=self._on_event,
            config=self.config.coap_config,
            oscore=self._oscore_layer(),
        )

    def _links_oscore(self) -> bool:
        return any(isinstance(i.get(Security.OSCORE), ObjLink) for i in self.tree.instances(0))

    def _oscore_layer(self) -> Any:
        """An OSCORE layer for the client's endpoint when a server account links OSCORE
        parameters (/0/x/17, RFC 8613); each registration binds its context to it."""
        if not self._links_oscore():
            return None
        from lwm2m.coap.oscore import OscoreLayer  # needs the cryptography package

        return OscoreLayer()

    async def stop(self, *, deregister: bool = True) -> None:
        await self.registration.cancel()
        self.queue.stop()
        self._queue_timer.close()
        await self._stop_others(deregister=deregister)
        for inst in self.tree:
            close = getattr(inst, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
        coap = self._coap
        if coap is not None:
            if deregister:
                await self.registration.deregister()
            await coap.close()
        self._coap = None
        for retiring in list(self._retired or ()):
            retiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retiring
        self.registration.forget()
        self.reporter.close()
        self._report_timer.close()
        self.tree.on_value = None
        self.registration.state = ClientState.STOPPED

    async def __aenter__(self) -> Client:
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
        await self.registration.wait_registered(timeout)

    def trigger_update(self) -> None:
        """Send an Update as soon as possible (Registration Update Trigger, object changes); asleep in
        queue mode, every server hears the client is awake again (§6.5)."""
        sleeping = self.sleeping
        self.registration.trigger_update()
        if sleeping:
            for other in self.others:
                other.trigger_update()

    # --- queue mode (LwM2M-TS-Core 1.2 §6.5) --------------------------------------------------------

    def touch(self) -> None:
        """An exchange happened: stay awake ``awake_time`` more seconds (queue mode)."""
        if not self.queue.enabled or self._coap is None:
            return
        self.queue.touch(asyncio.get_running_loop().time())
        self._queue_timer.update()

    def _fall_asleep(self) -> bool:
        """The awake window ended: sleep, hearing nothing, if registered."""
        if self._coap is None or self.location is None:
            return False
        self._coap.receiving = False
        log.info("%s sleeps", self.endpoint_name)
        return True

    # --- serving and notifying ----------------------------------------------------------------------

    def _handle(self, event: RequestReceived) -> Any:
        self.touch()
        if self.bootstrapper.serving(event.addr):
            return self.bootstrapper(event)
        # The request is its server's, known by its address (LwM2M-TS-Core 1.2 §7.3).
        if self.routes is not None:
            answer = self.routes.route(event, self.server_id_of(event.addr))
            if answer is not None:
                return answer
        return self.handler(event, self.server_id_of(event.addr))

    def _on_event(self, event: Event) -> None:
        if type(event) is ObservationCancelled:
            self.reporter.observer.remove(event.relation)
            if self.routes is not None:
                self.routes.cancelled(event.relation)

    def _reports_due(self) -> None:
        self._report_timer.update()

    def _notify(self, key: RelationKey, message: Message, confirmable: bool) -> bool:
        """A notification on the wire, from the endpoint its server is reached from."""
        coap = self._coap
        if self.others:
            # A relation of a server reached from an endpoint of its own goes out there.
            server = self.server_id_of(key[0])
            other = self.registration_of(server) if server is not None else None
            if other is not None:
                coap = other.coap
        if coap is None:
            return False
        self.touch()
        return coap.notify(key, message, confirmable=confirmable)

    # --- information reporting: Send ----------------------------------------------------------------

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
        if self.sleeping:
            self.trigger_update()
        return await coap.request(message, addr, timeout=timeout or self.config.request_timeout)

    # --- bootstrap (LwM2M-TS-Core 1.2 §6.1) ---------------------------------------------------------

    def request_bootstrap(self) -> None:
        """Bootstrap again as soon as possible: the Bootstrap-Request Trigger (/1/x/9, §E.2)."""
        if self.bootstrapper.account() is None:
            raise MethodNotAllowed("no bootstrap server account to bootstrap with")
        self.registration.request_bootstrap()

    def _bootstrap_uri(self) -> ServerUri | None:
        account = self.bootstrapper.account()
        if account is None:
            return None
        try:
            return ServerUri.parse(str(account.get(Security.URI, "")))
        except ValueError:
            return None

    def _bootstrap_due(self) -> bool:
        registration = self.registration
        if registration.bootstrap_now:
            return True
        if registration.location is not None:
            return False
        if registration.account is None or registration.addr is None:
            return True  # nothing to register with: only a bootstrap can help
        # §6.1.4: a client that can no longer register with any server bootstraps again.
        failed = registration.failed_in_a_row >= self.config.bootstrap_after_failures
        if any(other.registered for other in self.others):
            return False  # registered with another server: not "no server at all" (§6.1.4)
        return failed and self.bootstrapper.account() is not None

    async def _bootstrap_if_due(self) -> bool:
        """The first step of the first registration's loop: a bootstrap when one is due."""
        if not self._bootstrap_due():
            return False
        await self._bootstrap()
        return True

    async def _bootstrap(self) -> None:
        """A client-initiated bootstrap, then the account it gave is the one registered with."""
        assert self._coap is not None
        registration = self.registration
        registration.bootstrap_now = False
        uri = self._bootstrap_uri()
        if uri is None:
            raise ClientBootstrapError(
                "no usable bootstrap server account (a Security instance with Bootstrap-Server)"
            )
        await self._stop_others()  # the bootstrap may replace their accounts too
        if registration.location is not None:
            # Leaving the server whose account the bootstrap may replace (§6.1.4, server-initiated).
            with contextlib.suppress(Exception):
                await registration.exchange(
                    at_location(
                        DeregisterRequest(registration.location).to_message(), registration.location_path
                    )
                )
            registration.forget()
        registration.state = ClientState.BOOTSTRAPPING
        account = self.bootstrapper.account()
        assert account is not None
        await self._connect_for(account)
        assert self._coap is not None
        self._coap.receiving = True
        addr = await resolve((uri.host, uri.port))
        # Over TCP or TLS the bootstrap server's requests come over the connection the
        # Bootstrap-Request opened (LwM2M-TS-Transport 1.2 §6).
        await self.bootstrapper.run(
            self._coap,
            addr,
            timeout=self.config.bootstrap_timeout,
            request_timeout=self.config.request_timeout,
            pack=self.config.bootstrap_pack,
        )
        if isinstance(self._coap, CoapTcpEndpoint):
            self._coap.close_connection(addr)  # done with the bootstrap server (RFC 8323 §5.5 Release)
        self.bootstraps += 1
        found = self.bootstrapper.usable_account()
        if found is None:
            raise ClientBootstrapError("the bootstrap gave no usable server account")
        server_account, security = found
        registration.bind(server_account, security)
        self.server_uri = ServerUri.parse(str(security.get(Security.URI)))
        registration.addr = await resolve((self.server_uri.host, self.server_uri.port))
        await self._connect_for(security)
        registration.objects_dirty = registration.params_dirty = False
        registration.update_now = True  # register at once
        log.info("%s bootstrapped: registering with %s", self.endpoint_name, security.get(Security.URI))
        await self._start_others()  # a configuration with several servers: a registration each

    async def _connect_for(self, security: ObjectInstance) -> None:
        """Talk to the server of ``security`` from an endpoint with its credentials: plain CoAP, or
        DTLS with its PSK or certificate (LwM2M-TS-Core 1.2 §E.1: Security Mode, resources 3-5);
        TCP or TLS for a coap+tcp:// or coaps+tcp:// URI."""
        try:
            dtls = dtls_for(security)
            uri = ServerUri.parse(str(security.get(Security.URI, "")))
        except ValueError as exc:
            raise ClientBootstrapError(f"/0/{security.id}: {exc}") from None
        if (
            self._coap is not None
            and dtls == self._dtls
            and uri.tcp == isinstance(self._coap, CoapTcpEndpoint)
            and (self._coap.oscore is not None or not self._links_oscore())
        ):
            return
        old, self._dtls = self._coap, dtls
        self._coap = await self._open_coap(self._bind_host, uri)
        if old is not None:
            # Kept a little: a retransmitted request of the previous peer still gets its answer.
            task = asyncio.get_running_loop().create_task(_close_later(old, 5.0))
            if self._retired is None:
                self._retired = {}
            self._retired[task] = None
            task.add_done_callback(self._retired.pop)


async def _close_later(endpoint: CoapUdpEndpoint | CoapTcpEndpoint, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await endpoint.close()
