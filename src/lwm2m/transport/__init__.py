"""Everything that touches the operating system: UDP sockets around the sans-IO CoAP endpoint,
TCP and TLS connections around the sans-IO RFC 8323 connection (``lwm2m.transport.tcp``; TLS
through our engine in ``lwm2m.transport.tls_engine``, imported from there: it needs the
``cryptography`` package, as DTLS does),
DTLS (``lwm2m.transport.dtls``), one UDP socket shared by many endpoints at addresses of their own
(``SharedUdp``, for simulated fleets), the event loop choice and the one outgoing HTTP client."""

from lwm2m.transport.http import HttpClient, HttpResponse, http_get
from lwm2m.transport.shared import SharedRoute, SharedUdp
from lwm2m.transport.tcp import CoapTcpEndpoint, TcpLimits
from lwm2m.transport.udp import CoapObservation, CoapUdpEndpoint

__all__ = [
    "CoapObservation",
    "CoapTcpEndpoint",
    "CoapUdpEndpoint",
    "HttpClient",
    "HttpResponse",
    "SharedRoute",
    "SharedUdp",
    "TcpLimits",
    "http_get",
]
