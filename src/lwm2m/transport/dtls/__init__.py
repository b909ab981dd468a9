"""DTLS 1.2 for CoAP (``coaps://``): a session layer of ours over a narrow TLS backend interface.

``config`` (credentials, cipher suites, limits) and ``events`` import no TLS
library; the backend is our own engine (``lwm2m.tls``) for PSK, X.509 certificates and raw
public keys (RFC 7250); it needs ``cryptography``, the ``dtls`` extra (without it making an
endpoint raises ``DtlsUnavailable``).
"""

from lwm2m.errors import (
    DtlsError,
    DtlsHandshakeError,
    DtlsUnavailable,
    HandshakeError,
    NoDtlsSession,
    SessionClosed,
)
from lwm2m.transport.dtls.config import (
    CERTIFICATE_SUITES,
    MAX_PSK_IDENTITY_LENGTH,
    MAX_PSK_LENGTH,
    PSK_SUITES,
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    PskCredentials,
    RpkCredentials,
    SessionLimits,
    X509Credentials,
)
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint, open_dtls_endpoint
from lwm2m.transport.dtls.events import (
    HandshakeFailed,
    SessionEnded,
    SessionEstablished,
    SessionEvent,
    SessionMoved,
)
from lwm2m.transport.dtls.layer import DtlsLayer, SessionInfo

__all__ = [
    "CERTIFICATE_SUITES",
    "MAX_PSK_IDENTITY_LENGTH",
    "MAX_PSK_LENGTH",
    "PSK_SUITES",
    "CipherSuite",
    "CoapDtlsEndpoint",
    "DtlsClientConfig",
    "DtlsError",
    "DtlsHandshakeError",
    "DtlsLayer",
    "DtlsServerConfig",
    "DtlsUnavailable",
    "HandshakeError",
    "HandshakeFailed",
    "NoDtlsSession",
    "PeerIdentity",
    "PskCredentials",
    "RpkCredentials",
    "SessionClosed",
    "SessionEnded",
    "SessionEstablished",
    "SessionEvent",
    "SessionInfo",
    "SessionLimits",
    "SessionMoved",
    "X509Credentials",
    "open_dtls_endpoint",
]
