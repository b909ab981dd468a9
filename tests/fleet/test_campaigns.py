"""``lwm2m.fleet.campaigns``: the plan of waves, the window, the spec's checks, and campaigns over
simulated devices that pull a package the server hosts: the canary first and alone, failures
recorded with their Update Result, auto-halt, pause/resume/cancel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FsPath

import pytest

from lwm2m.errors import CampaignNotFound, CampaignStateError, InvalidCampaign, PackageNotFound
from lwm2m.fleet.campaigns import Campaign, Campaigns, CampaignSpec, Retries, Target, Waves, in_window
from lwm2m.fleet.packages import Packages
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.storage.campaigns import CampaignStore, MemoryCampaignStore
from lwm2m.storage.firmware import FirmwarePackage, MemoryPackageStore
from lwm2m.storage.labels import MemoryLabelStore
from lwm2m.storage.sqlite import SqliteStore


def test_waves_put_the_canary_alone_first() -> None:
    endpoints = [f"d{i}" for i in range(10)]
    assert Waves(canary=2, batch=3).plan(endpoints) == [
        ["d0", "d1"],
        ["d2", "d3", "d4"],
        ["d5", "d6", "d7"],
        ["d8", "d9"],
    ]
    assert Waves(canary_percent=25, batch=100).plan(endpoints)[0] == ["d0", "d1", "d2"]
    assert Waves(canary=0, batch=4).plan(endpoints)[0] == ["d0", "d1", "d2", "d3"]
    assert Waves(canary=5).plan(["a"]) == [["a"]]
    assert Waves().plan([]) == []


def test_the_window_is_a_span_of_the_utc_day() -> None:
    day = 86400 * 20000
    assert in_window(None, day + 5) == 0
    assert in_window((3600, 7200), day + 4000) == 0
    assert in_window((3600, 7200), day + 100) == 3500
    assert in_window((3600, 7200), day + 8000) == 86400 - 8000 + 3600
    assert in_window((82800, 3600), day + 100) == 0  # past midnight
    assert in_window((82800, 3600), day + 4000) == 82800 - 4000


@pytest.mark.parametrize(
    "wrong",
    [
        {"package_id": "p", "delivery": "mail"},
        {"package_id": "p", "target": {"version_path": "/3/0/1"}},
        {"package_id": "p", "waves": {"in_flight": 0}},
        {"package_id": "p", "waves": {"canary_percent": 0}},
        {"package_id": "p", "retries": {"attempts": -1}},
        {"package_id": "p", "window": [0, 90000]},
        {"package_id": "p", "halt_percent": 101},
        {"package_id": "p", "waves": {"colour": 1}},
        {"target": {}},
    ],
)
def test_specs_out_of_range_are_refused(wrong: dict[str, object]) -> None:
    with pytest.raises(InvalidCampaign):
        CampaignSpec.from_dict(wrong)


def test_a_spec_survives_its_dict() -> None:
    spec = CampaignSpec(
        "p",
        Target("lamp-*", 3, "/5/0/7", version_not_equal="2"),
        "push",
        Waves(canary_percent=5, batch=7, in_flight=3),
        Retries(1, 0.5, 3),
        window=(60.0, 120.0),
        halt_after=3,
    )
    assert CampaignSpec.from_dict(spec.to_dict()) == spec


# --- over simulated devices --------------------------------------------------------------------------


@dataclass
class Setup:
    server: Server
    packages: Packages
    package: FirmwarePackage
    store: CampaignStore
    fleet: Fleet

    def campaigns(self) -> Campaigns:
        return Campaigns(
            self.server, self.packages, self.store, lambda p: Packages.uris(p, coap=self.server.uri)
        )


VERSION = "2.0.0"


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(MemoryPackageStore())
        server.host_packages(packages)
        package = await packages.add("wm", VERSION, os.urandom(3000))
        config = FleetConfig(
            count=8, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.02
        )
        async with Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            yield Setup(server, packages, package, MemoryCampaignStore(), fleet)


def first(campaign: Campaign, endpoint: str) -> float:
    return campaign.devices[endpoint].steps[0][0]


def last(campaign: Campaign, endpoint: str) -> float:
    return campaign.devices[endpoint].steps[-1][0]


async def test_a_campaign_updates_every_device_the_canary_first(setup: Setup) -> None:
    async with setup.campaigns() as campaigns:
        spec = CampaignSpec(
            setup.package.id,
            waves=Waves(canary=2, batch=3, in_flight=2),
            retries=Retries(0),
            poll_interval=0.5,
        )
        campaign = await campaigns.create(spec)
        assert len(campaign.waves) == 3 and [len(w) for w in campaign.waves] == [2, 3, 3]
        await asyncio.wait_for(campaigns.wait(campaign.id), 20)
        assert campaign.status == "done", campaign.detail()
        assert campaign.counts() == {"succeeded": 8}
        canary_end = max(last(campaign, ep) for ep in campaign.waves[0])
        assert all(first(campaign, ep) >= canary_end for w in campaign.waves[1:] for ep in w)
        for device in setup.fleet.devices:
            response = await setup.server.read(device.endpoint, "/3/0/3")
            assert response.records[0].value == VERSION
            progress = campaign.devices[device.endpoint]
            assert progress.result == 1 and progress.delivery == "pull"
            steps = [what for _, what in progress.steps]
            assert "downloaded" in steps and "updating" in steps and steps[-1] == "succeeded"
        # a second campaign targets those not at the version: none left, all skipped
        again = await campaigns.create(
            CampaignSpec(setup.package.id, Target(version_not_equal=VERSION), retries=Retries(0))
        )
        await asyncio.wait_for(campaigns.wait(again.id), 20)
        assert again.status == "done" and again.counts() == {"skipped": 8}
        assert again.devices["sim-00000"].steps[0][1] == f"version {VERSION}"
        detail = campaign.detail()
        assert detail["waves"][0] == {
            "devices": 2,
            "succeeded": 2,
            "failed": 0,
            "cancelled": 0,
            "skipped": 0,
            "pending": 0,
        }


async def test_failures_carry_their_update_result_and_halt_the_campaign(setup: Setup) -> None:
    devices = setup.fleet.devices
    devices[2].firmware.verify = lambda package: False  # integrity check failure: 5
    devices[3].firmware.download_timeout = 1e-6  # the download does not finish: 4
    devices[4].firmware.verify = lambda package: False
    async with setup.campaigns() as campaigns:
        spec = CampaignSpec(
            setup.package.id,
            waves=Waves(canary=1, batch=3, in_flight=1),
            retries=Retries(1, backoff=0.01),
            halt_after=1,
            poll_interval=0.5,
        )
        campaign = await campaigns.create(spec)
        await asyncio.wait_for(campaigns.wait(campaign.id), 20)
        assert campaign.status == "halted" and campaign.reason == "2 devices failed"
        failed = {ep: d for ep, d in campaign.devices.items() if d.state == "failed"}
        assert {ep: d.result for ep, d in failed.items()} == {devices[2].endpoint: 5, devices[3].endpoint: 4}
        assert all(d.attempts == 2 for d in failed.values())  # one retry each
        assert campaign.devices[devices[5].endpoint].state == "pending"  # never started
        assert campaign.detail()["deviceDetail"][2]["resultText"] == "integrity check failure"
        with pytest.raises(CampaignStateError):
            await campaigns.pause(campaign.id)
        devices[4].firmware.verify = None
        await campaigns.resume(campaign.id)
        await asyncio.wait_for(campaigns.wait(campaign.id, ("done",)), 20)
        assert campaign.counts() == {"succeeded": 6, "failed": 2}


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_pause_resume_cancel_and_a_restart(setup: Setup, backend: str, tmp_path: FsPath) -> None:
    sqlite = SqliteStore(tmp_path / "lwm2m.db") if backend == "sqlite" else None
    if sqlite is not None:
        setup.store = sqlite.campaigns
    spec = CampaignSpec(
        setup.package.id, waves=Waves(canary=1, batch=8, in_flight=1), retries=Retries(0), poll_interval=0.5
    )
    runner = setup.campaigns()
    await runner.start()
    campaign = await runner.create(spec)
    await runner.pause(campaign.id)
    await asyncio.sleep(0.3)
    done = campaign.counts().get("succeeded", 0)
    assert done <= 1 and campaign.status == "paused"
    await runner.resume(campaign.id)
    while campaign.counts().get("succeeded", 0) < 3:
        await asyncio.sleep(0.01)
    await runner.stop()  # the server's restart: the campaign is taken up from the store
    if sqlite is not None:  # the database opened anew
        sqlite.close()
        sqlite = SqliteStore(tmp_path / "lwm2m.db")
        setup.store = sqlite.campaigns
    again = setup.campaigns()
    async with again:
        taken = again.get(campaign.id)
        assert taken is not campaign and taken.status == "running"
        assert taken.counts().get("succeeded", 0) >= 3
        await asyncio.wait_for(again.wait(campaign.id), 20)
        assert taken.counts() == {"succeeded": 8}
        with pytest.raises(CampaignStateError):
            await again.resume(campaign.id)
        with pytest.raises(CampaignStateError):
            await again.cancel(campaign.id)
        with pytest.raises(CampaignNotFound):
            again.get("nope")
        with pytest.raises(PackageNotFound):
            await again.create(CampaignSpec("AAAAAAAAAAAAAAAAAAAAAA"))
        other = await again.create(spec)
        cancelled = await again.cancel(other.id)
        assert cancelled.status == "cancelled" and set(cancelled.counts()) <= {"cancelled", "succeeded"}
    if sqlite is not None:
        sqlite.close()


async def test_push_writes_the_package_block_wise(setup: Setup) -> None:
    async with setup.campaigns() as campaigns:
        spec = CampaignSpec(
            setup.package.id,
            Target("sim-0000[01]"),
            delivery="push",
            waves=Waves(canary=0, in_flight=2),
            retries=Retries(0),
            poll_interval=0.5,
        )
        campaign = await campaigns.create(spec)
        assert sorted(campaign.devices) == [d.endpoint for d in setup.fleet.devices[:2]]
        await asyncio.wait_for(campaigns.wait(campaign.id), 20)
        assert campaign.counts() == {"succeeded": 2}
        for progress in campaign.devices.values():
            assert progress.delivery == "push"
            assert f"push {setup.package.size} bytes" in [what for _, what in progress.steps]
        # the device holds the bytes it was given (3,000: more than one block)
        firmware = setup.fleet.devices[0].firmware
        assert firmware.result == 1 and setup.package.size > 1024


async def test_a_package_deleted_before_the_start_halts_the_campaign(setup: Setup) -> None:
    runner = setup.campaigns()
    campaign = await runner.create(
        CampaignSpec(setup.package.id, window=(0.0, 0.0))
    )  # empty: opens at no time
    await runner.stop()
    await setup.packages.remove(setup.package.id)
    async with setup.campaigns() as again:  # a restart: the package is gone
        taken = await again.wait(campaign.id)
        assert taken.status == "halted" and "no firmware package" in taken.reason


async def test_sleeping_devices_are_updated_when_they_wake() -> None:
    # They sleep longer than the server's queue timeout: that is no failure, the campaign waits.
    config = ServerConfig(host="127.0.0.1", port=0, awake_time=0.2, queue_timeout=0.3)
    async with Server(config) as server:
        packages = Packages(MemoryPackageStore())
        server.host_packages(packages)
        package = await packages.add("wm", VERSION, os.urandom(2000))
        fleet_config = FleetConfig(
            count=2,
            profile="ucifi-water-meter",
            rate=None,
            local_host="127.0.0.1",
            install_seconds=0.02,
            queue_mode=True,
            prefix="zz",
        )
        async with Fleet(server.uri, fleet_config) as fleet:
            await fleet.wait_registered(timeout=10)
            while server.registration_counts()["sleeping"] < 2:
                await asyncio.sleep(0.05)

            async def wake_now_and_then() -> None:
                while True:
                    await asyncio.sleep(0.8)
                    for device in fleet.devices:
                        device.client.trigger_update()

            waker = asyncio.get_running_loop().create_task(wake_now_and_then())
            try:
                runner = Campaigns(
                    server, packages, MemoryCampaignStore(), lambda p: Packages.uris(p, coap=server.uri)
                )
                async with runner:
                    spec = CampaignSpec(
                        package.id, Target(version_equal="1.0.0"), retries=Retries(0), poll_interval=0.5
                    )
                    campaign = await runner.create(spec)
                    await asyncio.wait_for(runner.wait(campaign.id), 20)
                    assert campaign.counts() == {"succeeded": 2}
                    assert all(p.attempts == 1 for p in campaign.devices.values())
                    # The canary found its device asleep (the other one may come while both are awake).
                    canary = campaign.devices[campaign.waves[0][0]]
                    assert canary.steps[0][1] == "asleep: waiting for it to wake"
                    # Without a version to read first: the try itself finds the device asleep.
                    while server.registration_counts()["sleeping"] < 2:
                        await asyncio.sleep(0.05)
                    again = await runner.create(
                        CampaignSpec(package.id, retries=Retries(0), poll_interval=0.5)
                    )
                    await asyncio.wait_for(runner.wait(again.id), 20)
                    assert again.counts() == {"succeeded": 2}
                    canary = again.devices[again.waves[0][0]]
                    assert canary.steps[0][1] == "asleep: waiting for it to wake" and canary.attempts == 1
            finally:
                waker.cancel()


async def test_a_target_with_labels_picks_only_the_devices_that_carry_them(setup: Setup) -> None:
    labels = MemoryLabelStore()
    devices = sorted(d.endpoint for d in setup.fleet.devices)
    for endpoint in devices[:3]:
        await labels.put(endpoint, {"site": "north", "ring": "canary"})
    await labels.put(devices[3], {"site": "north"})
    await labels.put(devices[4], {"site": "south", "ring": "canary"})
    runner = Campaigns(
        setup.server,
        setup.packages,
        setup.store,
        lambda p: Packages.uris(p, coap=setup.server.uri),
        labels=labels.get,
    )
    async with runner as campaigns:
        both = Target(labels={"site": "north", "ring": "canary"})  # type: ignore[arg-type]
        assert both.labels == (("ring", "canary"), ("site", "north"))
        assert await campaigns.targets(both) == devices[:3]
        assert await campaigns.targets(Target(labels=(("site", "north"),))) == devices[:4]
        assert await campaigns.targets(Target()) == devices  # no labels named: every device
        with pytest.raises(InvalidCampaign, match="target labels"):
            Target(labels={"bad key!": "x"})  # type: ignore[arg-type]
    # A runner that cannot read labels picks nobody for a target that names some.
    async with setup.campaigns() as blind:
        assert await blind.targets(Target(labels=(("site", "north"),))) == []
