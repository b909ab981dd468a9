"""DTLS Connection ID forwarding between two ``Server`` nodes on one real Redis, over real sockets.

A device (our DTLS client, PSK, with a Connection ID) registers through node "a" behind a NAT
(tests/helpers/relay.py). Its NAT rebinds and its datagrams now reach node "b", which has no
session: b forwards each record over the link to a (the CID's first byte is a's), a answers
(Update 2.04, no new handshake, a still owns the endpoint), and a's Read of the device goes
through b and is answered 2.05. The same behind a real nginx (hash on the source address and
port, no stickiness by CID): the device's new flow lands on the node without its session. A
link message made without the cluster key is dropped and counted, never answered."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.client import until
from tests.helpers.nginx import NginxBalancer
from tests.helpers.pki import KEY
from tests.helpers.relay import Nat
from tests.helpers.security import count_hellos, psk, update
from tests.helpers.server import Device, register

from lwm2m.cli.server_cmd import open_forwarding
from lwm2m.cluster.encoding import Payload
from lwm2m.cluster.node import ClusterConfig
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.membership import ClusterMember, MembershipConfig
from lwm2m.server.role import Server
from lwm2m.storage import open_store
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.redisconn import connect
from lwm2m.transport.dtls import SessionLimits, open_dtls_endpoint
from lwm2m.transport.dtls.forwarding import DtlsForwarding
from lwm2m.transport.dtls.link import TO_DEVICE, LinkMessage, LinkMessageCodec


async def no_requests(payload: Payload) -> Payload:
    raise AssertionError(f"nothing is sent to this node over the bus: {payload!r}")


@dataclass
class Node:
    server: Server
    member: ClusterMember
    forwarding: DtlsForwarding

    @property
    def coaps(self) -> tuple[str, int]:
        assert self.server.coaps_port
        return ("127.0.0.1", self.server.coaps_port)

    @property
    def coap(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.port)

    @property
    def layer_counters(self) -> dict[str, int]:
        assert self.server.dtls is not None
        return self.server.dtls.dtls.counters


@contextlib.asynccontextmanager
async def node(redis_url: str, node_id: str) -> AsyncIterator[Node]:
    """A cluster node as ``lwm2m server --store redis://… --node-id … --coaps-port 0`` makes it."""
    config = MembershipConfig(cluster=ClusterConfig(node_id, 0.1, 0.5), alive_cache=0.05)
    member = ClusterMember(connect(redis_url), config)
    byte = await member.join()
    store = open_store(redis_url)
    forwarding = await open_forwarding(member, ("127.0.0.1", 0))
    server = Server(
        ServerConfig(port=0, coaps_port=0, shared_store=True, dtls_limits=SessionLimits(node_id=byte)), store
    )
    server.forward_dtls(forwarding)
    try:
        async with server:
            await member.start(server, no_requests)
            try:
                yield Node(server, member, forwarding)
            finally:
                await member.close()
    finally:
        await forwarding.close()
        store.close()


async def know_each_other(*nodes: Node) -> None:
    """Until every node's router lists every other node and has heard it over the link (a node
    reads the live nodes' links every second, and one that joined a moment ago may be missing)."""

    async def listed() -> bool:
        for n in nodes:
            await n.forwarding.refresh()
        wanted = {n.member.identity.byte for n in nodes}
        return all(
            n.forwarding.router is not None
            and set(n.forwarding.router.reachable) == wanted - {n.member.identity.byte}
            for n in nodes
        )

    async with asyncio.timeout(5):
        while not await listed():
            await asyncio.sleep(0.05)


async def test_a_rebound_device_is_served_by_its_node_through_the_other(redis_url: str) -> None:
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as device,
    ):
        await a.server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        await know_each_other(a, b)
        assert a.forwarding.router is not None and b.forwarding.router is not None
        assert b.forwarding.router.nodes == {a.member.identity.byte: a.forwarding.address}
        nat = await Nat(a.coaps, filtering=True).start()
        try:
            created = await device.request(register("dev-1"), nat.address, timeout=5)
            assert created.code == Code.CREATED
            await until(lambda: "dev-1" in a.member.owned)
            epoch = (await a.member.ownership.owner("dev-1")).epoch  # type: ignore[union-attr]
            hellos = count_hellos(device)

            # The NAT rebinds, and the balancer sends the new flow to b.
            nat.server = b.coaps
            await nat.rebind()
            changed = await device.request(update(created.location_path), nat.address, timeout=5)
            assert changed.code == Code.CHANGED
            assert hellos == []  # the same session: no handshake anywhere
            assert b.layer_counters["handshakes_started"] == 0 and a.layer_counters["handshakes_started"] == 1
            assert b.forwarding.counters["forwarded"] >= 1 and a.forwarding.counters["forwarded_in"] >= 1
            assert a.forwarding.router.route(nat.public) == b.forwarding.address
            assert (await a.server.registration("dev-1")).address == nat.public
            owner = await a.member.ownership.owner("dev-1")
            assert owner is not None and owner.node == "a" and owner.epoch > epoch

            # a's own request reaches the device through b, and its answer comes back the same way.
            read = await a.server.read("dev-1", "/3/0/0", timeout=5)
            assert read.code == Code.CONTENT
            assert a.forwarding.counters["sent_via"] >= 2 and b.forwarding.counters["relayed"] >= 2
            assert b.server.dtls is not None and b.server.dtls.sessions() == []
            assert nat.filtered == 0  # nothing came from a straight to the device's new flow
        finally:
            nat.close()


async def test_a_forged_link_message_is_dropped_and_not_answered(redis_url: str) -> None:
    async with node(redis_url, "a") as a:
        forged = LinkMessageCodec(bytes(32)).encode(LinkMessage(TO_DEVICE, 2, ("127.0.0.1", 9), b"x" * 40))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            s.sendto(forged, a.forwarding.address)
            s.sendto(b"\x01" * 80, a.forwarding.address)
            await until(lambda: a.forwarding.counters["link_dropped"] == 2)
            await asyncio.sleep(0.2)
            try:
                answer = s.recv(2048)
            except BlockingIOError:
                answer = None
            assert answer is None
        assert a.forwarding.counters["relayed"] == 0


async def test_behind_nginx_the_node_a_new_flow_lands_on_forwards_to_the_owner(
    redis_url: str, tmp_path: Path
) -> None:
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as device,
    ):
        for n in (a, b):
            await n.server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        await know_each_other(a, b)
        with NginxBalancer(
            tmp_path / "nginx",
            udp_upstreams=[a.coap, b.coap],
            coaps_upstreams=[a.coaps, b.coaps],
            hash_key="$remote_addr$remote_port",
        ) as balancer:
            assert balancer.coaps_port is not None
            nat = await Nat(("127.0.0.1", balancer.coaps_port), filtering=True).start()
            try:
                created = await device.request(register("dev-1"), nat.address, timeout=5)
                assert created.code == Code.CREATED
                await until(lambda: "dev-1" in a.member.owned | b.member.owned)
                owner, other = (a, b) if "dev-1" in a.member.owned else (b, a)
                hellos = count_hellos(device)
                # New source ports until nginx's hash puts the device's flow on the other node.
                for _ in range(30):
                    await nat.rebind()
                    changed = await device.request(update(created.location_path), nat.address, timeout=5)
                    assert changed.code == Code.CHANGED
                    if other.forwarding.counters["forwarded"]:
                        break
                else:
                    raise AssertionError("nginx never sent the device's flow to the other node")
                assert hellos == [] and other.layer_counters["handshakes_started"] == 0
                read = await owner.server.read("dev-1", "/3/0/0", timeout=5)
                assert read.code == Code.CONTENT
                assert (
                    owner.forwarding.counters["sent_via"] >= 2 and other.forwarding.counters["relayed"] >= 2
                )
                held = await owner.member.ownership.owner("dev-1")
                assert held is not None and held.node == owner.member.node_id
                assert other.server.dtls is not None and other.server.dtls.sessions() == []
            finally:
                nat.close()
