"""Campaign progress in ``/metrics`` (:mod:`lwm2m.fleet.campaigns_metrics`): the values move as a
campaign runs and ends."""

from __future__ import annotations

import asyncio
import os
import time

from tests.helpers.web import client_for

from lwm2m.export.metrics import MetricsConfig, ServerMetrics
from lwm2m.fleet.campaigns import Campaigns, CampaignSpec, Retries
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.web.app import create_app


async def test_campaign_progress_is_scraped() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server, metrics=ServerMetrics(server, MetricsConfig(process=False)))
        runner: Campaigns = app.state.campaigns
        config = FleetConfig(
            count=2, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.02
        )
        async with Fleet(server.uri, config) as fleet, client_for(server, app=app) as api:
            await fleet.wait_registered(timeout=10)
            package = await app.state.packages.add("wm", "5.0", os.urandom(500))
            hour = time.gmtime().tm_hour
            closed = (((hour + 2) % 24) * 3600.0, ((hour + 3) % 24) * 3600.0)
            waiting = await runner.create(CampaignSpec(package.id, window=closed))
            text = (await api.get("/metrics")).text
            assert 'lwm2m_campaigns{status="running"} 1.0' in text
            assert 'lwm2m_campaigns_finished_total{status="done"} 0.0' in text
            assert f'lwm2m_campaign_devices{{campaign="{waiting.id}",state="pending"}} 2.0' in text
            assert f'lwm2m_campaign_wave{{campaign="{waiting.id}"}} 0.0' in text
            await runner.cancel(waiting.id)
            done = await runner.create(CampaignSpec(package.id, retries=Retries(0), poll_interval=0.5))
            await asyncio.wait_for(runner.wait(done.id), 15)
            text = (await api.get("/metrics")).text
            assert 'lwm2m_campaigns{status="cancelled"} 1.0' in text
            assert 'lwm2m_campaigns{status="done"} 1.0' in text
            assert 'lwm2m_campaigns{status="running"} 0.0' in text
            assert 'lwm2m_campaigns_finished_total{status="cancelled"} 1.0' in text
            assert 'lwm2m_campaigns_finished_total{status="done"} 1.0' in text
            assert "lwm2m_campaign_devices{" not in text  # finished campaigns are not broken down
            await runner.stop()
