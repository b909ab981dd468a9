"""Observations held by the server (LwM2M-TS-Core 1.2 §6.4): each notification is
decoded, kept in the history store, sent out as an event, and handed to whoever
iterates the observation.

:class:`ObservationManager` is the server's part that starts them, indexes the running
ones by token and by endpoint, resumes the stored ones after a restart (all of them, or one
endpoint's when a node of a shared store takes a client over), ends them with
their registration and follows a client that moved; :class:`ServerObservation` is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import Any, Protocol

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import as_code
from lwm2m.codec.base import ContentFormat
from lwm2m.errors import ConnectionAborted, ResponseError
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.management import (
    ObserveRequest,
    ReadCompositeRequest,
    Request,
    Response,
    ResponseDecoder,
    decode_response,
    path_list_format,
)
from lwm2m.protocol.registration import Registration
from lwm2m.server.backlog import Backlog
from lwm2m.server.events import NotificationReceived, ObservationEnded, ServerEvent
from lwm2m.server.management import DEFAULT_TIMEOUT, DeviceManagement, rooted
from lwm2m.server.registrar import CONNECTIONS
from lwm2m.server.stats import sent_operation
from lwm2m.storage.base import HistoryStore, Observation, ObservationBinding, ObservationStore
from lwm2m.transport.address import normalize
from lwm2m.transport.tcp import CoapTcpEndpoint
from lwm2m.transport.udp import CoapObservation

log = logging.getLogger(__name__)

_END = object()
BACKLOG = 256  # unread notifications kept per observation


class ServerObservation:
    """``response`` is the first answer (the current value); iterate for later notifications.

    An observation resumed after a restart has no first answer (``response`` is None).
    Iteration ends when the client ends the relation or the observation is cancelled.
    """

    def __init__(
        self,
        record: Observation,
        request: ObserveRequest | ReadCompositeRequest,
        response: Response | None,
        relation: CoapObservation | None,
        *,
        models: ObjectRegistry,
        observations: ObservationStore,
        history: HistoryStore,
        emit: Callable[[ServerEvent], None],
        cancel_actively: Callable[[ServerObservation], Any],
        address: Any = None,
        listeners: Collection[object] | None = None,
        history_added: Callable[[], None] | None = None,
        reconnects: Callable[[ServerObservation], None] | None = None,
    ) -> None:
        """``listeners``, when given, is the server's live collection of event subscribers: no
        NotificationReceived is built while it is empty. ``history_added`` is called after each
        ``history.add``, for the server to flush the history soon after. ``reconnects``, given
        for an observation over a TCP or TLS connection, is called when that connection ends:
        the observation is then kept, dormant, until ``rebind``; ``relation`` None starts it so."""
        self.record = record
        self.address = address  # where the client sends its notifications from, as last known
        self.request = request
        self.response = response
        self._relation = relation
        self._models = models
        self._observations = observations
        self._history = history
        self._emit = emit
        self._cancel_actively = cancel_actively
        self._listeners = listeners
        self._history_added = history_added
        self._decode = ResponseDecoder(request, models)
        # Only the newest notifications wait for a reader: every one also goes to the
        # history and the event stream, so a caller that never iterates costs bounded memory.
        self._backlog: Backlog[Any] = Backlog(BACKLOG)
        self._keep_record = False  # closed by a stopping server: a restart resumes it
        self._end_reason: str | None = None  # why the server ended it, when it did
        self._started = False
        self.notifications = 0  # notifications received so far (read by the metrics export)
        self._ending: asyncio.Task[None] | None = None
        self._reconnects = reconnects
        self._rebound: asyncio.Future[CoapObservation] | None = None  # while dormant
        self._pump = asyncio.create_task(self._run())
        self._pump.add_done_callback(self._pump_done)

    @property
    def endpoint(self) -> str:
        return self.record.endpoint

    @property
    def token(self) -> bytes:
        return self.record.token

    async def _run(self) -> None:
        self._started = True
        reason = "ended by the client"
        endpoint, token, paths = self.endpoint, self.token, self.record.paths
        decode = self._decode
        add = self._history.add
        added = self._history_added
        listeners = self._listeners
        emit = self._emit
        backlog = self._backlog
        offer = backlog.put
        relation = self._relation
        try:
            while True:
                if relation is None:
                    # Over a connection that ended: wait, kept, for the client to come back.
                    relation = self._relation = await self._reconnected()
                try:
                    async for message in relation:
                        self.notifications += 1
                        code = int(message.code)
                        if code >> 5 != 2:
                            reason = f"error {code >> 5}.{code & 31:02d}"
                            break
                        try:
                            fmt, records = decode.content(message)
                        except ResponseError as exc:
                            reason = f"undecodable notification: {exc}"
                            break
                        if records:
                            add(endpoint, records, received_at=time.time())
                            if added is not None:
                                added()
                        if listeners is None or listeners:
                            emit(NotificationReceived(endpoint, token, paths, records))
                        if backlog.waited_on:
                            offer(Response(as_code(code), records, fmt, payload=message.payload))
                        else:
                            # Kept for a reader to come, maybe for long: as a tuple of bytes and
                            # numbers, which the garbage collector stops tracking, instead of a
                            # Response with its records, which would end in the oldest generation
                            # and make full collections come more often. Decoded again if read.
                            offer((code, fmt, message.payload))
                except ConnectionAborted:
                    if self._reconnects is None:
                        raise
                    # RFC 8323 §7.2: the relation ended with its connection, not the observation
                    # the server wants: kept until the client is back, then observed again.
                    relation = None
                    self._reconnects(self)
                    continue
                break
        except (TimeoutError, ConnectionError) as exc:
            reason = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            await self._finish(reason)

    async def _reconnected(self) -> CoapObservation:
        """The relation over the client's next connection (``rebind``)."""
        waiter = self._rebound = asyncio.get_running_loop().create_future()
        try:
            return await waiter
        finally:
            self._rebound = None

    @property
    def dormant(self) -> bool:
        """Whether it waits for its client to connect again (over TCP or TLS, RFC 8323 §7.2)."""
        return self._rebound is not None

    def rebind(self, relation: CoapObservation, address: Any) -> bool:
        """Go on with ``relation``, the same Observe sent again over the client's new connection
        from ``address``: its answer comes as a notification. False when it is not dormant."""
        waiter = self._rebound
        if waiter is None or waiter.done():
            return False
        self.address = address
        waiter.set_result(relation)
        return True

    async def _finish(self, reason: str) -> None:
        if self._end_reason is not None:
            reason = self._end_reason
        if self._keep_record:
            reason = "server stopped"
        else:
            with contextlib.suppress(Exception):
                await self._observations.remove(self.token)
        self._emit(ObservationEnded(self.endpoint, self.token, reason))
        self._backlog.put(_END)

    def _pump_done(self, pump: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its coroutine, finally included:
        # the record would stay stored and no ObservationEnded would come. End it here.
        if not self._started:
            self._ending = asyncio.get_running_loop().create_task(self._finish("cancelled"))

    def __aiter__(self) -> ServerObservation:
        return self

    async def __anext__(self) -> Response:
        backlog = self._backlog
        if not backlog:
            await backlog.wait()
        if backlog.peek() is _END:
            raise StopAsyncIteration  # left in place: the next call ends too
        item = backlog.pop()
        if type(item) is tuple:
            code, fmt, payload = item
            code = as_code(code)
            try:
                records = self._decode.records(fmt, payload) if payload else ()
            except ResponseError as exc:  # the object definitions changed since
                return Response(code, (), fmt, diagnostic=str(exc), payload=payload)
            return Response(code, records, fmt, payload=payload)
        return item  # type: ignore[no-any-return]

    async def next(self, timeout: float | None = None) -> Response:
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def cancel(self, *, active: bool = False) -> None:
        """Passive cancel forgets the relation (the next notification gets RST, RFC 7641 §3.6);
        active cancel also sends a GET with Observe=1."""
        if self._relation is not None:
            self._relation.cancel()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        if self._ending is not None:
            await self._ending
        if active:
            await self._cancel_actively(self)

    def end(self, reason: str) -> None:
        """End it here because the client no longer holds it: it registered anew, de-registered
        or expired (LwM2M-TS-Core 1.2 §6.4: the relations end with the registration). Nothing
        is sent; iteration stops and ObservationEnded carries ``reason`` once the end is done."""
        self._end_reason = reason
        if self._relation is not None:
            self._relation.cancel()
        self._pump.cancel()

    async def close(self) -> None:
        """Stop delivering here but keep the stored record, so that the server, started again,
        resumes the observation: the client still holds it (RFC 7641 §3.6 needs a cancel)."""
        self._keep_record = True
        await self.cancel()


def address_of(registration: Registration) -> Any:
    """The registration's address in the form the transport reports senders."""
    return normalize(registration.address) or registration.address


def stored_request(record: Observation) -> ObserveRequest | ReadCompositeRequest:
    """The Observe (or Observe-Composite, §6.4.4) a stored observation was made with."""
    fmt: ContentFormat | None = None
    if record.content_format is not None:
        with contextlib.suppress(ValueError):
            fmt = ContentFormat(record.content_format)
    if record.composite:
        return ReadCompositeRequest(record.paths, path_list_format(fmt), fmt, observe=0)
    return ObserveRequest(record.path, fmt)


class ObserveChannel(Protocol):
    """What the observation manager needs of a socket: its observe relations (``CoapUdpEndpoint``)."""

    def observe(self, message: Message, addr: Any) -> CoapObservation: ...

    def resume_observation(
        self, addr: Any, token: bytes, request: Message | None = None
    ) -> CoapObservation: ...

    def move_observation(self, token: bytes, addr: Any, new_addr: Any) -> bool: ...


class ObservationManager:
    """The server's running observations, by token and by endpoint, and their life cycle.

    ``management`` reaches the clients (it waits for a sleeping one and cancels actively),
    ``relations`` answers the socket an endpoint is reached on, ``peers`` the address its
    last Register/Update came from. Each observation stores its record in ``observations``,
    its notifications in ``history`` (then calls ``history_added``) and sends its events to
    ``emit``; ``listeners`` is the live collection of event subscribers.
    """

    def __init__(
        self,
        management: DeviceManagement,
        *,
        models: ObjectRegistry,
        observations: ObservationStore,
        history: HistoryStore,
        emit: Callable[[ServerEvent], None],
        relations: Callable[[str], ObserveChannel],
        peers: Mapping[str, Any],
        listeners: Collection[object] | None = None,
        history_added: Callable[[], None] | None = None,
        oscore_resumed: Callable[[Observation], Awaitable[None]] | None = None,
    ) -> None:
        """``oscore_resumed`` is awaited for each stored observation made over OSCORE before it
        is taken up again: its notifications are to be verified against its request's binding."""
        self._management = management
        self._oscore_resumed = oscore_resumed
        self._models = models
        self._store = observations
        self._history = history
        self._emit = emit
        self._relations = relations
        self._peers = peers
        self._listeners = listeners
        self._history_added = history_added
        self._running: dict[bytes, ServerObservation] = {}  # by token, until they end
        # The same by endpoint: an expiry, Register or Update looks at its own, not at them all.
        self._by_endpoint: dict[str, dict[bytes, ServerObservation]] = {}
        self._ended_notifications = 0  # those of observations no longer running
        self._reobserving: set[asyncio.Future[object]] = set()  # observe again over new connections

    def notifications_received(self) -> int:
        """Notifications received so far by the observations this manager ran (counted by each
        as it takes them, summed here when asked: nothing is shared on the way in)."""
        return self._ended_notifications + sum(o.notifications for o in self._running.values())

    def running(self) -> list[ServerObservation]:
        """The observations running now: started here or resumed."""
        return list(self._running.values())

    def runs(self, token: bytes) -> bool:
        """Whether the observation with ``token`` runs here."""
        return token in self._running

    def of(self, endpoint: str) -> list[ServerObservation]:
        """The endpoint's running observations."""
        return list(self._by_endpoint.get(endpoint, {}).values())

    async def start(
        self, endpoint: str, request: ObserveRequest | ReadCompositeRequest, timeout: float | None
    ) -> ServerObservation | Response:
        """Send the Observe (or Observe-Composite) and keep the observation the client starts;
        the client's answer instead when it starts none (an error, or no Observe option)."""
        registration = await self._management.reachable(endpoint)
        message = rooted(registration, request.to_message(self._models))
        addr = self._peers.get(endpoint, registration.address)
        channel = self._relations(endpoint)
        relation = channel.observe(message, addr)
        stats = self._management.stats
        operation = sent_operation(request)
        started = time.perf_counter()
        try:
            try:
                first = await relation.next(timeout)
            except Exception as exc:
                stats.failed(operation, "timeout" if isinstance(exc, TimeoutError) else "error")
                raise
            stats.timed(operation, time.perf_counter() - started)
            stats.count(operation, first.code)
            response = decode_response(request, first, self._models)
        except BaseException:
            relation.cancel()
            raise
        if not response.success or first.observe is None:
            relation.cancel()
            return response
        if isinstance(request, ReadCompositeRequest):
            paths, composite = request.paths, True
        else:
            paths, composite = (request.path,), False
        binding = relation.oscore
        record = Observation(
            relation.token,
            endpoint,
            registration.registration_id,
            paths,
            composite=composite,
            content_format=response.content_format,
            created_at=time.time(),
            oscore=None
            if binding is None
            else ObservationBinding(binding.kid, binding.piv, binding.kid_context),
        )
        await self._store.add(record)
        over_tcp = isinstance(channel, CoapTcpEndpoint)
        return self._track(record, request, response, relation, normalize(addr) or addr, over_tcp)

    def _track(
        self,
        record: Observation,
        request: ObserveRequest | ReadCompositeRequest,
        response: Response | None,
        relation: CoapObservation | None,
        address: Any,
        over_tcp: bool = False,
    ) -> ServerObservation:
        observation = ServerObservation(
            record,
            request,
            response,
            relation,
            models=self._models,
            observations=self._store,
            history=self._history,
            emit=self._emit,
            cancel_actively=self._cancel,
            address=address,
            listeners=self._listeners,
            history_added=self._history_added,
            reconnects=self._disconnected if over_tcp else None,
        )
        token = record.token
        self._running[token] = observation
        self._by_endpoint.setdefault(record.endpoint, {})[token] = observation

        def ended(_: object) -> None:
            if self._running.get(token) is observation:
                del self._running[token]
                self._ended_notifications += observation.notifications
            mine = self._by_endpoint.get(record.endpoint)
            if mine is not None and mine.get(token) is observation:
                del mine[token]
                if not mine:
                    del self._by_endpoint[record.endpoint]

        observation._pump.add_done_callback(ended)
        return observation

    async def resume(self, registration_of: Callable[[str], Awaitable[Registration | None]]) -> None:
        """Take up the observations stored before a restart. The clients still hold them
        (LwM2M-TS-Core 1.2 §6.4: until cancelled or a new Register), so their notifications,
        sent to the same token, are decoded and delivered again instead of rejected with RST.
        ``registration_of`` answers an endpoint's stored registration (read once per endpoint
        with observations); a record whose registration is gone is dropped."""
        known: dict[str, Registration | None] = {}
        for record in await self._store.all():
            if record.endpoint in known:
                registration = known[record.endpoint]
            else:
                registration = known[record.endpoint] = await registration_of(record.endpoint)
            if registration is None or registration.registration_id != record.registration_id:
                await self._store.remove(record.token)  # its registration is gone
                continue
            await self._oscore(record)
            self._resume(record, registration, address_of(registration))

    async def resume_endpoint(self, registration: Registration, addr: Any) -> None:
        """Take up the stored observations of one client, whose notifications come from ``addr``:
        a node of a shared store takes over a client whose node is gone (the client still holds
        its observations, LwM2M-TS-Core 1.2 §6.4). Idempotent: an observation running here
        already only follows ``addr``. A record of an older registration is dropped."""
        endpoint = registration.endpoint
        addr = normalize(addr) or addr
        for record in await self._store.for_endpoint(endpoint):
            if record.registration_id != registration.registration_id:
                await self._store.remove(record.token)  # made under a registration since replaced
                continue
            await self._oscore(record)
            if record.token not in self._running:  # (asked after the await: adoptions may race)
                self._resume(record, registration, addr)
        self.follow(endpoint, addr)

    async def _oscore(self, record: Observation) -> None:
        if record.oscore is not None and self._oscore_resumed is not None:
            await self._oscore_resumed(record)

    def _resume(self, record: Observation, registration: Registration, addr: Any) -> None:
        """Match the notifications of the stored observation ``record`` from ``addr`` again; over
        TCP or TLS, where the relation ended with the client's old connection (RFC 8323 §7.2),
        keep it dormant until the client connects again (``reconnected``)."""
        request = stored_request(record)
        if registration.transport in CONNECTIONS:
            self._track(record, request, None, None, addr, over_tcp=True)
            return
        message = rooted(registration, request.to_message(self._models))
        try:
            relation = self._relations(record.endpoint).resume_observation(addr, record.token, message)
        except ValueError:
            return  # an address no socket of ours reaches (e.g. IPv6 on an IPv4 server)
        self._track(record, request, None, relation, addr)

    # --- over TCP and TLS: observations outlive the client's connections ----------------------

    def _disconnected(self, observation: ServerObservation) -> None:
        """An observation's connection ended (the client sleeps in queue mode, or lost it): it
        waits for the client's next connection; if that is open already, it is observed there."""
        endpoint = observation.endpoint
        addr = self._peers.get(endpoint)
        channel = self._relations(endpoint)
        if (
            addr is not None
            and isinstance(channel, CoapTcpEndpoint)
            and channel.connected(addr)
            and (normalize(addr) or addr) != observation.address
        ):
            self._spawn(self.reobserve(endpoint))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._reobserving.add(task)
        task.add_done_callback(self._reobserving.discard)

    def reconnected(self, endpoint: str) -> None:
        """The client came back over a new TCP or TLS connection (its Update or Register came
        over it): its dormant observations are observed again there, in the background."""
        mine = self._by_endpoint.get(endpoint)
        if mine and any(o.dormant for o in mine.values()):
            self._spawn(self.reobserve(endpoint))

    async def reobserve(self, endpoint: str) -> int:
        """Send the Observe of each dormant observation of ``endpoint`` again over its current
        connection, with the same token, paths and format: a relation over TCP ends with its
        connection (RFC 8323 §7.2) while the server's observation goes on (LwM2M-TS-Core 1.2
        §6.4 ends it only with the registration). The answer (the current value) and the later
        notifications arrive as the observation's. Returns how many were sent."""
        try:
            registration = await self._management.reachable(endpoint)
        except Exception as exc:
            log.info("no re-observe for %s: %s", endpoint, exc)
            return 0
        addr = self._peers.get(endpoint)
        channel = self._relations(endpoint)
        if addr is None or not isinstance(channel, CoapTcpEndpoint) or not channel.connected(addr):
            return 0
        address = normalize(addr) or addr
        sent = 0
        for observation in list(self._by_endpoint.get(endpoint, {}).values()):
            if not observation.dormant or observation.record.registration_id != registration.registration_id:
                continue
            message = rooted(registration, observation.request.to_message(self._models))
            relation = channel.observe(message.replace(token=observation.token), address)
            if observation.rebind(relation, address):
                sent += 1
            else:
                relation.cancel()
        if sent:
            log.info("observed %s again over its new connection: %d observations", endpoint, sent)
        return sent

    async def _cancel(self, observation: ServerObservation) -> None:
        """Active cancel: the registration again with Observe 1 and the observation's token,
        which is how the client finds the relation to drop (RFC 7641 §3.6)."""
        request = observation.request
        cancel: Request
        if isinstance(request, ReadCompositeRequest):
            cancel = dataclasses.replace(request, observe=1)
        else:
            cancel = ObserveRequest(request.path, request.format, cancel=True)
        await self._management.send(
            observation.endpoint, cancel, timeout=DEFAULT_TIMEOUT, token=observation.token
        )

    def end_registration(self, registration: Registration, reason: str) -> None:
        """End the live observations made under ``registration``: the client dropped them with
        it (LwM2M-TS-Core 1.2 §6.4); the registrar already removed their stored records."""
        for observation in list(self._by_endpoint.get(registration.endpoint, {}).values()):
            if observation.record.registration_id == registration.registration_id:
                observation.end(reason)

    def follow(self, endpoint: str, addr: Any) -> None:
        """The client sent an Update from ``addr``, a new address (a NAT rebinding,
        LwM2M-TS-Core 1.2 §6.2.2): its notifications come from there now, so its observations
        are matched there."""
        mine = self._by_endpoint.get(endpoint)
        if not mine:
            return
        addr = normalize(addr) or addr
        relations = self._relations(endpoint)
        for observation in list(mine.values()):
            if observation.address == addr:
                continue
            if observation.address is not None and relations.move_observation(
                observation.token, observation.address, addr
            ):
                observation.address = addr

    async def close(self) -> None:
        """Stop delivering; the stored records stay, so that the next start resumes them."""
        for task in list(self._reobserving):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for observation in list(self._running.values()):
            await observation.close()
