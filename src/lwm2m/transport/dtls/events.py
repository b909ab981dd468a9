"""Events of the DTLS session layer, reported beside the CoAP endpoint's own events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lwm2m.transport.dtls.config import PeerIdentity

__all__ = [
    "HandshakeFailed",
    "SessionEnded",
    "SessionEstablished",
    "SessionEvent",
    "SessionMoved",
    "SessionSought",
]


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Base class of the DTLS layer's events; ``addr`` is the peer's socket address."""

    addr: Any


@dataclass(frozen=True, slots=True)
class SessionEstablished(SessionEvent):
    """A handshake ended and the peer authenticated as ``identity``.

    ``replaced`` is the identity of the session this one took over at the same
    address (a peer that shook hands again), or None."""

    identity: PeerIdentity | None
    cipher_suite: str | None = None
    replaced: PeerIdentity | None = None
    resumed: bool = False  # an abbreviated handshake resumed an earlier session (RFC 5246 §7.3)


@dataclass(frozen=True, slots=True)
class HandshakeFailed(SessionEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class SessionEnded(SessionEvent):
    """``reason``: "closed" (close_notify or a fatal alert from the peer), "error",
    "idle" (silent for ``idle_timeout``; the session may have been kept as saved state),
    "evicted" (the session cap), "replaced" (a new handshake from the same address
    authenticated), "local" (closed by the application)."""

    identity: PeerIdentity | None
    reason: str


@dataclass(frozen=True, slots=True)
class SessionMoved(SessionEvent):
    """The peer of a session with a Connection ID now sends from ``addr`` (RFC 9146 §6: a
    record carrying its CID authenticated there with a newer sequence number, e.g. after a
    NAT rebinding); it was at ``old``. What was sent to ``old`` now goes to ``addr``."""

    identity: PeerIdentity | None
    old: Any


@dataclass(frozen=True, slots=True)
class SessionSought(SessionEvent):
    """Records came for a session this layer does not hold, and are held (``DtlsLayer.
    hold_unknown``): ``cid`` is the Connection ID they carry (RFC 9146), or empty for records
    from ``addr`` without one. The application answers with ``DtlsLayer.take_over`` (a saved
    session, e.g. from a cluster's shared store) or ``DtlsLayer.let_go``; unanswered, the
    records are dropped after the hold time."""

    cid: bytes
