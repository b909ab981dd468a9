"""The loop around a sans-IO endpoint: datagrams in, events out, datagrams out, one timer.

Per wake-up of a socket every pending datagram goes to ``receive_datagram``,
and the events it raised go to ``on_event`` at once (so an application that
answers a request inside ``on_event`` gets its response piggybacked on the
ACK); then ``datagrams_to_send`` goes out and the one timer handle is
re-armed from ``get_timer()``. Nothing here creates a coroutine or a future.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lwm2m.transport.address import Addr
from lwm2m.transport.reader import DatagramReader, DatagramSender


class SansIOEndpoint(Protocol):
    """The I/O side of ``lwm2m.coap.endpoint.Endpoint``, which is all the driver needs."""

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Any: ...


EventCallback = Callable[[Any, float], None]  # (event, now)


class UdpDriver:
    """Moves datagrams and time between UDP sockets and one sans-IO ``Endpoint``.

    ``on_event(event, now)`` receives every event the endpoint raises, synchronously. After
    the application has called ``request``/``respond``/``notify``/``cancel`` on
    the endpoint outside of ``on_event``, it calls ``flush()``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: SansIOEndpoint,
        socks: Sequence[socket.socket],
        on_event: EventCallback,
    ) -> None:
        if not socks:
            raise ValueError("at least one socket")
        self._loop = loop
        self._endpoint = endpoint
        self._on_event = on_event
        self.sockets = tuple(socks)
        self._readers = [DatagramReader(loop, s, self._on_datagram, self._on_batch) for s in self.sockets]
        senders = {s.family: DatagramSender(loop, s) for s in self.sockets}
        first = next(iter(senders.values()))
        # Route by the shape of the address: IPv6 socket addresses have four fields.
        self._send4 = senders.get(socket.AF_INET, first).send
        self._send6 = senders.get(socket.AF_INET6, first).send
        self._senders = list(senders.values())
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        # False while the application plays a sleeping device (LwM2M queue mode): datagrams
        # that arrive are dropped as a radio that is off would never hear them.
        self.receiving = True

    @property
    def endpoint(self) -> Any:
        return self._endpoint

    def start(self) -> None:
        for r in self._readers:
            r.start()

    # --- the hot path -----------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if not self.receiving:
            return
        endpoint = self._endpoint
        endpoint.receive_datagram(data, addr, now)
        next_event = endpoint.next_event
        on_event = self._on_event
        while (event := next_event()) is not None:
            on_event(event, now)

    def _on_batch(self, now: float) -> None:
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        out = self._endpoint.datagrams_to_send(now)
        if out:
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
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

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
        on_event = self._on_event
        while (event := endpoint.next_event()) is not None:
            on_event(event, now)
        self._transmit(now)

    # --- for the application --------------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def flush(self, now: float | None = None) -> None:
        """Deliver events and send what the endpoint has queued after an application call."""
        if self._closed:
            return
        if now is None:
            now = self._loop.time()
        endpoint = self._endpoint
        on_event = self._on_event
        while (event := endpoint.next_event()) is not None:
            on_event(event, now)
        self._transmit(now)

    def local_addresses(self) -> list[Addr]:
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
        for s in self.sockets:
            s.close()
