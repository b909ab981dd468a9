"""The loop around a sans-IO endpoint: datagrams in, events out, datagrams out, one timer.

Per wake-up of a socket every pending datagram goes straight from the reader to
``receive_datagram``; then the events they raised go to ``on_event`` (so an
application that answers a request inside ``on_event`` gets its response
piggybacked on the ACK), ``datagrams_to_send`` goes out and the one timer handle
is re-armed from ``get_timer()``. Nothing here creates a coroutine or a future,
and per datagram there is no call between the reader and the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lwm2m.transport import wire
from lwm2m.transport.address import Addr
from lwm2m.transport.alarms import Alarms, alarms_of
from lwm2m.transport.memory import TRIM_AFTER, Trimmer
from lwm2m.transport.proxy import ProxySessions
from lwm2m.transport.reader import DatagramReader, DatagramSender
from lwm2m.transport.shared import SharedRoute
from lwm2m.transport.tap import MessageSink, Receive, ToSend, tapped_receive, tapped_send

log = logging.getLogger(__name__)


class SansIOEndpoint(Protocol):
    """The I/O side of ``lwm2m.coap.endpoint.Endpoint``, which is all the driver needs.

    ``events`` is the list that ``next_event`` pops from: the driver drains it directly,
    without a call per event.
    """

    events: list[Any]

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Any: ...


EventCallback = Callable[[Any, float], None]  # (event, now)


class UdpDriver:
    """Moves datagrams and time between UDP sockets and one sans-IO ``Endpoint``.

    ``on_event(event, now)`` receives every event the endpoint raises, synchronously: those
    of a wake-up's datagrams once they have all been received, those of a timer when it
    fires. An exception from it is logged and the next event goes on. After the
    application has called ``request``/``respond``/``notify``/``cancel`` on the endpoint
    outside of ``on_event``, it calls ``flush()``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: SansIOEndpoint,
        socks: Sequence[socket.socket] | SharedRoute,
        on_event: EventCallback,
        *,
        proxy: ProxySessions | None = None,
    ) -> None:
        """``socks``: the sockets to read and send through, or an address on a shared one;
        ``proxy``: the sessions of a balancer that speaks the PROXY protocol, whose devices the
        endpoint then sees at their own addresses (:mod:`lwm2m.transport.proxy`)."""
        if not isinstance(socks, SharedRoute) and not socks:
            raise ValueError("at least one socket")
        self._loop = loop
        if wire.log.isEnabledFor(logging.DEBUG):
            # Asked once: with DEBUG off nothing stands between the sockets and the endpoint.
            endpoint = wire.traced(endpoint)
        self._endpoint = endpoint
        self._events: list[Any] = endpoint.events
        self._on_event = on_event
        self._proxy = proxy
        receive: Receive = endpoint.receive_datagram
        self._to_send: ToSend = endpoint.datagrams_to_send
        if proxy is not None:
            receive = proxy.receive(receive)
            self._to_send = proxy.to_send(self._to_send)
        self._receive: Receive = receive
        self._route: SharedRoute | None = None
        self._alarms: Alarms | None = None
        if isinstance(socks, SharedRoute):
            self._shared(socks, receive)
        else:
            self._own(loop, socks, receive)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # On a shared socket (a simulated fleet's): the deadline waits on the loop's heap of
        # alarms, under this token (0: none), rather than in a timer handle of its own.
        self._alarm = 0
        self._closed = False
        self._receiving = True
        # Made once the endpoint has released TRIM_AFTER bytes: most never do.
        self._trimmer: Trimmer | None = None
        self._trim_handle: asyncio.TimerHandle | None = None

    def _own(self, loop: asyncio.AbstractEventLoop, socks: Sequence[socket.socket], receive: Receive) -> None:
        self.sockets: tuple[socket.socket, ...] = tuple(socks)
        self._readers: tuple[DatagramReader | SharedRoute, ...] = tuple(
            DatagramReader(loop, s, receive, self._on_batch) for s in self.sockets
        )
        senders = {s.family: DatagramSender(loop, s) for s in self.sockets}
        first = next(iter(senders.values()))
        # Route by the shape of the address: IPv6 socket addresses have four fields.
        self._send4 = senders.get(socket.AF_INET, first).send
        self._send6 = senders.get(socket.AF_INET6, first).send
        self._senders: tuple[DatagramSender | SharedRoute, ...] = tuple(senders.values())
        # One socket (the usual case): every datagram goes through it, no routing.
        self._send_all: Callable[[list[tuple[bytes, Addr]]], None] | None = (
            first.send_all if len(self._senders) == 1 else None
        )

    def _shared(self, route: SharedRoute, receive: Receive) -> None:
        """An address on a socket many endpoints share: it reads and sends for this one."""
        self.sockets = ()
        self._route = route
        self._alarms = alarms_of(self._loop)
        route.attach(receive, self._on_batch)
        self._readers = self._senders = (route,)
        self._send4 = self._send6 = route.send
        self._send_all = route.send_all

    @property
    def receiving(self) -> bool:
        """False while the application plays a sleeping device (LwM2M queue mode): datagrams
        that arrive are dropped, as a radio that is off would never hear them."""
        return self._receiving

    @receiving.setter
    def receiving(self, on: bool) -> None:
        on = bool(on)
        if on == self._receiving:
            return
        self._receiving = on
        handler = self._receive if on else _drop
        for r in self._readers:
            r.on_datagram = handler

    @property
    def endpoint(self) -> Any:
        return self._endpoint

    def start(self) -> None:
        for r in self._readers:
            r.start()

    def tap(self, sink: MessageSink | None) -> None:
        """Copy the datagrams to and from the peers ``sink`` names to it (None: take the tap out,
        nothing between the sockets and the endpoint again). See :mod:`lwm2m.transport.tap`."""
        endpoint = self._endpoint
        self._receive = endpoint.receive_datagram
        self._to_send = endpoint.datagrams_to_send
        if sink is not None:
            self._receive = tapped_receive(self._receive, sink)
            self._to_send = tapped_send(self._to_send, sink)
        if self._proxy is not None:  # outermost: the tap sees the devices' own addresses
            self._receive = self._proxy.receive(self._receive)
            self._to_send = self._proxy.to_send(self._to_send)
        if self._receiving:
            for r in self._readers:
                r.on_datagram = self._receive

    # --- the hot path -----------------------------------------------------------------

    def _on_batch(self, now: float) -> None:
        """After a wake-up's datagrams: their events to the application, then the answers out."""
        self._deliver(now)
        self._transmit(now)

    def _deliver(self, now: float) -> None:
        """Every queued event to ``on_event``; one that fails is logged, the rest go on."""
        events = self._events
        on_event = self._on_event
        while events:
            # One at a time (on_event may deliver the rest itself: flush), the oldest first.
            # pop() when it is the only one (the usual case) is cheaper than pop(0), and a
            # method call is cheaper than a bound ``pop`` held in a local.
            event = events.pop() if len(events) == 1 else events.pop(0)
            try:
                on_event(event, now)
            except Exception:
                log.exception("event handler failed for %s", type(event).__name__)

    def _transmit(self, now: float) -> None:
        out = self._to_send(now)
        if out:
            send_all = self._send_all
            if send_all is not None:
                send_all(out)
            else:
                send4 = self._send4
                send6 = self._send6
                for data, addr in out:
                    if len(addr) == 2:
                        send4(data, addr)
                    else:
                        send6(data, addr)
        self._arm_timer()

    def _arm_timer(self) -> None:
        when = self._endpoint.get_timer()
        at = self._timer_at
        if when is None:
            # Let an armed handle fire: a spurious handle_timer is harmless, and
            # cancelling here would cost a heap operation for nothing.
            return
        if at is not None and at <= when:
            return  # fires early at worst, then re-arms for the real deadline
        self._timer_at = when
        alarms = self._alarms
        if alarms is not None:
            if self._alarm:
                alarms.cancel(self._alarm)
            self._alarm = alarms.add(when, self)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)

    def alarm(self, token: int) -> None:
        """The deadline on the shared heap of alarms has come (``Sleeper``)."""
        if token == self._alarm:
            self._alarm = 0
            self._on_timer()

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        # The loop may run a handle up to one clock resolution early; never hand the
        # endpoint a time before the deadline it asked for, or it would ask again.
        now = self._loop.time()
        if at is not None and now < at:
            now = at
        endpoint = self._endpoint
        deadline = endpoint.get_timer()
        if deadline is None or deadline > now:
            # This handle was armed for an earlier deadline that has since gone.
            self._arm_timer()
            return
        endpoint.handle_timer(now)
        self._trim(now)
        self._deliver(now)
        self._transmit(now)

    def _trim(self, now: float) -> None:
        """Once the state the timer let go of adds up, hand the freed pages back to the system;
        a trim owed but not yet allowed runs later, even if no timer of the endpoint comes."""
        released = getattr(self._endpoint, "released", None)
        if released is None:
            return
        trimmer = self._trimmer
        if trimmer is None:
            if released < TRIM_AFTER:
                return  # (a trimmer's first check with less does nothing)
            trimmer = self._trimmer = Trimmer()
        wait = trimmer.check(released, now)
        if wait is not None and self._trim_handle is None:
            self._trim_handle = self._loop.call_later(wait, self._trim_later)

    def _trim_later(self) -> None:
        self._trim_handle = None
        if not self._closed:
            self._trim(self._loop.time())

    # --- for the application --------------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def flush(self, now: float | None = None) -> None:
        """Deliver events and send what the endpoint has queued after an application call."""
        if self._closed:
            return
        if now is None:
            now = self._loop.time()
        self._deliver(now)
        self._transmit(now)

    def local_addresses(self) -> list[Addr]:
        if self._route is not None:
            return [self._route.address]
        return [s.getsockname() for s in self.sockets]

    def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.flush()  # last ACKs and RSTs
        self._closed = True
        for r in self._readers:
            r.close()
        for s in self._senders:
            s.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._alarm and self._alarms is not None:
            self._alarms.cancel(self._alarm)
            self._alarm = 0
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None
        for sock in self.sockets:
            sock.close()


def _drop(data: bytes, addr: Addr, now: float) -> None:
    """The readers' handler while not receiving."""
