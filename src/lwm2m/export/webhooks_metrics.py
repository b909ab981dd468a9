"""The webhooks' counters as Prometheus metrics, for :meth:`~lwm2m.export.metrics.ServerMetrics.register`
(this module needs ``prometheus-client``, as :mod:`lwm2m.export.metrics` does).

- ``lwm2m_webhook_delivered_total``: events posted and taken (a 2xx answer);
- ``lwm2m_webhook_failed_total``: posts that failed (no answer in time, or another status);
- ``lwm2m_webhook_retried_total``: posts that were a retry of a failed one;
- ``lwm2m_webhook_dropped_total``: events given up (too old, or beyond the outbox's bounds);
- ``lwm2m_webhook_outbox`` (gauge): events waiting in the outbox at the poster's last look.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lwm2m.export.metrics import PREFIX
from lwm2m.export.webhooks import WebhookCounters

__all__ = ["WebhookCollector"]


class WebhookCollector(Collector):
    """Reads the counters when Prometheus scrapes: nothing is counted through ``prometheus_client``."""

    def __init__(self, counters: WebhookCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        name = f"{PREFIX}_webhook"
        yield CounterMetricFamily(f"{name}_delivered", "Webhook events posted and taken (2xx)", c.delivered)
        yield CounterMetricFamily(f"{name}_failed", "Webhook posts that failed", c.failed)
        yield CounterMetricFamily(f"{name}_retried", "Webhook posts that retried a failed one", c.retried)
        yield CounterMetricFamily(
            f"{name}_dropped", "Webhook events given up (too old, outbox full)", c.dropped
        )
        yield GaugeMetricFamily(f"{name}_outbox", "Webhook events waiting in the outbox", c.outbox)
