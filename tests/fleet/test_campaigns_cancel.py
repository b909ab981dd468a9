"""A cancelled campaign tells the devices downloading its package (Cancel /5/0/10, LwM2M 1.1
object 5), and ``DELETE /api/campaigns/{id}`` forgets a finished campaign (every answer checked
against the OpenAPI document)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.helpers.client import until
from tests.helpers.web import conforms, served

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.device import Device
from lwm2m.client.core.firmware import FirmwareUpdate, Protocol, State, UpdateResult
from lwm2m.errors import CampaignStateError
from lwm2m.fleet.campaigns import Campaigns, CampaignSpec, Retries
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app, pull_over_http


@pytest.fixture
async def silent_http() -> AsyncIterator[str]:
    """An HTTP base that takes connections and never answers: a download stays in Downloading."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the device gives up the connection
        writer.close()

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def http_device(name: str, server: Server) -> tuple[FirmwareUpdate, Client]:
    """A device whose firmware object pulls over HTTP (from the silent base: it stays Downloading)."""
    firmware = FirmwareUpdate(device=Device(), protocols=[Protocol.HTTP], verify=lambda p: True)
    return firmware, Client(name, server.uri, objects=[firmware], config=ClientConfig(lifetime=30))


async def test_cancel_tells_a_downloading_device_and_a_finished_campaign_is_deleted(silent_http: str) -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        package = await app.state.packages.add("lamp", "2.0", b"FW" + bytes(500))
        pull_over_http(app, silent_http)
        firmware, client = http_device("slow", server)
        async with served(app) as base, client:
            await client.wait_registered(5)
            campaigns: Campaigns = app.state.campaigns
            spec = CampaignSpec(package.id, delivery="pull", retries=Retries(0), poll_interval=0.2)
            campaign = await campaigns.create(spec)
            device = campaign.devices["slow"]
            await until(lambda: device.state == "downloading", 10)
            assert firmware.state == State.DOWNLOADING
            hooks = {"response": [conforms(app)]}
            async with httpx.AsyncClient(base_url=base, event_hooks=hooks) as api:
                refused = await api.delete(f"/api/campaigns/{campaign.id}")
                assert refused.status_code == 409  # running: not finished
                cancelled = await api.post(f"/api/campaigns/{campaign.id}/cancel")
                assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
                assert (firmware.state, firmware.result) == (State.IDLE, UpdateResult.CANCELLED)
                assert device.state == "cancelled"
                assert any("cancel /5/0/10: the device answered 2.04" in what for _, what in device.steps)
                deleted = await api.delete(f"/api/campaigns/{campaign.id}")
                assert deleted.status_code == 200 and deleted.json()["id"] == campaign.id
                assert (await api.get(f"/api/campaigns/{campaign.id}")).status_code == 404
                assert (await api.delete(f"/api/campaigns/{campaign.id}")).status_code == 404
                assert (await api.get("/api/campaigns")).json() == []
            assert await server.store.campaigns.load(campaign.id) is None
            assert await server.store.campaigns.devices(campaign.id) == {}


async def test_a_device_that_cannot_take_cancel_is_recorded_and_the_campaign_still_ends() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        package = await app.state.packages.add("lamp", "2.0", b"FW" + bytes(500))
        firmware = FirmwareUpdate(device=Device(), verify=lambda p: True)
        async with Client("idle", server.uri, objects=[firmware], config=ClientConfig(lifetime=30)) as client:
            await client.wait_registered(5)
            campaigns: Campaigns = app.state.campaigns
            later = (time.time() + 43200) % 86000  # a window that is not now: no device starts
            spec = CampaignSpec(package.id, delivery="pull", retries=Retries(0), window=(later, later + 1))
            campaign = await campaigns.create(spec)
            device = campaign.devices["idle"]
            device.state = "downloaded"  # as recorded, but the device is Idle: it answers 4.05
            await campaigns.cancel(campaign.id)
            assert any("cancel /5/0/10: the device answered 4.05" in what for _, what in device.steps)
            assert campaign.status == "cancelled" and device.state == "cancelled"
            with pytest.raises(CampaignStateError):
                await campaigns.cancel(campaign.id)


class _OwnerAway:
    """The campaign's view of the server, but an observation's cancel never finishes: as one
    routed to another node that stops answering while it still beats (both stopping)."""

    def __init__(self, server: object) -> None:
        self._server = server
        self.cancels = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._server, name)

    async def observe(self, endpoint: str, path: str) -> object:
        observation = await self._server.observe(endpoint, path)  # type: ignore[attr-defined]
        away = self

        class Held:
            def __aiter__(self) -> object:
                return observation.__aiter__()

            async def cancel(self) -> None:
                away.cancels += 1
                await asyncio.Event().wait()

        return Held()


async def test_stopping_the_runner_does_not_wait_on_an_observation_whose_cancel_hangs(
    silent_http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lwm2m.fleet.campaigns.LET_GO_TIMEOUT", 0.3)
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        package = await app.state.packages.add("lamp", "2.0", b"FW" + bytes(500))
        pull_over_http(app, silent_http)
        _, client = http_device("held", server)
        async with client:
            await client.wait_registered(5)
            campaigns: Campaigns = app.state.campaigns
            away = _OwnerAway(campaigns.server)
            campaigns.server = away  # type: ignore[assignment]
            spec = CampaignSpec(package.id, delivery="pull", retries=Retries(0), poll_interval=0.2)
            campaign = await campaigns.create(spec)
            device = campaign.devices["held"]
            await until(lambda: device.state == "downloading", 10)
            async with asyncio.timeout(5):  # each hanging cancel given up after 0.3 s
                await campaigns.stop()
            assert away.cancels == 2  # /5/0/3 and /5/0/5 were let go, or tried
            assert device.state == "downloading"  # left where it was, for a later runner
