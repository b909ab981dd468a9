"""Two server nodes on one real Redis with a device on CoAP over TCP at node A: the transport is
kept with the registration, so node B's API shows it, and a request through B goes to A over the
bus and on to the device over its connection (RFC 8323)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from tests.helpers.client import until
from tests.helpers.web import served
from tests.server.test_tcp import ObservedDevice, register

from lwm2m.cluster.node import ClusterConfig
from lwm2m.cluster.ownership import OwnershipConfig
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.membership import ClusterMember, MembershipConfig
from lwm2m.server.role import Server
from lwm2m.storage import open_store
from lwm2m.storage.redisconn import connect
from lwm2m.transport.tcp import open_tcp_endpoint
from lwm2m.web.app import create_app

EP = "tcp-dev-1"


@dataclass
class Node:
    server: Server
    member: ClusterMember
    base: str


@contextlib.asynccontextmanager
async def node(redis_url: str, node_id: str) -> AsyncIterator[Node]:
    store = open_store(redis_url)
    config = MembershipConfig(
        cluster=ClusterConfig(node_id=node_id, heartbeat_interval=0.2, node_ttl=1.0),
        ownership=OwnershipConfig(lease=30.0),
    )
    member = ClusterMember(connect(redis_url), config)
    try:
        async with Server(ServerConfig(port=0, tcp_port=0, shared_store=True), store) as server:
            app = create_app(server, cluster=member)
            async with served(app) as base:
                yield Node(server, member, base)
    finally:
        store.close()


async def test_a_read_through_another_node_reaches_a_tcp_device_over_its_connection(redis_url: str) -> None:
    device = ObservedDevice()
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        open_tcp_endpoint(None, handler=device) as ep,
        httpx.AsyncClient(timeout=10) as http,
    ):
        answer = await ep.request(register(EP), ("127.0.0.1", a.server.tcp_port))
        assert answer.code == Code.CREATED
        await until(lambda: EP in a.member.owned)
        assert await b.member.owner_elsewhere(EP) == "a"
        shown = (await http.get(f"{b.base}/api/clients/{EP}")).json()
        assert shown["transport"] == "tcp"  # B does not serve it, the store says how it came
        listed = (await http.get(f"{b.base}/api/clients")).json()["clients"]
        assert [c["transport"] for c in listed if c["endpoint"] == EP] == ["tcp"]
        before = len(device.requests)
        response = await http.get(f"{b.base}/api/clients/{EP}/3/0/0")
        assert response.status_code == 200, response.text
        assert response.json()["code"] == "2.05"
        assert len(device.requests) == before + 1 and device.requests[-1].uri_path == ("3", "0", "0")
