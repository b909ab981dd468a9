"""One runner per campaign, through the store's leases (``lwm2m.fleet.campaigns``, memory store:
the interface every backend shares): a runner does not take a campaign another holds; when the
holder is killed (its tasks gone, its lease not given up), a runner sharing the store takes the
campaign over once the lease lapses, and the old runner's writes are refused (fencing); a
finished campaign is not read again at each look for campaigns to take up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.helpers.polling import eventually

from lwm2m.errors import CampaignFenced, CampaignStateError, InvalidCampaign
from lwm2m.fleet.campaigns import Campaigns, CampaignsConfig, CampaignSpec, Target, Waves, _status_of
from lwm2m.fleet.packages import Packages
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import Registration
from lwm2m.storage.campaigns import LocalLeases, MemoryCampaignStore
from lwm2m.storage.firmware import MemoryPackageStore

LEASE = 0.3


class Devices:
    """A server with registered devices that are never asked anything (the campaign's window is
    closed: no device starts)."""

    def __init__(self, endpoints: list[str]) -> None:
        self._registrations = [
            Registration(ep, f"r{n}", ("127.0.0.1", 1 + n)) for n, ep in enumerate(endpoints)
        ]

    async def registrations(self) -> list[Registration]:
        return self._registrations

    async def read(self, endpoint: str, path: str | Path) -> Any:
        raise AssertionError("no device is asked anything")

    async def write(
        self, endpoint: str, path: str | Path, records: Any, *, timeout: float | None = 30.0
    ) -> Any:
        raise AssertionError("no device is asked anything")

    async def execute(self, endpoint: str, path: str | Path) -> Any:
        raise AssertionError("no device is asked anything")

    async def observe(self, endpoint: str, path: str | Path) -> Any:
        raise AssertionError("no device is asked anything")

    def secure(self, endpoint: str) -> bool:
        return False


def closed_window() -> tuple[float, float]:
    now = time.time() % 86400
    return ((now + 7200) % 86400, (now + 10800) % 86400)


async def crash(campaigns: Campaigns) -> None:
    """What a killed process leaves of its runner: its tasks gone, its leases not given up."""
    tasks = [*campaigns._tasks.values(), campaigns._keeper]
    for task in tasks:
        assert task is not None
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_killed_runners_campaign_is_taken_over_and_its_late_writes_refused() -> None:
    store = MemoryCampaignStore()
    packages = Packages(MemoryPackageStore())
    package = await packages.add("lamp", "2.0", b"FW")
    devices = Devices(["d1", "d2", "d3"])

    def runner(node: str) -> Campaigns:
        config = CampaignsConfig(node=node, lease=LEASE, shared=True)
        return Campaigns(devices, packages, store, lambda p: {"coap": "coap://x/fw"}, config=config)

    a, b = runner("a"), runner("b")
    await a.start()
    await b.start()
    try:
        spec = CampaignSpec(package.id, Target(object_id=None), window=closed_window())
        campaign = await a.create(spec)
        assert await b.runner(campaign.id) == "a"
        await asyncio.sleep(3 * LEASE)  # renewed by A all along: B never takes it
        assert await b.runner(campaign.id) == "a" and campaign.id not in b._tasks
        assert [c.id for c in await b.listing()] == [campaign.id]
        await crash(a)
        # Paused through B at once: B waits for A's lease to lapse, takes the campaign, pauses it
        # (B's own look at the store may take it first: the same).
        loop = asyncio.get_running_loop()
        asked = loop.time()
        paused = await b.pause(campaign.id)
        assert paused.status == "paused" and loop.time() - asked >= LEASE / 2
        assert await b.runner(campaign.id) == "b"
        assert (await b.resume(campaign.id)).status == "running"
        taken = await b.find(campaign.id)
        assert taken is not campaign and taken.status == "running" and campaign.id in b._tasks
        assert taken.counts() == {"pending": 3}
        # A, back, still believes it runs the campaign: its write is refused, and it lets go.
        with pytest.raises(CampaignFenced):
            await a.pause(campaign.id)
        assert await a.runner(campaign.id) == "b"
        assert (await b.find(campaign.id)).status == "running"
        cancelled = await b.cancel(campaign.id)
        assert cancelled.status == "cancelled" and cancelled.counts() == {"cancelled": 3}
        assert await b.runner(campaign.id) is None  # a finished campaign: nobody holds it
        assert (await a.find(campaign.id)).status == "cancelled"  # as stored, on every runner
        await a.delete(campaign.id)
        assert await b.listing() == []
    finally:
        await a.stop()
        await b.stop()


async def test_a_clean_stop_gives_the_lease_up_at_once() -> None:
    store = MemoryCampaignStore()
    packages = Packages(MemoryPackageStore())
    package = await packages.add("lamp", "2.0", b"FW")
    config = CampaignsConfig(node="a", lease=60.0)  # a long lease: only the release frees it
    first = Campaigns(Devices(["d1"]), packages, store, lambda p: {}, config=config)
    await first.start()
    campaign = await first.create(CampaignSpec(package.id, Target(object_id=None), window=closed_window()))
    assert await store.holder(campaign.id) == "a"
    await first.stop()
    assert await store.holder(campaign.id) is None
    async with Campaigns(Devices(["d1"]), packages, store, lambda p: {}, config=config) as again:
        assert again.get(campaign.id).status == "running" and campaign.id in again._tasks


@pytest.mark.parametrize("wrong", [{"node": ""}, {"node": "a b"}, {"lease": 0}, {"lease": float("nan")}])
def test_runner_settings_out_of_range_are_refused(wrong: dict[str, Any]) -> None:
    with pytest.raises(InvalidCampaign):
        CampaignsConfig(**wrong)


@given(st.binary(max_size=64) | st.builds(msgspec.json.encode, st.dictionaries(st.text(), st.integers())))
def test_the_status_of_any_stored_record_is_read_without_an_error(record: bytes) -> None:
    assert isinstance(_status_of(record), str)
    assert _status_of(b'{"status": "paused", "spec": {}}') == "paused"


@dataclass(frozen=True)
class Answer:
    code: int
    records: list[Record] = field(default_factory=list)


class HeldUp(Devices):
    """Devices whose first read waits until the test lets it through; they answer as idle
    firmware objects that pull over CoAP. The writes they get are kept."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(endpoints)
        self.through = {ep: asyncio.Event() for ep in endpoints}
        self.writes: list[tuple[str, str]] = []

    async def read(self, endpoint: str, path: str | Path) -> Any:
        await self.through[endpoint].wait()
        values = {"/5/0": [(3, 0), (5, 0)], "/5/0/9": [(9, 0)], "/5/0/8": [(8, 0)]}[str(path)]
        return Answer(69, [Record(Path((5, 0, r)), v) for r, v in values])

    async def write(
        self, endpoint: str, path: str | Path, records: Any, *, timeout: float | None = 30.0
    ) -> Any:
        self.writes.append((endpoint, str(path)))
        return Answer(68)

    async def observe(self, endpoint: str, path: str | Path) -> Any:
        raise CampaignStateError("not observable here: read instead")


async def test_a_runner_whose_write_is_refused_stops_driving_every_device() -> None:
    clock = [0.0]
    store = MemoryCampaignStore()
    store.leases = LocalLeases(clock=lambda: clock[0])
    packages = Packages(MemoryPackageStore())
    package = await packages.add("lamp", "2.0", b"FW")
    devices = HeldUp(["d1", "d2"])

    def runner(node: str) -> Campaigns:
        config = CampaignsConfig(node=node, lease=60.0, shared=True)
        return Campaigns(devices, packages, store, lambda p: {"coap": "coap://x/fw"}, config=config)

    a, b = runner("a"), runner("b")
    await a.start()
    try:
        spec = CampaignSpec(package.id, Target(object_id=None), waves=Waves(canary=0, in_flight=2))
        campaign = await a.create(spec)
        await asyncio.sleep(0.05)  # both devices wait for their first read
        clock[0] += 120  # A's lease lapsed (its process stalled): B takes the campaign and pauses it
        assert (await b.pause(campaign.id)).status == "paused"
        devices.through["d1"].set()  # A drives d1 on: its next write of d1's state is refused
        await eventually(lambda: a.runner(campaign.id), lambda node: node == "b")
        devices.through["d2"].set()
        await asyncio.sleep(0.1)
        assert devices.writes == [("d1", "/5/0/1")]  # d2 was never sent the package by A
        assert campaign.id not in a._tasks
        stored = await b.find(campaign.id)
        assert stored.status == "paused" and stored.counts() == {"pending": 2}  # A's steps never stored
    finally:
        await a.stop()
        await b.stop()


class CountedLoads(MemoryCampaignStore):
    """The memory store, counting the reads of each campaign's record."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: Counter[str] = Counter()

    async def load(self, campaign_id: str) -> bytes | None:
        self.loads[campaign_id] += 1
        return await super().load(campaign_id)


async def test_a_finished_campaign_is_not_read_again_at_each_look_for_one_to_take_up() -> None:
    store = CountedLoads()
    packages = Packages(MemoryPackageStore())
    package = await packages.add("lamp", "2.0", b"FW")
    devices = Devices(["d1", "d2"])

    def runner(node: str) -> Campaigns:
        config = CampaignsConfig(node=node, lease=LEASE, shared=True)
        return Campaigns(devices, packages, store, lambda p: {"coap": "coap://x/fw"}, config=config)

    a, b = runner("a"), runner("b")
    await a.start()
    await b.start()
    try:
        spec = CampaignSpec(package.id, Target(object_id=None), window=closed_window())
        running = await a.create(spec)
        cancelled = await a.create(spec)
        await a.cancel(cancelled.id)
        store.loads.clear()
        await asyncio.sleep(6 * a.config.period)
        # B looks at the one A runs every period (A may die); each runner at the cancelled one once.
        assert store.loads[running.id] >= 4 and store.loads[cancelled.id] <= 2, store.loads
        assert b._finished == {cancelled.id}
        await a.delete(cancelled.id)
        await asyncio.sleep(2 * a.config.period)
        assert b._finished == set()  # forgotten with the campaign
        assert await b.runner(running.id) == "a"
    finally:
        await a.stop()
        await b.stop()
