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
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Mapping
from typing import Any, Protocol

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, as_code
from lwm2m.codec.base import ContentFormat
from lwm2m.errors import ConnectionAborted, ResponseError
from lwm2m.model.path import Path
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
from lwm2m.server.clock import SharedStamps
from lwm2m.server.events import NotificationReceived, ObservationEnded, ServerEvent
from lwm2m.server.management import DEFAULT_TIMEOUT, DeviceManagement, rooted
from lwm2m.server.registrar import CONNECTIONS
from lwm2m.server.stats import sent_operation
from lwm2m.storage.base import HistoryStore, Observation, ObservationBinding, ObservationStore, Reachable
from lwm2m.transport.address import normalize
from lwm2m.transport.tcp import CoapTcpEndpoint
from lwm2m.transport.udp import CoapObservation

log = logging.getLogger(__name__)

_END = object()
_DISCARDED = ()  # an observation's unread notifications when nobody reads them (``discard_unread``)
_CONTENT = int(Code.CONTENT)
BACKLOG = 256  # unread notifications kept per observation
SHAPES = 1024  # requests (and their decoders) kept for the observations to share
RESUME_SLICE = 1000  # stored observations read and taken up before a resume lets other work in

# An observation's state: taking notifications, waiting for its client's next connection
# (over TCP or TLS, RFC 8323 §7.2), or ending (its end is under way or done).
_RUNNING, _DORMANT, _ENDING = 0, 1, 2


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class _Context:
    """What the observations of one manager share, rather than each holding it: where records,
    notifications and events go, and what it calls back (``reconnects`` only over TCP or TLS)."""

    models: ObjectRegistry
    observations: ObservationStore
    history: HistoryStore
    emit: Callable[[ServerEvent], None]
    cancel_actively: Callable[[ServerObservation], Awaitable[object]]
    listeners: Collection[object] | None = None
    history_added: Callable[[], None] | None = None
    reconnects: Callable[[ServerObservation], None] | None = None
    ended: Callable[[ServerObservation], None] | None = None


class _Ending:
    """How an observation ends, made when its end comes (or is prepared): the few that end hold
    it, not every running one (three slots fewer each)."""

    __slots__ = ("keep_record", "reason", "task")

    def __init__(self) -> None:
        self.keep_record = False  # closed by a stopping server: a restart resumes it
        self.reason: str | None = None  # why the server ended it, when it did
        self.task: asyncio.Task[None] | None = None  # the end under way


class ServerObservation:
    """``response`` is the first answer (the current value); iterate for later notifications.

    An observation resumed after a restart has no first answer (``response`` is None).
    Iteration ends when the client ends the relation or the observation is cancelled.

    Made by :class:`ObservationManager`. It takes its notifications as its relation hands them
    over (``deliver``), with no task of its own: an idle observation is a few objects.
    """

    __slots__ = (
        "_context",
        "_decode",
        "_ending",
        "_first",
        "_relation",
        "_state",
        "_unread",
        "address",
        "notifications",
        "record",
    )

    def __init__(
        self,
        record: Observation,
        request: ObserveRequest | ReadCompositeRequest,
        response: Response | None,
        relation: CoapObservation | None,
        context: _Context,
        *,
        address: Any = None,
        decoder: ResponseDecoder | None = None,
    ) -> None:
        """``context`` is shared by the manager's observations; ``decoder`` decodes answers to
        ``request`` (shared by the observations made with an equal request). Over TCP or TLS
        (``context.reconnects`` given) the observation outlives its relation's connection: it
        is kept, dormant, until ``rebind``; ``relation`` None starts it so."""
        self.record = record
        self.address = address  # where the client sends its notifications from, as last known
        # The first answer as it came, decoded again when asked for: it is read once, when the
        # observation starts. A 2.05 in the record's format (as nearly every first answer is)
        # keeps only its payload; another, a tuple (which the garbage collector stops tracking).
        self._first: bytes | tuple[int, int | None, bytes] | None = None
        if response is not None:
            code, fmt = int(response.code), response.content_format
            if code == _CONTENT and fmt == record.content_format:
                self._first = response.payload
            else:
                self._first = (code, fmt, response.payload)
        self._context = context
        # The decoder also holds the request (``request``): one slot for both.
        if decoder is None or decoder.request is not request:
            decoder = ResponseDecoder(request, context.models)
        self._decode = decoder
        # Only the newest notifications wait for a reader: every one also goes to the
        # history and the event stream, so a caller that never iterates costs bounded memory.
        # Until a reader comes, a list (None while empty); a Backlog it waits on from then on.
        self._unread: list[Any] | Backlog[Any] | tuple[()] | None = None
        self.notifications = 0  # notifications received so far (read by the metrics export)
        self._ending: _Ending | None = None  # made when its end comes (or is prepared)
        self._relation = relation
        if relation is None:
            self._state = _DORMANT  # over a connection that ended: kept until the client is back
        else:
            self._state = _RUNNING
            relation.deliver_to(self)

    @property
    def request(self) -> ObserveRequest | ReadCompositeRequest:
        """The Observe (or Observe-Composite) it was made with."""
        request = self._decode.request
        assert isinstance(request, ObserveRequest | ReadCompositeRequest)
        return request

    @property
    def response(self) -> Response | None:
        """The first answer: the value when the observation started (None once resumed)."""
        first = self._first
        if first is None:
            return None
        if type(first) is bytes:
            return self._decoded((_CONTENT, self.record.content_format, first))
        assert isinstance(first, tuple)
        return self._decoded(first)

    def _decoded(self, item: tuple[int, int | None, bytes]) -> Response:
        code, fmt, payload = item
        code = as_code(code)
        try:
            records = self._decode.records(fmt, payload) if payload and fmt is not None else ()
        except ResponseError as exc:  # the object definitions changed since
            return Response(code, (), fmt, diagnostic=str(exc), payload=payload)
        return Response(code, records, fmt, payload=payload)

    @property
    def endpoint(self) -> str:
        return self.record.endpoint

    @property
    def token(self) -> bytes:
        return self.record.token

    def deliver(self, item: Message | BaseException | None, last: bool) -> None:
        """Take what the relation hands over (see ``RelationSink``): a notification is decoded,
        added to the history, sent out as an event and kept for a reader; an error code, an
        undecodable notification, an exception or the relation's end ends the observation."""
        if self._state != _RUNNING:
            return
        if item is None:
            self._end("ended by the client")
            return
        if isinstance(item, BaseException):
            self._failed(item)
            return
        self.notifications += 1
        code = int(item.code)
        if code >> 5 != 2:
            self._end(f"error {code >> 5}.{code & 31:02d}")
            return
        context = self._context
        try:
            fmt, records = self._decode.content(item)
            if records:
                context.history.add(self.record.endpoint, records, received_at=time.time())
                if context.history_added is not None:
                    context.history_added()
            listeners = context.listeners
            if listeners is None or listeners:
                record = self.record
                context.emit(NotificationReceived(record.endpoint, record.token, record.paths, records))
        except ResponseError as exc:
            self._end(f"undecodable notification: {exc}")
            return
        except Exception as exc:  # a defect here must not reach the socket's reader
            log.exception("notification of %s not taken", self.record.endpoint)
            self._end(str(exc) or type(exc).__name__)
            return
        unread = self._unread
        if unread is None:
            self._unread = [(code, fmt, item.payload)]
        elif unread is _DISCARDED:
            pass  # nobody reads it (``discard_unread``)
        elif type(unread) is list:
            # Kept for a reader to come, maybe for long: as a tuple of bytes and numbers, which
            # the garbage collector stops tracking, instead of a Response with its records,
            # which would end in the oldest generation and make full collections come more
            # often. Decoded again if read.
            unread.append((code, fmt, item.payload))
            if len(unread) > BACKLOG:
                del unread[0]
        else:
            assert isinstance(unread, Backlog)
            if unread.waited_on:
                unread.put(Response(as_code(code), records, fmt, payload=item.payload))
            else:
                unread.put((code, fmt, item.payload))
        if last:
            self._end("ended by the client")

    def _failed(self, exc: BaseException) -> None:
        context = self._context
        if isinstance(exc, ConnectionAborted) and context.reconnects is not None:
            # RFC 8323 §7.2: the relation ended with its connection, not the observation the
            # server wants: kept until the client is back, then observed again (``rebind``).
            self._relation = None
            self._state = _DORMANT
            context.reconnects(self)
            return
        self._end(str(exc) or type(exc).__name__)

    def _end(self, reason: str) -> None:
        """Start the end (once): the relation is let go, the stored record removed unless the
        server stops, ObservationEnded sent, a reader's iteration ended."""
        if self._state == _ENDING:
            return
        self._state = _ENDING
        self._end_state().task = asyncio.get_running_loop().create_task(self._finish(reason))

    def _end_state(self) -> _Ending:
        ending = self._ending
        if ending is None:
            ending = self._ending = _Ending()
        return ending

    def _let_go(self) -> None:
        relation, self._relation = self._relation, None
        if relation is not None:
            relation.cancel(self.address)  # the next notification gets RST (RFC 7641 §3.6)

    async def _finish(self, reason: str) -> None:
        context = self._context
        try:
            self._let_go()
            ending = self._end_state()
            if ending.reason is not None:
                reason = ending.reason
            if ending.keep_record:
                reason = "server stopped"
            else:
                with contextlib.suppress(Exception):
                    await context.observations.remove(self.token)
            context.emit(ObservationEnded(self.endpoint, self.token, reason))
            unread = self._unread
            if isinstance(unread, Backlog):
                unread.put(_END)
            elif type(unread) is list:
                unread.append(_END)
                if len(unread) > BACKLOG:
                    del unread[0]
            else:  # none, or nobody reads them
                self._unread = [_END]
        finally:
            if context.ended is not None:
                context.ended(self)

    @property
    def running(self) -> bool:
        """Whether it runs (or waits, dormant, for its client's next connection): not ended."""
        return self._state != _ENDING

    def discard_unread(self) -> None:
        """Keep no notification for a reader from now on: whoever holds it reads none (the
        REST API, whose users have them as events and in the history). Iterating it later
        gives the notifications from then on, and its end."""
        if not isinstance(self._unread, Backlog):
            self._unread = _DISCARDED

    @property
    def dormant(self) -> bool:
        """Whether it waits for its client to connect again (over TCP or TLS, RFC 8323 §7.2)."""
        return self._state == _DORMANT

    def rebind(self, relation: CoapObservation, address: Any) -> bool:
        """Go on with ``relation``, the same Observe sent again over the client's new connection
        from ``address``: its answer comes as a notification. False when it is not dormant."""
        if self._state != _DORMANT:
            return False
        self.address = address
        self._state = _RUNNING
        self._relation = relation
        relation.deliver_to(self)
        return True

    def _backlog(self) -> Backlog[Any]:
        """What a reader waits on, made at the first read from what came until then."""
        unread = self._unread
        if isinstance(unread, Backlog):
            return unread
        backlog: Backlog[Any] = Backlog(BACKLOG)
        for item in unread or ():
            backlog.put(item)
        self._unread = backlog
        return backlog

    def __aiter__(self) -> ServerObservation:
        return self

    async def __anext__(self) -> Response:
        backlog = self._backlog()
        if not backlog:
            await backlog.wait()
        if backlog.peek() is _END:
            raise StopAsyncIteration  # left in place: the next call ends too
        item = backlog.pop()
        if type(item) is tuple:
            return self._decoded(item)
        return item  # type: ignore[no-any-return]

    async def next(self, timeout: float | None = None) -> Response:
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def cancel(self, *, active: bool = False) -> None:
        """Passive cancel forgets the relation (the next notification gets RST, RFC 7641 §3.6);
        active cancel also sends a GET with Observe=1."""
        self._end("cancelled")
        self._let_go()
        ending = self._end_state().task
        assert ending is not None
        try:
            await asyncio.shield(ending)  # a caller cancelled meanwhile does not stop the end
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not ending.cancelled() or (task is not None and task.cancelling()):
                raise  # the caller was cancelled (the end goes on)
        if active:
            await self._context.cancel_actively(self)

    def end(self, reason: str) -> None:
        """End it here because the client no longer holds it: it registered anew, de-registered
        or expired (LwM2M-TS-Core 1.2 §6.4: the relations end with the registration). Nothing
        is sent; iteration stops and ObservationEnded carries ``reason`` once the end is done."""
        self._end_state().reason = reason
        self._end(reason)
        self._let_go()

    async def close(self) -> None:
        """Stop delivering here but keep the stored record, so that the server, started again,
        resumes the observation: the client still holds it (RFC 7641 §3.6 needs a cancel)."""
        self._end_state().keep_record = True
        await self.cancel()


def _canonical(addr: Any) -> Any:
    """``addr`` in the form the transport reports senders: ``addr`` itself when it is in that
    form already (as the address a client's last Register or Update came from is), so that an
    observation shares it rather than holding an equal copy (a tuple, a host string, a port)."""
    canonical = normalize(addr) or addr
    return addr if canonical == addr else canonical


def address_of(registration: Registration | Reachable) -> Any:
    """The registration's address in the form the transport reports senders."""
    return _canonical(registration.address)


def stored_request(record: Observation) -> ObserveRequest | ReadCompositeRequest:
    """The Observe (or Observe-Composite, §6.4.4) a stored observation was made with."""
    fmt: ContentFormat | None = None
    if record.content_format is not None:
        with contextlib.suppress(ValueError):
            fmt = ContentFormat(record.content_format)
    if record.composite:
        return ReadCompositeRequest(record.paths, path_list_format(fmt), fmt, observe=0)
    return ObserveRequest(record.path, fmt)


# A request, its decoder, its paths and its message (``ObservationManager._shape``).
_Shape = tuple[ObserveRequest | ReadCompositeRequest, ResponseDecoder, tuple[Path, ...], Message]


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
        name: Callable[[str], str] | None = None,
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
        # The server's own copy of a registered client's name (``Registrar.name``): a
        # registration read from a file store holds a copy of its own.
        self._name = name
        self._listeners = listeners
        self._history_added = history_added
        # What the observations share: one context over datagrams, one over connections.
        # When each observation began (created_at), to 10 ms: a float object per 10 ms, not each.
        self._stamp = SharedStamps(resolution=0.01)
        self._context = _Context(
            models,
            observations,
            history,
            emit,
            self._cancel,
            listeners=listeners,
            history_added=history_added,
            ended=self._forget,
        )
        self._tcp_context = dataclasses.replace(self._context, reconnects=self._disconnected)
        # One request and its decoder per shape of request (path, format): the observations made
        # with an equal request share them (a decoder keeps no state of one observation).
        self._shapes: dict[ObserveRequest | ReadCompositeRequest, _Shape] = {}
        # The running observations by endpoint (an expiry, Register or Update looks at its own,
        # not at them all), then by token: the observation itself while the endpoint has one
        # (as most have: a dict each would cost more than the observation). The one index: a
        # second by token would cost ~40 bytes an observation at a million, for lookups that
        # know the endpoint anyway.
        self._by_endpoint: dict[str, ServerObservation | dict[bytes, ServerObservation]] = {}
        self._ended_notifications = 0  # those of observations no longer running
        self._reobserving: set[asyncio.Future[object]] = set()  # observe again over new connections
        # While ``resume`` runs: the endpoints whose registration ended meanwhile.
        self._ended_meanwhile: set[str] | None = None

    def notifications_received(self) -> int:
        """Notifications received so far by the observations this manager ran (counted by each
        as it takes them, summed here when asked: nothing is shared on the way in)."""
        return self.counts()[1]

    def counts(self) -> tuple[int, int]:
        """The observations running, and ``notifications_received()``, in one pass over them (a
        scrape of the metrics asks for both)."""
        running = 0
        notifications = self._ended_notifications
        for observation in self._all():
            running += 1
            notifications += observation.notifications
        return running, notifications

    def _all(self) -> Iterator[ServerObservation]:
        for mine in self._by_endpoint.values():
            if type(mine) is dict:
                yield from mine.values()
            else:
                assert isinstance(mine, ServerObservation)
                yield mine

    def running(self) -> list[ServerObservation]:
        """The observations running now: started here or resumed (an endpoint's together)."""
        return list(self._all())

    def runs(self, endpoint: str, token: bytes) -> bool:
        """Whether the observation of ``endpoint`` with ``token`` runs here."""
        mine = self._by_endpoint.get(endpoint)
        if mine is None:
            return False
        if isinstance(mine, ServerObservation):
            return mine.token == token
        return token in mine

    def of(self, endpoint: str) -> list[ServerObservation]:
        """The endpoint's running observations."""
        mine = self._by_endpoint.get(endpoint)
        if mine is None:
            return []
        if isinstance(mine, ServerObservation):
            return [mine]
        return list(mine.values())

    async def start(
        self, endpoint: str, request: ObserveRequest | ReadCompositeRequest, timeout: float | None
    ) -> ServerObservation | Response:
        """Send the Observe (or Observe-Composite) and keep the observation the client starts;
        the client's answer instead when it starts none (an error, or no Observe option)."""
        request, _, paths, message = self._shape(request)
        registration = await self._management.reachable(endpoint)
        message = rooted(registration, message)
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
            relation.cancel(addr)
            raise
        if not response.success or first.observe is None:
            relation.cancel(addr)
            return response
        composite = isinstance(request, ReadCompositeRequest)
        binding = relation.oscore
        name = registration.endpoint  # the stored name, shared rather than the caller's copy
        record = Observation(
            relation.token,
            name if self._name is None else self._name(name),
            registration.registration_id,
            paths,
            composite=composite,
            content_format=response.content_format,
            created_at=self._stamp(),
            oscore=None
            if binding is None
            else ObservationBinding(binding.kid, binding.piv, binding.kid_context),
        )
        await self._store.add(record)
        over_tcp = isinstance(channel, CoapTcpEndpoint)
        return self._track(record, request, response, relation, _canonical(addr), over_tcp)

    def _shape(self, request: ObserveRequest | ReadCompositeRequest) -> _Shape:
        """The request equal to ``request`` already in use (else ``request``), its decoder, its
        paths and its message (a token is given to each copy sent), for the observations made
        with it to share: the endpoint keeps each one's request, with the options of this one."""
        shape = self._shapes.get(request)
        if shape is None:
            if len(self._shapes) >= SHAPES:  # many kinds of request: start over (bounded memory)
                self._shapes.clear()
            paths = request.paths if isinstance(request, ReadCompositeRequest) else (request.path,)
            decoder = ResponseDecoder(request, self._models)
            shape = self._shapes[request] = (request, decoder, paths, request.to_message(self._models))
        return shape

    def _track(
        self,
        record: Observation,
        request: ObserveRequest | ReadCompositeRequest,
        response: Response | None,
        relation: CoapObservation | None,
        address: Any,
        over_tcp: bool = False,
    ) -> ServerObservation:
        request, decoder, _, _ = self._shape(request)
        observation = ServerObservation(
            record,
            request,
            response,
            relation,
            self._tcp_context if over_tcp else self._context,
            address=address,
            decoder=decoder,
        )
        token = record.token
        mine = self._by_endpoint.get(record.endpoint)
        if mine is None:
            self._by_endpoint[record.endpoint] = observation
        elif isinstance(mine, ServerObservation):
            self._by_endpoint[record.endpoint] = {mine.token: mine, token: observation}
        else:
            mine[token] = observation
        return observation

    def _forget(self, observation: ServerObservation) -> None:
        """``observation`` ended: it leaves the indexes."""
        token, endpoint = observation.token, observation.endpoint
        mine = self._by_endpoint.get(endpoint)
        if mine is observation:
            del self._by_endpoint[endpoint]
        elif isinstance(mine, dict) and mine.get(token) is observation:
            del mine[token]
            if not mine:
                del self._by_endpoint[endpoint]
        else:
            return  # replaced meanwhile by one with its token: its count is the other's
        self._ended_notifications += observation.notifications

    async def resume(
        self, registration_of: Callable[[str], Awaitable[Registration | Reachable | None]]
    ) -> None:
        """Take up the observations stored before a restart. The clients still hold them
        (LwM2M-TS-Core 1.2 §6.4: until cancelled or a new Register), so their notifications,
        sent to the same token, are decoded and delivered again instead of rejected with RST.
        ``registration_of`` answers an endpoint's stored registration (read once for the records
        of one endpoint that come one after the other, as an endpoint's observations made at
        once do: a million registrations kept for the whole resume would hold gigabytes); a
        record whose registration is gone is dropped.

        The records are read ``RESUME_SLICE`` at a time, and other work goes on between two
        slices: a server serves CoAP while it takes up a million. Meanwhile a client may come
        first (``resume_endpoint``, for a notification of one not reached yet): what runs
        already is left as it is; and a registration that ends meanwhile (a new Register, a
        De-register, an expiry) takes the records of its endpoint read before with it."""
        self._ended_meanwhile = set()
        try:
            last: tuple[str, Registration | Reachable | None] | None = None
            async for records in self._store.chunks(RESUME_SLICE):
                for record in records:
                    if last is not None and last[0] == record.endpoint:
                        registration = last[1]
                    else:
                        registration = await registration_of(record.endpoint)
                        last = (record.endpoint, registration)
                    if registration is None or registration.registration_id != record.registration_id:
                        await self._store.remove(record.token)  # its registration is gone
                        continue
                    await self._oscore(record)
                    endpoint = record.endpoint
                    if endpoint in self._ended_meanwhile or self.runs(endpoint, record.token):
                        continue  # (asked after the awaits) its registration ended, or it runs already
                    self._resume(record, registration, self._address(endpoint, registration))
                await asyncio.sleep(0)
        finally:
            self._ended_meanwhile = None

    @property
    def resuming(self) -> bool:
        """Whether ``resume`` is under way (stored observations are still to be taken up)."""
        return self._ended_meanwhile is not None

    def _address(self, endpoint: str, registration: Registration | Reachable) -> Any:
        """Where ``endpoint``'s notifications come from: its last Register or Update's address
        (an Update during a resume may have moved it), else its stored registration's."""
        addr = self._peers.get(endpoint)
        return _canonical(addr) if addr is not None else address_of(registration)

    async def resume_endpoint(self, registration: Registration, addr: Any) -> None:
        """Take up the stored observations of one client, whose notifications come from ``addr``:
        a node of a shared store takes over a client whose node is gone (the client still holds
        its observations, LwM2M-TS-Core 1.2 §6.4). Idempotent: an observation running here
        already only follows ``addr``. A record of an older registration is dropped."""
        endpoint = registration.endpoint
        addr = _canonical(addr)
        for record in await self._store.for_endpoint(endpoint):
            if record.registration_id != registration.registration_id:
                await self._store.remove(record.token)  # made under a registration since replaced
                continue
            await self._oscore(record)
            if not self.runs(endpoint, record.token):  # (asked after the await: adoptions may race)
                self._resume(record, registration, addr)
        self.follow(endpoint, addr)

    async def _oscore(self, record: Observation) -> None:
        if record.oscore is not None and self._oscore_resumed is not None:
            await self._oscore_resumed(record)

    def _resume(self, record: Observation, registration: Registration | Reachable, addr: Any) -> None:
        """Match the notifications of the stored observation ``record`` from ``addr`` again; over
        TCP or TLS, where the relation ended with the client's old connection (RFC 8323 §7.2),
        keep it dormant until the client connects again (``reconnected``)."""
        request = stored_request(record)
        request, _, paths, shared = self._shape(request)
        # The server's copy of the name, not the store's, and the paths of the observations made
        # with an equal request (a record read back holds ~200 bytes of paths of its own).
        name = record.endpoint if self._name is None else self._name(record.endpoint)
        if name is not record.endpoint or paths is not record.paths:
            record = dataclasses.replace(record, endpoint=name, paths=paths)
        if registration.transport in CONNECTIONS:
            observation = self._track(record, request, None, None, addr, over_tcp=True)
        else:
            message = rooted(registration, shared)
            try:
                relation = self._relations(record.endpoint).resume_observation(addr, record.token, message)
            except ValueError:
                return  # an address no socket of ours reaches (e.g. IPv6 on an IPv4 server)
            observation = self._track(record, request, None, relation, addr)
        # Nobody reads it (its reader went with the process that made it): its notifications
        # go to the history and the events, none kept for a reader until one comes.
        observation.discard_unread()

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
            and (_canonical(addr)) != observation.address
        ):
            self._spawn(self.reobserve(endpoint))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._reobserving.add(task)
        task.add_done_callback(self._reobserving.discard)

    def reconnected(self, endpoint: str) -> None:
        """The client came back over a new TCP or TLS connection (its Update or Register came
        over it): its dormant observations are observed again there, in the background."""
        if any(o.dormant for o in self.of(endpoint)):
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
        address = _canonical(addr)
        sent = 0
        for observation in self.of(endpoint):
            if not observation.dormant or observation.record.registration_id != registration.registration_id:
                continue
            message = rooted(registration, self._shape(observation.request)[3])
            relation = channel.observe(message.replace(token=observation.token), address)
            if observation.rebind(relation, address):
                sent += 1
            else:
                relation.cancel(address)
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
        it (LwM2M-TS-Core 1.2 §6.4); the registrar already removed their stored records (and
        ``resume``, under way, leaves the endpoint's records it read before)."""
        if self._ended_meanwhile is not None:
            self._ended_meanwhile.add(registration.endpoint)
        for observation in self.of(registration.endpoint):
            if observation.record.registration_id == registration.registration_id:
                observation.end(reason)

    def follow(self, endpoint: str, addr: Any) -> None:
        """The client sent an Update from ``addr``, a new address (a NAT rebinding,
        LwM2M-TS-Core 1.2 §6.2.2): its notifications come from there now, so its observations
        are matched there."""
        mine = self.of(endpoint)
        if not mine:
            return
        addr = _canonical(addr)
        relations = self._relations(endpoint)
        for observation in mine:
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
        for observation in self.running():
            await observation.close()
