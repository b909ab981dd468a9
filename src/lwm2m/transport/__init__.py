"""Everything that touches the operating system: UDP sockets around the sans-IO CoAP endpoint,
DTLS (``lwm2m.transport.dtls``), the event loop choice and the one outgoing HTTP client."""

from lwm2m.transport.http import HttpClient, HttpResponse, http_get
from lwm2m.transport.udp import CoapObservation, CoapUdpEndpoint

__all__ = ["CoapObservation", "CoapUdpEndpoint", "HttpClient", "HttpResponse", "http_get"]
