"""Sans-IO CoAP (RFC 7252, RFC 7959 block-wise, RFC 7641 observe, RFC 8323 over TCP and TLS):
messages, reliability and exchanges as plain objects that take bytes and ``now`` and give bytes,
events and deadlines. No sockets, no asyncio, no clock; ``lwm2m.transport`` runs them on sockets."""

from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.connection import (
    BlockBudget,
    ConnectionEnded,
    CsmReceived,
    PongReceived,
    TcpConfig,
    TcpConnection,
)
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.events import (
    CoapNotificationReceived,
    Event,
    ObservationCancelled,
    RequestAcknowledged,
    RequestFailed,
    RequestReceived,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
)
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type, code_text
from lwm2m.coap.option import BlockOption

__all__ = [
    "BlockBudget",
    "BlockOption",
    "CoapNotificationReceived",
    "Code",
    "ConnectionEnded",
    "CsmReceived",
    "Endpoint",
    "EndpointConfig",
    "Event",
    "Message",
    "ObservationCancelled",
    "OptionNumber",
    "PongReceived",
    "RequestAcknowledged",
    "RequestFailed",
    "RequestReceived",
    "RequestTimedOut",
    "ResetReceived",
    "ResponseReceived",
    "TcpConfig",
    "TcpConnection",
    "Type",
    "code_text",
]
