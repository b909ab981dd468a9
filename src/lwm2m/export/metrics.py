"""Prometheus metrics of one server, in the text exposition format (``GET /metrics``).

Nothing is counted here on the way in: the server keeps its own plain counters (requests
by operation and code in ``Server.stats`` and ``DeviceManagement.stats``, notifications in
each observation, the DTLS layer's ``counters``, the queue-mode presence), and
:class:`ServerCollector` reads them when Prometheus scrapes. So the ingest path pays no lock
of ``prometheus_client`` and no call per datagram; a scrape costs a pass over the running
observations.

The metrics (prefix ``lwm2m_``):

- ``registrations`` (gauge): clients this server serves; ``queue_mode_clients{state}``:
  the queue-mode ones ``awake`` and ``sleeping`` (LwM2M-TS-Core 1.2 §6.5);
- ``requests_received_total{operation,code}``: requests from clients (``register``,
  ``update``, ``deregister``, ``send``, ``other``) by the CoAP code answered;
- ``requests_sent_total{operation,code}``: requests to clients (``read``, ``write``,
  ``write_partial``, ``execute``, ``observe``, …) by the code of the answer, or ``timeout``,
  ``reset``, ``error`` when none came; ``request_duration_seconds{operation}`` (histogram):
  from sending to the answer;
- ``observations``: observations running (after a restart, growing as the stored ones are
  taken up); ``notifications_received_total``; ``sends_received_total`` (Sends taken, §6.4.6);
- ``queued_requests``: requests waiting for a sleeping client to wake;
- ``dtls_handshakes_total{result}`` (``completed``, ``failed``), ``dtls_handshakes_resumed_total``,
  ``dtls_alerts_total{direction}`` (``sent``, ``received``), ``dtls_sessions{state}``
  (``established``, ``handshaking``, ``parked``) and ``dtls_events_total{event}`` (the rest of
  the DTLS layer's counters: drops, evictions, moves), when the server serves DTLS;
- ``event_loop_lag_seconds`` (histogram) and ``event_loop_lag_last_seconds``: how late a
  periodic timer of the event loop fired (:class:`LoopLag`);
- the process collector's ``process_*`` (CPU, memory, file descriptors).

Other parts of the fleet add their own (campaign progress comes there):
:meth:`ServerMetrics.register` takes any ``prometheus_client`` collector into the same
registry, read at the same scrape.

This module needs ``prometheus-client`` (``pip install 'lwm2m[metrics]'``): import it only
when metrics are wanted. In a cluster each node serves its own ``/metrics``, of the clients
it serves; Prometheus scrapes every node and sums.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from lwm2m.errors import ConfigError
from lwm2m.server.role import Server

__all__ = [
    "CONTENT_TYPE",
    "LAG_BUCKETS",
    "LoopLag",
    "MetricsConfig",
    "ServerCollector",
    "ServerMetrics",
    "scrape_seconds",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text format ("text/plain; version=…") of the installed package
PREFIX = "lwm2m"
# Upper bounds, seconds, of the event-loop lag buckets: a healthy loop is late by well under
# a millisecond; tens of milliseconds hold every device's datagrams up as long.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The DTLS layer's counters shown under a name of their own (the rest go to dtls_events_total).
_DTLS_OWN = frozenset(
    {"handshakes_done", "handshakes_failed", "handshakes_resumed", "alerts_sent", "alerts_received"}
)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``lag_interval``: seconds between the event-loop lag timer's ticks; ``process``: add the
    process collector (CPU, memory, file descriptors of this process)."""

    lag_interval: float = 0.5
    process: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.lag_interval) or not 0.01 <= self.lag_interval <= 60:
            raise ConfigError(f"lag_interval {self.lag_interval!r}: between 0.01 and 60 seconds")


class LoopLag:
    """A timer of the event loop that measures its own lateness: each tick is asked for
    ``interval`` after the last one and the time it comes later than that is the lag, the time
    the loop was busy with something else (a long callback, a full collection, a burst)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.histogram = _Buckets(LAG_BUCKETS)
        self.last = 0.0
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._timer is None:
            self._loop = asyncio.get_running_loop()
            self._schedule()

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self.last = max(self._loop.time() - self._due, 0.0)
        self.histogram.observe(self.last)
        self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Buckets:
    """A histogram of fixed bounds: counts per bucket (not cumulative), sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = 0
        for bound in self.bounds:  # a tick a second: a bisect would buy nothing
            if value <= bound:
                break
            i += 1
        self.counts[i] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


def _buckets(cumulative: Iterable[tuple[float, int]]) -> list[tuple[str, float]]:
    return [("+Inf" if math.isinf(b) else repr(b), float(n)) for b, n in cumulative]


class ServerCollector(Collector):
    """Reads a server's counters at scrape time (see the module docstring for the names)."""

    def __init__(self, server: Server, lag: LoopLag | None = None) -> None:
        self.server = server
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        server = self.server
        counts = server.registration_counts()
        yield GaugeMetricFamily(f"{PREFIX}_registrations", "Clients this server serves", counts["registered"])
        queue = GaugeMetricFamily(
            f"{PREFIX}_queue_mode_clients", "Queue-mode clients awake and sleeping", labels=["state"]
        )
        queue.add_metric(["awake"], counts["awake"])
        queue.add_metric(["sleeping"], counts["sleeping"])
        yield queue

        received = CounterMetricFamily(
            f"{PREFIX}_requests_received",
            "CoAP requests from clients by operation and the code answered",
            labels=["operation", "code"],
        )
        sends = 0
        for (operation, code), n in sorted(server.stats.counts().items()):
            received.add_metric([operation, code], n)
            if operation == "send" and code.startswith("2."):
                sends += n
        yield received
        yield CounterMetricFamily(f"{PREFIX}_sends_received", "Sends taken (LwM2M 1.2 §6.4.6)", sends)

        management = server.management.stats
        sent = CounterMetricFamily(
            f"{PREFIX}_requests_sent",
            "CoAP requests to clients by operation and the code of the answer (or timeout, reset, error)",
            labels=["operation", "code"],
        )
        for (operation, code), n in sorted(management.counts().items()):
            sent.add_metric([operation, code], n)
        yield sent
        duration = HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time from sending a request to a client to its answer",
            labels=["operation"],
        )
        for operation, histogram in sorted(management.latencies().items()):
            duration.add_metric([operation], _buckets(histogram.cumulative()), histogram.sum)
        yield duration

        running, notifications = server.observation_manager.counts()
        yield GaugeMetricFamily(
            f"{PREFIX}_observations",
            "Observations running (after a restart, growing as the stored ones are taken up)",
            running,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_notifications_received", "Notifications of observations received", notifications
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queued_requests",
            "Requests waiting for a sleeping queue-mode client to wake",
            server.presence.waiting,
        )
        yield from self._dtls()
        if self.lag is not None:
            yield from _lag_metrics(self.lag)

    def _dtls(self) -> Iterator[Metric]:
        endpoint = self.server.dtls
        if endpoint is None:
            return
        layer = endpoint.dtls
        c = dict(layer.counters)
        handshakes = CounterMetricFamily(
            f"{PREFIX}_dtls_handshakes", "DTLS handshakes ended, by result", labels=["result"]
        )
        handshakes.add_metric(["completed"], c.get("handshakes_done", 0))
        handshakes.add_metric(["failed"], c.get("handshakes_failed", 0))
        yield handshakes
        yield CounterMetricFamily(
            f"{PREFIX}_dtls_handshakes_resumed",
            "DTLS handshakes that resumed a session (RFC 5246 §7.3)",
            c.get("handshakes_resumed", 0),
        )
        alerts = CounterMetricFamily(
            f"{PREFIX}_dtls_alerts",
            "DTLS alerts: sent refusing a handshake, received ending a handshake or a session",
            labels=["direction"],
        )
        alerts.add_metric(["sent"], c.get("alerts_sent", 0))
        alerts.add_metric(["received"], c.get("alerts_received", 0))
        yield alerts
        sizes = layer.state_sizes()
        sessions = GaugeMetricFamily(f"{PREFIX}_dtls_sessions", "DTLS sessions by state", labels=["state"])
        sessions.add_metric(["established"], sizes.get("dtls_sessions", 0))
        sessions.add_metric(["handshaking"], sizes.get("dtls_handshakes", 0))
        sessions.add_metric(["parked"], sizes.get("dtls_parked", 0))
        yield sessions
        events = CounterMetricFamily(
            f"{PREFIX}_dtls_events",
            "Other events of the DTLS layer (drops, evictions, moves)",
            labels=["event"],
        )
        for name, n in sorted(c.items()):
            if name not in _DTLS_OWN:
                events.add_metric([name], n)
        yield events


def _lag_metrics(lag: LoopLag) -> Iterator[Metric]:
    histogram = HistogramMetricFamily(
        f"{PREFIX}_event_loop_lag_seconds", "How late the event loop ran a periodic timer"
    )
    histogram.add_metric([], _buckets(lag.histogram.cumulative()), lag.histogram.sum)
    yield histogram
    yield GaugeMetricFamily(
        f"{PREFIX}_event_loop_lag_last_seconds", "How late the last tick of the lag timer came", lag.last
    )


class ServerMetrics:
    """The metrics of one server: a registry of its own (not ``prometheus_client``'s global
    one) holding the :class:`ServerCollector`, the process collector and whatever other parts
    ``register``; ``start``/``close`` run the event-loop lag timer (the web app does both in
    its lifespan)."""

    def __init__(self, server: Server, config: MetricsConfig | None = None) -> None:
        self.config = config if config is not None else MetricsConfig()
        self.content_type = CONTENT_TYPE
        self.registry = CollectorRegistry(auto_describe=False)
        self.lag = LoopLag(self.config.lag_interval)
        self.collector = ServerCollector(server, self.lag)
        self.registry.register(self.collector)
        if self.config.process:
            ProcessCollector(registry=self.registry)

    def register(self, collector: Collector) -> None:
        """Add the collector of another part (campaign progress, export queues) to the scrape."""
        self.registry.register(collector)

    def start(self) -> None:
        self.lag.start()

    def close(self) -> None:
        self.lag.close()

    def exposition(self) -> bytes:
        """The text exposition format of every metric, now."""
        return generate_latest(self.registry)


def scrape_seconds(metrics: ServerMetrics) -> float:
    """How long one scrape takes now (for the bench and the README's figure)."""
    started = time.perf_counter()
    metrics.exposition()
    return time.perf_counter() - started
