"""The client's configuration: one frozen object, checked when it is made (DESIGN.md,
"Composition, not mixins": configuration is a dataclass, not constructor parameters).

::

    config = ClientConfig(lifetime=300, queue_mode=True, psk=PskCredentials("dev-1", key))
    client = Client("dev-1", "coaps://lwm2m.example:5684", objects, config=config)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.connection import TcpConfig
from lwm2m.errors import ConfigError
from lwm2m.protocol.registration import SUPPORTED_VERSIONS
from lwm2m.transport.dtls.config import PskCredentials, RpkCredentials, X509Credentials
from lwm2m.transport.shared import SharedUdp

if TYPE_CHECKING:  # lwm2m.coap.oscore needs the cryptography package, which plain CoAP does without
    from lwm2m.coap.oscore import OscoreConfig

DEFAULT_AWAKE_TIME = 93.0  # MAX_TRANSMIT_WAIT of RFC 7252 with its default parameters (§6.5)
BINDING_MODES = "UTSNQ"  # LwM2M-TS-Core 1.2 §6.2.1.1: UDP, TCP, SMS, Non-IP, and Q (1.0's queue mode)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How one client registers and talks to its servers.

    ``lifetime`` and ``binding`` seed the Server object (/1/x/1, /1/x/7) when the client makes
    it; afterwards that object is what counts. ``awake_time`` is the queue-mode window after
    the last exchange (LwM2M-TS-Core 1.2 §6.5). ``retry_initial`` to ``retry_max`` is the
    exponential back-off of failed registrations. ``psk``, ``certificate`` or ``rpk`` (a raw
    public key with the server's, RFC 7250; one of the three) are the DTLS credentials of a
    ``coaps://`` server (RFC 7252 §9.1), or of a ``coaps://`` bootstrap server when no server
    is given. ``tcp``: the Max-Message-Size, block-wise and timeouts of the connection to a
    ``coap+tcp://`` or ``coaps+tcp://`` server (whose TLS takes ``certificate``).
    ``oscore`` (an ``lwm2m.coap.oscore.OscoreConfig``: this device's side) protects
    the exchanges with a ``coap://`` server with OSCORE instead (RFC 8613; it becomes object 21,
    linked from the server's Security instance, LwM2M-TS-Core 1.2 §E.5).
    ``oscore_sequence_file`` keeps the OSCORE sender sequence numbers across restarts (RFC 8613
    Appendix B.1.1: without it they start at 0 again, reusing nonces with the same keys).
    ``shared_udp``: plain CoAP over UDP (``coap://``) goes through this socket, at an address
    of the client's own, instead of a socket of its own (many simulated devices in one process).
    """

    lifetime: int = 86400
    binding: str = "U"
    queue_mode: bool = False
    lwm2m_version: str = "1.2"
    awake_time: float = DEFAULT_AWAKE_TIME
    local_host: str | None = None
    local_port: int = 0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    coap_config: EndpointConfig | None = None
    request_timeout: float | None = None
    bootstrap_timeout: float = 60.0
    bootstrap_pack: bool = False
    bootstrap_after_failures: int = 3
    psk: PskCredentials | None = None
    certificate: X509Credentials | None = None
    rpk: RpkCredentials | None = None
    tcp: TcpConfig | None = None  # a coap+tcp:// or coaps+tcp:// server's connection (RFC 8323)
    oscore: OscoreConfig | None = None
    oscore_sequence_file: str | None = None
    # A socket shared with other clients (a simulated fleet): plain UDP takes an address of
    # its own on it instead of binding a socket (lwm2m.transport.shared).
    shared_udp: SharedUdp | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.lwm2m_version not in SUPPORTED_VERSIONS:
            raise ConfigError(
                f"lwm2m_version {self.lwm2m_version!r}: expected one of {', '.join(SUPPORTED_VERSIONS)}"
            )
        if type(self.lifetime) is not int or self.lifetime <= 0:
            raise ConfigError(f"lifetime {self.lifetime!r}: expected a positive number of seconds")
        if not self.binding or any(c not in BINDING_MODES for c in self.binding):
            raise ConfigError(f"binding {self.binding!r}: expected letters of {BINDING_MODES}")
        if not self.awake_time > 0:
            raise ConfigError(f"awake_time {self.awake_time!r}: expected a positive number of seconds")
        if type(self.local_port) is not int or not 0 <= self.local_port <= 65535:
            raise ConfigError(f"local_port {self.local_port!r}: expected 0 to 65535")
        if not self.retry_initial > 0:
            raise ConfigError(f"retry_initial {self.retry_initial!r}: expected a positive number of seconds")
        if not self.retry_max >= self.retry_initial:
            raise ConfigError(f"retry_max {self.retry_max!r}: expected at least retry_initial")
        if self.request_timeout is not None and not self.request_timeout > 0:
            raise ConfigError(f"request_timeout {self.request_timeout!r}: expected a positive number or None")
        if not self.bootstrap_timeout > 0:
            raise ConfigError(
                f"bootstrap_timeout {self.bootstrap_timeout!r}: expected a positive number of seconds"
            )
        if type(self.bootstrap_after_failures) is not int or self.bootstrap_after_failures < 1:
            raise ConfigError(
                f"bootstrap_after_failures {self.bootstrap_after_failures!r}: expected a positive count"
            )
        given = [n for n, c in (("psk", self.psk), ("certificate", self.certificate), ("rpk", self.rpk)) if c]
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(given)}: give one set of DTLS credentials, not more")
        if self.oscore is not None and given:
            raise ConfigError(
                f"oscore and {given[0]}: OSCORE goes over coap://, DTLS credentials over coaps://"
            )
        if self.rpk is not None and not self.rpk.peer_public_keys:
            raise ConfigError("rpk needs the server's public key (RpkCredentials.peer_public_keys)")

    def replace(self, **changes: object) -> ClientConfig:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
