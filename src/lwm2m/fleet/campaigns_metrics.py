"""Prometheus metrics of the firmware update campaigns (``ServerMetrics.register``; needs
prometheus-client, the ``metrics`` extra), read from the runner at scrape time:

- ``lwm2m_campaigns{status}`` (gauge): the campaigns this node has, by status (running, paused,
  halted, cancelled, done). A single node has every campaign; on a cluster each node has those
  it runs, and a finished campaign leaves its node's gauge when it finishes: add the nodes'
  gauges for the unfinished ones (``sum by (status)``), and count the finished ones with
- ``lwm2m_campaigns_finished_total{status}`` (counter): campaigns this node finished (done or
  cancelled) since it started; the nodes' counters add up to the fleet's
  (``sum by (status) (increase(...))``), on one node as on several;
- ``lwm2m_campaign_devices{campaign,state}`` (gauge): the devices of each campaign not finished
  (running, paused or halted) by state (pending, downloading, …, succeeded, failed);
- ``lwm2m_campaign_wave{campaign}`` (gauge): the wave each of those runs (0: the canary).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lwm2m.fleet.campaigns import Campaigns

__all__ = ["CampaignCollector"]

STATUSES = ("running", "paused", "halted", "cancelled", "done")


class CampaignCollector(Collector):
    """Campaign progress at scrape time (see the module's docstring)."""

    def __init__(self, campaigns: Campaigns) -> None:
        self.campaigns = campaigns

    def collect(self) -> Iterator[Metric]:
        all_ = self.campaigns.all()
        by_status = GaugeMetricFamily(
            "lwm2m_campaigns", "Firmware update campaigns by status", labels=["status"]
        )
        for status in STATUSES:
            by_status.add_metric([status], sum(1 for c in all_ if c.status == status))
        yield by_status
        finished = CounterMetricFamily(
            "lwm2m_campaigns_finished", "Firmware update campaigns finished on this node", labels=["status"]
        )
        for status, n in self.campaigns.finished_here.items():
            finished.add_metric([status], n)
        yield finished
        devices = GaugeMetricFamily(
            "lwm2m_campaign_devices",
            "Devices of the unfinished firmware update campaigns by state",
            labels=["campaign", "state"],
        )
        wave = GaugeMetricFamily(
            "lwm2m_campaign_wave", "The wave an unfinished campaign runs (0: the canary)", labels=["campaign"]
        )
        for campaign in all_:
            if campaign.status in ("cancelled", "done"):
                continue
            for state, n in sorted(campaign.counts().items()):
                devices.add_metric([campaign.id, state], n)
            wave.add_metric([campaign.id], campaign.wave)
        yield devices
        yield wave
