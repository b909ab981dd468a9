"""The narrow interface between our DTLS session layer and a TLS library.

The session layer (``layer.py``) owns sockets' worth of datagrams, peers,
timers, limits and routing; a backend only turns bytes into bytes for one
connection at a time. Mbed TLS through python-mbedtls is the one backend today
(``mbedtls_backend.py``, chosen by ``endpoint.default_backend``); another library (an
OpenSSL binding, say) fits by implementing these three Protocols. This module imports no
backend, so a backend may import it.
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
    "ServerFactory",
    "SessionClosed",
]


class Connection(Protocol):
    """One DTLS connection, fed and drained as bytes (no sockets, no clock of ours)."""

    established: bool

    def feed(self, datagram: bytes) -> None:
        """A datagram from the peer; ``handshake()`` or ``read()`` processes it."""
        ...

    def handshake(self) -> bool:
        """Advance the handshake as far as the input allows; True once it is over.

        Called again after the retransmission timer ran out, it resends the last flight
        when it is due. Raises HandshakeError when the handshake failed."""
        ...

    def outgoing(self) -> bytes:
        """Records waiting to be sent (a handshake flight, an alert), concatenated."""
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


# Memory one handshake in progress holds when a backend does not say (Mbed TLS's, measured).
DEFAULT_HANDSHAKE_COST = 90 << 10


class ServerFactory(Protocol):
    handshake_cost: int  # bytes one connection holds while its handshake is in progress

    def accept(self, datagram: bytes, client_id: bytes) -> tuple[Connection | None, bytes]:
        """Check a ClientHello's cookie, keeping no state (RFC 6347 §4.2.1).

        ``client_id`` names the sender's transport address. Returns (None,
        HelloVerifyRequest datagram) when the cookie is missing or stale, (None, b"")
        for a datagram that is no usable ClientHello, and (a new connection, b"")
        when the cookie is valid: its first flight is then waiting in ``outgoing()``."""
        ...

    def restore(self, state: bytes) -> Connection: ...


class ClientFactory(Protocol):
    handshake_cost: int

    def connect(self) -> Connection:
        """A new connection; ``handshake()`` then makes its ClientHello."""
        ...

    def restore(self, state: bytes) -> Connection: ...


class Backend(Protocol):
    name: str

    def server(self, config: DtlsServerConfig) -> ServerFactory: ...

    def client(self, config: DtlsClientConfig) -> ClientFactory: ...
