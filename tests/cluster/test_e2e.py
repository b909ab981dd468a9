"""The cluster end to end, with real parts only: one ``redis-server`` (AOF, fsync on every write),
three ``lwm2m server`` processes on it (``--store redis://… --node-id nK``), Debian's nginx in
front of their CoAP ports (UDP, ``hash $remote_addr$remote_port consistent``, so that the
devices of this one host spread over the nodes), and our client SDK's devices registering
through nginx (DESIGN.md, "Where its users outgrow one machine").

- Any node's REST API serves any device: reads, writes, an observation and a composite read
  through each node reach devices the other nodes own, and the answers are the devices' own;
  the event stream of one node carries the other nodes' events.
- ``kill -9`` of a node while requests run, then nginx reloaded without it: every device it
  owned is served again from its next datagram (a notification, a Send: nginx's PROXY
  protocol header names the device's address; an Update), its observations carry on without a new
  Register (LwM2M-TS-Core 1.2 §6.4: a client keeps them until it registers again), no
  registration is lost, and a request queued at it for a sleeping device (LwM2M-TS-Core 1.2
  §6.5) is delivered by the survivor the device wakes at.
- ``kill -9`` of Redis and a restart on its AOF: nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.helpers.client import until
from tests.helpers.cluster_nodes import NodeProcess, cluster_nodes
from tests.helpers.nginx import NginxBalancer
from tests.helpers.polling import eventually
from tests.helpers.redis import RedisServer
from tests.helpers.server import register_queued
from tests.helpers.web import Gadget, sse_events

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.cluster.ownership import owner_key
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.model.path import Path as LwPath
from lwm2m.model.record import Record
from lwm2m.storage.redisconn import RedisClient, connect
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

DEVICES = 30
NODES = 3
TEMPERATURE = "/3303/0/5700"
APPLICATION = "/3303/0/5750"  # Application Type: a string the server may write
# Bound of every wait for the cluster to reach a state (polled, so a fast run does not wait it):
# generous, for a machine busy with other work.
WAIT = 20.0
# A queue-mode device is taken to be asleep a second after it spoke (the others are not in
# queue mode).
# nginx names each device's own address in a PROXY protocol header, as deploy/ has it.
NODE_OPTIONS = (
    "--registration-rate",
    "0",
    "--awake-time",
    "1",
    "--log-level",
    "warning",
    "--proxy-protocol-from",
    "127.0.0.1",
)
DEVICE = ClientConfig(
    lifetime=300,
    coap_config=EndpointConfig(ack_timeout=1.0, max_retransmit=4),
    retry_initial=0.2,
    retry_max=1.0,
)


@dataclass
class Device:
    client: Client
    sensor: ObjectInstance

    @property
    def value(self) -> float:
        return float(self.sensor.get(5700))


@dataclass
class Cluster:
    """Redis, the nodes, nginx and the devices; an API client per node and a Redis client."""

    redis: RedisServer
    nodes: list[NodeProcess]
    balancer: NginxBalancer
    db: RedisClient
    devices: dict[str, Device] = field(default_factory=dict)
    apis: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def node(self, node_id: str) -> NodeProcess:
        return next(n for n in self.nodes if n.node_id == node_id)

    async def owner(self, endpoint: str) -> str | None:
        node = await self.db.hget(owner_key(endpoint), "node")
        return node.decode() if node else None

    async def owners(self) -> dict[str, str | None]:
        return {ep: await self.owner(ep) for ep in self.devices}

    async def listed(self, node_id: str) -> set[str]:
        """The endpoints node ``node_id``'s API lists (one page holds them all)."""
        answer = await self.apis[node_id].get("/api/clients", params={"limit": "500"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["next"] is None
        return {c["endpoint"] for c in body["clients"]}

    async def read(self, node_id: str, endpoint: str, path: str = TEMPERATURE) -> dict[str, Any]:
        answer = await self.apis[node_id].get(f"/api/clients/{endpoint}{path}", params={"timeout": "5"})
        assert answer.status_code == 200, (node_id, endpoint, answer.text)
        body: dict[str, Any] = answer.json()
        return body

    async def history(self, node_id: str, endpoint: str) -> list[float]:
        answer = await self.apis[node_id].get(f"/api/clients/{endpoint}/history{TEMPERATURE}")
        assert answer.status_code == 200, answer.text
        return [r["value"] for r in answer.json()["records"]]


@contextlib.asynccontextmanager
async def cluster(folder: Path) -> AsyncIterator[Cluster]:
    """Redis (AOF), three nodes, nginx, and DEVICES devices registered through nginx."""
    redis = RedisServer(folder / "redis", appendonly=True).start()
    db = connect(redis.url)
    try:
        with cluster_nodes(folder / "nodes", redis.url, NODES, NODE_OPTIONS) as nodes:
            balancer = NginxBalancer(
                folder / "nginx",
                udp_upstreams=[n.coap for n in nodes],
                hash_key="$remote_addr$remote_port",
                proxy_protocol=True,
            )
            with balancer:
                async with contextlib.AsyncExitStack() as stack:
                    c = Cluster(redis, nodes, balancer, db)
                    for n in nodes:
                        c.apis[n.node_id] = await stack.enter_async_context(
                            httpx.AsyncClient(base_url=n.base, timeout=WAIT)
                        )
                    uri = f"coap://127.0.0.1:{balancer.udp_port}"
                    for i in range(DEVICES):
                        sensor = ObjectInstance(0, {5700: 20.0 + i, 5701: "Cel", 5750: "new"}, object_id=3303)
                        client = Client(f"dev-{i:02}", uri, [sensor], config=DEVICE)
                        c.devices[client.endpoint_name] = Device(
                            await stack.enter_async_context(client), sensor
                        )
                    await asyncio.gather(*(d.client.wait_registered(20) for d in c.devices.values()))
                    # Each node claims what registered with it (in the background).
                    await eventually(c.owners, lambda found: None not in found.values(), timeout=WAIT)
                    yield c
        # No node failed on the way, nor on its way out (a Redis restart's dropped connections
        # are warnings).
        for n in nodes:
            said = n.log.read_text(errors="replace")
            assert "Traceback" not in said and " ERROR " not in said, said[-3000:]
    finally:
        await db.aclose()
        redis.stop()


async def test_every_node_serves_every_device_and_streams_the_fleets_events(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        # Every device registered once, with one node; every node lists the whole fleet.
        assert all(d.client.registrations == 1 for d in c.devices.values())
        for node in c.nodes:
            assert await c.listed(node.node_id) == set(c.devices)
        owners = await c.owners()
        by_node = {n.node_id: sorted(ep for ep, o in owners.items() if o == n.node_id) for n in c.nodes}
        # Spread: with 30 devices hashed over 3 nodes, fewer than 2 on a node is a 1e-4 event.
        assert all(len(eps) >= 2 for eps in by_node.values()), by_node

        seen: list[tuple[str, dict[str, Any]]] = []
        first = c.nodes[0].node_id

        async def follow() -> None:
            async with c.apis[first].stream("GET", "/api/events", timeout=None) as stream:
                async for name, data in sse_events(stream):
                    if data is not None:
                        seen.append((name, data))

        reader = asyncio.create_task(follow())
        try:
            # Through each node, a device of each other node (a different device each time).
            spare = {node: list(eps) for node, eps in by_node.items()}
            for entry in c.nodes:
                for owner in c.nodes:
                    if owner is entry:
                        continue
                    endpoint = spare[owner.node_id].pop()
                    await operations_reach(c, entry.node_id, endpoint, owner.node_id, seen)
            # The stream of the first node carried events of the other nodes' devices.
            assert {d["node"] for name, d in seen if name == "NOTIFICATION"} == {n.node_id for n in c.nodes}
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def operations_reach(
    c: Cluster, entry: str, endpoint: str, owner: str, seen: list[tuple[str, dict[str, Any]]]
) -> None:
    """A read, a write, a composite read and an observation of ``endpoint`` (owned by
    ``owner``) through ``entry``'s API: each is the device's own answer."""
    api, device = c.apis[entry], c.devices[endpoint]
    read = await c.read(entry, endpoint)
    assert (read["code"], read["records"]) == ("2.05", [{"path": TEMPERATURE, "value": device.value}])

    label = f"via-{entry}"
    written = await api.put(f"/api/clients/{endpoint}{APPLICATION}", json={"value": label})
    assert written.status_code == 200 and written.json()["code"] == "2.04", written.text
    assert device.sensor.get(5750) == label

    composite = await api.post(
        f"/api/clients/{endpoint}/composite/read", json={"paths": ["/3/0/0", APPLICATION, TEMPERATURE]}
    )
    assert composite.status_code == 200, composite.text
    body = composite.json()
    assert body["code"] == "2.05"
    assert sorted((r["path"], r["value"]) for r in body["records"]) == [
        ("/3/0/0", "lwm2m"),
        (TEMPERATURE, device.value),
        (APPLICATION, label),
    ]

    observed = await api.post(f"/api/clients/{endpoint}{TEMPERATURE}/observe")
    assert observed.status_code == 200 and observed.json()["code"] == "2.05", observed.text
    new = device.value + 100.0
    device.sensor.set(5700, new)
    # The owner took the notification: it is in the shared history, which any node serves,
    # and on the fleet's stream under the owner's name.
    await eventually(lambda: c.history(entry, endpoint), lambda values: new in values, timeout=WAIT)
    await until(lambda: any(notified(e, endpoint, new, owner) for e in seen), timeout=WAIT)


def notified(event: tuple[str, dict[str, Any]], endpoint: str, value: float, node: str) -> bool:
    name, data = event
    return (
        name == "NOTIFICATION"
        and data["endpoint"] == endpoint
        and data["node"] == node
        and {"path": TEMPERATURE, "value": value} in data["records"]
    )


@dataclass
class Sleeper:
    """A queue-mode device (our CoAP endpoint) registered through nginx, its Created answer."""

    endpoint: str
    socket: CoapUdpEndpoint
    gadget: Gadget
    created: Message

    def message(self, code: Code) -> Message:
        """An Update (POST) or a De-register (DELETE) of its registration."""
        return Message.build(Type.CON, code, uri_path="/".join(self.created.location_path))


async def sleeper_at(c: Cluster, node_id: str, stack: contextlib.AsyncExitStack) -> Sleeper:
    """A queue-mode device that nginx's hash sends to ``node_id``: new sockets until one lands
    there (those that land elsewhere de-register)."""
    balancer = ("127.0.0.1", c.balancer.udp_port)
    for attempt in range(60):
        gadget = Gadget()
        socket = await stack.enter_async_context(open_udp_endpoint("127.0.0.1", 0, handler=gadget))
        name = f"sleeper-{attempt}"
        created = await socket.request(register_queued(name), balancer, timeout=5)
        assert created.code == Code.CREATED
        owner = await eventually(lambda ep=name: c.owner(ep), lambda o: o is not None, timeout=WAIT)
        sleeper = Sleeper(name, socket, gadget, created)
        if owner == node_id:
            return sleeper
        assert (await socket.request(sleeper.message(Code.DELETE), balancer, timeout=5)).code == Code.DELETED
    raise AssertionError(f"no socket landed on {node_id}")


class Load:
    """Reads, one after another, of ``endpoints`` through the APIs of ``nodes``; keeps the
    status of each answer (a read the device does not answer in time is a 504) with the
    ``phase`` the test was in when the read started and when it ended."""

    def __init__(self, c: Cluster, nodes: list[str], endpoints: list[str]) -> None:
        self.c, self.nodes, self.endpoints = c, nodes, endpoints
        self.phase = "before"
        self.reads: list[tuple[str, str, int]] = []  # (phase at the start, at the end, status)
        self._task: asyncio.Task[None] | None = None

    def statuses(self, *, started: str | None = None, ended: str | None = None) -> list[int]:
        return [s for a, b, s in self.reads if started in (None, a) and ended in (None, b)]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        turn = 0
        while True:
            node = self.nodes[turn % len(self.nodes)]
            endpoint = self.endpoints[turn % len(self.endpoints)]
            turn += 1
            phase = self.phase
            answer = await self.c.apis[node].get(
                f"/api/clients/{endpoint}{TEMPERATURE}", params={"timeout": "2"}
            )
            self.reads.append((phase, self.phase, answer.status_code))

    async def stop(self) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()  # its failure is the test's
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_killed_nodes_devices_are_served_again_and_keep_their_observations(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        owners = await c.owners()
        victim, survivors = c.nodes[1], [c.nodes[0], c.nodes[2]]
        alive = [n.node_id for n in survivors]
        orphans = sorted(ep for ep, o in owners.items() if o == victim.node_id)
        stayed = sorted(ep for ep, o in owners.items() if o != victim.node_id)
        assert len(orphans) >= 2 and stayed, owners
        # The victim's devices observed through a survivor's API: the victim made them.
        for endpoint in orphans:
            observed = await c.apis[alive[0]].post(f"/api/clients/{endpoint}{TEMPERATURE}/observe")
            assert observed.status_code == 200 and observed.json()["code"] == "2.05", observed.text

        seen: list[tuple[str, dict[str, Any]]] = []

        async def follow() -> None:
            async with c.apis[alive[1]].stream("GET", "/api/events", timeout=None) as stream:
                async for name, data in sse_events(stream):
                    if data is not None:
                        seen.append((name, data))

        reader = asyncio.create_task(follow())
        load = Load(c, alive, stayed)
        sockets = contextlib.AsyncExitStack()
        load.start()
        try:
            # A request for a sleeping device of the victim, queued through a survivor's API: the
            # victim holds it (and the store keeps it).
            sleeper = await sleeper_at(c, victim.node_id, sockets)
            await asyncio.sleep(1.5)  # asleep: the nodes' --awake-time is 1 s
            queued = await c.apis[alive[0]].get(f"/api/clients/{sleeper.endpoint}/3/0/9")
            assert queued.status_code == 202, queued.text
            request_id = queued.json()["requestId"]
            assert request_id.startswith(f"{victim.node_id}~")

            await until(lambda: len(load.statuses(ended="before")) >= 10, timeout=WAIT)
            load.phase = "failover"
            victim.kill()
            # A read of one of its devices at once: its owner is still taken for alive (until its
            # heartbeat lapses), so the read goes to the dead node over the bus, and no answer
            # comes. The survivor answers 504 after the read's own timeout and a margin.
            stale = asyncio.create_task(
                c.apis[alive[0]].get(f"/api/clients/{orphans[1]}{TEMPERATURE}", params={"timeout": "1"})
            )
            # The operator takes the dead node out of the balancer: the reload ends every UDP
            # session, so each device's next datagram opens a new one, on a survivor.
            await asyncio.to_thread(c.balancer.replace_upstreams, udp_upstreams=[n.coap for n in survivors])

            # The sleeping device wakes (an Update) at a survivor, which runs the request queued
            # at the dead node: delivered once, its outcome on either survivor.
            balancer = ("127.0.0.1", c.balancer.udp_port)
            woke = await sleeper.socket.request(sleeper.message(Code.POST), balancer, timeout=5)
            assert woke.code == Code.CHANGED
            for node in alive:
                done = await eventually(
                    lambda n=node: outcome(c, n, request_id), lambda o: o["status"] != "queued", timeout=WAIT
                )
                assert done["status"] == "done", done
                assert done["result"]["records"] == [{"path": "/3/0/9", "value": 85}]
            assert sum(1 for m in sleeper.gadget.requests if m.uri_path == ("3", "0", "9")) == 1
            gone = await sleeper.socket.request(sleeper.message(Code.DELETE), balancer, timeout=5)
            assert gone.code == Code.DELETED

            # Half the orphans speak first with a notification, on the observation the victim
            # made: a survivor finds its token in Redis, takes the device over and keeps the value.
            notify_first = orphans[::2]
            await notify(c, notify_first, 1000.0, alive[0], alive, seen)
            # The survivor that took the notification took the device: it serves it, through
            # either survivor's API, before any Update.
            for endpoint in notify_first:
                for node in alive:
                    read = await c.read(node, endpoint)
                    assert read["records"] == [{"path": TEMPERATURE, "value": c.devices[endpoint].value}]

            # The other orphans speak first with a Send, which names no endpoint: nginx's header
            # names the device's address, by which a survivor finds its registration in Redis.
            # (A value of its own, not one its sensor holds: a change would notify first.)
            send_first = [ep for ep in orphans if ep not in notify_first]
            for endpoint in send_first:
                record = Record(LwPath.parse(TEMPERATURE), 2000.0, time.time())
                sent = await c.devices[endpoint].client.send(records=[record], timeout=5)
                assert sent.code == Code.CHANGED, (endpoint, sent)
            for endpoint in send_first:
                assert 2000.0 in await c.history(alive[0], endpoint)
                for node in alive:
                    read = await c.read(node, endpoint)
                    assert read["records"] == [{"path": TEMPERATURE, "value": c.devices[endpoint].value}]

            # Then every device's next Update (the reload moved every device to a new session).
            for device in c.devices.values():
                device.client.trigger_update()
            await until(lambda: all(d.client.updates >= 1 for d in c.devices.values()), timeout=WAIT)
            taken = await eventually(c.owners, lambda found: set(found.values()) <= set(alive), timeout=WAIT)
            assert {taken[ep] for ep in orphans} <= set(alive)

            # Served again, through either survivor, with the device's own value.
            for endpoint, device in c.devices.items():
                for node in alive:
                    read = await c.read(node, endpoint)
                    assert read["records"] == [{"path": TEMPERATURE, "value": device.value}], (node, endpoint)
            # The observations the victim made carry on at the survivors.
            await notify(c, orphans, 1.0, alive[1], alive, seen)

            late = await stale
            assert late.status_code == 504 and "did not answer" in late.json()["error"], late.text

            # Nothing lost, nothing registered again.
            for node in alive:
                assert await c.listed(node) == set(c.devices)
            assert all(d.client.registrations == 1 for d in c.devices.values())
            load.phase = "after"
            await until(lambda: len(load.statuses(started="after")) >= 10, timeout=WAIT)
        finally:
            await load.stop()
            await sockets.aclose()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        # While the reload moved the sessions, a read could miss its device (504); never more.
        assert set(load.statuses(ended="before")) == {200}, load.reads
        assert set(load.statuses()) <= {200, 504}, load.reads
        assert set(load.statuses(started="after")) == {200}, load.reads


async def outcome(c: Cluster, node: str, request_id: str) -> dict[str, Any]:
    answer = await c.apis[node].get(f"/api/requests/{request_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def notify(
    c: Cluster,
    endpoints: list[str],
    step: float,
    reader: str,
    nodes: list[str],
    seen: list[tuple[str, dict[str, Any]]],
) -> None:
    """Each device of ``endpoints`` notifies a value ``step`` above its last; each new value must
    reach the history (read through ``reader``) and the events (from one of ``nodes``)."""
    for endpoint in endpoints:
        device = c.devices[endpoint]
        device.sensor.set(5700, device.value + step)
    for endpoint in endpoints:
        value = c.devices[endpoint].value
        await eventually(lambda ep=endpoint: c.history(reader, ep), lambda v, x=value: x in v, timeout=WAIT)
        await until(
            lambda ep=endpoint, x=value: any(notified_by(e, ep, x, nodes) for e in seen), timeout=WAIT
        )


def notified_by(event: tuple[str, dict[str, Any]], endpoint: str, value: float, nodes: list[str]) -> bool:
    return any(notified(event, endpoint, value, node) for node in nodes)


async def test_a_redis_restart_on_its_aof_loses_nothing_acknowledged(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        owners = await c.owners()
        endpoint = sorted(owners)[0]
        entry = next(n.node_id for n in c.nodes if n.node_id != owners[endpoint])
        device = c.devices[endpoint]
        observed = await c.apis[entry].post(f"/api/clients/{endpoint}{TEMPERATURE}/observe")
        assert observed.status_code == 200 and observed.json()["code"] == "2.05", observed.text
        device.sensor.set(5700, 55.5)
        await eventually(lambda: c.history(entry, endpoint), lambda values: 55.5 in values, timeout=WAIT)

        # kill -9: with the AOF written and fsynced before every answer, what Redis answered is kept.
        c.redis.stop(kill=True)
        c.redis.start()

        async def listed(node: str) -> set[str] | None:
            try:
                return await c.listed(node)
            except AssertionError:
                return None  # its connection to Redis is being made again

        for node in c.nodes:
            assert await eventually(lambda n=node.node_id: listed(n), timeout=WAIT) == set(c.devices)
        assert await c.owners() == owners
        assert 55.5 in await c.history(entry, endpoint)
        # The nodes carry on: a read through another node crosses the bus, the observation made
        # before the restart still lands in the history, and every device's Update is taken.
        read = await c.read(entry, endpoint)
        assert read["records"] == [{"path": TEMPERATURE, "value": 55.5}]
        device.sensor.set(5700, 66.5)
        await eventually(lambda: c.history(entry, endpoint), lambda values: 66.5 in values, timeout=WAIT)
        for each in c.devices.values():
            each.client.trigger_update()
        await until(lambda: all(d.client.updates >= 1 for d in c.devices.values()), timeout=WAIT)
        assert all(d.client.registrations == 1 for d in c.devices.values())
        assert await c.listed(entry) == set(c.devices)
