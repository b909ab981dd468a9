"""``ServerConfig``: what an :class:`~lwm2m.server.role.Server` is set up with.

A frozen dataclass with defaults, checked on construction: a bad value is a
:class:`~lwm2m.errors.ConfigError` that names it. The stores are not configuration:
they come opened (``lwm2m.storage.open_store``) and go beside it, ``Server(config, store)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.connection import TcpConfig
from lwm2m.errors import ConfigError
from lwm2m.server.presence import MAX_TRANSMIT_WAIT
from lwm2m.server.registrar import RegistrationLimits
from lwm2m.server.security import NOSEC_POLICIES, NosecPolicy
from lwm2m.server.trace import TraceConfig
from lwm2m.transport.dtls.config import RpkCredentials, SessionLimits, X509Credentials
from lwm2m.transport.listen import check_listener, check_port
from lwm2m.transport.proxy import ProxyConfig
from lwm2m.transport.tcp import TcpLimits

__all__ = ["ServerConfig"]


def _seconds(name: str, value: object, *, zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        kind = "a finite number of seconds, 0 or more" if zero else "a positive, finite number of seconds"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The LwM2M server's addresses, limits and policies.

    ``host``/``port``: where CoAP is served (port 0: any free port; the server's ``port`` is the
    bound one once started). ``coaps_port``: also serve CoAP over DTLS there (None: no DTLS);
    ``certificate``: the server's X.509 credentials for certificate clients, with the
    authorities their certificates must chain to (needs ``coaps_port``); ``dtls_limits``: the
    DTLS session limits and handshake timers (None: the defaults). ``coap``: transmission
    parameters and state limits of both CoAP endpoints (None: RFC 7252's defaults).
    ``registration_limits``: what clients may register (LwM2M-TS-Core 1.2 §6.2);
    ``nosec_endpoints`` ``"deny"``: plain-CoAP registrations only from endpoints listed in the
    security store with mode ``nosec``. ``awake_time``: seconds a queue-mode client is taken to
    be reachable after it sent something, ``queue_timeout``: seconds a request waits for a
    sleeping one to wake (None: no limit; LwM2M-TS-Core 1.2 §6.5). ``expiry_interval``: seconds
    between two sweeps of expired registrations. ``rpk``: the server's own key pair for raw
    public key clients (RFC 7250), which the security store names by their keys (needs
    ``coaps_port``; with ``certificate`` too, the certificate's key).

    ``shared_store``: the store is shared with other server nodes (a cluster behind a load
    balancer), whose devices may come over to this one when their node dies. Then ``start()``
    resumes no stored observation (the other nodes hold theirs); an endpoint is adopted when its
    traffic arrives here instead: an Update for a registration this node does not run, or a
    notification whose token the store knows (``Server.adopt``). Off (a lone server): every
    stored observation is resumed at start and an unknown token gets RST (RFC 7641 §3.5).

    ``trace``: the bounds of the per-device message trace (:mod:`lwm2m.server.trace`).

    ``proxy``: the balancers in front of plain CoAP that put a PROXY protocol header in front of
    each UDP session's first datagram (nginx's ``proxy_protocol on;``), and are believed: the
    server then sees every device at its own address, not the balancer's session
    (:mod:`lwm2m.transport.proxy`). None: no header is read.

    ``tcp_port``: also serve CoAP over TCP there (``coap+tcp``, RFC 8323; None: no TCP);
    ``tls_port``: CoAP over TLS (``coaps+tcp``) through our TLS engine with the credentials
    DTLS takes: the security store's PSKs, the raw public key ``rpk``, the X.509
    ``certificate`` (whose trusted authorities client certificates must chain to); ``tcp``: the
    connections' Max-Message-Size, block-wise and timeouts, ``tcp_limits``: how many
    connections, idle time and buffers (None: the defaults). A client registered over TCP or
    TLS is reached over its connection (binding ``T``, LwM2M-TS-Transport 1.2 §6).
    """

    host: str = "127.0.0.1"
    port: int = 5683
    coaps_port: int | None = None
    certificate: X509Credentials | None = None
    dtls_limits: SessionLimits | None = None
    coap: EndpointConfig | None = None
    registration_limits: RegistrationLimits = field(default_factory=RegistrationLimits)
    nosec_endpoints: NosecPolicy = "allow"
    awake_time: float = MAX_TRANSMIT_WAIT
    queue_timeout: float | None = 300.0
    expiry_interval: float = 1.0
    rpk: RpkCredentials | None = None
    shared_store: bool = False
    trace: TraceConfig = field(default_factory=TraceConfig)
    tcp_port: int | None = None
    tls_port: int | None = None
    tcp: TcpConfig | None = None
    tcp_limits: TcpLimits | None = None
    proxy: ProxyConfig | None = None

    def __post_init__(self) -> None:
        # A certificate or raw public key serves DTLS or TLS over TCP: with only the latter, DTLS's
        # check skips them.
        only_tls = self.coaps_port is None and self.tls_port is not None
        check_listener(
            self.host,
            self.port,
            self.coaps_port,
            None if only_tls else self.certificate,
            None if only_tls else self.rpk,
        )
        self._check_tcp()
        if self.dtls_limits is not None and not isinstance(self.dtls_limits, SessionLimits):
            raise ConfigError(f"dtls_limits must be SessionLimits, got {type(self.dtls_limits).__name__}")
        if self.coap is not None and not isinstance(self.coap, EndpointConfig):
            raise ConfigError(f"coap must be an EndpointConfig, got {type(self.coap).__name__}")
        if not isinstance(self.registration_limits, RegistrationLimits):
            kind = type(self.registration_limits).__name__
            raise ConfigError(f"registration_limits must be RegistrationLimits, got {kind}")
        if self.nosec_endpoints not in NOSEC_POLICIES:
            raise ConfigError(f"nosec_endpoints must be 'allow' or 'deny', got {self.nosec_endpoints!r}")
        _seconds("awake_time", self.awake_time)
        if self.queue_timeout is not None:
            _seconds("queue_timeout", self.queue_timeout, zero=True)
        _seconds("expiry_interval", self.expiry_interval)
        if self.proxy is not None and not isinstance(self.proxy, ProxyConfig):
            raise ConfigError(f"proxy must be a ProxyConfig, got {type(self.proxy).__name__}")
        if not isinstance(self.shared_store, bool):
            raise ConfigError(f"shared_store must be True or False, got {self.shared_store!r}")

    def _check_tcp(self) -> None:
        for name in ("tcp_port", "tls_port"):
            if getattr(self, name) is not None:
                check_port(name, getattr(self, name))
        if self.tcp is not None and not isinstance(self.tcp, TcpConfig):
            raise ConfigError(f"tcp must be a TcpConfig, got {type(self.tcp).__name__}")
        if self.tcp_limits is not None and not isinstance(self.tcp_limits, TcpLimits):
            raise ConfigError(f"tcp_limits must be TcpLimits, got {type(self.tcp_limits).__name__}")
