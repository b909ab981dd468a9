"""``/api/campaigns``: a campaign started, followed, listed and refused through the REST API (every
answer checked against the OpenAPI document), its events on the SSE stream, and the bodies'
mapping onto a :class:`~lwm2m.fleet.campaigns.CampaignSpec`."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import pytest
from tests.helpers.web import conforms, served, sse_events

from lwm2m.errors import InvalidCampaign
from lwm2m.fleet.campaigns import Retries, Target, Waves
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.web.app import create_app
from lwm2m.web.views.campaigns import spec_of


def test_bodies_become_specs() -> None:
    spec = spec_of(
        {
            "packageId": "p",
            "target": {"endpoints": "lamp-*", "versionNotEqual": "2"},
            "delivery": "pull",
            "waves": {"canary": "5%", "batch": 20, "inFlight": 4},
            "retries": {"attempts": 1, "backoff": 2},
            "window": {"start": "22:00", "end": "05:30"},
            "haltAfter": 3,
        }
    )
    assert spec.target == Target("lamp-*", version_not_equal="2")
    assert spec.waves == Waves(canary=0, canary_percent=5.0, batch=20, in_flight=4)
    assert spec.retries == Retries(1, 2.0, 2.0)
    assert spec.window == (79200.0, 19800.0) and spec.delivery == "pull"
    assert (spec.halt_after, spec.halt_percent) == (3, None)
    assert (spec_of({"packageId": "p", "haltAfter": "10%"}).halt_percent) == 10.0
    for wrong in (
        {},
        {"packageId": "p", "delivery": "mail"},
        {"packageId": "p", "colour": 1},
        {"packageId": "p", "waves": {"canary": "x%"}},
        {"packageId": "p", "window": {"start": "25:00", "end": "01:00"}},
        {"packageId": "p", "retries": {"factor": 0.5}},
    ):
        with pytest.raises(InvalidCampaign):
            spec_of(wrong)


async def test_a_campaign_through_the_api() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server, api_token="tok")
        config = FleetConfig(
            count=4, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.02
        )
        async with served(app) as base, Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            hooks = {"response": [conforms(app)]}
            headers = {"Authorization": "Bearer tok"}
            async with httpx.AsyncClient(base_url=base, headers=headers, event_hooks=hooks) as api:
                package = await api.post(
                    "/api/firmware",
                    params={"name": "wm", "version": "9.1"},
                    content=os.urandom(1500),
                    headers={"Content-Type": "application/octet-stream"},
                )
                pid = package.json()["id"]
                async with api.stream("GET", "/api/events") as stream:
                    body = {
                        "packageId": pid,
                        "waves": {"canary": 1, "batch": 2, "inFlight": 2},
                        "retries": {"attempts": 0},
                        "haltAfter": "50%",
                    }
                    created = await api.post("/api/campaigns", json=body)
                    assert created.status_code == 201, created.text
                    cid = created.json()["id"]
                    assert created.headers["location"] == f"/api/campaigns/{cid}"
                    seen: list[tuple[str, dict[str, Any]]] = []

                    async def until_done() -> None:
                        async for name, data in sse_events(stream):
                            if name.startswith("CAMPAIGN_") and data is not None:
                                seen.append((name, data))
                                if name == "CAMPAIGN_DONE":
                                    return

                    await asyncio.wait_for(until_done(), 15)
                kinds = [name for name, _ in seen]
                assert kinds[0] == "CAMPAIGN_STARTED" and kinds.count("CAMPAIGN_DEVICE") >= 4
                assert seen[-1][1]["counts"] == {"succeeded": 4}
                detail = (await api.get(f"/api/campaigns/{cid}")).json()
                assert detail["status"] == "done" and detail["counts"] == {"succeeded": 4}
                assert [w["devices"] for w in detail["waves"]] == [1, 2, 1]
                assert detail["spec"]["haltPercent"] == 50.0
                device = detail["deviceDetail"][0]
                assert device["result"] == 1 and device["resultText"] == "success"
                assert device["steps"][-1][1] == "succeeded"
                listed = (await api.get("/api/campaigns")).json()
                assert [c["id"] for c in listed] == [cid] and listed[0]["devices"] == 4
                for action in ("pause", "resume", "cancel"):
                    assert (await api.post(f"/api/campaigns/{cid}/{action}")).status_code == 409
                assert (await api.get("/api/campaigns/nope")).status_code == 404
                assert (await api.post("/api/campaigns/nope/pause")).status_code == 404
                assert (
                    await api.post("/api/campaigns", json={"packageId": pid, "delivery": "x"})
                ).status_code == 400
                missing = await api.post("/api/campaigns", json={"packageId": "A" * 22})
                assert missing.status_code == 404
                # pause and cancel a running one (sleeping forever: a window that never opens now)
                closed = {
                    "start": f"{(time_now_hour() + 2) % 24:02d}:00",
                    "end": f"{(time_now_hour() + 3) % 24:02d}:00",
                }
                waiting = await api.post("/api/campaigns", json={"packageId": pid, "window": closed})
                wid = waiting.json()["id"]
                paused = await api.post(f"/api/campaigns/{wid}/pause")
                assert paused.status_code == 200 and paused.json()["status"] == "paused"
                resumed = await api.post(f"/api/campaigns/{wid}/resume")
                assert resumed.json()["status"] == "running"
                cancelled = await api.post(f"/api/campaigns/{wid}/cancel")
                assert cancelled.json()["status"] == "cancelled"
                assert cancelled.json()["counts"] == {"cancelled": 4}


def time_now_hour() -> int:
    return time.gmtime().tm_hour
