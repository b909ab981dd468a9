"""``Server``: the server role as an asyncio object with an async Python API.

    async with Server(ServerConfig(port=0)) as server:
        async for event in server.events():
            if isinstance(event, ClientRegistered):
                response = await server.read(event.registration.endpoint, "/3/0")

Device-management calls return a :class:`~lwm2m.protocol.management.Response`
(the client's CoAP code, decoded records, links or location). The request
format follows the client's LwM2M version (SenML-CBOR for 1.1+, TLV for 1.0,
LwM2M-TS-Core 1.2 §7.4) unless ``format=`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lwm2m.coap.endpoint import HELD_NOTIFICATIONS
from lwm2m.coap.events import Event, RequestReceived, UnknownNotification
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, code_str, code_text
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError, ConfigError, DtlsError, NotRegistered, ObserveRefused, StoreError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.management import (
    ObserveRequest,
    ReadCompositeRequest,
    Response,
    path_list_format,
)
from lwm2m.protocol.registration import Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.dtls_share import SharedDtlsSessions
from lwm2m.server.events import (
    EVENT_BACKLOG,
    ClientDeregistered,
    ClientRegistered,
    ClientUpdated,
    EventHook,
    EventSink,
    EventStream,
    EventTap,
    NotificationReceived,
    RegistrationExpired,
    SendReceived,
    ServerEvent,
)
from lwm2m.server.gateways import EndDeviceTracker
from lwm2m.server.hosting import FW_PATH, PackageSource, serve_package
from lwm2m.server.management import DEFAULT_TIMEOUT, DeviceManagement
from lwm2m.server.observation import ObservationManager, ServerObservation
from lwm2m.server.presence import Presence
from lwm2m.server.registrar import Registrar
from lwm2m.server.security import SecurityPolicy, identity_matches
from lwm2m.server.stats import RequestStats, received_operation
from lwm2m.server.trace import MessageTrace
from lwm2m.storage.base import AddressIndex, HistoryEntry, Reachable, SavedDtlsSession, SecurityInfo, Store
from lwm2m.storage.memory import MemoryStore
from lwm2m.transport.address import format_addr, normalize
from lwm2m.transport.dtls.config import DtlsServerConfig, PeerIdentity, SessionLimits
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint, Forwarding, open_dtls_endpoint
from lwm2m.transport.dtls.events import SessionEvent, SessionMoved
from lwm2m.transport.proxy import ProxySessions
from lwm2m.transport.tap import ConnectionSink
from lwm2m.transport.tcp import CoapTcpEndpoint, open_tcp_endpoint
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

# Notifications go to the history store in batches (HistoryStore.add), flushed this long after
# the first of a batch: what a crash of the process may lose (a batching store also flushes
# when its batch is full).
HISTORY_FLUSH_DELAY = 0.1
# Retention by age (HistoryRetention.max_age) is applied this often, seconds; retention by
# count is applied as values are added.
HISTORY_PRUNE_INTERVAL = 60.0
TAKEOVER_LOOKUPS = 64  # look-ups of unknown notifications' observations at once (shared store, or resuming)

if TYPE_CHECKING:  # our TLS engine needs cryptography: imported where TLS is served
    from lwm2m.transport.tls_engine import StreamTlsFactory

log = logging.getLogger(__name__)


SEND_FORMATS = frozenset((ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR))


def _reply(code: Code, diagnostic: str = "") -> Message:
    return Message.build(Type.ACK, code, payload=diagnostic.encode())


_METHODS = frozenset(c for c in Code if c.is_request)


def _refuse(operation: str, addr: Any, code: Code, diagnostic: str) -> Message:
    """A refusal, logged as the registrar logs its own: what, from where, the code and why."""
    log.info("%s refused from %s: %s: %s", operation, format_addr(addr), code_text(code), diagnostic)
    return _reply(code, diagnostic)


class Server:
    """The server role. It holds its parts, each owning its state: the ``registrar`` (the
    Registration Interface, §6.2), ``management`` (device management, §6.3, whose operations
    are this object's ``read``, ``write``, …), ``observation_manager`` (§6.4), ``presence``
    (queue mode, §6.5) and ``security`` (the security store and the registration checks)."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        store: Store | None = None,
        *,
        models: ObjectRegistry | None = None,
    ) -> None:
        """``config`` sets the server up (default: ``ServerConfig()``); ``store`` holds its
        registrations, observations, history and security information (default: in memory);
        ``models`` are the object definitions (default: the bundled catalogue)."""
        config = config if config is not None else ServerConfig()
        self.config = config
        self.host = config.host
        self.port = config.port  # the bound one once started
        self.coaps_port = config.coaps_port
        self.tcp_port = config.tcp_port  # the bound ones once started
        self.tls_port = config.tls_port
        self._tcp: CoapTcpEndpoint | None = None
        self._tls: CoapTcpEndpoint | None = None
        # Clients registered over TCP or TLS: the endpoint and the connection's address they are
        # reached at, while that is still their registration's address (LwM2M-TS-Transport 1.2 §6).
        self._routes: dict[str, tuple[CoapTcpEndpoint, Any]] = {}
        self.store: Store = store if store is not None else MemoryStore.create()
        self.models = models if models is not None else load_catalogue()
        self.registrar = Registrar(
            self.store.registrations,
            self.store.observations,
            self._emit,
            limits=config.registration_limits,
            adopt=self._adopt if config.shared_store else None,
        )
        self.security = SecurityPolicy(self.store.security, nosec_endpoints=config.nosec_endpoints)
        self.security.on_revoked = self._revoked
        self.security.oscore = _server_oscore(self.store.security)
        self._coaps: CoapDtlsEndpoint | None = None
        self._secure: set[str] = set()  # endpoints that register over DTLS: requests go there too
        self.presence = Presence(self._publish, config.awake_time)
        self._queue_mode: set[str] = set()  # endpoints registered in queue mode
        self._subscribers: set[EventSink] = set()
        self.management = DeviceManagement(
            self.registration,
            models=self.models,
            presence=self.presence,
            peers=self.registrar.peers,
            channel=self._transport,
            queue_timeout=config.queue_timeout,
        )
        self.observation_manager = ObservationManager(
            self.management,
            models=self.models,
            observations=self.store.observations,
            history=self.store.history,
            emit=self._emit,
            relations=self._transport,
            peers=self.registrar.peers,
            name=self.registrar.name,
            listeners=self._subscribers,
            history_added=self._history_added,
            oscore_resumed=self.security.oscore.resume if self.security.oscore is not None else None,
        )
        # The end devices behind gateways (object 25), read from each gateway's /25.
        self.end_devices = EndDeviceTracker(self.management.read, self.store.registrations, self._emit)
        # The operations are the part's own bound methods: no extra call on the way to a device.
        self.send = self.management.send
        self.read = self.management.read
        self.discover = self.management.discover
        self.write = self.management.write
        self.execute = self.management.execute
        self.create = self.management.create
        self.delete = self.management.delete
        self.write_attributes = self.management.write_attributes
        self.read_composite = self.management.read_composite
        self.write_composite = self.management.write_composite
        self._flush: asyncio.TimerHandle | None = None  # the history flush to come, if one is due
        self._flushing: set[asyncio.Task[None]] = set()
        self._endpoint: CoapUdpEndpoint | None = None
        self._stack = contextlib.AsyncExitStack()
        self._expiry: asyncio.Task[None] | None = None
        self._resuming: asyncio.Task[None] | None = None  # taking up stored observations (``resumed``)
        # Look-ups of held notifications with unknown tokens (shared store, or resuming after a
        # restart): one per notification the CoAP endpoint holds, at most as many as it may hold
        # (a store that does not answer does not make them pile up: beyond, a notification is
        # rejected at once, or left unanswered while resuming).
        self._takeovers: set[asyncio.Task[None]] = set()
        self._lookups = asyncio.Semaphore(TAKEOVER_LOOKUPS)  # of those, at the store at once
        self._forwarding: Forwarding | None = None  # a cluster node's DTLS forwarding (forward_dtls)
        self._dtls_share: SharedDtlsSessions | None = None  # cluster mode with DTLS only
        # The requests clients sent, by operation and the code answered (``management.stats``
        # holds those the server sent).
        self.stats = RequestStats()
        self._packages: PackageSource | None = None  # firmware packages served at /fw (host_packages)
        # The per-device CoAP message trace (lwm2m.server.trace): tapped in only while one is on.
        self.trace = MessageTrace(self._tap_messages, self.registrar.peers, self.events, config.trace)

    @property
    def queue_timeout(self) -> float | None:
        """Seconds a request waits for a sleeping queue-mode client to wake (None: no limit)."""
        return self.management.queue_timeout

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # A port in use (the OSError names the address) or a bad store: close what was opened.
            await self._stack.aclose()
            self._endpoint = self._coaps = self._tcp = self._tls = None
            raise

    async def _start(self) -> None:
        shared = self.config.shared_store
        self._endpoint = await self._stack.enter_async_context(
            open_udp_endpoint(
                self.host,
                self.port,
                handler=self._on_request,
                on_event=self._on_coap_event,
                config=self.config.coap,
                oscore=self.security.oscore.layer if self.security.oscore is not None else None,
                proxy=ProxySessions(self.config.proxy) if self.config.proxy is not None else None,
            )
        )
        # A shared store's notifications may belong to observations another node made: held
        # for a look-up instead of the RST (``_take_over``).
        self._endpoint.endpoint.hold_unknown_notifications = shared
        self.port = self._endpoint.port
        await self.security.load()
        self._secure.update(info.endpoint for info in await self.security.all() if info.mode != "nosec")
        if self.coaps_port is not None:
            config = DtlsServerConfig(
                psk_lookup=self.security.psk_for,
                certificate=self.config.certificate,
                rpk=self.config.rpk,
                limits=self.config.dtls_limits or SessionLimits(),
            )
            self._coaps = await self._stack.enter_async_context(
                open_dtls_endpoint(
                    self.host,
                    self.coaps_port,
                    server=config,
                    handler=self._on_secure_request,
                    on_event=self._on_secure_coap_event,
                    on_session=self._on_dtls_session,
                    config=self.config.coap,
                    forwarding=self._forwarding,
                )
            )
            self.coaps_port = self._coaps.port
            self._coaps.endpoint.hold_unknown_notifications = shared  # as for plain CoAP above
            await self._take_dtls_sessions()
            if shared:
                self._dtls_share = SharedDtlsSessions(self._coaps, self.store.dtls_sessions, config.limits)
        await self._open_tcp()
        if not shared:  # on a shared store the other nodes hold theirs: adopted as clients come
            # Each client's address first (requests and Send are matched to it), then the stored
            # observations are taken up while CoAP is served (``resumed``): a start on a million
            # would otherwise answer nothing for the time it takes.
            light = await self._reachable()
            self._hold_unknown_notifications(True)
            self._resuming = asyncio.create_task(self._resume_observations(light))
        self._expiry = asyncio.create_task(self._expire_loop())

    async def resumed(self) -> None:
        """Wait until the observations stored before a restart are all taken up again. ``start``
        returns before: CoAP is served meanwhile, and a notification of one not taken up yet is
        looked up in the store and its client's observations taken up at once. ``observations()``
        lists them all from then on. Returns at once on a shared store (whose nodes adopt the
        clients they come to) or when there were none."""
        if self._resuming is not None:
            await asyncio.shield(self._resuming)

    async def stop(self) -> None:
        self.trace.close()
        if self._resuming is not None:
            self._resuming.cancel()  # the records not taken up stay stored for the next start
            with contextlib.suppress(asyncio.CancelledError):
                await self._resuming
            self._resuming = None
        await self.end_devices.close()
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None
        for task in list(self._takeovers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._dtls_share is not None:
            await self._dtls_share.close()  # what it wrote stays: other nodes take its sessions
            self._dtls_share = None
        self.presence.close()
        await self.observation_manager.close()  # the records stay: the next start resumes them
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for task in list(self._flushing):
            await task
        await self._flush_history()  # all that was added so far
        await self._save_dtls_sessions()
        await self._stack.aclose()
        self.security.close()
        if self.security.oscore is not None:
            self.security.oscore.close()
        self._endpoint = None
        self._coaps = None
        self._tcp = self._tls = None
        self._routes.clear()

    def _tap_messages(self, sink: ConnectionSink | None) -> None:
        """The message trace's tap into every CoAP transport (None: out of them)."""
        for transport in (self._endpoint, self._coaps, self._tcp, self._tls):
            if transport is not None:
                transport.tap(sink)

    def host_packages(self, source: PackageSource) -> None:
        """Serve the firmware packages of ``source`` at ``coap[s]://server/fw/{id}`` (Block2 for
        the large ones), where devices pull them (LwM2M-TS-Core 1.2 §E.6; lwm2m.server.hosting)."""
        self._packages = source

    def forward_dtls(self, forwarding: Forwarding) -> None:
        """On a cluster node, before ``start``: DTLS records whose Connection ID names another
        node go to it over the node-to-node link, and the answers to devices reached through
        another node go back through it (``lwm2m.transport.dtls.forwarding``). The caller
        opens and closes ``forwarding``."""
        if self._coaps is not None:
            raise RuntimeError("forward_dtls is called before the server starts")
        self._forwarding = forwarding

    async def _take_dtls_sessions(self) -> None:
        """Take up the DTLS sessions and ticket keys saved at the last clean stop: their devices
        go on without a handshake. The sessions leave the store (see ``DtlsSessionStore``); the
        ticket keys are written back at once, so that a crash keeps them."""
        assert self._coaps is not None
        layer = self._coaps.dtls
        store = self.store.dtls_sessions
        try:
            keys = await store.ticket_keys()
            if keys is not None:
                try:
                    layer.load_ticket_state(keys)
                except DtlsError as exc:
                    log.warning("saved DTLS ticket keys not taken up: %s", exc)
            # On a shared store the saved sessions would be every node's (the store keeps one
            # set): a node of a cluster neither takes nor saves them, its devices handshake
            # again after its restart. The ticket keys are shared, which lets a ticket made by
            # one node resume at another that started with the same keys.
            saved = [] if self.config.shared_store else await store.take()
            taken = layer.import_sessions((s.address, s.state) for s in saved)
            if saved:
                log.info("DTLS: %d of %d saved sessions taken up", taken, len(saved))
            state = layer.ticket_state()
            if state is not None:
                await store.put_ticket_keys(state)
        except Exception:  # a store fault costs handshakes, not the start
            log.exception("could not take up the saved DTLS sessions")

    async def _save_dtls_sessions(self) -> None:
        """Save the DTLS sessions (parked and idle alike) and the ticket keys at a clean stop."""
        if self._coaps is None:
            return
        layer = self._coaps.dtls
        try:
            if not self.config.shared_store:  # (see _take_dtls_sessions)
                exported = layer.export_sessions()
                sessions = [SavedDtlsSession(tuple(a), cid, state) for a, cid, state in exported]
                await self.store.dtls_sessions.save(sessions)
            state = layer.ticket_state()
            if state is not None:
                await self.store.dtls_sessions.put_ticket_keys(state)
        except Exception:
            log.exception("could not save the DTLS sessions")

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def uri(self) -> str:
        assert self._endpoint is not None, "the server is not started"
        return self._endpoint.uri()

    @property
    def coaps_uri(self) -> str | None:
        """The ``coaps://`` URI, when the server serves DTLS."""
        return None if self._coaps is None else self._coaps.uri()

    @property
    def dtls(self) -> CoapDtlsEndpoint | None:
        """The DTLS endpoint (sessions, identities), when the server serves DTLS."""
        return self._coaps

    def secure(self, endpoint: str) -> bool:
        """Whether ``endpoint`` registers over DTLS (its requests go over DTLS too)."""
        return endpoint in self._secure and self._coaps is not None

    def _transport(self, endpoint: str) -> CoapUdpEndpoint | CoapTcpEndpoint:
        """The endpoint a client is reached on: its TCP/TLS connection if it registered over one,
        DTLS if it registers over DTLS."""
        if self._routes:
            tcp = self._tcp_route(endpoint)
            if tcp is not None:
                return tcp
        if endpoint in self._secure and self._coaps is not None:
            return self._coaps
        assert self._endpoint is not None, "the server is not started"
        return self._endpoint

    async def _expire_loop(self) -> None:
        loop = asyncio.get_running_loop()
        prune_at = loop.time() + HISTORY_PRUNE_INTERVAL
        while True:
            await asyncio.sleep(self.config.expiry_interval)
            try:
                await self.registrar.expire()
            except StoreError as exc:
                # The store is out of reach (a Redis restart, a locked disk): the sweep is tried
                # again next time, and what expired meanwhile goes then.
                log.warning("registration expiry postponed: %s", exc)
            except Exception:
                log.exception("registration expiry failed; tried again in %s s", self.config.expiry_interval)
            if loop.time() >= prune_at:
                prune_at = loop.time() + HISTORY_PRUNE_INTERVAL
                await self._prune_history()

    async def _prune_history(self) -> None:
        """Drop history older than the store's ``retention.max_age``, if it has one."""
        history = self.store.history
        if history.retention.max_age is None:
            return
        try:
            await history.prune(time.time())
        except Exception:
            log.exception("could not prune the history store")

    # --- events -----------------------------------------------------------------------------

    def _emit(self, event: ServerEvent) -> None:
        if type(event) is NotificationReceived:  # by far the most frequent: nothing else to do
            for subscriber in self._subscribers:
                subscriber.put(event)
            return
        if isinstance(event, ClientRegistered) and event.replaced is not None:
            # A new Register ends the observations of the registration it replaces (§6.4).
            self._end_observations(event.replaced, "registered again")
        elif isinstance(event, ClientUpdated):
            self._follow_address(event.registration.endpoint)
        elif isinstance(event, ClientDeregistered):
            self._end_observations(event.registration, "de-registered")
            self._forget_dtls_session(event.registration)
        elif isinstance(event, RegistrationExpired):
            self._end_observations(event.registration, "registration expired")
            if not self._registered_again(event.registration):
                self._forget_dtls_session(event.registration)
        if isinstance(event, ClientRegistered):
            self._share_dtls_session(event.registration)
        if isinstance(event, ClientRegistered | ClientUpdated):
            self.end_devices.follow(event)
        if isinstance(event, ClientRegistered | ClientUpdated):
            # Register and Update wake a queue-mode client (LwM2M-TS-Transport 1.2 §6.5).
            endpoint = event.registration.endpoint
            if event.registration.queue_mode:
                self._queue_mode.add(endpoint)
                self._publish(event)
                self.presence.seen(endpoint)
                return
            self._queue_mode.discard(endpoint)
            self.presence.forget(endpoint)
        elif isinstance(event, ClientDeregistered | RegistrationExpired) and not self._registered_again(
            event.registration
        ):
            self._queue_mode.discard(event.registration.endpoint)
            self.presence.forget(event.registration.endpoint)
        self._publish(event)

    def _registered_again(self, gone: Registration) -> bool:
        """Whether the client of ``gone`` (expired, de-registered) holds a newer registration
        here: an expiry sweep reports a registration it took after the client registered again
        (the registrar keeps the new one's address, and forgets it for any other removal)."""
        return gone.endpoint in self.registrar.peers

    def _share_dtls_session(self, registration: Registration) -> None:
        """A client registered: its DTLS session is shared, if it has one and is not yet (it
        registers again over the session it de-registered with)."""
        if self._dtls_share is not None:
            self._dtls_share.registered(registration.address)

    def _forget_dtls_session(self, registration: Registration) -> None:
        """A client that left: no other node is to take its DTLS session over."""
        if self._dtls_share is not None:
            self._dtls_share.forget(registration.address)

    def _end_observations(self, registration: Registration, reason: str) -> None:
        self.observation_manager.end_registration(registration, reason)

    def _follow_address(self, endpoint: str) -> None:
        """The client sent an Update, maybe from a new address (LwM2M-TS-Core 1.2 §6.2.2)."""
        addr = self.registrar.peers.get(endpoint)
        if addr is None or self._endpoint is None:
            return
        self.observation_manager.follow(endpoint, addr)

    def _publish(self, event: ServerEvent) -> None:
        for subscriber in self._subscribers:
            subscriber.put(event)

    # --- history ----------------------------------------------------------------------------

    def _history_added(self) -> None:
        """An observation gave notifications to ``history.add``: flush them a little later, so
        that one commit takes many (a batching store also flushes when its batch is full)."""
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(HISTORY_FLUSH_DELAY, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None  # what is added from now on takes the next flush
        task = asyncio.ensure_future(self._flush_history())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_history(self) -> None:
        try:
            await self.store.history.flush()
        except Exception:
            log.exception("could not write notifications to the history store")

    def events(self, *, backlog: int = EVENT_BACKLOG) -> EventStream:
        """Every event from now on (subscribed at this call), until the stream is closed; at most
        ``backlog`` unread ones wait, the oldest are dropped beyond (``EventStream.dropped``)."""
        return EventStream(self._subscribers, backlog)

    def hook_events(self, call: Callable[[ServerEvent], None]) -> EventHook:
        """Every event from now on handed to ``call`` as it is emitted (``EventHook``; cheap,
        never raising), until the hook is closed."""
        return EventHook(self._subscribers, call)

    def tap_events(self, *, limit: int = EVENT_BACKLOG) -> EventTap:
        """Every event from now on, for a reader that takes them all on a timer
        (``EventTap.take_all``): cheaper per event than ``events()``, and never awaited."""
        return EventTap(self._subscribers, limit)

    # --- CoAP requests from clients -----------------------------------------------------------

    def _on_request(self, event: RequestReceived, transport: str | None = None) -> Any:
        """A request over UDP, or over a connection of ``transport`` ("tcp", "tls")."""
        message = event.message
        sender = self.registrar.endpoint_at(event.addr, transport)
        if sender is not None and sender in self._queue_mode:
            self.presence.seen(sender)
        if self.registrar.handles(message):
            if self.security.oscore is not None:
                # A request that arrived OSCORE-protected names its peer (RFC 8613) as a DTLS
                # session would; its answer goes back protected, on the plain CoAP endpoint.
                identity = self.security.oscore.identity(event)
                if identity is not None:
                    return self._registration(message, event.addr, identity, secure=True, oscore=True)
            return self._registration(message, event.addr, None, secure=False)
        if message.uri_path == ("dp",):
            if sender is None and transport is None and self.config.shared_store:
                return self._adopt_for_plain_send(event)
            return self._on_send(message, event.addr, transport)
        if message.uri_path[:1] == (FW_PATH,) and self._packages is not None:
            return serve_package(self._packages, message)
        method = Code(message.code).name if message.code in _METHODS else code_str(message.code)
        self.stats.count("other", Code.NOT_FOUND)
        return _refuse(f"{method} request", event.addr, Code.NOT_FOUND, f"no resource {message.uri_path_str}")

    def _on_secure_request(self, event: RequestReceived) -> Any:
        """A request over DTLS: the Registration Interface checks the peer's identity."""
        if self.registrar.handles(event.message):
            assert self._coaps is not None
            identity = self._coaps.peer_identity(event.addr)
            return self._registration(event.message, event.addr, identity, secure=True, transport="dtls")
        if (
            self.config.shared_store
            and event.message.uri_path == ("dp",)
            and self.registrar.endpoint_at(event.addr) is None
        ):
            return self._adopt_for_send(event)
        return self._on_request(event)

    async def _adopt_for_send(self, event: RequestReceived) -> Message:
        """A Send over a DTLS session before this node knows its client at that address: the
        first datagram at a node that took the session over (docs/cluster.md, "DTLS session
        takeover") may be a Send. The session's identity says whose it is (the security entry
        it matches, as a Register over DTLS is checked), so the registration is adopted here as
        an Update would have it, and the Send is served (LwM2M-TS-Core 1.2 §6.4.6)."""
        assert self._coaps is not None
        identity = self._coaps.peer_identity(event.addr)
        endpoint = await self.security.endpoint_of(identity) if identity is not None else None
        registration = await self.store.registrations.get(endpoint) if endpoint is not None else None
        if registration is not None and self.registrar.endpoint_at(event.addr) is None:
            await self._adopt(registration, event.addr)
        answer: Message = await self._on_request(event)
        return answer

    async def _adopt_for_plain_send(self, event: RequestReceived) -> Message:
        """A Send over plain CoAP from an address this node knows no client at (a Send names no
        endpoint, LwM2M-TS-Core 1.2 §6.4.6): the store's address index names the registration
        made from that address, adopted here as an Update would have it. Behind a balancer that
        speaks the PROXY protocol the address is the device's own, the same at every node
        (``ServerConfig.proxy``, docs/cluster.md). An endpoint with security information is not
        adopted over plain CoAP: its Send must come over its secured session."""
        registrations = self.store.registrations
        addr = event.addr
        if isinstance(registrations, AddressIndex):
            try:
                async with self._lookups:
                    registration = await registrations.registration_at(addr)
                    if (
                        registration is not None
                        and registration.transport == "udp"
                        and registration.endpoint not in self._secure
                        and self.registrar.endpoint_at(addr) is None
                    ):
                        await self._adopt(registration, addr)
            except StoreError as exc:
                log.warning("could not look up the client of a Send from %s: %s", format_addr(addr), exc)
                return _reply(Code.SERVICE_UNAVAILABLE, f"the store did not answer: {exc}")
        return await self._on_send(event.message, addr)

    async def _registration(
        self,
        message: Message,
        addr: Any,
        identity: PeerIdentity | None,
        *,
        secure: bool,
        oscore: bool = False,
        transport: str = "udp",
    ) -> Message:
        answer = await self._registration_answer(
            message, addr, identity, secure=secure, oscore=oscore, transport=transport
        )
        self.stats.count(received_operation(message), answer.code)
        return answer

    async def _registration_answer(
        self,
        message: Message,
        addr: Any,
        identity: PeerIdentity | None,
        *,
        secure: bool,
        oscore: bool = False,
        transport: str = "udp",
    ) -> Message:
        limited = self.registrar.admit(message, addr) or self.registrar.busy(message, addr)
        if limited is not None:
            return limited
        self.registrar.begin()
        try:
            refusal, message, endpoint = await self.security.check(
                message, identity, secure=secure, registrations=self.store.registrations, addr=addr
            )
            if refusal is not None:
                return refusal
            answer = await self.registrar.handle(message, addr, transport)
        except StoreError as exc:  # e.g. the Redis pool exhausted in a storm: the client retries
            return self.registrar.store_away(message, addr, exc)
        finally:
            self.registrar.end()
        if endpoint is not None and answer.code in (Code.CREATED, Code.CHANGED):
            if secure and not oscore:  # OSCORE goes over plain CoAP: its layer protects requests
                self._secure.add(endpoint)
            else:
                self._secure.discard(endpoint)
        return answer

    def _on_dtls_session(self, event: SessionEvent) -> None:
        """A DTLS session with a Connection ID moved to a new address (RFC 9146 §6, a NAT
        rebinding): the registration made from the old address is reached at the new one from
        now on, for requests and for the notifications of its observations."""
        if self._dtls_share is not None:
            self._dtls_share.on_event(event)
        if type(event) is not SessionMoved:
            return
        endpoint = self.registrar.moved(event.old, event.addr)
        if endpoint is None:
            return
        self.observation_manager.follow(endpoint, event.addr)
        self.trace.relocate(endpoint)
        task = asyncio.create_task(self._store_address(endpoint, event.old, event.addr))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _store_address(self, endpoint: str, old: Any, addr: Any) -> None:
        try:
            registration = await self.store.registrations.get(endpoint)
            # Only the address it had: an Update that came meanwhile wrote a newer record.
            if registration is None or tuple(registration.address) != (old[0], old[1]):
                return
            await self.store.registrations.update(
                dataclasses.replace(registration, address=(addr[0], addr[1]))
            )
        except Exception:
            log.exception("could not store the new address of %s", endpoint)

    def _revoked(self, info: SecurityInfo) -> None:
        """Security information changed or went: end the DTLS sessions made with the old one."""
        if self._coaps is None:
            return
        # Parked sessions too: a backend that cannot check the credentials of saved state
        # itself (ours refuses a PSK changed since) would take them up again.
        for session in [*self._coaps.sessions(), *self._coaps.dtls.parked()]:
            identity = session.identity
            if identity is None:
                continue
            if identity_matches(info, identity):
                self._coaps.close_session(session.addr)

    async def _on_send(self, message: Message, addr: Any, transport: str | None = None) -> Message:
        answer = await self._send_answer(message, addr, transport)
        self.stats.count("send" if message.code == Code.POST else "other", answer.code)
        return answer

    async def _send_answer(self, message: Message, addr: Any, transport: str | None = None) -> Message:
        """Send (LwM2M-TS-Core 1.2 §6.4.6): a POST to /dp from a registered client."""
        if message.code != Code.POST:
            return _refuse("Send", addr, Code.METHOD_NOT_ALLOWED, "Send is a POST to /dp")
        endpoint = self.registrar.endpoint_at(addr, transport)
        if endpoint is None:
            return _refuse("Send", addr, Code.FORBIDDEN, "Send from a client that is not registered")
        fmt = message.content_format
        if fmt not in SEND_FORMATS:
            return _refuse(
                "Send",
                addr,
                Code.UNSUPPORTED_CONTENT_FORMAT,
                "Send takes SenML-JSON, SenML-CBOR or LwM2M-CBOR",
            )
        try:
            records = tuple(get_codec(fmt).decode(message.payload, ROOT, self.models))
        except CodecError as exc:
            return _refuse("Send", addr, Code.BAD_REQUEST, f"cannot decode the Send payload: {exc}")
        await self.store.history.append(endpoint, records, source="send", received_at=time.time())
        self._emit(SendReceived(endpoint, records))
        return _reply(Code.CHANGED)

    # --- CoAP over TCP and TLS (RFC 8323) ------------------------------------------------------

    async def _open_tcp(self) -> None:
        """Listen for CoAP over TCP and over TLS, as configured: a client's connection carries
        its registration and the server's requests to it alike (LwM2M-TS-Transport 1.2 §6)."""
        config = self.config
        if config.tcp_port is not None:
            self._tcp = await self._stack.enter_async_context(
                open_tcp_endpoint(
                    self.host,
                    config.tcp_port,
                    handler=self._on_tcp_request,
                    config=config.tcp,
                    limits=config.tcp_limits,
                    dial=False,
                    # RFC 8613 over RFC 8323: the same layer (and contexts) as on UDP.
                    oscore=self.security.oscore.layer if self.security.oscore is not None else None,
                )
            )
            self._tcp.on_connection = self._on_tcp_connection
            self.tcp_port = self._tcp.port
        if config.tls_port is not None:
            self._tls = await self._stack.enter_async_context(
                open_tcp_endpoint(
                    self.host,
                    config.tls_port,
                    handler=self._on_tls_request,
                    config=config.tcp,
                    limits=config.tcp_limits,
                    server_tls=self._tls_credentials(),
                    dial=False,
                )
            )
            self._tls.on_connection = self._on_tls_connection
            self.tls_port = self._tls.port

    def _tls_credentials(self) -> StreamTlsFactory:
        """CoAP over TLS through our engine with the credentials DTLS takes: the security
        store's PSKs, the certificate, the raw public key (LwM2M-TS-Transport 1.2 §6)."""
        from lwm2m.transport.tls_engine import engine_tls_server  # TLS only: needs cryptography

        try:
            return engine_tls_server(
                DtlsServerConfig(
                    psk_lookup=self.security.psk_for,
                    certificate=self.config.certificate,
                    rpk=self.config.rpk,
                    limits=self.config.dtls_limits or SessionLimits(),
                )
            )
        except ValueError as exc:
            raise ConfigError(f"tls_port: {exc}") from None

    @property
    def tcp_uri(self) -> str | None:
        """The ``coap+tcp://`` URI, when the server serves CoAP over TCP."""
        return None if self._tcp is None else self._tcp.uri()

    @property
    def tls_uri(self) -> str | None:
        """The ``coaps+tcp://`` URI, when the server serves CoAP over TLS."""
        return None if self._tls is None else self._tls.uri()

    def tcp_connections(self) -> int:
        """The CoAP over TCP and TLS connections open now."""
        return sum(ep.connections() for ep in (self._tcp, self._tls) if ep is not None)

    def transport_of(self, endpoint: str, registration: Registration | None = None) -> str:
        """How the client reaches the server: "tcp", "tls" (RFC 8323), "dtls" or "udp"; from
        ``registration``, when given, for a client this node does not serve (another node's, on
        a shared store) or not yet (a restart: the transport kept with the registration)."""
        via = self._tcp_route(endpoint)
        if via is not None:
            return "tls" if via is self._tls else "tcp"
        if registration is not None and registration.transport != "udp":
            return registration.transport
        return "dtls" if self.secure(endpoint) else "udp"

    def _tcp_route(self, endpoint: str) -> CoapTcpEndpoint | None:
        route = self._routes.get(endpoint)
        if route is None:
            return None
        via, addr = route
        if self.registrar.peers.get(endpoint) != addr:
            # It registered or updated over another transport or connection since.
            del self._routes[endpoint]
            return None
        return via

    def _on_tcp_request(self, event: RequestReceived) -> Any:
        assert self._tcp is not None
        return self._tcp_request(event, self._tcp)

    def _on_tls_request(self, event: RequestReceived) -> Any:
        assert self._tls is not None
        return self._tcp_request(event, self._tls)

    def _tcp_request(self, event: RequestReceived, via: CoapTcpEndpoint) -> Any:
        if self.registrar.handles(event.message):
            return self._tcp_registration(event, via)
        if via is self._tls:
            if self.registrar.endpoint_at(event.addr, "tls") is None and not self.config.shared_store:
                return self._tls_returning(event)
            return self._on_request(event, "tls")
        return self._on_request(event, "tcp")

    async def _tls_returning(self, event: RequestReceived) -> Message | None:
        """A request over a TLS connection the server does not know yet, before any Update: the
        client certificate's CN names the endpoint (as for its Register), so a client registered
        over TLS is reached over this connection from now on, and its observations are sent
        again over it (RFC 8323 §7.2); then the request is served as that client's."""
        assert self._tls is not None
        identity = self._tls.peer_identity(event.addr)
        endpoint = await self.security.endpoint_of(identity) if identity is not None else None
        registration = await self.store.registrations.get(endpoint) if endpoint is not None else None
        if (
            registration is not None
            and registration.transport == "tls"
            and self.registrar.endpoint_at(event.addr, "tls") is None
        ):
            old = self.registrar.peers.get(registration.endpoint)
            self.registrar.remember(registration.endpoint, event.addr, "tls")
            self._routes[registration.endpoint] = (self._tls, event.addr)
            self.observation_manager.reconnected(registration.endpoint)
            if old is not None and old != event.addr:
                task = asyncio.create_task(self._store_address(registration.endpoint, old, event.addr))
                self._flushing.add(task)
                task.add_done_callback(self._flushing.discard)
        answer = self._on_request(event, "tls")
        if isinstance(answer, Message) or answer is None:
            return answer
        result: Message | None = await answer
        return result

    async def _tcp_registration(self, event: RequestReceived, via: CoapTcpEndpoint) -> Message:
        """A Register or Update over a connection: checked as over DTLS when it is TLS (the
        client certificate's CN names the endpoint), then the route to the client is its
        connection."""
        secure = via is self._tls
        transport = "tls" if secure else "tcp"
        identity = via.peer_identity(event.addr) if secure else None
        oscore = False
        if not secure and self.security.oscore is not None:
            # Verified by the connection's OSCORE layer: the context names the peer (RFC 8613).
            identity = self.security.oscore.identity(event)
            oscore = secure = identity is not None
        answer = await self._registration(
            event.message, event.addr, identity, secure=secure, oscore=oscore, transport=transport
        )
        if answer.code in (Code.CREATED, Code.CHANGED):
            endpoint = self.registrar.endpoint_at(event.addr, transport)
            if endpoint is not None:
                self._routes[endpoint] = (via, event.addr)
                if endpoint in self._queue_mode:
                    self.presence.seen(endpoint)
                # Its observations outlived its last connection: observed again over this one.
                self.observation_manager.reconnected(endpoint)
        return answer

    def _on_tls_connection(self, addr: Any, open: bool) -> None:
        self._on_tcp_connection(addr, open, "tls")

    def _on_tcp_connection(self, addr: Any, open: bool, transport: str = "tcp") -> None:
        """A queue-mode client closed its connection: it sleeps until it connects again and
        sends its Update (LwM2M-TS-Transport 1.2 §6.5); requests for it wait meanwhile."""
        if open:
            return
        endpoint = self.registrar.endpoint_at(addr, transport)
        if endpoint is not None and endpoint in self._queue_mode:
            route = self._routes.get(endpoint)
            if route is not None and route[1] == addr:
                self.presence.asleep(endpoint)

    # --- registrations ----------------------------------------------------------------------

    def registration_counts(self) -> dict[str, int]:
        """The clients this server serves now (those whose Register or Update came here, or
        that it took up from the store at start): ``registered`` in all, and of the queue-mode
        ones (LwM2M-TS-Core 1.2 §6.5) those ``awake`` and those ``sleeping``."""
        queued = len(self._queue_mode)
        awake = self.presence.awake_count
        return {"registered": len(self.registrar.peers), "awake": awake, "sleeping": max(queued - awake, 0)}

    async def registration(self, endpoint: str) -> Registration:
        registration = await self.store.registrations.get(endpoint)
        if registration is None:
            raise NotRegistered(f"no client registered as {endpoint!r}")
        return registration

    async def registrations(self) -> list[Registration]:
        return await self.store.registrations.all()

    # --- observations (LwM2M-TS-Core 1.2 §6.4) ---------------------------------------------------

    async def observe(
        self,
        endpoint: str,
        path: str | Path,
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ServerObservation:
        """Observe ``path``; the result's ``response`` is the current value, iterate it for
        notifications. Raises ObserveRefused when the client answers without observing."""
        registration = await self.registration(endpoint)
        request = ObserveRequest(Path.parse(path), self.management.accept_for(registration, format))
        return await self._observe(endpoint, request, timeout)

    async def observe_composite(
        self,
        endpoint: str,
        paths: Sequence[str | Path],
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ServerObservation:
        """Observe-Composite (LwM2M-TS-Core 1.2 §6.4.4): a FETCH on the root with Observe 0 and
        the paths as a SenML list (SenML-CBOR unless ``format`` says otherwise), answered and
        notified with the values of all of them. Ends, resumes and cancels like ``observe``."""
        fmt = ContentFormat.SENML_CBOR if format is None else get_codec(format).content_format
        body = path_list_format(fmt, (await self.registration(endpoint)).content_formats)
        request = ReadCompositeRequest(tuple(Path.parse(p) for p in paths), body, fmt, observe=0)
        return await self._observe(endpoint, request, timeout)

    async def _observe(
        self, endpoint: str, request: ObserveRequest | ReadCompositeRequest, timeout: float | None
    ) -> ServerObservation:
        assert self._endpoint is not None, "the server is not started"
        started = await self.observation_manager.start(endpoint, request, timeout)
        if isinstance(started, Response):
            raise ObserveRefused(started)
        return started

    def observations(self) -> list[ServerObservation]:
        """The observations running now: made by ``observe()``, taken up after ``start()``
        (all of them once ``resumed()`` returns) or adopted (``adopt``)."""
        return self.observation_manager.running()

    async def _reachable(self) -> dict[str, Reachable]:
        """Learn where each stored registration's client is (after a restart requests and Send
        are matched to the address kept in storage); answers them by endpoint. Of the stored
        registrations only what routes requests is read (``reachable``): a start on a million
        registrations builds none of them whole."""
        light: dict[str, Reachable] = {}
        for reachable in await self.store.registrations.reachable():
            addr = normalize(reachable.address) or reachable.address
            self.registrar.remember(reachable.endpoint, addr, reachable.transport)
            self._reconnecting(reachable)
            if reachable.registration_id:
                light[reachable.endpoint] = reachable
        return light

    async def _resume_observations(self, light: dict[str, Reachable]) -> None:
        """Take up the observations stored before a restart (``ObservationManager.resume``),
        with what ``light`` (``_reachable``) holds of their registrations: none is read whole
        for them (a million, each read and decoded, took most of a start). Meanwhile the
        notifications of those not taken up yet are held and looked up (``_take_over``)."""
        whole = self.store.registrations.get

        async def registration_of(endpoint: str) -> Registration | Reachable | None:
            found = light.get(endpoint)
            return found if found is not None else await whole(endpoint)

        started = time.monotonic()
        try:
            await self.observation_manager.resume(registration_of)
        except Exception:
            log.exception("taking up the stored observations failed")
        else:
            if taken := len(self.observation_manager.running()):
                log.info("%d stored observations taken up in %.1f s", taken, time.monotonic() - started)
        finally:
            self._hold_unknown_notifications(self.config.shared_store)

    def _hold_unknown_notifications(self, hold: bool) -> None:
        """Hold notifications with a token not running here for a look-up (``_on_coap_event``),
        instead of answering them with RST at once."""
        for coap in (self._endpoint, self._coaps):
            if coap is not None:
                coap.endpoint.hold_unknown_notifications = hold

    def _reconnecting(self, registration: Registration | Reachable) -> None:
        """A client over TCP or TLS known from the store (a restart, another node's): its old
        connection is gone, so requests for it fail clearly, or wait while it is in queue mode,
        until it connects again with an Update (LwM2M-TS-Transport 1.2 §6.5)."""
        via = {"tcp": self._tcp, "tls": self._tls}.get(registration.transport)
        if via is None:
            return
        endpoint = registration.endpoint
        self._routes[endpoint] = (via, normalize(registration.address) or registration.address)
        if registration.transport == "tls":
            self._secure.add(endpoint)
        if registration.queue_mode:
            self._queue_mode.add(endpoint)  # asleep until it sends its Update

    # --- taking clients over from other nodes of a shared store ------------------------------------

    async def adopt(self, endpoint: str, addr: Any) -> bool:
        """Serve ``endpoint`` here, at ``addr``, from now on: its requests go there and its
        stored observations are resumed there (``ObservationManager.resume_endpoint``), so that
        its notifications are accepted. For a server on a shared store (``ServerConfig.
        shared_store``) that a client comes to when its node is gone; done for it on an Update
        or a notification with a stored token. Idempotent. False when it is not registered."""
        registration = await self.store.registrations.get(endpoint)
        if registration is None:
            return False
        await self._adopt(registration, addr)
        return True

    async def _adopt(self, registration: Registration, addr: Any) -> None:
        assert self._endpoint is not None, "the server is not started"
        endpoint = registration.endpoint
        self.registrar.remember(endpoint, addr, registration.transport)
        await self.observation_manager.resume_endpoint(registration, addr)
        if registration.queue_mode:
            self._queue_mode.add(endpoint)  # it is awake: it just sent something (§6.5)
            self.presence.seen(endpoint)
        log.log(
            # After a restart, a client whose notification came before the resume reached it:
            # one line each for as many as a fleet sends meanwhile, not worth an INFO each.
            logging.INFO if self.config.shared_store else logging.DEBUG,
            "took over %s at %s with %d observations",
            endpoint,
            format_addr(addr),
            len(self.observation_manager.of(endpoint)),
        )

    def _on_secure_coap_event(self, event: Event) -> None:
        """``_on_coap_event`` for the DTLS endpoint: a notification over a session this node took
        over from another (docs/cluster.md, "DTLS session takeover")."""
        self._on_coap_event(event, secure=True)

    def _on_coap_event(self, event: Event, *, secure: bool = False) -> None:
        """The CoAP endpoint's events that no request or observation took: notifications with
        a token not running here, held while stored observations are taken up after a restart
        (``resumed``) and on a shared store."""
        if type(event) is UnknownNotification:
            coap = self._coaps if secure else self._endpoint
            if len(self._takeovers) >= HELD_NOTIFICATIONS:
                assert coap is not None
                if not self.config.shared_store:
                    # Resuming: maybe an observation not taken up yet, whose confirmable
                    # notification comes again (RFC 7252 §4.2); RST would end it at the client.
                    coap.endpoint.drop_notification(event.addr, event.token)
                    return
                # Sent with what the transport sends after this call's batch of events.
                coap.endpoint.reject_notification(event.addr, event.token, self._endpoint_now())
                return
            task = asyncio.create_task(self._take_over(event, secure=secure))
            self._takeovers.add(task)
            task.add_done_callback(self._takeovers.discard)

    @staticmethod
    def _endpoint_now() -> float:
        """The CoAP endpoint's clock: the event loop's, as its transport gives it."""
        return asyncio.get_running_loop().time()

    async def _take_over(self, event: UnknownNotification, *, secure: bool = False) -> None:
        """A notification with a token this node does not run: the observation of a client
        whose node is gone, or, after a restart, one the resume has not reached yet, if the
        store holds it under the client's current registration (LwM2M-TS-Core 1.2 §6.4: the
        client keeps its observations until a new Register).
        Then the client is adopted and the notification accepted; else it gets the RST an
        unknown token gets (RFC 7641 §3.5)."""
        addr, token = event.addr, event.token
        adopted = False
        try:
            # A node's devices all come at once after a failover: their look-ups queue here
            # rather than take every connection of the store's pool (the notifications wait,
            # held, a bounded time).
            async with self._lookups:
                record = await self.store.observations.get(token)
                if record is not None:
                    registration = await self.store.registrations.get(record.endpoint)
                    if registration is not None and registration.registration_id == record.registration_id:
                        await self._adopt(registration, addr)
                        adopted = self.observation_manager.runs(record.endpoint, token)
        except Exception as exc:
            # No answer then, not the RST that would end an observation the client may well have
            # with us: a confirmable notification comes again and is looked up anew.
            log.warning(
                "could not look up the observation of a notification from %s: %s",
                format_addr(addr),
                exc,
                exc_info=not isinstance(exc, StoreError),
            )
            coap = self._coaps if secure else self._endpoint
            if coap is not None:
                coap.drop_notification(addr, token)
            return
        coap = self._coaps if secure else self._endpoint
        if coap is None:
            return  # stopped meanwhile
        # The answer (ACK, or RST) goes out at once, not at the transport's next wake-up.
        if adopted:
            coap.adopt_notification(addr, token)
        else:
            coap.reject_notification(addr, token)

    async def history(
        self, endpoint: str, path: str | Path = "/", *, since: float | None = None, limit: int | None = None
    ) -> list[HistoryEntry]:
        """Stored values from notifications, newest first."""
        return await self.store.history.query(endpoint, Path.parse(path), since=since, limit=limit)


def _server_oscore(store: Any) -> Any:
    """The server's OSCORE contexts (``lwm2m.server.oscore``), or None where the cryptography
    package is missing (OSCORE is then refused as plain CoAP refuses an unknown critical option)."""
    try:
        from lwm2m.server.oscore import ServerOscore
    except ImportError:
        return None
    return ServerOscore(store)
