"""Events the CoAP endpoint reports to its application (past tense, frozen dataclasses).

The endpoint queues them; the application drains them with ``Endpoint.next_event()``.
``addr`` is the peer's address as the transport gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lwm2m.coap.message import Message
from lwm2m.coap.option import BlockOption
from lwm2m.coap.twin import slot_setters, unfrozen_twin

__all__ = [
    "Addr",
    "CoapNotificationReceived",
    "Event",
    "ObservationCancelled",
    "RequestAcknowledged",
    "RequestFailed",
    "RequestReceived",
    "RequestTimedOut",
    "ResetReceived",
    "ResponseReceived",
    "UnknownNotification",
]

Addr = Any  # any hashable peer address; a socket address tuple for UDP


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every endpoint event."""


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """A request to answer with ``Endpoint.respond``.

    ``message`` is the request as received, with a Block1 transfer already
    reassembled (its payload whole, its Block1 option removed; ``block1`` keeps
    the last block's option, which the response echoes, RFC 7959 §2.3).
    ``observe`` is the Observe option value of a GET/FETCH: 0 registers, 1
    deregisters (RFC 7641 §2), None otherwise.
    """

    addr: Addr
    message: Message
    observe: int | None = None
    block1: BlockOption | None = None
    block2: BlockOption | None = None  # the Block2 option the client sent, if any

    @property
    def token(self) -> bytes:
        return self.message.token

    @property
    def is_observe_registration(self) -> bool:
        return self.observe == 0

    @property
    def is_observe_deregistration(self) -> bool:
        return self.observe == 1

    @property
    def relation(self) -> tuple[Addr, bytes]:
        """The handle of the observation this request may register, for ``Endpoint.notify``."""
        return (self.addr, self.message.token)


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """The (final, reassembled) response to a request we sent."""

    addr: Addr
    token: bytes
    request: Message
    response: Message
    # The ``handle`` the request was sent with (``Endpoint.request``), handed back with its
    # answers: the transport finds the relation a notification is for without a table of its own.
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CoapNotificationReceived(Event):
    """A fresh notification for an observation we registered (RFC 7641 §3.2).

    ``sequence`` is the Observe value; None for a final notification (an error
    code or no Observe option), after which the observation is closed.
    """

    addr: Addr
    token: bytes
    response: Message
    sequence: int | None
    # (the request's handle, as above)
    handle: Any = field(default=None, compare=False, repr=False)

    @property
    def final(self) -> bool:
        return self.sequence is None


@dataclass(frozen=True, slots=True)
class RequestTimedOut(Event):
    """A request got no answer: MAX_RETRANSMIT reached for CON, or no response in time."""

    addr: Addr
    token: bytes
    request: Message
    # (the request's handle, as above)
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RequestAcknowledged(Event):
    """The peer acknowledged our CON request with an empty ACK: its answer follows as a separate
    response (RFC 7252 §5.2.2), within ``EndpointConfig.response_timeout``. Raised only for a
    request whose empty ACK was asked for (``Endpoint.report_empty_ack``)."""

    addr: Addr
    token: bytes


@dataclass(frozen=True, slots=True)
class RequestFailed(Event):
    """A request ended without a usable response (e.g. a block-wise transfer broke off)."""

    addr: Addr
    token: bytes
    request: Message
    reason: str
    # (the request's handle, as above)
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ResetReceived(Event):
    """The peer answered one of our messages with RST (RFC 7252 §4.2).

    ``token`` is the token of our request or response, when the message had one.
    """

    addr: Addr
    token: bytes | None
    mid: int
    # (the request's handle, as above)
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ObservationCancelled(Event):
    """A server-side observation ended without the application asking for it.

    ``reason``: "reset" (RST to a notification, RFC 7641 §3.6), "deregistered"
    (GET with Observe=1), "timeout" (a CON notification was never acknowledged,
    §4.5), "evicted" (state limits).
    """

    addr: Addr
    token: bytes
    reason: str

    @property
    def relation(self) -> tuple[Addr, bytes]:
        return (self.addr, self.token)


@dataclass(frozen=True, slots=True)
class UnknownNotification(Event):
    """A notification whose token this endpoint does not know, held instead of rejected.

    Raised only by an endpoint with ``hold_unknown_notifications`` on (a server node that shares
    its store with others, whose observations it may take over). The application answers with
    ``Endpoint.adopt_notification`` (the relation is taken up and the notification delivered
    as a ``CoapNotificationReceived``) or ``Endpoint.reject_notification`` (RST, RFC 7641 §3.5);
    unanswered, it gets the RST when its hold time is over.
    """

    addr: Addr
    message: Message

    @property
    def token(self) -> bytes:
        return self.message.token


# --- building RequestReceived on the hot path ----------------------------------------------------

_new = object.__new__
_REQUEST_FIELDS = ("addr", "message", "observe", "block1", "block2")
# RequestReceived's unfrozen twin (see lwm2m.coap.twin); None where the interpreter refuses it.
RequestFields = unfrozen_twin(RequestReceived)
_REQUEST_SET = slot_setters(RequestReceived)


def request_received(addr: Any, msg: Message) -> RequestReceived:
    """``RequestReceived(addr, msg)`` for the hot path, without the frozen dataclass ``__init__``."""
    ev: Any
    if RequestFields is not None:
        ev = _new(RequestFields)
        ev.addr = addr
        ev.message = msg
        ev.observe = ev.block1 = ev.block2 = None
        ev.__class__ = RequestReceived
        return ev  # type: ignore[no-any-return]
    ev = _new(RequestReceived)
    sa, sm, so, s1, s2 = _REQUEST_SET
    sa(ev, addr)
    sm(ev, msg)
    so(ev, None)
    s1(ev, None)
    s2(ev, None)
    return ev  # type: ignore[no-any-return]
