"""Counters the server keeps of its own traffic: plain integers, read when someone asks.

A request the server answers or sends is counted here by operation and CoAP code, and a
request it sends also by how long its answer took. Nothing here locks, allocates per call
once an (operation, code) pair has been seen, or knows of any exposition format: the
metrics export (``lwm2m.export.metrics``) reads these at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code
from lwm2m.protocol.management import (
    CreateRequest,
    DeleteRequest,
    DiscoverRequest,
    ExecuteRequest,
    ObserveRequest,
    ReadCompositeRequest,
    ReadRequest,
    Request,
    WriteAttributesRequest,
    WriteCompositeRequest,
    WriteRequest,
)
from lwm2m.protocol.registration import rd_segments

__all__ = [
    "LATENCY_BUCKETS",
    "LatencyHistogram",
    "RequestStats",
    "received_operation",
    "sent_operation",
]

# Upper bounds, seconds, of the latency buckets: loopback answers take a millisecond, a
# device on NB-IoT several seconds, CoAP gives up after MAX_TRANSMIT_WAIT (93 s, RFC 7252 §4.8.2).
# "c.dd" of every code byte (RFC 7252 §12.1), made once: a count is made per request.
_CODE_TEXT = tuple(f"{code >> 5}.{code & 31:02d}" for code in range(256))
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 93.0)

_SENT: dict[type[Request], str] = {
    ReadRequest: "read",
    DiscoverRequest: "discover",
    WriteRequest: "write",
    ExecuteRequest: "execute",
    CreateRequest: "create",
    DeleteRequest: "delete",
    WriteAttributesRequest: "write_attributes",
    ReadCompositeRequest: "read_composite",
    WriteCompositeRequest: "write_composite",
    ObserveRequest: "observe",
}


def sent_operation(request: Request) -> str:
    """The operation name of a request the server sends (LwM2M-TS-Core 1.2 §6.3, §6.4)."""
    if isinstance(request, WriteRequest) and not request.replace:
        return "write_partial"  # a partial update (POST, §6.3.3) beside the replace (PUT)
    if isinstance(request, ReadCompositeRequest) and request.observe is not None:
        return "observe_composite" if request.observe == 0 else "cancel_observe_composite"
    if isinstance(request, ObserveRequest) and request.cancel:
        return "cancel_observe"
    return _SENT.get(type(request), "other")


def received_operation(message: Message) -> str:
    """The operation name of a request a client sends (LwM2M-TS-Core 1.2 §6.2, §6.4.6):
    ``register`` (POST /rd), ``update`` (POST /rd/{id}), ``deregister`` (DELETE /rd/{id}),
    ``send`` (POST /dp); anything else is ``other``."""
    segments = rd_segments(message)  # the path is decoded only when it does not start with rd
    code = message.code
    if segments:
        if segments == 1 and code == Code.POST:
            return "register"
        if segments == 2:
            if code == Code.POST:
                return "update"
            if code == Code.DELETE:
                return "deregister"
    elif code == Code.POST and message.uri_path == ("dp",):
        return "send"
    return "other"


class LatencyHistogram:
    """Counts of latencies in the buckets of ``LATENCY_BUCKETS`` (each count is of its own
    bucket, not cumulative; the last one is past the largest bound), their sum and count."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at most that long) per bucket, ending with +Inf."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class RequestStats:
    """Requests by (operation, outcome) and, for those timed, their latency by operation.

    The outcome is the CoAP code of the answer as ``"2.05"``, or a word when there was no
    answer: ``"timeout"`` (none in time), ``"reset"`` (RST), ``"error"`` (anything else)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._latency: dict[str, LatencyHistogram] = {}

    def count(self, operation: str, code: int) -> None:
        key = (operation, _CODE_TEXT[code])
        self._counts[key] = self._counts.get(key, 0) + 1

    def failed(self, operation: str, outcome: str) -> None:
        key = (operation, outcome)
        self._counts[key] = self._counts.get(key, 0) + 1

    def timed(self, operation: str, seconds: float) -> None:
        histogram = self._latency.get(operation)
        if histogram is None:
            histogram = self._latency[operation] = LatencyHistogram()
        histogram.observe(seconds)

    def counts(self) -> Mapping[tuple[str, str], int]:
        """(operation, outcome) -> requests so far; a copy."""
        return dict(self._counts)

    def latencies(self) -> Mapping[str, LatencyHistogram]:
        """operation -> its latency histogram (live objects: read, don't keep)."""
        return dict(self._latency)
