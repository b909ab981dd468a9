"""A real ``kill -9`` of a campaign's runner: two ``lwm2m server`` processes on one real Redis
(``--campaign-lease 1``), simulated devices registered at each through a UDP relay that keeps a
session per device (as a balancer in front of the nodes does), and a campaign created on node
n1, so run there, one device at a time. Once a device is updated, n1's process is killed with
SIGKILL (nothing of its shutdown runs: its campaign lease and its devices' ownership stay as
they were) and the relay moves n1's sessions to n2, as a balancer's health check would. n2
takes the lease over once it lapses and finishes the campaign from the stored per-device
states, n1's devices included: the one in flight, which speaks to n2 when its update ends, and
a quiet one n1 never reached, asked of n1 over the bus until n1 is known dead, then reached
from n2. Every device installs the package exactly once and the campaign ends with all of them
succeeded. The killed node leaves no process behind (its export worker ends with it)."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from tests.helpers.cluster_nodes import NodeProcess, cluster_nodes
from tests.helpers.polling import eventually
from tests.helpers.procs import descendants
from tests.helpers.relay import Sessions
from tests.helpers.simulator import count_installs

from lwm2m.client.core.firmware import UpdateResult
from lwm2m.cluster.ownership import owner_key
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.storage import open_store
from lwm2m.storage.redisconn import connect

DEVICES = 3  # per node
LEASE = 1.0  # seconds a campaign's lease lasts unrenewed
NODE_OPTIONS = ("--campaign-lease", f"{LEASE:g}", "--registration-rate", "0", "--log-level", "warning")


@contextlib.asynccontextmanager
async def devices_at(node: NodeProcess, prefix: str) -> AsyncIterator[tuple[Fleet, Sessions]]:
    """DEVICES simulated devices registered at ``node`` through a relay of their own."""
    relay = await Sessions(node.coap).start()
    host, port = relay.address
    config = FleetConfig(
        count=DEVICES,
        profile="ucifi-water-meter",
        prefix=prefix,
        rate=None,
        local_host="127.0.0.1",
        install_seconds=0.4,
    )
    try:
        async with Fleet(f"coap://{host}:{port}", config) as fleet:
            await fleet.wait_registered(timeout=10)
            yield fleet, relay
    finally:
        relay.close()


async def detail(http: httpx.AsyncClient, base: str, cid: str) -> dict[str, Any]:
    answer = await http.get(f"{base}/api/campaigns/{cid}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def owner(redis: Any, endpoint: str) -> str | None:
    """The node that holds ``endpoint``, as Redis says."""
    node = await redis.hget(owner_key(endpoint), "node")
    return node.decode() if isinstance(node, bytes) else node


async def gone(pids: set[int]) -> bool:
    """Whether none of ``pids`` runs any more (a zombie has ended: its parent is gone)."""
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return False
    return True


async def test_a_runner_killed_with_sigkill_is_taken_over_and_every_device_updated_once(
    tmp_path: Path, redis_url: str
) -> None:
    store = open_store(redis_url)
    redis = connect(redis_url)
    try:
        with cluster_nodes(tmp_path, redis_url, 2, NODE_OPTIONS) as (n1, n2):
            async with (
                devices_at(n1, "on-n1") as (at_n1, relay_n1),
                devices_at(n2, "on-n2") as (at_n2, _),
                httpx.AsyncClient(timeout=30) as http,
            ):
                for fleet, node in ((at_n1, n1), (at_n2, n2)):
                    for ep in fleet.endpoint_names():
                        await eventually(
                            lambda ep=ep: owner(redis, ep), lambda held, node=node: held == node.node_id
                        )
                installs: Counter[str] = count_installs([at_n1, at_n2])
                package = await http.post(
                    f"{n1.base}/api/firmware",
                    params={"name": "wm", "version": "9.1"},
                    content=os.urandom(1500),
                    headers={"Content-Type": "application/octet-stream"},
                )
                assert package.status_code == 201, package.text
                body = {
                    "packageId": package.json()["id"],
                    "waves": {"canary": 0, "batch": 10, "inFlight": 1},
                    "retries": {"attempts": 0},
                }
                created = await http.post(f"{n1.base}/api/campaigns", json=body)
                assert created.status_code == 201, created.text
                cid = created.json()["id"]
                assert await store.campaigns.holder(cid) == n1.node_id

                # Killed mid-way: the devices go one at a time in the order of their names, so
                # once on-n1-00000 is updated, on-n1-00001 is in flight (it speaks again, to n2,
                # when its update ends) and on-n1-00002 waits, never told anything by n1: quiet,
                # its node dead but not yet known to be (a node is taken for dead 10 s after its
                # last heartbeat), so n2 first asks n1 for it over the bus.
                await eventually(
                    lambda: detail(http, n2.base, cid),
                    lambda d: d["counts"].get("succeeded", 0) >= 1,
                    timeout=15,
                    every=0.05,
                )
                assert n1.proc is not None
                left_behind = descendants(n1.proc.pid)  # its export worker
                n1.kill()
                relay_n1.server = n2.coap  # the balancer's health check: n1's sessions go to n2
                at_kill = await detail(http, n2.base, cid)
                assert at_kill["status"] == "running"
                states = {d["endpoint"]: d["state"] for d in at_kill["deviceDetail"]}
                assert states["on-n1-00002"] == "pending", states

                await eventually(
                    lambda: store.campaigns.holder(cid),
                    lambda runner: runner == n2.node_id,
                    timeout=3 * LEASE + 5,
                )
                done = await eventually(
                    lambda: detail(http, n2.base, cid), lambda d: d["status"] == "done", timeout=30, every=0.1
                )
                assert done["counts"] == {"succeeded": 2 * DEVICES}, done
                endpoints = sorted(d["endpoint"] for d in done["deviceDetail"])
                assert endpoints == sorted([*at_n1.endpoint_names(), *at_n2.endpoint_names()])
                assert sorted(installs) == endpoints
                assert set(installs.values()) == {1}, installs  # none updated twice
                # Each device ended its update with Update Result 1, success (LwM2M-TS-Core 1.2 E.6).
                for fleet in (at_n1, at_n2):
                    for ep in fleet.endpoint_names():
                        assert fleet.device(ep).firmware.result == UpdateResult.SUCCESS, ep
                await eventually(lambda: gone(left_behind), timeout=10)
    finally:
        await redis.aclose()
        store.close()
