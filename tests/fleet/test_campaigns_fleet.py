"""A campaign over 200 simulated devices pulling the package over CoAP, with injected failures
(downloads that do not finish, integrity check failures) and queue-mode devices asleep: the
canary runs first and alone, the failures are recorded with their Update Result, the sleeping
devices are updated when they wake, a restart mid-campaign resumes it, and a second campaign
halts once its failures pass the threshold."""

from __future__ import annotations

import asyncio
import os

from lwm2m.errors import QueueTimeout
from lwm2m.fleet.campaigns import Campaign, Campaigns, CampaignSpec, Retries, Target, Waves
from lwm2m.fleet.packages import Packages
from lwm2m.protocol.management import Response
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientSleeping
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.storage.campaigns import MemoryCampaignStore
from lwm2m.storage.firmware import MemoryPackageStore

AWAKE, ASLEEP = 190, 10


async def read_when_awake(server: Server, endpoint: str, path: str) -> Response:
    """A read of a queue-mode device, asked again while it sleeps longer than the server's
    queue timeout (0.5 s here; it wakes every 1.5 s)."""
    for _ in range(20):
        try:
            return await server.read(endpoint, path)
        except QueueTimeout:
            continue
    raise AssertionError(f"{endpoint} did not wake up for a read of {path}")


def starts_after_canary(campaign: Campaign) -> bool:
    canary_end = max(campaign.devices[ep].steps[-1][0] for ep in campaign.waves[0])
    started = [campaign.devices[ep].steps for wave in campaign.waves[1:] for ep in wave]
    return all(steps[0][0] >= canary_end for steps in started if steps)


async def test_a_campaign_over_200_devices() -> None:
    # A queue timeout shorter than the devices' sleep: their requests time out now and then,
    # which is not a failure (the campaign waits again for them to wake).
    config = ServerConfig(host="127.0.0.1", port=0, awake_time=0.3, queue_timeout=0.5)
    async with Server(config) as server:
        packages = Packages(MemoryPackageStore())
        server.host_packages(packages)
        v2 = await packages.add("wm", "2.0.0", os.urandom(2000))
        v3 = await packages.add("wm", "3.0.0", os.urandom(2000))
        common = {
            "profile": "ucifi-water-meter",
            "rate": None,
            "local_host": "127.0.0.1",
            "install_seconds": 0.02,
        }
        awake_config = FleetConfig(count=AWAKE, prefix="wm", **common)  # type: ignore[arg-type]
        asleep_config = FleetConfig(
            count=ASLEEP,
            prefix="zz",
            queue_mode=True,
            update_interval=1.0,
            tick=0.1,
            **common,  # type: ignore[arg-type]
        )
        events = server.events()
        async with Fleet(server.uri, awake_config) as awake, Fleet(server.uri, asleep_config) as asleep:
            await awake.wait_registered(timeout=20)
            await asleep.wait_registered(timeout=20)
            integrity = awake.devices[20:24]
            download = awake.devices[40:44]
            for device in integrity:
                device.firmware.verify = lambda package: False
            for device in download:
                device.firmware.download_timeout = 1e-6
            store = MemoryCampaignStore()

            async def wake_now_and_then() -> None:
                # The queue-mode devices sleep for the server (awake_time 0.3 s) and send an
                # Update every 1.5 s, when the requests held for them go out (§6.5).
                while True:
                    await asyncio.sleep(1.5)
                    for device in asleep.devices:
                        device.client.trigger_update()

            waker = asyncio.get_running_loop().create_task(wake_now_and_then())

            def runner() -> Campaigns:
                return Campaigns(server, packages, store, lambda p: Packages.uris(p, coap=server.uri))

            spec = CampaignSpec(
                v2.id,
                Target("*", version_not_equal="2.0.0"),
                waves=Waves(canary=5, batch=50, in_flight=50),
                retries=Retries(1, backoff=0.01),
                halt_after=10,
                poll_interval=0.5,
            )
            first = runner()
            await first.start()
            campaign = await first.create(spec)
            assert len(campaign.devices) == AWAKE + ASLEEP
            while campaign.counts().get("succeeded", 0) < 60:
                await asyncio.sleep(0.01)
            await first.stop()  # the server restarts mid-campaign
            second = runner()
            async with second:
                taken = second.get(campaign.id)
                assert taken.status == "running" and taken.wave >= 1
                await asyncio.wait_for(second.wait(campaign.id), 25)
                assert taken.status == "done", taken.summary()
                assert taken.counts() == {"succeeded": AWAKE + ASLEEP - 8, "failed": 8}
                assert starts_after_canary(taken)
                results = {ep: d.result for ep, d in taken.devices.items() if d.state == "failed"}
                assert results == {
                    **{d.endpoint: 5 for d in integrity},  # integrity check failure
                    **{d.endpoint: 4 for d in download},  # connection lost during download
                }
                for device in asleep.devices:
                    progress = taken.devices[device.endpoint]
                    assert progress.state == "succeeded" and progress.attempts == 1, progress
                    response = await read_when_awake(server, device.endpoint, "/3/0/3")
                    assert response.records[0].value == "2.0.0"
                slept = set()
                while events.pending:
                    event = await events.__anext__()
                    if isinstance(event, ClientSleeping):
                        slept.add(event.endpoint)
                assert {d.endpoint for d in asleep.devices} <= slept

                # A second campaign, with more devices failing than it tolerates, halts.
                for device in awake.devices[60:70]:
                    device.firmware.verify = lambda package: False
                halting = await second.create(
                    CampaignSpec(
                        v3.id,
                        Target("wm*"),
                        waves=Waves(canary_percent=2, batch=20, in_flight=20),
                        retries=Retries(0),
                        halt_percent=5,  # of 190: at most 9 failures
                        poll_interval=0.5,
                    )
                )
                assert [len(w) for w in halting.waves[:2]] == [4, 20]
                await asyncio.wait_for(second.wait(halting.id), 20)
                assert halting.status == "halted"
                counts = halting.counts()
                assert counts["failed"] >= 10 and counts["pending"] >= 90, counts  # 5 % of 190 is 9.5
                # 4 failures in each of the batches 1 and 2, the 10th in batch 3 (wm-00044..63)
                assert halting.wave == 3 and starts_after_canary(halting)
                await second.cancel(halting.id)
                assert halting.status == "cancelled"
            waker.cancel()
        events.close()
