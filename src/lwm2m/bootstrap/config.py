"""``BootstrapServerConfig``: what a :class:`~lwm2m.bootstrap.server.BootstrapServer` is set up with.

A frozen dataclass with defaults, checked on construction: a bad value is a
:class:`~lwm2m.errors.ConfigError` that names it. The stores are not configuration: the
configurations come in the ``Store`` given beside it, the bootstrap server's own PSKs in
its ``security`` store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lwm2m.coap.connection import TcpConfig
from lwm2m.errors import ConfigError
from lwm2m.transport.dtls.config import RpkCredentials, X509Credentials
from lwm2m.transport.listen import check_listener, check_port
from lwm2m.transport.tcp import TcpLimits

__all__ = ["DEFAULT_PORT", "HISTORY", "REQUEST_TIMEOUT", "SESSION_TIMEOUT", "BootstrapServerConfig"]

DEFAULT_PORT = 5685  # LwM2M-TS-Transport 1.2 §6: the bootstrap server's CoAP port
REQUEST_TIMEOUT = 30.0  # seconds for one answer, retransmissions included
SESSION_TIMEOUT = 120.0  # seconds for a whole session
HISTORY = 200  # ended sessions kept for sessions()


def _seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a positive, finite number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class BootstrapServerConfig:
    """The bootstrap server's addresses and limits (LwM2M-TS-Core 1.2 §6.1).

    ``host``/``port``: where CoAP is served (port 0: any free port). ``coaps_port``: also serve
    CoAP over DTLS there, for endpoints that bootstrap with a PSK from the bootstrap server's
    security store or, with ``certificate``, an X.509 certificate whose CN is the endpoint, or,
    with ``rpk`` (the bootstrap server's own key pair, RFC 7250), a raw public key the security
    store holds for the endpoint.
    ``request_timeout``: seconds for the answer to one operation, retransmissions included;
    ``session_timeout``: seconds for a whole session (§6.1.4: the client then asks again).
    ``history``: ended sessions kept for ``sessions()``.
    ``tcp_port``: also serve CoAP over TCP there (``coap+tcp``, RFC 8323; None: no TCP);
    ``tls_port``: CoAP over TLS (``coaps+tcp``) for X.509 clients with ``certificate``, whose CN
    is the endpoint; ``tcp``/``tcp_limits``: the connections' settings and limits (None:
    defaults). A session runs over the connection the client's Bootstrap-Request came on.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    coaps_port: int | None = None
    certificate: X509Credentials | None = None
    request_timeout: float = REQUEST_TIMEOUT
    session_timeout: float = SESSION_TIMEOUT
    history: int = HISTORY
    rpk: RpkCredentials | None = None
    tcp_port: int | None = None
    tls_port: int | None = None
    tcp: TcpConfig | None = None
    tcp_limits: TcpLimits | None = None

    def __post_init__(self) -> None:
        # A certificate serves DTLS or TLS over TCP: with only the latter, DTLS's check skips it.
        only_tls = self.coaps_port is None and self.tls_port is not None
        check_listener(
            self.host, self.port, self.coaps_port, None if only_tls else self.certificate, self.rpk
        )
        self._check_tcp()
        _seconds("request_timeout", self.request_timeout)
        _seconds("session_timeout", self.session_timeout)
        if type(self.history) is not int or self.history < 0:
            raise ConfigError(f"history must be a number of sessions, 0 or more, got {self.history!r}")

    def _check_tcp(self) -> None:
        if self.tcp_port is not None:
            check_port("tcp_port", self.tcp_port)
        if self.tls_port is not None:
            check_port("tls_port", self.tls_port)
            if self.certificate is None:
                raise ConfigError("tls_port needs certificate: CoAP over TLS takes X.509 clients")
            if not isinstance(self.certificate, X509Credentials):
                raise ConfigError(
                    f"certificate must be X509Credentials, got {type(self.certificate).__name__}"
                )
        if self.tcp is not None and not isinstance(self.tcp, TcpConfig):
            raise ConfigError(f"tcp must be a TcpConfig, got {type(self.tcp).__name__}")
        if self.tcp_limits is not None and not isinstance(self.tcp_limits, TcpLimits):
            raise ConfigError(f"tcp_limits must be TcpLimits, got {type(self.tcp_limits).__name__}")
