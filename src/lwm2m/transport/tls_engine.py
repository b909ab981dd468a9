"""CoAP over TLS (``coaps+tcp``, RFC 8323 §9) through our own TLS engine: TLS 1.2 over the TCP
stream (RFC 5246) by the DTLS engine's handshake in stream mode (``lwm2m.tls.stream``), so that
PSK, raw public keys (RFC 7250) and X.509 all serve over TCP, with the credentials DTLS takes.

:func:`engine_tls_server` and :func:`engine_tls_client` make the factories the TCP endpoint
asks for one connection per socket; :class:`EngineTls` is that connection seen from the socket:
bytes in, plaintext out, bytes to write, and who the peer proved to be (``PeerIdentity`` as the
DTLS layer reports it: a PSK identity, a raw public key, a certificate).
"""

from __future__ import annotations

from typing import Protocol

from lwm2m.tls import ApplicationData, ConnectionClosed, DtlsConnection, HandshakeComplete, HandshakeFailure
from lwm2m.transport.dtls.config import DtlsClientConfig, DtlsServerConfig, PeerIdentity
from lwm2m.transport.dtls.credentials import peer_identity
from lwm2m.transport.dtls.engine_backend import EngineBackend

__all__ = ["EngineTls", "StreamTlsFactory", "engine_tls_client", "engine_tls_server"]


class StreamTlsFactory(Protocol):
    """Makes the engine connection of one TCP connection."""

    def stream_connection(self, now: float) -> DtlsConnection: ...


def engine_tls_server(config: DtlsServerConfig) -> StreamTlsFactory:
    """The server side: the PSKs, raw public keys and certificates of ``config``, as DTLS
    takes them (``ValueError`` for a configuration the engine cannot serve)."""
    return EngineBackend().server(config)


def engine_tls_client(config: DtlsClientConfig) -> StreamTlsFactory:
    """The client side: the PSK, raw public key or certificate of ``config``."""
    return EngineBackend().client(config)


class EngineTls:
    """One TLS connection over a TCP socket: :meth:`feed` takes what the socket read and
    returns the application data in it; :meth:`outgoing` is what to write. ``established``,
    ``identity`` once the handshake is done; ``failure`` (handshake) or ``closed`` (after it)
    say why it ended."""

    __slots__ = ("_conn", "closed", "established", "failure", "identity")

    def __init__(self, conn: DtlsConnection) -> None:
        self._conn = conn
        self.established = False
        self.identity: PeerIdentity | None = None
        self.failure: str | None = None
        self.closed: str | None = None

    def feed(self, data: bytes, now: float) -> bytes:
        conn = self._conn
        conn.receive_data(data, now)
        plain: list[bytes] = []
        while (event := conn.next_event()) is not None:
            if isinstance(event, ApplicationData):
                plain.append(event.data)
            elif isinstance(event, HandshakeComplete):
                self.established = True
                if event.peer is not None:  # ECDHE_ECDSA: the certificate or raw public key proved
                    self.identity = peer_identity(event.peer)
                else:
                    self.identity = PeerIdentity("psk", event.identity.decode("utf-8", "replace"))
            elif isinstance(event, HandshakeFailure):
                self.failure = event.reason
            elif isinstance(event, ConnectionClosed):
                self.closed = event.reason
        return b"".join(plain)

    def outgoing(self) -> bytes:
        return self._conn.data_to_send()

    def write(self, data: bytes) -> None:
        self._conn.send_application_data(data)

    def close(self) -> None:
        """close_notify (RFC 5246 §7.2.1), when the connection is still open."""
        self._conn.close()

    @property
    def buffered_bytes(self) -> int:
        """What the engine holds for a record or handshake message not yet whole."""
        return self._conn.buffered_bytes
