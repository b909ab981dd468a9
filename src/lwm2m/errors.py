"""The one exception tree of the package (DESIGN.md, "Errors").

Every exception the package raises on purpose is an :class:`LwM2MError`, in one of the
categories below, so a caller catches what it can handle::

    LwM2MError
    ├── CodecError        a payload that is not valid in its content format
    ├── ModelError        a path, value or object definition that is not valid
    ├── ProtocolError     a CoAP message or LwM2M request/response that breaks the protocol
    ├── ConfigError       a configuration (role config, bootstrap configuration) refused
    ├── DeviceError       an operation answered with a CoAP error code (``code``)
    ├── NotRegistered     no registration for that endpoint
    ├── RequestTimeout    no answer in time (a sleeping device that never woke, a lost peer)
    ├── TransportError    the exchange itself failed (reset, aborted, endpoint closed, HTTP)
    ├── SecurityError     DTLS/TLS, credentials, identities
    ├── StoreError        a store that cannot serve the request
    └── ApiError          a REST API request that cannot be served (``status``)

The categories that describe bad input also derive from :class:`ValueError`, timeouts from
:class:`TimeoutError`, transport failures from :class:`ConnectionError` and the missing
registration from :class:`LookupError`, so code written against the builtins keeps working.
"""

from __future__ import annotations


class LwM2MError(Exception):
    """The root: anything the package raises on purpose."""


class CodecError(LwM2MError, ValueError):
    """A payload that cannot be decoded, or values that cannot be encoded, in a content format."""


class ModelError(LwM2MError, ValueError):
    """A path, a value or an object definition that is not valid."""


class ProtocolError(LwM2MError, ValueError):
    """A CoAP message or an LwM2M request or response that breaks the protocol."""


class ConfigError(LwM2MError, ValueError):
    """A configuration refused on construction; the message names the bad value."""


class DeviceError(LwM2MError):
    """An operation answered with a CoAP error code; ``code`` is that code."""

    code: int = 0xA0  # 5.00 Internal Server Error

    def __init__(self, message: str = "", code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotRegistered(LwM2MError, LookupError):
    """No registration for that endpoint (it never registered, deregistered or expired)."""


class RequestTimeout(LwM2MError, TimeoutError):
    """No answer in time."""


class TransportError(LwM2MError, ConnectionError):
    """The exchange itself failed: a reset, an aborted request, a closed endpoint, HTTP."""


class SecurityError(LwM2MError):
    """DTLS/TLS handshakes and sessions, credentials and the identities bound to endpoints."""


class StoreError(LwM2MError, RuntimeError):
    """A store that cannot serve the request (unreachable, closed, corrupt)."""


class ApiError(LwM2MError):
    """A REST API request that cannot be served; ``status`` is its HTTP status."""

    status: int = 400
