"""A request answered later: the peer acknowledges it with an empty ACK and its answer follows as
a separate response (RFC 7252 §5.2.2), as a gateway does for a request it holds until a LoRaWAN
class A end device next speaks.

Whoever sends requests through a transport may hear of that acknowledgement without every layer in
between passing it on: it sets :data:`SEPARATE_RESPONSE` to a callback around the requests it makes
(a context variable, so that the tasks it starts then inherit it). When the peer acknowledges such
a request, or an Observe registration, with an empty ACK, the UDP or DTLS transport calls it once
and lifts the caller's timeout (``request``'s, or that of the observation's ``next``): the answer
is then awaited as long as the CoAP endpoint's ``EndpointConfig.response_timeout`` allows
(EXCHANGE_LIFETIME, 247 s, by default). Over TCP (RFC 8323) there are no empty ACKs: the
callback is never called.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

__all__ = ["SEPARATE_RESPONSE"]

SEPARATE_RESPONSE: ContextVar[Callable[[], None] | None] = ContextVar("separate_response", default=None)
