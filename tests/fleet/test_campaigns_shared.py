"""Servers that share a store: ``Campaigns.find`` (``GET /api/campaigns/{id}``) answers for a
campaign another server's runner created, as stored, read anew at every call."""

from __future__ import annotations

import pytest

from lwm2m.errors import CampaignNotFound
from lwm2m.fleet.campaigns import Campaigns, CampaignSpec
from lwm2m.fleet.packages import Packages
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.campaigns import MemoryCampaignStore
from lwm2m.storage.firmware import MemoryPackageStore


async def test_a_campaign_another_runner_stored_is_found() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(MemoryPackageStore())
        package = await packages.add("lamp", "2.0", b"FW")
        store = MemoryCampaignStore()

        def runner() -> Campaigns:
            return Campaigns(server, packages, store, lambda p: Packages.uris(p, coap=server.uri))

        async with runner() as first:
            campaign = await first.create(CampaignSpec(package.id))  # no device: done at once
            await first.wait(campaign.id)
            other = runner()  # not started: it runs nothing and keeps nothing
            with pytest.raises(CampaignNotFound):
                other.get(campaign.id)
            found = await other.find(campaign.id)
            assert found is not campaign and found.detail() == campaign.detail()
            assert await first.find(campaign.id) is campaign
            await first.delete(campaign.id)
            with pytest.raises(CampaignNotFound):
                await other.find(campaign.id)
            with pytest.raises(CampaignNotFound):
                await other.find("nothing")
