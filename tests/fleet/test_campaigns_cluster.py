"""Campaigns on a cluster (DESIGN.md, "Where its users outgrow one machine"): two server nodes on
one real Redis, simulated devices registered at each (each node owns its own); a campaign
created on node A updates the devices of both, is paused, resumed and cancelled through node
B's API (and its command line), shows the same on both nodes, and its events reach both nodes'
event streams. When the runner is killed (its tasks gone, its lease not given up), the other
node takes the campaign over once the lease lapses and finishes it, no device updated twice.

The nodes are ``Server`` objects in this process, each with its API on a real uvicorn, as in
tests/web/test_cluster.py; the devices are the simulator's, whose firmware update counts its
installs here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from tests.helpers.polling import eventually
from tests.helpers.simulator import count_installs
from tests.helpers.web import served, sse_events

from lwm2m.cli import main
from lwm2m.cluster.node import ClusterConfig
from lwm2m.fleet.campaigns import Campaigns, CampaignsConfig
from lwm2m.server.config import ServerConfig
from lwm2m.server.membership import ClusterMember, MembershipConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.storage import open_store
from lwm2m.storage.redisconn import connect
from lwm2m.web.app import create_app

LEASE = 1.0  # seconds a campaign's lease lasts unrenewed: a killed runner's is taken over soon
DEVICES = 3  # per node


@dataclass
class Node:
    server: Server
    member: ClusterMember
    app: Starlette
    base: str  # its API

    @property
    def campaigns(self) -> Campaigns:
        campaigns: Campaigns = self.app.state.campaigns
        return campaigns


@contextlib.asynccontextmanager
async def node(redis_url: str, node_id: str) -> AsyncIterator[Node]:
    store = open_store(redis_url)
    config = MembershipConfig(cluster=ClusterConfig(node_id=node_id, heartbeat_interval=0.2, node_ttl=1.0))
    member = ClusterMember(connect(redis_url), config)
    try:
        async with Server(ServerConfig(host="127.0.0.1", port=0, shared_store=True), store) as server:
            app = create_app(server, cluster=member, campaigns=CampaignsConfig(lease=LEASE))
            async with served(app) as base:
                yield Node(server, member, app, base)
    finally:
        store.close()


def fleet(server: Server, prefix: str, install_seconds: float) -> Fleet:
    config = FleetConfig(
        count=DEVICES,
        profile="ucifi-water-meter",
        prefix=prefix,
        rate=None,
        local_host="127.0.0.1",
        install_seconds=install_seconds,
    )
    return Fleet(server.uri, config)


def trace_requests(nodes: list[Node]) -> list[tuple[str, str, str]]:
    """(node id, endpoint, path) of every Write and Execute each node's server sends a device."""
    sent: list[tuple[str, str, str]] = []
    for one in nodes:
        server, node_id = one.server, one.member.node_id
        write, execute = server.write, server.execute

        async def traced_write(
            ep: str, path: Any, *args: Any, node_id: str = node_id, call: Any = write, **kw: Any
        ) -> Any:
            sent.append((node_id, ep, str(path)))
            return await call(ep, path, *args, **kw)

        async def traced_execute(
            ep: str, path: Any, *args: Any, node_id: str = node_id, call: Any = execute, **kw: Any
        ) -> Any:
            sent.append((node_id, ep, str(path)))
            return await call(ep, path, *args, **kw)

        server.write, server.execute = traced_write, traced_execute  # type: ignore[method-assign]
    return sent


def from_owners(sent: list[tuple[str, str, str]]) -> None:
    """Every device heard its requests from the node that owns it (``on-a-…``: node a)."""
    assert sent
    for node_id, ep, path in sent:
        assert ep.startswith(f"on-{node_id}-"), (node_id, ep, path)


@contextlib.asynccontextmanager
async def cluster(redis_url: str, install_seconds: float) -> AsyncIterator[tuple[Node, Node, Counter[str]]]:
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        fleet(a.server, "on-a", install_seconds) as at_a,
        fleet(b.server, "on-b", install_seconds) as at_b,
    ):
        await at_a.wait_registered(timeout=10)
        await at_b.wait_registered(timeout=10)
        for ep in at_a.endpoint_names():
            await eventually(lambda ep=ep: b.member.owner_elsewhere(ep), lambda owner: owner == "a")
        for ep in at_b.endpoint_names():
            await eventually(lambda ep=ep: a.member.owner_elsewhere(ep), lambda owner: owner == "b")
        yield a, b, count_installs([at_a, at_b])


async def lwm2m(*args: str) -> Result:
    """The command line, in a worker thread (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def add_package(http: httpx.AsyncClient, base: str) -> str:
    package = await http.post(
        f"{base}/api/firmware",
        params={"name": "wm", "version": "9.1"},
        content=os.urandom(1500),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert package.status_code == 201, package.text
    return str(package.json()["id"])


async def campaign_events(base: str, seen: list[tuple[str, dict[str, Any]]]) -> None:
    async with httpx.AsyncClient(timeout=None) as http, http.stream("GET", f"{base}/api/events") as stream:
        async for name, data in sse_events(stream):
            if name.startswith("CAMPAIGN_") and data is not None:
                seen.append((name, data))


async def detail(http: httpx.AsyncClient, base: str, cid: str) -> dict[str, Any]:
    answer = await http.get(f"{base}/api/campaigns/{cid}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def until(
    http: httpx.AsyncClient, base: str, cid: str, accept: Any, timeout: float = 10.0
) -> dict[str, Any]:
    """The campaign as ``base`` shows it, once ``accept`` takes it."""
    return await eventually(lambda: detail(http, base, cid), accept, timeout=timeout, every=0.1)


def started(body: dict[str, Any]) -> int:
    """Devices of the campaign that have been started (not pending any more)."""
    return sum(1 for d in body["deviceDetail"] if d["state"] != "pending")


async def test_a_campaign_of_node_a_updates_both_nodes_devices_and_obeys_node_b(redis_url: str) -> None:
    async with (
        cluster(redis_url, install_seconds=0.3) as (a, b, installs),
        httpx.AsyncClient(timeout=30) as http,
    ):
        sent = trace_requests([a, b])
        pid = await add_package(http, a.base)
        seen_a: list[tuple[str, dict[str, Any]]] = []
        seen_b: list[tuple[str, dict[str, Any]]] = []
        readers = [asyncio.create_task(campaign_events(a.base, seen_a))]
        readers.append(asyncio.create_task(campaign_events(b.base, seen_b)))
        try:
            await asyncio.sleep(0.3)  # both streams subscribed
            body = {
                "packageId": pid,
                "waves": {"canary": 1, "batch": 10, "inFlight": 1},
                "retries": {"attempts": 0},
            }
            created = await http.post(f"{a.base}/api/campaigns", json=body)
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            assert await a.campaigns.runner(cid) == "a" and await b.campaigns.runner(cid) == "a"
            listed = (await http.get(f"{b.base}/api/campaigns")).json()
            assert [c["id"] for c in listed] == [cid] and listed[0]["devices"] == 2 * DEVICES
            # The canary done, node B pauses it: A's runner starts no device more.
            await until(http, b.base, cid, lambda d: d["counts"].get("succeeded", 0) >= 1)
            paused = await http.post(f"{b.base}/api/campaigns/{cid}/pause")
            assert paused.status_code == 200, paused.text
            assert paused.json()["status"] == "paused"
            at_pause = started(await detail(http, b.base, cid))
            await asyncio.sleep(1.5)
            held = await detail(http, a.base, cid)
            assert held["status"] == "paused"
            assert started(held) <= at_pause + 1  # the one in flight goes on, no new one
            assert held["counts"].get("pending", 0) >= 2 * DEVICES - at_pause - 1 > 0
            resumed = await http.post(f"{b.base}/api/campaigns/{cid}/resume")
            assert resumed.status_code == 200 and resumed.json()["status"] == "running", resumed.text
            done = await until(http, b.base, cid, lambda d: d["status"] == "done", timeout=30)
            assert done["counts"] == {"succeeded": 2 * DEVICES}
            # Every node shows the same campaign.
            assert await detail(http, a.base, cid) == done
            assert (await http.get(f"{a.base}/api/campaigns")).json() == (
                await http.get(f"{b.base}/api/campaigns")
            ).json()
            assert sorted(installs) == sorted(d["endpoint"] for d in done["deviceDetail"])
            assert set(installs.values()) == {1}
            assert {d["endpoint"][:4] for d in done["deviceDetail"]} == {"on-a", "on-b"}
            # A's runner reached B's devices through B (their owner), over the bus.
            from_owners(sent)
            assert {(n, p) for n, _, p in sent} >= {
                ("a", "/5/0/1"),
                ("b", "/5/0/1"),
                ("a", "/5/0/2"),
                ("b", "/5/0/2"),
            }
            # Its events on both nodes' streams, each once.
            for seen in (seen_a, seen_b):

                async def names(seen: list[tuple[str, dict[str, Any]]] = seen) -> list[str]:
                    return [name for name, _ in seen]

                await eventually(names, lambda got: "CAMPAIGN_DONE" in got)
                kinds = [name for name, data in seen if data["campaign"] == cid]
                assert kinds[0] == "CAMPAIGN_STARTED" and kinds[-1] == "CAMPAIGN_DONE"
                assert kinds.count("CAMPAIGN_PAUSED") == 1 and kinds.count("CAMPAIGN_RESUMED") == 1
                assert kinds.count("CAMPAIGN_DONE") == 1
                assert {data["endpoint"] for name, data in seen if name == "CAMPAIGN_DEVICE"} == set(installs)
            # A finished campaign: no action but delete, from either node.
            assert (await http.post(f"{b.base}/api/campaigns/{cid}/pause")).status_code == 409
            assert (await http.post(f"{b.base}/api/campaigns/nope/pause")).status_code == 404

            # Cancel through B a campaign A runs (waiting for a window that is not open now).
            hour = time.gmtime().tm_hour
            closed = {"start": f"{(hour + 2) % 24:02d}:00", "end": f"{(hour + 3) % 24:02d}:00"}
            waiting = await http.post(f"{a.base}/api/campaigns", json={"packageId": pid, "window": closed})
            wid = waiting.json()["id"]
            cancelled = await http.post(f"{b.base}/api/campaigns/{wid}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            assert cancelled.json()["counts"] == {"cancelled": 2 * DEVICES}
            assert (await detail(http, a.base, wid))["status"] == "cancelled"
            assert await a.campaigns.runner(wid) is None  # its lease given up
            # /metrics: each finished campaign counted once, by the node that finished it.
            finished = {
                s: a.campaigns.finished_here[s] + b.campaigns.finished_here[s] for s in ("done", "cancelled")
            }
            assert finished == {"done": 1, "cancelled": 1}
            # The command line against any node: B shows what A ran, and deletes it.
            shown = await lwm2m("campaign", "show", cid, "--api", b.base)
            assert shown.exit_code == 0, shown.output
            assert shown.output.startswith(f"{cid}  done  package {pid}  {2 * DEVICES} succeeded")
            deleted = await lwm2m("campaign", "delete", wid, "--api", b.base)
            assert deleted.exit_code == 0, deleted.output
            assert (await http.get(f"{a.base}/api/campaigns/{wid}")).status_code == 404
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


async def crash(campaigns: Campaigns) -> None:
    """What a killed process leaves of its runner: its tasks gone, its leases not given up (they
    lapse by themselves)."""
    tasks = [*campaigns._tasks.values(), campaigns._keeper]
    for task in tasks:
        assert task is not None
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_killed_runner_is_taken_over_and_no_device_is_updated_twice(redis_url: str) -> None:
    async with (
        cluster(redis_url, install_seconds=0.5) as (a, b, installs),
        httpx.AsyncClient(timeout=30) as http,
    ):
        sent = trace_requests([a, b])
        pid = await add_package(http, a.base)
        body = {
            "packageId": pid,
            "waves": {"canary": 0, "batch": 10, "inFlight": 2},
            "retries": {"attempts": 0},
        }
        created = await http.post(f"{a.base}/api/campaigns", json=body)
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        # Killed mid-way: some devices done, others in flight or not started.
        await until(http, b.base, cid, lambda d: d["counts"].get("succeeded", 0) >= 1)
        await crash(a.campaigns)
        assert await b.campaigns.runner(cid) == "a"  # until its lease lapses
        await eventually(lambda: b.campaigns.runner(cid), lambda runner: runner == "b", timeout=3 * LEASE + 2)
        done = await until(http, b.base, cid, lambda d: d["status"] == "done", timeout=30)
        assert done["counts"] == {"succeeded": 2 * DEVICES}
        assert all(
            d["state"] in ("succeeded", "failed", "cancelled", "skipped") for d in done["deviceDetail"]
        )
        assert sorted(installs) == sorted(d["endpoint"] for d in done["deviceDetail"])
        assert set(installs.values()) == {1}  # none updated twice
        from_owners(sent)
        assert len([p for _, _, p in sent if p == "/5/0/2"]) == 2 * DEVICES  # one Update each
        # A's runner, back from the dead, may not write: its lease's token is an old one.
        assert await a.campaigns.runner(cid) == "a"  # as it still believes
        stale = a.campaigns._campaigns[cid]
        stale.reason = "a stale write"
        paused = await http.post(f"{a.base}/api/campaigns/{cid}/pause")
        assert paused.status_code == 409, paused.text
        assert (await detail(http, b.base, cid))["reason"] != "a stale write"


async def test_a_package_pushed_to_a_device_another_node_owns_goes_through_that_node(redis_url: str) -> None:
    async with (
        cluster(redis_url, install_seconds=0.1) as (a, b, installs),
        httpx.AsyncClient(timeout=30) as http,
    ):
        sent = trace_requests([a, b])
        pid = await add_package(http, a.base)
        body = {"packageId": pid, "target": {"endpoints": "on-b-0000[01]"}, "delivery": "push"}
        created = await http.post(f"{a.base}/api/campaigns", json=body)
        assert created.status_code == 201, created.text
        done = await until(http, b.base, created.json()["id"], lambda d: d["status"] == "done", timeout=20)
        assert done["counts"] == {"succeeded": 2}
        assert {d["delivery"] for d in done["deviceDetail"]} == {"push"}
        assert dict(installs) == {"on-b-00000": 1, "on-b-00001": 1}
        from_owners(sent)
        assert ("b", "on-b-00000", "/5/0/0") in sent  # the package, written block-wise by its owner
