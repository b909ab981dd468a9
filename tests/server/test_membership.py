"""A server node's cluster membership (:class:`~lwm2m.server.membership.ClusterMember`) on a real
Redis, following a real ``Server`` on the shared store: the node claims an endpoint on its
Register and on every Update (a new fencing epoch each time), renews the leases only of the
endpoints it heard from, lets an endpoint go once another node claimed it, releases it on
De-register (keeping the epoch), and ``owner_elsewhere`` names a live owner only.

The device is our CoAP endpoint on loopback; node "b" is played by a bare identity and ownership
on the same Redis where a test needs another node."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.helpers.client import until
from tests.helpers.polling import eventually
from tests.helpers.server import next_event, register

from lwm2m.cluster.encoding import Payload
from lwm2m.cluster.node import ClusterConfig, NodeIdentity
from lwm2m.cluster.ownership import Owner, Ownership, OwnershipConfig, owner_key
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientUpdated, RegistrationExpired, SendReceived
from lwm2m.server.membership import ClusterMember, MembershipConfig
from lwm2m.server.role import Server
from lwm2m.storage import open_store
from lwm2m.storage.redisconn import RedisClient, connect
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

MODELS = load_catalogue()
TEMPERATURE = Path.parse("/3303/0/5700")
# Short heartbeats so that a stopped node is taken for dead within a second; a long lease so
# that the member's own renewal task (every lease / 3) never runs during a test.
QUICK = ClusterConfig(heartbeat_interval=0.1, node_ttl=0.5)
LEASE = OwnershipConfig(lease=30.0)


def membership(node_id: str) -> MembershipConfig:
    return MembershipConfig(
        cluster=ClusterConfig(node_id, QUICK.heartbeat_interval, QUICK.node_ttl),
        ownership=LEASE,
        alive_cache=0.05,
    )


async def no_requests(payload: Payload) -> Payload:
    raise AssertionError(f"nothing is sent to this node over the bus: {payload!r}")


@dataclass
class Node:
    """Node "a": the server, its membership, its devices (one socket each) and a Redis client."""

    server: Server
    member: ClusterMember
    redis: RedisClient
    stack: contextlib.AsyncExitStack
    devices: dict[str, CoapUdpEndpoint] = field(default_factory=dict)

    @property
    def peer(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.port)

    async def register(self, endpoint: str) -> str:
        """Registers ``endpoint`` (from its own socket, the first time); its location (``rd/…``)."""
        if endpoint not in self.devices:
            self.devices[endpoint] = await self.stack.enter_async_context(open_udp_endpoint("127.0.0.1", 0))
        created = await self.devices[endpoint].request(register(endpoint), self.peer, timeout=5)
        assert created.code == Code.CREATED
        return "/".join(created.location_path)

    async def update(self, endpoint: str, location: str) -> None:
        update = Message.build(Type.CON, Code.POST, uri_path=location)
        assert (await self.devices[endpoint].request(update, self.peer, timeout=5)).code == Code.CHANGED

    async def deregister(self, endpoint: str, location: str) -> None:
        delete = Message.build(Type.CON, Code.DELETE, uri_path=location)
        assert (await self.devices[endpoint].request(delete, self.peer, timeout=5)).code == Code.DELETED

    async def send(self, endpoint: str, value: float) -> None:
        """A Send (LwM2M-TS-Core 1.2 §6.4.6) from the device: traffic that renews its lease."""
        payload = get_codec(CF.SENML_CBOR).encode([Record(TEMPERATURE, value)], ROOT, MODELS)
        send = Message.build(
            Type.CON, Code.POST, uri_path="/dp", content_format=CF.SENML_CBOR, payload=payload
        )
        assert (await self.devices[endpoint].request(send, self.peer, timeout=5)).code == Code.CHANGED

    async def owner(self, endpoint: str) -> Owner | None:
        return await self.member.ownership.owner(endpoint)

    async def claimed(self, endpoint: str, epoch: int) -> Owner:
        """Waits until this node holds ``endpoint`` at ``epoch`` (claims are made in the background)."""
        owner = await eventually(lambda: self.owner(endpoint), lambda o: o is not None and o.epoch == epoch)
        assert owner is not None and owner.node == "a"
        await until(lambda: endpoint in self.member.owned)
        return owner


@contextlib.asynccontextmanager
async def node_a(redis_url: str) -> AsyncIterator[Node]:
    store = open_store(redis_url)
    redis = connect(redis_url)
    member = ClusterMember(connect(redis_url), membership("a"))
    try:
        async with (
            Server(ServerConfig(port=0, shared_store=True), store) as server,
            contextlib.AsyncExitStack() as stack,
        ):
            await member.start(server, no_requests)
            try:
                yield Node(server, member, redis, stack)
            finally:
                await member.close()
    finally:
        store.close()
        await redis.aclose()


@contextlib.asynccontextmanager
async def node_b(redis: RedisClient) -> AsyncIterator[tuple[NodeIdentity, Ownership]]:
    """Another live node on the same Redis: its heartbeats and its claims, nothing else."""
    identity = NodeIdentity(redis, ClusterConfig("b", QUICK.heartbeat_interval, QUICK.node_ttl))
    await identity.join()
    try:
        yield identity, Ownership(redis, "b", LEASE)
    finally:
        await identity.leave()


async def test_register_and_every_update_claim_the_endpoint(redis_url: str) -> None:
    async with node_a(redis_url) as a:
        location = await a.register("dev-1")
        first = await a.claimed("dev-1", 1)
        assert first.lease_expires > time.time() + LEASE.lease - 5
        # Each Update is a claim: the epoch grows, so a node that held it before is fenced.
        await a.update("dev-1", location)
        await a.claimed("dev-1", 2)
        await a.update("dev-1", location)
        await a.claimed("dev-1", 3)
        await a.register("dev-2")
        await a.claimed("dev-2", 1)
        assert a.member.owned == {"dev-1", "dev-2"}
        assert await a.member.owner_elsewhere("dev-1") is None  # its own: served here


async def test_leases_are_renewed_only_for_endpoints_heard_from(redis_url: str) -> None:
    async with node_a(redis_url) as a:
        events = a.server.events()
        for endpoint in ("talker", "silent"):
            await a.register(endpoint)
            await a.claimed(endpoint, 1)
        assert await a.member.renew() == 0  # a claim is a fresh lease: nothing heard since
        before = {ep: await a.owner(ep) for ep in ("talker", "silent")}
        await asyncio.sleep(0.01)  # the lease is kept in ms: a renewal now ends later
        await a.send("talker", 21.0)
        assert (await next_event(events, SendReceived)).endpoint == "talker"
        # The member follows the server's events in its own task: renewed once it saw the Send.
        assert await eventually(a.member.renew) == 1
        after = {ep: await a.owner(ep) for ep in ("talker", "silent")}
        assert after["silent"] == before["silent"]
        talker, was = after["talker"], before["talker"]
        assert talker is not None and was is not None
        assert (talker.node, talker.epoch) == ("a", 1) and talker.lease_expires > was.lease_expires
        assert await a.member.renew() == 0  # heard from once, renewed once


async def test_an_endpoint_another_node_claimed_is_let_go_at_the_next_renewal(redis_url: str) -> None:
    async with node_a(redis_url) as a, node_b(a.redis) as (_, b):
        events = a.server.events()
        location = await a.register("dev-1")
        await a.claimed("dev-1", 1)
        assert await b.claim("dev-1") == 2  # the device's Update went to b meanwhile
        assert "dev-1" in a.member.owned  # a learns it at its next renewal (or when asked)
        await a.send("dev-1", 22.0)
        await next_event(events, SendReceived)

        async def let_go() -> bool:
            await a.member.renew()
            return "dev-1" not in a.member.owned

        await eventually(let_go)
        owner = await a.owner("dev-1")
        assert owner is not None and (owner.node, owner.epoch) == ("b", 2)  # a's renewal left it
        assert await a.member.owner_elsewhere("dev-1") == "b"
        # The device comes back to a (the balancer decides): a claims it again.
        await a.update("dev-1", location)
        await next_event(events, ClientUpdated)
        await a.claimed("dev-1", 3)
        assert await a.member.owner_elsewhere("dev-1") is None
        assert not await b.renew("dev-1", 2)  # and b is fenced in turn


async def test_traffic_of_an_endpoint_this_node_does_not_own_claims_it(redis_url: str) -> None:
    async with node_a(redis_url) as a, node_b(a.redis) as (_, b):
        events = a.server.events()
        await a.register("dev-1")
        await a.claimed("dev-1", 1)
        await b.claim("dev-1")

        async def let_go() -> bool:
            await a.member.renew()
            return "dev-1" not in a.member.owned

        await a.send("dev-1", 23.0)
        await next_event(events, SendReceived)
        await eventually(let_go)
        # The device's datagrams reach a now (as after a takeover by a notification, without an
        # Update): a owns it again, at a new epoch, and b is fenced.
        await a.send("dev-1", 24.0)
        await a.claimed("dev-1", 3)
        assert not await b.renew("dev-1", 2)
        assert await a.member.owner_elsewhere("dev-1") is None


async def test_deregister_releases_the_endpoint_and_keeps_its_epoch(redis_url: str) -> None:
    async with node_a(redis_url) as a:
        location = await a.register("dev-1")
        await a.claimed("dev-1", 1)
        await a.deregister("dev-1", location)
        await until(lambda: "dev-1" not in a.member.owned)
        assert await eventually(lambda: a.owner("dev-1"), lambda o: o is None) is None
        assert await a.redis.hget(owner_key("dev-1"), "epoch") == b"1"
        await a.register("dev-1")  # a later claim still fences the released one
        await a.claimed("dev-1", 2)


async def test_the_expiry_of_a_replaced_registration_keeps_the_new_ones_claim(redis_url: str) -> None:
    # An expiry sweep takes the old registration, the device registers again before the sweep
    # reports it: the report comes after the new registration's claim.
    async with node_a(redis_url) as a:
        await a.register("dev-1")
        await a.claimed("dev-1", 1)
        old = await a.server.registration("dev-1")
        await a.register("dev-1")
        await a.claimed("dev-1", 2)
        a.server._emit(RegistrationExpired(old))
        await a.register("dev-2")  # events are handled in order: dev-1's expiry before this claim
        await a.claimed("dev-2", 1)
        owner = await a.owner("dev-1")
        assert owner is not None and (owner.node, owner.epoch) == ("a", 2)
        assert "dev-1" in a.member.owned


async def test_owner_elsewhere_names_a_live_owner_only(redis_url: str) -> None:
    async with node_a(redis_url) as a, node_b(a.redis) as (identity, b):
        assert await a.member.owner_elsewhere("dev-9") is None  # nobody holds it
        await b.claim("dev-9")
        assert await a.member.owner_elsewhere("dev-9") == "b"
        await identity.stop()  # b's heartbeats end, as when its process is killed
        assert (
            await eventually(lambda: a.member.owner_elsewhere("dev-9"), lambda n: n is None, timeout=3)
            is None
        )
        # Its lease still runs: liveness, not the lease, sends the request to be served here.
        owner = await a.owner("dev-9")
        assert owner is not None and owner.node == "b"


async def test_a_request_for_a_device_whose_node_is_gone_waits_for_its_new_owner(redis_url: str) -> None:
    async with node_a(redis_url) as a, node_b(a.redis) as (identity_b, b):
        await b.claim("dev-9")
        await identity_b.stop()  # b is gone; its lease still runs
        await eventually(lambda: a.member.owner_elsewhere("dev-9"), lambda n: n is None, timeout=3)
        # The device's next datagram reaches node c (the balancer's choice), which claims it:
        # a request waiting meanwhile goes there, not to the address b served it at.
        identity_c = NodeIdentity(a.redis, ClusterConfig("c", QUICK.heartbeat_interval, QUICK.node_ttl))
        await identity_c.join()
        try:
            waiting = asyncio.ensure_future(a.member.owner_elsewhere("dev-9", wait=10))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # waiting for the device to turn up somewhere
            await Ownership(a.redis, "c", LEASE).claim("dev-9")
            assert await asyncio.wait_for(waiting, 10) == "c"
        finally:
            await identity_c.leave()
        # c gone too, and the device silent until the wait runs out: served from here.
        await asyncio.sleep(a.member.config.alive_cache * 4)
        assert await a.member.owner_elsewhere("dev-9", wait=0.3) is None


async def test_a_node_that_lost_a_device_to_another_learns_it_when_asked(redis_url: str) -> None:
    async with node_a(redis_url) as a, node_b(a.redis) as (_, b):
        await a.register("dev-1")
        await a.claimed("dev-1", 1)
        await b.claim("dev-1")  # the device's datagrams go to b now (a balancer change)
        assert await a.member.owner_elsewhere("dev-1") == "b"
        assert "dev-1" not in a.member.owned  # fenced: a no longer acts for it


async def test_a_quiet_device_stays_with_its_live_node_after_its_lease(redis_url: str) -> None:
    async with node_a(redis_url) as a, node_b(a.redis) as (_, b):
        epoch = await b.claim("dev-9")
        # The lease runs out (no traffic renewed it), the node is alive and holds the session.
        await a.redis.hset(owner_key("dev-9"), "expires", 0)
        assert await b.owner("dev-9") is None
        assert await a.member.owner_elsewhere("dev-9") == "b"
        assert (await b.holder("dev-9") or Owner("", 0, 0)).epoch == epoch
