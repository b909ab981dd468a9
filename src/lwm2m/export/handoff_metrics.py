"""The export's counters as Prometheus metrics, for :meth:`~lwm2m.export.metrics.ServerMetrics.register`
(this module needs ``prometheus-client``, as :mod:`lwm2m.export.metrics` does).

The handoff to the export worker (:mod:`lwm2m.export.handoff`):

- ``lwm2m_export_events_total``: events handed to the worker;
- ``lwm2m_export_batches_total``: batches of them sent;
- ``lwm2m_export_dropped_total``: events lost before the worker had them (it was too slow);
- ``lwm2m_export_queue`` (gauge): batches waiting for the worker's acknowledgement;
- ``lwm2m_export_worker_restarts_total``, ``lwm2m_export_worker_up`` (gauge).

The MQTT export (in the worker or in the server's process):

- ``lwm2m_mqtt_published_total``: messages the broker acknowledged;
- ``lwm2m_mqtt_dropped_total``: messages dropped from the full queue (the broker away);
- ``lwm2m_mqtt_pending`` (gauge): messages waiting to be published or for their PUBACK;
- ``lwm2m_mqtt_connected`` (gauge): 1 while connected to the broker;
- ``lwm2m_mqtt_commands_total``: commands taken on the command topics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lwm2m.export.handoff import ExportCounters
from lwm2m.export.metrics import PREFIX

if TYPE_CHECKING:  # needs aiomqtt: the caller that passes an export imported it
    from lwm2m.export.mqtt import MqttExport

__all__ = ["ExportCollector", "mqtt_counters"]


class ExportCollector(Collector):
    """Reads the counters ``source`` gives when Prometheus scrapes; ``handoff``: with the
    worker's handoff metrics (False for an export in the server's process: MQTT only)."""

    def __init__(self, source: Callable[[], ExportCounters], *, handoff: bool = True) -> None:
        self.source = source
        self.handoff = handoff

    def collect(self) -> Iterator[Metric]:
        c = self.source()
        if self.handoff:
            name = f"{PREFIX}_export"
            yield CounterMetricFamily(f"{name}_events", "Events handed to the export worker", c.events)
            yield CounterMetricFamily(
                f"{name}_batches", "Batches of events sent to the export worker", c.batches
            )
            yield CounterMetricFamily(
                f"{name}_dropped",
                "Events lost before the export worker had them (it was too slow)",
                c.dropped,
            )
            yield GaugeMetricFamily(
                f"{name}_queue", "Batches waiting for the export worker's acknowledgement", c.queue
            )
            yield CounterMetricFamily(f"{name}_worker_restarts", "Export worker restarts", c.restarts)
            yield GaugeMetricFamily(f"{name}_worker_up", "1 while the export worker runs", int(c.worker_up))
        mqtt = f"{PREFIX}_mqtt"
        yield CounterMetricFamily(f"{mqtt}_published", "MQTT messages the broker acknowledged", c.published)
        yield CounterMetricFamily(
            f"{mqtt}_dropped", "MQTT messages dropped from the full queue", c.mqtt_dropped
        )
        yield GaugeMetricFamily(
            f"{mqtt}_pending", "MQTT messages waiting to be published or acknowledged", c.mqtt_pending
        )
        yield GaugeMetricFamily(
            f"{mqtt}_connected", "1 while connected to the MQTT broker", int(c.mqtt_connected)
        )
        yield CounterMetricFamily(f"{mqtt}_commands", "MQTT commands taken", c.mqtt_commands)


def mqtt_counters(export: MqttExport) -> ExportCounters:
    """The counters of an MQTT export in the server's process."""
    return ExportCounters(
        published=export.published,
        mqtt_dropped=export.dropped,
        mqtt_pending=export.pending,
        mqtt_connected=export.connected,
        mqtt_commands=export.commands,
    )
