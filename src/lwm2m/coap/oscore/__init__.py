"""OSCORE (RFC 8613), sans-IO over ``cryptography``: security contexts and the protection of
CoAP messages (``context``), the option value and the COSE bytes (``cose``), and the layer
that an endpoint's transport runs it through (``layer``).

Kept out of ``lwm2m.coap``'s own imports: plain CoAP needs no ``cryptography``."""

from lwm2m.coap.oscore.context import (
    MAX_SEQUENCE,
    OSCORE_OPTION,
    OscoreConfig,
    OscoreContext,
    OscoreReplayWindow,
    RequestBinding,
    SenderSequence,
)
from lwm2m.coap.oscore.cose import OscoreOption
from lwm2m.coap.oscore.layer import (
    OscoreDirectory,
    OscoreLayer,
    OscoreLookup,
    OscoreRequestReceived,
    PendingRequest,
    error_response,
)

__all__ = [
    "MAX_SEQUENCE",
    "OSCORE_OPTION",
    "OscoreConfig",
    "OscoreContext",
    "OscoreDirectory",
    "OscoreLayer",
    "OscoreLookup",
    "OscoreOption",
    "OscoreReplayWindow",
    "OscoreRequestReceived",
    "PendingRequest",
    "RequestBinding",
    "SenderSequence",
    "error_response",
]
