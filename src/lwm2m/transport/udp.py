"""CoAP over UDP on asyncio: the sans-IO ``lwm2m.coap.endpoint.Endpoint`` on real sockets.

``UdpDriver`` (driver.py) moves datagrams and time; this module adds the
application API. A plain-function handler answers ``RequestReceived`` inside
the driver's event callback, so the response leaves piggybacked on the ACK
and the server path creates no coroutine and no future per request; only a
coroutine handler costs a task per request.

The application side is ``CoapUdpEndpoint``::

    async with open_udp_endpoint("127.0.0.1", 0, handler=handler) as ep:
        response = await ep.request(Message.build(Type.CON, Code.GET, uri_path="/3/0"), peer)
        async with ep.observe(Message.build(Type.CON, Code.GET, uri_path="/3/0/9"), peer) as obs:
            async for notification in obs:
                ...

``ep.resume_observation(peer, token)`` takes up an observation registered before a
restart: the same iterator, of the notifications only. ``ep.move_observation(token,
old_peer, new_peer)`` follows a peer whose address changed.

``handler(event)`` gets each ``RequestReceived`` and returns the response
``Message`` (type, Message ID and token are filled in by the endpoint), or
None to answer later with ``ep.respond(event, message)``; it may also be a
coroutine function, run as a task per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from lwm2m.coap.endpoint import Endpoint, EndpointConfig
from lwm2m.coap.events import (
    CoapNotificationReceived,
    Event,
    ObservationCancelled,
    RequestAcknowledged,
    RequestFailed,
    RequestReceived,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
)
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type, code_text
from lwm2m.errors import (
    EndpointClosed,
    OscoreError,
    OscoreRequestFailed,
    RequestAborted,
    RequestReset,
    RequestTimeout,
)
from lwm2m.transport.address import Addr, format_addr, is_ipv6, normalize, resolve
from lwm2m.transport.driver import UdpDriver
from lwm2m.transport.proxy import ProxySessions
from lwm2m.transport.reader import bind_udp
from lwm2m.transport.separate import SEPARATE_RESPONSE
from lwm2m.transport.shared import SharedRoute
from lwm2m.transport.tap import MessageSink

if TYPE_CHECKING:  # lwm2m.coap.oscore needs cryptography: plain CoAP does without it
    from lwm2m.coap.oscore import OscoreLayer, RequestBinding

log = logging.getLogger(__name__)

Handler = Callable[[RequestReceived], "Message | Awaitable[Message | None] | None"]
EventCallback = Callable[[Event], None]

__all__ = [
    "CoapObservation",
    "CoapUdpEndpoint",
    "EndpointClosed",
    "Handler",
    "RequestAborted",
    "RequestReset",
    "RequestTimeout",
    "bind_sockets",
    "open_udp_endpoint",
]


_INTERNAL_ERROR = Message(Type.ACK, Code.INTERNAL_SERVER_ERROR)
_OSCORE = 9  # the OSCORE option (RFC 8613 §2)


class _Owner(Protocol):
    """The endpoint an observation belongs to: ``CoapUdpEndpoint`` or ``CoapTcpEndpoint``."""

    _loop: asyncio.AbstractEventLoop

    def _cancel(self, token: bytes, near: Addr | None = None) -> None: ...

    def _relation_ended(self, relation: CoapObservation) -> None:
        """``relation`` handed over its last item: the owner lets it go."""


class RelationSink(Protocol):
    """Who takes an observe relation's notifications as they come (``CoapObservation.deliver_to``)."""

    def deliver(self, item: Message | BaseException | None, last: bool) -> None:
        """One notification (a ``Message``), or the end of the relation: ``last`` is True with
        the last notification, with the exception that ended it (always last), or with None
        when it had ended with nothing more to hand over. Called synchronously, as the
        endpoint takes the message in: it must not block."""
        ...


class _Held:
    """A registration whose empty ACK someone waits for (``lwm2m.transport.separate``): what to
    call then, how the endpoint forgets it otherwise, and the timeout of the ``next()`` under
    way, which the empty ACK lifts. Made for those only, not held by every relation."""

    __slots__ = ("forget", "heard", "scope")

    def __init__(self, heard: Callable[[], None], forget: Callable[[], None]) -> None:
        self.heard = heard
        self.forget = forget
        self.scope: asyncio.Timeout | None = None


class _Extra:
    """What a few relations need, made for those only: the queue and waiter of an iterating
    reader, a registration whose empty ACK someone waits for, an OSCORE binding. A server
    holds a million relations that hand their notifications to a sink and need none of it."""

    __slots__ = ("held", "items", "oscore", "waiter")

    def __init__(self) -> None:
        # What came and nobody took yet, for an iterating reader: made at the first item.
        self.items: deque[Message | BaseException] | None = None
        self.waiter: asyncio.Future[None] | None = None
        # A registration whose empty ACK someone waits for (lwm2m.transport.separate).
        self.held: _Held | None = None
        self.oscore: RequestBinding | None = None


class CoapObservation:
    """Notifications of one observe relation (RFC 7641), as an async iterator of ``Message``.

    The first item is the response to the registration (none for a resumed observation,
    ``CoapUdpEndpoint.resume_observation``); iteration ends when the
    server answers without an Observe option, or ends the relation with an
    error code, or after ``cancel()``.

    Instead of being iterated, a relation may hand its notifications to a sink as they come
    (``deliver_to``): a server holds many relations that way, with no queue or waiter each.
    """

    __slots__ = ("_done", "_extra", "_owner", "_sink", "token")

    def __init__(self, owner: _Owner, token: bytes) -> None:
        self._owner = owner
        self.token = token
        self._sink: RelationSink | None = None
        self._done = False
        self._extra: _Extra | None = None

    def _more(self) -> _Extra:
        extra = self._extra
        if extra is None:
            extra = self._extra = _Extra()
        return extra

    @property
    def oscore(self) -> RequestBinding | None:
        """Registered OSCORE-protected: its request's binding, which the notifications are
        verified against (RFC 8613 §8.4); the server stores it with the observation."""
        extra = self._extra
        return None if extra is None else extra.oscore

    @oscore.setter
    def oscore(self, binding: RequestBinding | None) -> None:
        if binding is not None or self._extra is not None:
            self._more().oscore = binding

    def _hold(self, heard: Callable[[], None], forget: Callable[[], None]) -> None:
        self._more().held = _Held(heard, forget)

    def _acknowledged(self) -> None:
        """The peer acknowledged the registration with an empty ACK: its answer follows as a
        separate response (RFC 7252 §5.2.2), awaited within the endpoint's response_timeout."""
        held = self._take_held()
        if held is not None:
            if held.scope is not None:
                held.scope.reschedule(None)
            held.heard()

    def _unhold(self) -> None:
        held = self._take_held()
        if held is not None:
            held.forget()

    def _take_held(self) -> _Held | None:
        """The held registration, no longer held; the side object goes too when it held only
        that (a server's observation is made so, and runs for months)."""
        extra = self._extra
        if extra is None:
            return None
        held, extra.held = extra.held, None
        if extra.items is None and extra.waiter is None and extra.oscore is None:
            self._extra = None
        return held

    def _push(self, item: Message | BaseException, last: bool = False) -> None:
        if self._done:
            return
        extra = self._extra
        if extra is not None and extra.held is not None:
            self._unhold()  # answered (or failed) without an empty ACK first
            extra = self._extra
        if last:
            self._done = True
            self._owner._relation_ended(self)
        sink = self._sink
        if sink is not None:
            sink.deliver(item, last)
            return
        if extra is None:
            extra = self._extra = _Extra()
        items = extra.items
        if items is None:
            items = extra.items = deque()
        items.append(item)
        w = extra.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def deliver_to(self, sink: RelationSink) -> None:
        """Hand every notification to ``sink`` from now on, as it comes, those that came and
        were not read yet first; the relation is not iterated any more."""
        self._sink = sink
        extra = self._extra
        items = None
        if extra is not None:
            items, extra.items = extra.items, None
            if extra.waiter is None and extra.held is None and extra.oscore is None:
                self._extra = None  # read first as an iterator (a server reads its first answer so)
        while items:
            item = items.popleft()
            last = self._done and not items  # (an exception is always the last)
            sink.deliver(item, last)
            if last:
                return
        if self._done:
            sink.deliver(None, True)  # it had ended with nothing more to hand over

    def __aiter__(self) -> CoapObservation:
        return self

    async def __anext__(self) -> Message:
        extra = self._more()
        while not extra.items:
            if self._done:
                raise StopAsyncIteration
            waiter = extra.waiter = self._owner._loop.create_future()
            try:
                await waiter
            finally:
                extra.waiter = None
        item = extra.items.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    async def next(self, timeout: float | None = None) -> Message:
        """The next notification, waiting at most ``timeout`` seconds (for the first, no longer
        once the peer acknowledged a registration made under SEPARATE_RESPONSE)."""
        async with asyncio.timeout(timeout) as scope:
            # (only a held registration's wait is lifted: no scope kept else)
            held = None if self._extra is None else self._extra.held
            if held is not None:
                held.scope = scope
            try:
                return await self.__anext__()
            finally:
                if held is not None:
                    held.scope = None

    def cancel(self, near: Addr | None = None) -> None:
        """End the relation here; the endpoint answers the next notification with RST (RFC 7641 §3.6).
        ``near``: the peer's address as the caller knows it (the relation is looked up there first)."""
        self._unhold()
        if self._done:
            return
        self._owner._cancel(self.token, near)
        self._done = True
        extra = self._extra
        if extra is not None:
            extra.items = None
            w = extra.waiter
            if w is not None and not w.done():
                w.set_result(None)  # a waiting reader sees the end

    async def __aenter__(self) -> CoapObservation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class CoapUdpEndpoint:
    """A CoAP endpoint on UDP sockets: serves requests through ``handler`` and sends requests."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        socks: Sequence[socket.socket] | SharedRoute,
        *,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        oscore: OscoreLayer | None = None,
        proxy: ProxySessions | None = None,
    ) -> None:
        self._loop = loop
        # RFC 8613: requests with an OSCORE option verified before the handler sees them, their
        # answers protected; our requests to peers it binds protected (lwm2m.coap.oscore.layer).
        self.oscore = oscore
        self._handler = handler
        self._extra = on_event
        self._pending: dict[bytes, asyncio.Future[Message]] = {}
        # Requests whose empty ACK someone waits for (lwm2m.transport.separate), by token; made
        # for the first (most endpoints of a simulated fleet never wait for one).
        self._acknowledged: dict[bytes, Callable[[], None]] | None = None
        self._tasks: dict[asyncio.Task[Any], None] = {}  # a set (an empty one is 216 bytes, a dict 64)
        self._respond = endpoint.respond  # bound once: the per-request path
        # Behind a balancer speaking the PROXY protocol, the devices' own addresses (lwm2m.transport.proxy).
        self.proxy = proxy
        self._driver = UdpDriver(loop, endpoint, socks, self._dispatch, proxy=proxy)
        self._driver.start()
        families = (socks.family,) if isinstance(socks, SharedRoute) else (s.family for s in socks)
        self._families = tuple(dict.fromkeys(families))
        # A name resolves to the family we can reach when only one is bound.
        self._family = next(iter(self._families)) if len(self._families) == 1 else socket.AF_UNSPEC
        self._closed = False
        self.endpoint = endpoint

    @classmethod
    async def create(
        cls,
        host: str | Sequence[str] = "127.0.0.1",
        port: int = 0,
        *,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        config: EndpointConfig | None = None,
        oscore: OscoreLayer | None = None,
        proxy: ProxySessions | None = None,
    ) -> CoapUdpEndpoint:
        """Bind ``port`` on each of ``host`` (one name or several, e.g. ``("127.0.0.1", "::1")``)."""
        socks = bind_sockets(host, port)
        if oscore is not None:
            config = with_oscore(config)
        endpoint = Endpoint(config) if config is not None else Endpoint()
        return cls(
            asyncio.get_running_loop(),
            endpoint,
            socks,
            handler=handler,
            on_event=on_event,
            oscore=oscore,
            proxy=proxy,
        )

    @classmethod
    def on_route(
        cls,
        route: SharedRoute,
        *,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        config: EndpointConfig | None = None,
        oscore: OscoreLayer | None = None,
    ) -> CoapUdpEndpoint:
        """An endpoint at the address ``route`` holds on a socket it shares with others
        (:class:`~lwm2m.transport.shared.SharedUdp`), with no socket of its own; its message IDs
        and tokens come from the shared socket's generator (a generator each is 2.5 KB)."""
        if oscore is not None:
            config = with_oscore(config)
        endpoint = Endpoint(config if config is not None else EndpointConfig(), rng=route.rng)
        return cls(
            asyncio.get_running_loop(), endpoint, route, handler=handler, on_event=on_event, oscore=oscore
        )

    # --- addresses ---------------------------------------------------------------------

    @property
    def addresses(self) -> list[Addr]:
        return self._driver.local_addresses()

    @property
    def port(self) -> int:
        return self._driver.local_addresses()[0][1]

    def uri(self, path: str = "") -> str:
        return f"coap://{format_addr(self.addresses[0])}{path}"

    @property
    def receiving(self) -> bool:
        """False drops every datagram that arrives (a sleeping device's radio is off)."""
        return self._driver.receiving

    @receiving.setter
    def receiving(self, on: bool) -> None:
        self._driver.receiving = on

    def tap(self, sink: MessageSink | None) -> None:
        """Copy the CoAP datagrams to and from the peers ``sink`` names to it; None takes the tap
        out (:mod:`lwm2m.transport.tap`)."""
        self._driver.tap(sink)

    # --- events from the endpoint ---------------------------------------------------

    def _dispatch(self, event: Event, now: float) -> None:
        if type(event) is RequestReceived:
            if self.oscore is not None and event.message.has_option(_OSCORE):
                self._protected_request(event, now)
                return
            handler = self._handler
            if handler is None:
                if self._extra is not None:
                    self._extra(event)
                return
            try:
                result = handler(event)
            except Exception:
                log.exception("request handler failed for %s", event.message)
                result = _INTERNAL_ERROR
            if result is None:
                return
            if type(result) is Message:
                self._respond(event, result, now)
                return
            self._spawn(self._answer_later(event, result))  # type: ignore[arg-type]
            return
        if self.oscore is not None and self._oscore_event(event):
            return
        if type(event) is ResponseReceived:
            fut = self._pending.pop(event.token, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(event.response)
                return
            obs = event.handle
            if obs is not None:
                # The registration's answer: without Observe, the server declined (RFC 7641 §3.1).
                response = event.response
                obs._push(response, last=response.observe is None or not _success(response.code))
                return
        elif type(event) is CoapNotificationReceived:
            obs = event.handle
            if obs is not None:
                obs._push(event.response, last=event.final)
                return
        elif type(event) is RequestTimedOut:
            timeout = RequestTimeout(f"no response from {format_addr(event.addr)}")
            if self._fail(event.token, timeout, event.handle):
                return
        elif type(event) is RequestAcknowledged:
            waiting = self._acknowledged
            acknowledged = None if waiting is None else waiting.pop(event.token, None)
            if acknowledged is not None:
                acknowledged()
                return
        elif type(event) is RequestFailed:
            if self._fail(event.token, RequestAborted(event.reason), event.handle):
                return
        elif (
            type(event) is ResetReceived
            and event.token is not None
            and self._fail(event.token, RequestReset("peer answered with RST"), event.handle)
        ):
            return
        if not self._own_event(event) and self._extra is not None:
            self._extra(event)

    def _protected_request(self, event: RequestReceived, now: float, *, lookup: bool = True) -> None:
        """An OSCORE request: verified and handed to the handler, or answered in its place, or
        tried again once the layer's directory has looked its context up."""
        assert self.oscore is not None
        inner = self.oscore.unprotect_request(event, now, lookup=lookup)
        if isinstance(inner, Message):
            self._respond(event, inner, now)
            return
        if not isinstance(inner, RequestReceived):
            self._spawn(self._after_lookup(event, inner.done))
            return
        handler = self._handler
        if handler is None:
            if self._extra is not None:
                self._extra(inner)
            return
        try:
            result = handler(inner)
        except Exception:
            log.exception("request handler failed for %s", inner.message)
            result = _INTERNAL_ERROR
        if result is None:
            return
        if type(result) is Message:
            self._respond(*self.oscore.protect_response(inner, result), now)
            return
        self._spawn(self._answer_later(inner, result))  # type: ignore[arg-type]

    async def _after_lookup(self, event: RequestReceived, done: Awaitable[object]) -> None:
        try:
            await done
        except Exception:
            log.exception(
                "looking up the OSCORE context of a request from %s failed", format_addr(event.addr)
            )
        if self._closed:
            return
        now = self._driver.now()
        self._protected_request(event, now, lookup=False)
        self._driver.flush(now)

    def _oscore_event(self, event: Event) -> bool:
        """Verify the answers to our OSCORE requests before they are delivered (RFC 8613 §8.4);
        True when the event was taken here (delivered, repeated with Echo, or discarded)."""
        layer = self.oscore
        assert layer is not None
        if type(event) is ResponseReceived or type(event) is CoapNotificationReceived:
            token = event.token
            if token not in layer.pending:
                return False
        else:
            if type(event) is RequestTimedOut or type(event) is RequestFailed or type(event) is ResetReceived:
                layer.pending.pop(event.token or b"", None)
            elif type(event) is ObservationCancelled:
                layer.forget_relation((event.addr, event.token))
            return False
        try:
            inner = layer.unprotect_response(token, event.response, final=False)
        except OscoreError as exc:
            log.info("OSCORE response from %s discarded: %s", format_addr(event.addr), exc)
            if type(event) is ResponseReceived:
                layer.pending.pop(token, None)
                self._fail(token, oscore_failure(event.response, exc), event.handle)
            return True  # a notification that does not verify is dropped (§8.4)
        if type(event) is ResponseReceived:
            retry = layer.echo_retry(token, inner)
            if retry is not None and token in self._pending:
                self._repeat(event.addr, token, retry, event.handle)
                return True
            obs = event.handle
            if obs is None or inner.observe is None or not _success(inner.code):
                layer.pending.pop(token, None)
            fut = self._pending.pop(token, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(inner)
            elif obs is not None:
                obs._push(inner, last=inner.observe is None or not _success(inner.code))
            return True
        assert isinstance(event, CoapNotificationReceived)
        if event.final:
            layer.pending.pop(token, None)
        obs = event.handle
        if obs is not None:
            obs._push(inner, last=event.final)
        return True

    def _repeat(self, addr: Addr, token: bytes, request: Message, handle: CoapObservation | None) -> None:
        """Send ``request`` again under ``token``, protected anew (the Echo of RFC 9175 §2.4)."""
        assert self.oscore is not None
        protected = self.oscore.protect_request(request, addr)
        if protected is None:
            return
        outer, pending = protected
        now = self._driver.now()
        self._driver.endpoint.request(outer.replace(token=token), addr, now, handle)
        self.oscore.track(token, pending)

    def _own_event(self, event: Event) -> bool:
        """Take an event of the transport's own kind (a DTLS session's, in the subclass) and
        say so; False for the events of CoAP, which go on to ``on_event``. Asked last, so that
        the request path pays nothing for it."""
        return False

    def _fail(self, token: bytes, exc: BaseException, obs: CoapObservation | None) -> bool:
        fut = self._pending.pop(token, None)
        if fut is not None:
            if not fut.done():
                fut.set_exception(exc)
            return True
        if obs is not None:
            obs._push(exc, last=True)
            return True
        return False

    async def _answer_later(self, event: RequestReceived, result: Awaitable[Message | None]) -> None:
        try:
            message = await result
        except Exception:
            log.exception("request handler failed for %s", event.message)
            message = _INTERNAL_ERROR
        if message is not None and not self._closed:
            self.respond(event, message)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[task] = None
        task.add_done_callback(self._tasks.pop)

    # --- application API -------------------------------------------------------------

    def respond(self, event: RequestReceived, message: Message) -> None:
        """Answer a request outside of the handler call (a separate response when the ACK left)."""
        self._check_open()
        now = self._driver.now()
        if self.oscore is not None:
            event, message = self.oscore.protect_response(event, message)
        self._driver.endpoint.respond(event, message, now)
        self._driver.flush(now)

    def notify(self, relation: tuple[Addr, bytes], message: Message, *, confirmable: bool = False) -> bool:
        """Send a notification on ``RequestReceived.relation``; False if the relation has ended."""
        self._check_open()
        now = self._driver.now()
        if self.oscore is not None:
            message = self.oscore.protect_notification(relation, message) or message
        alive = self._driver.endpoint.notify(relation, message, now, confirmable=confirmable)
        self._driver.flush(now)
        return alive

    async def request(self, message: Message, addr: Addr, *, timeout: float | None = None) -> Message:
        """Send ``message`` to ``addr`` and return the response (block-wise transfers reassembled).

        Under :data:`lwm2m.transport.separate.SEPARATE_RESPONSE`, an empty ACK from the peer calls
        it and lifts ``timeout``: the separate response is awaited as long as the endpoint's
        ``response_timeout`` allows."""
        self._check_open()
        addr = self._reachable(await resolve(addr, self._family))
        now = self._driver.now()
        token = self._send_request(message, addr, now)
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._pending[token] = fut
        heard = SEPARATE_RESPONSE.get()
        if heard is not None and not self._driver.endpoint.report_empty_ack(addr, token):
            heard = None
        self._driver.flush(now)
        try:
            if heard is not None:
                return await self._answered_later(token, fut, heard, addr, timeout)
            if timeout is None:
                return await fut
            try:
                async with asyncio.timeout(timeout):
                    return await fut
            except TimeoutError:
                raise RequestTimeout(f"no response from {format_addr(addr)} within {timeout:g} s") from None
        finally:
            pending = self._pending
            if pending.pop(token, None) is not None:
                self._cancel(token)  # given up by the caller: stop retransmitting
            if not pending:
                pending.clear()  # an emptied dict keeps its table (160 bytes) until cleared

    async def _answered_later(
        self,
        token: bytes,
        fut: asyncio.Future[Message],
        heard: Callable[[], None],
        addr: Addr,
        timeout: float | None,
    ) -> Message:
        """The answer to the request ``token``, whose empty ACK (RFC 7252 §5.2.2) calls ``heard``
        and lifts ``timeout``: the endpoint's ``response_timeout`` bounds the wait from then on."""
        try:
            async with asyncio.timeout(timeout) as scope:

                def acknowledged() -> None:
                    scope.reschedule(None)
                    heard()

                self._await_acknowledgement(token, acknowledged)
                return await fut
        except TimeoutError:
            raise RequestTimeout(f"no response from {format_addr(addr)} within {timeout:g} s") from None
        finally:
            self._forget_acknowledgement(token)

    def observe(self, message: Message, addr: Addr) -> CoapObservation:
        """Register an observation (``message`` gets Observe: 0 if it lacks it); iterate for notifications."""
        self._check_open()
        if message.observe is None:
            message = message.with_option(OptionNumber.OBSERVE, 0)
        addr = self._reachable(_literal(addr))
        now = self._driver.now()
        # The endpoint keeps the relation with its request and hands it back with each event.
        obs = CoapObservation(self, b"")
        obs.token = token = self._send_request(message, addr, now, obs)
        if self.oscore is not None:
            pending = self.oscore.pending.get(token)
            obs.oscore = None if pending is None else pending.binding
        heard = SEPARATE_RESPONSE.get()
        if heard is not None and self._driver.endpoint.report_empty_ack(addr, token):
            obs._hold(heard, partial(self._forget_acknowledgement, token))
            self._await_acknowledgement(token, obs._acknowledged)
        self._driver.flush(now)
        return obs

    def _await_acknowledgement(self, token: bytes, acknowledged: Callable[[], None]) -> None:
        if self._acknowledged is None:
            self._acknowledged = {}
        self._acknowledged[token] = acknowledged

    def _forget_acknowledgement(self, token: bytes) -> None:
        if self._acknowledged is not None:
            self._acknowledged.pop(token, None)

    def _send_request(
        self, message: Message, addr: Addr, now: float, relation: CoapObservation | None = None
    ) -> bytes:
        """Hand ``message`` to the endpoint, protected first when OSCORE binds ``addr``;
        ``relation``, an observation's, comes back with the events of its request."""
        if self.oscore is None:
            return self._driver.endpoint.request(message, addr, now, relation)
        protected = self.oscore.protect_request(message, addr)
        if protected is None:
            return self._driver.endpoint.request(message, addr, now, relation)
        outer, pending = protected
        token = self._driver.endpoint.request(outer, addr, now, relation)
        self.oscore.track(token, pending)
        return token

    def resume_observation(self, addr: Addr, token: bytes, request: Message | None = None) -> CoapObservation:
        """Take up an observation registered before a restart (token and address kept in storage).

        The iterator yields the notifications from now on (there is no registration
        response); ``request`` is the registration, for Block2 notifications (see
        ``Endpoint.resume_observation``).
        """
        self._check_open()
        addr = self._reachable(_literal(addr))
        now = self._driver.now()
        obs = CoapObservation(self, token)
        self._driver.endpoint.resume_observation(addr, token, now, request, obs)
        return obs

    def adopt_notification(self, addr: Addr, token: bytes) -> bool:
        """Take up the observation ``token`` whose notifications from ``addr`` the CoAP endpoint
        holds (``Endpoint.hold_unknown_notifications``) and deliver them; the ACKs go out now."""
        self._check_open()
        adopted = self.endpoint.adopt_notification(_literal(addr), token, self._driver.now())
        self._driver.flush()
        return adopted

    def reject_notification(self, addr: Addr, token: bytes) -> bool:
        """Answer the held notifications ``token`` from ``addr`` with RST (RFC 7641 §3.5), now."""
        self._check_open()
        rejected = self.endpoint.reject_notification(_literal(addr), token, self._driver.now())
        self._driver.flush()
        return rejected

    def drop_notification(self, addr: Addr, token: bytes) -> bool:
        """Forget the held notifications ``token`` from ``addr`` unanswered (their look-up
        failed): a confirmable one is sent again by the peer and held anew."""
        self._check_open()
        return self.endpoint.drop_notification(_literal(addr), token)

    def move_observation(self, token: bytes, addr: Addr, new_addr: Addr) -> bool:
        """Take the notifications of observation ``token`` from ``new_addr`` from now on (the
        peer moved, e.g. behind a NAT); False when no observation ``token`` is held at ``addr``."""
        self._check_open()
        return self._driver.endpoint.move_observation(
            token, _literal(addr), self._reachable(_literal(new_addr))
        )

    def _cancel(self, token: bytes, near: Addr | None = None) -> None:
        if self._closed:
            return
        self._driver.endpoint.cancel(token, near=None if near is None else normalize(near))
        self._driver.flush()

    def _relation_ended(self, relation: CoapObservation) -> None:
        """Nothing to let go: the endpoint dropped the relation's request with its last event."""

    def _reachable(self, addr: Addr) -> Addr:
        """``addr`` if one of our sockets can send there (else the request could only time out)."""
        family = socket.AF_INET6 if is_ipv6(addr) else socket.AF_INET
        if family not in self._families:
            kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise ValueError(f"no {kind} socket to send to {format_addr(addr)} from: bind one")
        return addr

    def _check_open(self) -> None:
        if self._closed:
            raise EndpointClosed("the endpoint is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._driver.close()
        err = EndpointClosed("the endpoint was closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        for obs in self._driver.endpoint.handles():
            obs._push(err, last=True)

    async def __aenter__(self) -> CoapUdpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def oscore_failure(response: Message, exc: OscoreError) -> OscoreRequestFailed:
    if response.option(_OSCORE) is None:
        diagnostic = response.payload.decode("utf-8", "replace")[:200]
        shown = f": {diagnostic}" if diagnostic else ""
        return OscoreRequestFailed(f"the peer answered unprotected with {code_text(response.code)}{shown}")
    return OscoreRequestFailed(f"the response did not verify: {exc}")


def with_oscore(config: EndpointConfig | None) -> EndpointConfig:
    """``config`` with the OSCORE option known to the endpoint: the OSCORE layer handles it
    (without a layer, a protected request gets 4.02 as any unknown critical option would)."""
    config = config if config is not None else EndpointConfig()
    return dataclasses.replace(config, extra_critical_options=config.extra_critical_options | {_OSCORE})


def bind_sockets(host: str | Sequence[str], port: int) -> list[socket.socket]:
    """One socket bound to ``port`` on each of ``host``; port 0 picks one free on all of them."""
    hosts = [host] if isinstance(host, str) else list(host)
    socks: list[socket.socket] = []
    try:
        for h in hosts:
            s = bind_udp(h, port)
            socks.append(s)
            if port == 0:
                port = s.getsockname()[1]  # the other addresses get the same port
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def _success(code: int) -> bool:
    return code >> 5 == 2


def _literal(addr: Addr) -> Addr:
    found = normalize(addr)
    if found is None:
        raise ValueError(f"observe needs an IP address, not a name: {addr[0]!r} (resolve it first)")
    return found


@contextlib.asynccontextmanager
async def open_udp_endpoint(
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 0,
    *,
    handler: Handler | None = None,
    on_event: EventCallback | None = None,
    config: EndpointConfig | None = None,
    oscore: OscoreLayer | None = None,
    proxy: ProxySessions | None = None,
) -> AsyncIterator[CoapUdpEndpoint]:
    """``async with open_udp_endpoint(...) as ep``: a ``CoapUdpEndpoint`` closed on exit."""
    ep = await CoapUdpEndpoint.create(
        host, port, handler=handler, on_event=on_event, config=config, oscore=oscore, proxy=proxy
    )
    try:
        yield ep
    finally:
        await ep.close()
