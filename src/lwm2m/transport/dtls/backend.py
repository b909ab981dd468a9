"""The narrow interface between our DTLS session layer and a TLS library.

The session layer (``layer.py``) owns sockets' worth of datagrams, peers,
timers, limits and routing; a backend only turns bytes into bytes for one
connection at a time. The package's backend is our own sans-IO engine ``lwm2m.tls``
(``engine_backend.py``: PSK, X.509 and raw public keys), which ``endpoint.default_backend``
gives; the tests drive Mbed TLS through the same protocol as a peer we did not write
(``tests/helpers/mbedtls_backend.py``). The retransmission timer is the backend's
(``get_timer``), so that the layer never guesses at a library's clock. This module imports
no backend, so a backend may import it.
"""

from __future__ import annotations

from typing import Protocol

from lwm2m.errors import DtlsError, DtlsUnavailable, HandshakeError, SessionClosed
from lwm2m.transport.dtls.config import DtlsClientConfig, DtlsServerConfig, PeerIdentity

__all__ = [
    "Backend",
    "ClientFactory",
    "Connection",
    "DtlsError",
    "DtlsUnavailable",
    "HandshakeError",
    "RecordPath",
    "ServerFactory",
    "SessionClosed",
]


class RecordPath(Protocol):
    """The way an established session's application records go through a backend at the least
    cost per record: what the layer calls for each datagram once the handshake is over (the
    engine's connection itself; a backend without a shorter way gives its ``Connection``)."""

    def open_application_data(self, datagram: bytes) -> bytes | None:
        """The plaintext of ``datagram`` when it is one application record that authenticated
        as new (the replay window took it). None when the datagram is anything else, left
        untouched: ``feed_read`` then takes it. Raises DtlsError (or ProtocolError) for a
        record of that form that was dropped: a replay, or one that does not authenticate
        (RFC 6347 §4.1.2.6, §4.1.2.7)."""
        ...

    @property
    def advanced(self) -> bool:
        """Whether the last record ``open_application_data`` gave the plaintext of was newer than
        every one accepted before (RFC 9146 §6: only such a record may move a CID session)."""
        ...

    def protect_application_data(self, data: bytes) -> bytes:
        """``data`` as one encrypted record, as ``Connection.write`` gives it. Raises
        RecordTooLarge for a message over the peer's record limit (the session goes on), or
        another error when the session cannot send any more."""
        ...


class Connection(Protocol):
    """One DTLS connection, fed and drained as bytes (no sockets, no clock: time comes in as ``now``).

    ``cid`` is the Connection ID the peer puts in its records to us (RFC 9146 §3), empty when
    none was negotiated: a server layer routes ``tls12_cid`` records by it."""

    established: bool

    @property
    def cid(self) -> bytes: ...

    @property
    def resumed(self) -> bool:
        """True once an abbreviated handshake (RFC 5246 §7.3, RFC 5077) made the session."""
        ...

    @property
    def max_application_data(self) -> int | None:
        """The largest plaintext ``write`` takes: one record within the peer's record size
        limit (RFC 8449 §4); None when the library does not tell."""
        ...

    @property
    def advanced(self) -> bool:
        """What ``feed`` answered, or would have, for the datagram fed last (by either call)."""
        ...

    def feed(self, datagram: bytes, now: float) -> bool:
        """A datagram from the peer; ``handshake()`` or ``read()`` takes what it held.

        True when a record of it authenticated with a sequence number above every one accepted
        before (RFC 9146 §6: the test for taking a new peer address, and the layer's for
        counting the peer as heard from); a backend that cannot tell answers False (then only
        plaintext that ``read`` gives counts)."""
        ...

    @property
    def records(self) -> RecordPath:
        """Where an established session's application records go through (``RecordPath``)."""
        ...

    def feed_read(self, datagram: bytes, now: float) -> bytes | None:
        """``feed``, then the plaintext when the datagram was one application record that
        authenticated and nothing else; None otherwise, when ``read`` and ``outgoing`` give
        what it held (a backend without a shorter way feeds and answers None). ``advanced``
        then tells what ``feed`` would have answered."""
        ...

    def handshake(self, now: float) -> bool:
        """Advance the handshake as far as the input allows; True once it is over.

        Raises HandshakeError when the handshake failed (its alert is then in ``outgoing()``)."""
        ...

    def get_timer(self) -> float | None:
        """When ``handle_timer`` is due (the retransmission timer of RFC 6347 §4.2.4), or None."""
        ...

    def handle_timer(self, now: float) -> None:
        """The timer ran out: the last flight is sent again when it is due (then in ``outgoing()``)."""
        ...

    def outgoing(self) -> list[bytes]:
        """Datagrams waiting to be sent (a handshake flight, an alert), each within the MTU."""
        ...

    def read(self) -> bytes | None:
        """The plaintext of the next application record, or None when none is left.

        Records that fail authentication or replay checks are dropped silently (RFC 6347
        §4.1.2.1, §4.1.2.6); raises SessionClosed when the peer closed or the session broke."""
        ...

    def write(self, data: bytes) -> bytes:
        """``data`` as one encrypted record, ready to send. Raises SessionClosed."""
        ...

    def identity(self) -> PeerIdentity | None:
        """Who the peer authenticated as, once the handshake is over."""
        ...

    def cipher_suite(self) -> str | None: ...

    def close(self) -> bytes:
        """A close_notify alert to send (empty when none can be made)."""
        ...

    def save(self) -> bytes | None:
        """The established session as bytes for ``restore``, or None when it cannot be saved now."""
        ...


class ServerFactory(Protocol):
    handshake_cost: int  # bytes one connection holds while its handshake is in progress

    # Length of the Connection IDs this server gives (RFC 9146 §3); 0: records are routed by
    # address only.
    cid_length: int

    def accept(self, datagram: bytes, client_id: bytes, now: float) -> tuple[Connection | None, bytes]:
        """Check a ClientHello's cookie, keeping no state (RFC 6347 §4.2.1).

        ``client_id`` names the sender's transport address. Returns (None,
        HelloVerifyRequest datagram) when the cookie is missing or stale, (None, b"")
        for a datagram that is no usable ClientHello, and (a new connection, b"")
        when the cookie is valid: its first flight is then waiting in ``outgoing()``."""
        ...

    def restore(self, state: bytes) -> Connection: ...

    def ticket_state(self) -> bytes | None:
        """The keys that open the session tickets issued (RFC 5077 §4) as bytes, key material
        to keep like a key; None from a backend that issues no tickets or cannot export them."""
        ...

    def load_ticket_state(self, data: bytes) -> bool:
        """Take up keys of ``ticket_state``; False from a backend that has none to take.
        Raises DtlsError for bytes that are not such keys."""
        ...


class ClientFactory(Protocol):
    handshake_cost: int

    def connect(self, now: float, peer: bytes = b"") -> Connection:
        """A new connection to ``peer`` (the server's transport address, as bytes); ``handshake()``
        then makes its ClientHello. A backend that can resume offers the last session it made
        with ``peer`` (RFC 5246 §7.3); one that cannot ignores ``peer``."""
        ...

    def restore(self, state: bytes) -> Connection: ...


class Backend(Protocol):
    name: str

    def server(self, config: DtlsServerConfig) -> ServerFactory: ...

    def client(self, config: DtlsClientConfig) -> ClientFactory: ...
