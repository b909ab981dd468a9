"""``BootstrapServerConfig``: what a :class:`~lwm2m.bootstrap.server.BootstrapServer` is set up with.

A frozen dataclass with defaults, checked on construction: a bad value is a
:class:`~lwm2m.errors.ConfigError` that names it. The stores are not configuration: the
configurations come in the ``Store`` given beside it, the bootstrap server's own PSKs in
its ``security`` store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lwm2m.errors import ConfigError
from lwm2m.transport.dtls.config import RpkCredentials, X509Credentials
from lwm2m.transport.listen import check_listener

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
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    coaps_port: int | None = None
    certificate: X509Credentials | None = None
    request_timeout: float = REQUEST_TIMEOUT
    session_timeout: float = SESSION_TIMEOUT
    history: int = HISTORY
    rpk: RpkCredentials | None = None

    def __post_init__(self) -> None:
        check_listener(self.host, self.port, self.coaps_port, self.certificate, self.rpk)
        _seconds("request_timeout", self.request_timeout)
        _seconds("session_timeout", self.session_timeout)
        if type(self.history) is not int or self.history < 0:
            raise ConfigError(f"history must be a number of sessions, 0 or more, got {self.history!r}")
