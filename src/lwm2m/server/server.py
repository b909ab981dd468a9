"""``LwM2MServer``: the server role as an asyncio object with an async Python API.

    async with LwM2MServer(port=0) as server:
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
from collections.abc import Sequence
from typing import Any

from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type, code_str, code_text
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError, NotRegistered, ObserveRefused
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.management import (
    ObserveRequest,
    ReadCompositeRequest,
    Request,
    Response,
    decode_response,
    path_list_format,
)
from lwm2m.protocol.registration import Registration
from lwm2m.server.backlog import Backlog
from lwm2m.server.events import (
    EVENT_BACKLOG,
    ClientDeregistered,
    ClientRegistered,
    ClientUpdated,
    EventStream,
    NotificationReceived,
    RegistrationExpired,
    SendReceived,
    ServerEvent,
)
from lwm2m.server.management import DEFAULT_TIMEOUT, DeviceManagement
from lwm2m.server.observation import ServerObservation
from lwm2m.server.presence import MAX_TRANSMIT_WAIT, Presence
from lwm2m.server.registrar import Registrar, RegistrationLimits
from lwm2m.server.security import NosecPolicy, SecurityPolicy
from lwm2m.storage.base import HistoryEntry, Observation, SecurityInfo
from lwm2m.storage.memory import MemorySecurityStore, MemoryStore
from lwm2m.transport.address import format_addr, normalize
from lwm2m.transport.dtls.config import DtlsServerConfig, PeerIdentity, SessionLimits, X509Credentials
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint, open_dtls_endpoint
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.transport.udp import Observation as CoapObservation

# Notifications go to the history store in batches (HistoryStore.add), flushed this long after
# the first of a batch: what a crash of the process may lose (a batching store also flushes
# when its batch is full).
HISTORY_FLUSH_DELAY = 0.1
# Retention by age (HistoryRetention.max_age) is applied this often, seconds; retention by
# count is applied as values are added.
HISTORY_PRUNE_INTERVAL = 60.0

log = logging.getLogger(__name__)


SEND_FORMATS = frozenset((ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR))


def _address(registration: Registration) -> Any:
    """The registration's address in the form the transport reports senders."""
    return normalize(registration.address) or registration.address


def _observe_request(record: Observation) -> ObserveRequest | ReadCompositeRequest:
    """The Observe (or Observe-Composite, §6.4.4) a stored observation was made with."""
    fmt: ContentFormat | None = None
    if record.content_format is not None:
        with contextlib.suppress(ValueError):
            fmt = ContentFormat(record.content_format)
    if record.composite:
        return ReadCompositeRequest(record.paths, path_list_format(fmt), fmt, observe=0)
    return ObserveRequest(record.path, fmt)


def _reply(code: Code, diagnostic: str = "") -> Message:
    return Message.build(Type.ACK, code, payload=diagnostic.encode())


_METHODS = frozenset(c for c in Code if c.is_request)


def _refuse(operation: str, addr: Any, code: Code, diagnostic: str) -> Message:
    """A refusal, logged as the registrar logs its own: what, from where, the code and why."""
    log.info("%s refused from %s: %s: %s", operation, format_addr(addr), code_text(code), diagnostic)
    return _reply(code, diagnostic)


class LwM2MServer(DeviceManagement):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5683,
        *,
        store: Any = None,
        models: ObjectRegistry | None = None,
        expiry_interval: float = 1.0,
        awake_time: float = MAX_TRANSMIT_WAIT,
        queue_timeout: float | None = 300.0,
        coaps_port: int | None = None,
        security: Any = None,
        certificate: X509Credentials | None = None,
        dtls_limits: SessionLimits | None = None,
        registration_limits: RegistrationLimits | None = None,
        nosec_endpoints: NosecPolicy = "allow",
        coap_config: EndpointConfig | None = None,
    ) -> None:
        """``coaps_port`` also serves CoAP over DTLS there (0: any free port); ``security`` is the
        SecurityStore (default: the store's own); ``certificate`` is the server's for X.509
        clients, with the authorities their certificates must chain to. ``registration_limits``
        bounds what clients may register; ``nosec_endpoints="deny"`` takes plain-CoAP
        registrations only from endpoints listed in the security store with mode ``nosec``."""
        self.host = host
        self.port = port
        self.coaps_port = coaps_port
        self.store = store if store is not None else MemoryStore.create()
        self.models = models if models is not None else load_catalogue()
        self.registrar = Registrar(
            self.store.registrations, self.store.observations, self._emit, limits=registration_limits
        )
        if security is None:
            security = getattr(self.store, "security", None)
        self.security = SecurityPolicy(
            security if security is not None else MemorySecurityStore(), nosec_endpoints=nosec_endpoints
        )
        self.security.on_revoked = self._revoked
        self._certificate = certificate
        self._dtls_limits = dtls_limits
        self._coap_config = coap_config  # transmission parameters and state limits of both endpoints
        self._coaps: CoapDtlsEndpoint | None = None
        self._secure: set[str] = set()  # endpoints that register over DTLS: requests go there too
        self._expiry_interval = expiry_interval
        self.presence = Presence(self._publish, awake_time)
        self.queue_timeout = queue_timeout
        self._queue_mode: set[str] = set()  # endpoints registered in queue mode
        self._subscribers: set[Backlog[ServerEvent]] = set()
        self._flush: asyncio.TimerHandle | None = None  # the history flush to come, if one is due
        self._flushing: set[asyncio.Task[None]] = set()
        self._endpoint: CoapUdpEndpoint | None = None
        self._stack = contextlib.AsyncExitStack()
        self._expiry: asyncio.Task[None] | None = None
        self._observations: dict[bytes, ServerObservation] = {}  # by token, until they end
        # The same by endpoint: an expiry, Register or Update looks at its own, not at them all.
        self._observed: dict[str, dict[bytes, ServerObservation]] = {}

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # A port in use (the OSError names the address) or a bad store: close what was opened.
            await self._stack.aclose()
            self._endpoint = self._coaps = None
            raise

    async def _start(self) -> None:
        self._endpoint = await self._stack.enter_async_context(
            open_udp_endpoint(self.host, self.port, handler=self._on_request, config=self._coap_config)
        )
        self.port = self._endpoint.port
        await self.security.load()
        self._secure.update(info.endpoint for info in await self.security.all() if info.mode != "nosec")
        if self.coaps_port is not None:
            config = DtlsServerConfig(
                psk_lookup=self.security.psk_for,
                certificate=self._certificate,
                limits=self._dtls_limits or SessionLimits(),
            )
            self._coaps = await self._stack.enter_async_context(
                open_dtls_endpoint(
                    self.host,
                    self.coaps_port,
                    server=config,
                    handler=self._on_secure_request,
                    config=self._coap_config,
                )
            )
            self.coaps_port = self._coaps.port
        await self._resume_observations()
        self._expiry = asyncio.create_task(self._expire_loop())

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None
        self.presence.close()
        for observation in list(self._observations.values()):
            await observation.close()  # the records stay: the next start resumes them
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for task in list(self._flushing):
            await task
        await self._flush_history()  # all that was added so far
        await self._stack.aclose()
        self.security.close()
        self._endpoint = None
        self._coaps = None

    async def __aenter__(self) -> LwM2MServer:
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

    def _transport(self, endpoint: str) -> CoapUdpEndpoint:
        """The endpoint a client is reached on: DTLS if it registers over DTLS."""
        if endpoint in self._secure and self._coaps is not None:
            return self._coaps
        assert self._endpoint is not None, "the server is not started"
        return self._endpoint

    async def _expire_loop(self) -> None:
        loop = asyncio.get_running_loop()
        prune_at = loop.time() + HISTORY_PRUNE_INTERVAL
        while True:
            await asyncio.sleep(self._expiry_interval)
            await self.registrar.expire()
            if loop.time() >= prune_at:
                prune_at = loop.time() + HISTORY_PRUNE_INTERVAL
                await self._prune_history()

    async def _prune_history(self) -> None:
        """Drop history older than the store's ``retention.max_age``, if it has one."""
        history = self.store.history
        retention = getattr(history, "retention", None)
        if retention is None or retention.max_age is None:
            return
        try:
            await history.prune(time.time())
        except Exception:
            log.exception("could not prune the history store")

    # --- events -----------------------------------------------------------------------------

    def _emit(self, event: ServerEvent) -> None:
        if type(event) is NotificationReceived:  # by far the most frequent: nothing else to do
            for backlog in self._subscribers:
                backlog.put(event)
            return
        if isinstance(event, ClientRegistered) and event.replaced is not None:
            # A new Register ends the observations of the registration it replaces (§6.4).
            self._end_observations(event.replaced, "registered again")
        elif isinstance(event, ClientUpdated):
            self._follow_address(event.registration.endpoint)
        elif isinstance(event, ClientDeregistered):
            self._end_observations(event.registration, "de-registered")
        elif isinstance(event, RegistrationExpired):
            self._end_observations(event.registration, "registration expired")
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
        elif isinstance(event, ClientDeregistered | RegistrationExpired):
            self._queue_mode.discard(event.registration.endpoint)
            self.presence.forget(event.registration.endpoint)
        self._publish(event)

    def _end_observations(self, registration: Registration, reason: str) -> None:
        """End the live observations made under ``registration``: the client dropped them with
        it (LwM2M-TS-Core 1.2 §6.4); the registrar already removed their stored records."""
        for observation in list(self._observed.get(registration.endpoint, {}).values()):
            if observation.record.registration_id == registration.registration_id:
                observation.end(reason)

    def _follow_address(self, endpoint: str) -> None:
        """The client sent an Update from a new address (a NAT rebinding, LwM2M-TS-Core 1.2 §6.2.2):
        its notifications come from there now, so its observations are matched there."""
        addr = self.registrar.peers.get(endpoint)
        if addr is None or self._endpoint is None:
            return
        addr = normalize(addr) or addr
        transport = self._transport(endpoint)
        for observation in list(self._observed.get(endpoint, {}).values()):
            if observation.address == addr:
                continue
            if observation.address is not None and transport.move_observation(
                observation.token, observation.address, addr
            ):
                observation.address = addr

    def _publish(self, event: ServerEvent) -> None:
        for backlog in self._subscribers:
            backlog.put(event)

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
        flush = getattr(self.store.history, "flush", None)
        if flush is None:
            return
        try:
            await flush()
        except Exception:
            log.exception("could not write notifications to the history store")

    def events(self, *, backlog: int = EVENT_BACKLOG) -> EventStream:
        """Every event from now on (subscribed at this call), until the stream is closed; at most
        ``backlog`` unread ones wait, the oldest are dropped beyond (``EventStream.dropped``)."""
        return EventStream(self._subscribers, backlog)

    # --- CoAP requests from clients -----------------------------------------------------------

    def _on_request(self, event: RequestReceived) -> Any:
        message = event.message
        sender = self.registrar.endpoint_at(event.addr)
        if sender is not None and sender in self._queue_mode:
            self.presence.seen(sender)
        if self.registrar.handles(message):
            return self._registration(message, event.addr, None, secure=False)
        if message.uri_path == ("dp",):
            return self._on_send(message, event.addr)
        method = Code(message.code).name if message.code in _METHODS else code_str(message.code)
        return _refuse(f"{method} request", event.addr, Code.NOT_FOUND, f"no resource {message.uri_path_str}")

    def _on_secure_request(self, event: RequestReceived) -> Any:
        """A request over DTLS: the Registration Interface checks the peer's identity."""
        if self.registrar.handles(event.message):
            assert self._coaps is not None
            identity = self._coaps.peer_identity(event.addr)
            return self._registration(event.message, event.addr, identity, secure=True)
        return self._on_request(event)

    async def _registration(
        self, message: Message, addr: Any, identity: PeerIdentity | None, *, secure: bool
    ) -> Message:
        limited = self.registrar.admit(message, addr)
        if limited is not None:
            return limited
        refusal, message, endpoint = await self.security.check(
            message, identity, secure=secure, registrations=self.store.registrations, addr=addr
        )
        if refusal is not None:
            return refusal
        answer = await self.registrar.handle(message, addr)
        if endpoint is not None and answer.code in (Code.CREATED, Code.CHANGED):
            if secure:
                self._secure.add(endpoint)
            else:
                self._secure.discard(endpoint)
        return answer

    def _revoked(self, info: SecurityInfo) -> None:
        """Security information changed or went: end the DTLS sessions made with the old one."""
        if self._coaps is None:
            return
        for session in self._coaps.sessions():
            identity = session.identity
            if identity is None:
                continue
            if (info.mode == "x509" and identity.kind == "x509" and identity.name == info.endpoint) or (
                info.mode == "psk" and identity.kind == "psk" and identity.name == info.psk_identity
            ):
                self._coaps.close_session(session.addr)

    async def _on_send(self, message: Message, addr: Any) -> Message:
        """Send (LwM2M-TS-Core 1.2 §6.4.6): a POST to /dp from a registered client."""
        if message.code != Code.POST:
            return _refuse("Send", addr, Code.METHOD_NOT_ALLOWED, "Send is a POST to /dp")
        endpoint = self.registrar.endpoint_at(addr)
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

    # --- registrations ----------------------------------------------------------------------

    async def registration(self, endpoint: str) -> Registration:
        registration = await self.store.registrations.get(endpoint)
        if registration is None:
            raise NotRegistered(f"no client registered as {endpoint!r}")
        return registration

    async def registrations(self) -> list[Registration]:
        return await self.store.registrations.all()

    # --- device management (LwM2M-TS-Core 1.2 §6.3) -------------------------------------------

    async def send(
        self, endpoint: str, request: Request, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Response:
        """Send ``request`` to the client and decode its answer."""
        return await self._exchange(endpoint, request, timeout=timeout)

    async def _exchange(
        self, endpoint: str, request: Request, *, timeout: float | None, token: bytes = b""
    ) -> Response:
        registration = await self._reachable(endpoint)
        assert self._endpoint is not None, "the server is not started"
        message = self._rooted(registration, request.to_message(self.models))
        if token:
            message = message.replace(token=token)
        addr = self.registrar.peers.get(endpoint, registration.address)
        answer = await self._transport(endpoint).request(message, addr, timeout=timeout)
        return decode_response(request, answer, self.models)

    async def _reachable(self, endpoint: str) -> Registration:
        """The client's registration once it can be reached: a sleeping queue-mode client is
        waited for (LwM2M-TS-Core 1.2 §6.5), then looked up again, since it may have registered
        anew, moved (its Update came from a new address) or left meanwhile."""
        registration = await self.registration(endpoint)
        if registration.queue_mode and not self.presence.is_awake(endpoint):
            await self.presence.wait_awake(endpoint, self.queue_timeout)
            registration = await self.registration(endpoint)
        return registration

    @staticmethod
    def _rooted(registration: Registration, message: Message) -> Message:
        """The request under the client's alternate root path, if it has one (§6.2.1)."""
        if registration.root_path in ("", "/"):
            return message
        root = [s for s in registration.root_path.split("/") if s]
        return Message.build(
            message.type,
            message.code,
            uri_path=[*root, *message.uri_path],
            options=[o for o in message.options if o[0] != OptionNumber.URI_PATH],
            payload=message.payload,
        )

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
        request = ObserveRequest(Path.parse(path), self._accept(registration, format))
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
        registration = await self._reachable(endpoint)
        assert self._endpoint is not None, "the server is not started"
        message = self._rooted(registration, request.to_message(self.models))
        addr = self.registrar.peers.get(endpoint, registration.address)
        relation = self._transport(endpoint).observe(message, addr)
        try:
            first = await relation.next(timeout)
        except BaseException:
            relation.cancel()
            raise
        try:
            response = decode_response(request, first, self.models)
        except BaseException:
            relation.cancel()
            raise
        if not response.success or first.observe is None:
            relation.cancel()
            raise ObserveRefused(response)
        if isinstance(request, ReadCompositeRequest):
            paths, composite = request.paths, True
        else:
            paths, composite = (request.path,), False
        record = Observation(
            relation.token,
            endpoint,
            registration.registration_id,
            paths,
            composite=composite,
            content_format=response.content_format,
            created_at=time.time(),
        )
        await self.store.observations.add(record)
        return self._track(record, request, response, relation, normalize(addr) or addr)

    def _track(
        self,
        record: Observation,
        request: ObserveRequest | ReadCompositeRequest,
        response: Response | None,
        relation: CoapObservation,
        address: Any,
    ) -> ServerObservation:
        observation = ServerObservation(
            record,
            request,
            response,
            relation,
            models=self.models,
            observations=self.store.observations,
            history=self.store.history,
            emit=self._emit,
            cancel_actively=self._cancel_observation,
            address=address,
            listeners=self._subscribers,
            history_added=self._history_added,
        )
        token = record.token
        self._observations[token] = observation
        self._observed.setdefault(record.endpoint, {})[token] = observation

        def ended(_: object) -> None:
            if self._observations.get(token) is observation:
                del self._observations[token]
            mine = self._observed.get(record.endpoint)
            if mine is not None and mine.get(token) is observation:
                del mine[token]
                if not mine:
                    del self._observed[record.endpoint]

        observation._pump.add_done_callback(ended)
        return observation

    def observations(self) -> list[ServerObservation]:
        """The observations running now: made by ``observe()`` or resumed at ``start()``."""
        return list(self._observations.values())

    async def _resume_observations(self) -> None:
        """Take up the observations stored before a restart. The clients still hold them
        (LwM2M-TS-Core 1.2 §6.4: until cancelled or a new Register), so their notifications,
        sent to the same token, are decoded and delivered again instead of rejected with RST."""
        assert self._endpoint is not None
        registrations = {r.endpoint: r for r in await self.store.registrations.all()}
        for registration in registrations.values():
            # After a restart requests and Send are matched to the address kept in storage.
            self.registrar.remember(registration.endpoint, _address(registration))
        for record in await self.store.observations.all():
            registration = registrations.get(record.endpoint)
            if registration is None or registration.registration_id != record.registration_id:
                await self.store.observations.remove(record.token)  # its registration is gone
                continue
            request = _observe_request(record)
            message = self._rooted(registration, request.to_message(self.models))
            addr = _address(registration)
            try:
                relation = self._transport(record.endpoint).resume_observation(addr, record.token, message)
            except ValueError:
                continue  # an address no socket of ours reaches (e.g. IPv6 on an IPv4 server)
            self._track(record, request, None, relation, addr)

    async def _cancel_observation(self, observation: ServerObservation) -> None:
        """Active cancel: the registration again with Observe 1 and the observation's token,
        which is how the client finds the relation to drop (RFC 7641 §3.6)."""
        request = observation.request
        cancel: Request
        if isinstance(request, ReadCompositeRequest):
            cancel = dataclasses.replace(request, observe=1)
        else:
            cancel = ObserveRequest(request.path, request.format, cancel=True)
        await self._exchange(observation.endpoint, cancel, timeout=DEFAULT_TIMEOUT, token=observation.token)

    async def history(
        self, endpoint: str, path: str | Path = "/", *, since: float | None = None, limit: int | None = None
    ) -> list[HistoryEntry]:
        """Stored values from notifications, newest first."""
        return await self.store.history.query(endpoint, Path.parse(path), since=since, limit=limit)
