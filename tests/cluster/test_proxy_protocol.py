"""Two nodes sharing a store behind Debian's nginx with ``proxy_protocol on;`` for CoAP: each
node sees the devices at their own addresses (the PROXY header of each UDP session's first
datagram), its requests reach them through the sessions, and after the node of a device is
gone, a Send as the device's first datagram at the other node is served there (the store's
address index names the registration), where without the header it is refused (docs/cluster.md).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path as FsPath

import pytest
from tests.helpers.client import temperature
from tests.helpers.events import next_event
from tests.helpers.nginx import NginxBalancer

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.numbers import Code
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import SendReceived
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore
from lwm2m.transport.proxy import ProxyConfig

TEMPERATURE = Path.parse("/3303/0/5700")
FAST = EndpointConfig(ack_timeout=0.3, max_retransmit=3)
MOST = 40  # devices added until each node holds one (all on one node: a 1 in 2**39 event)


async def owner(nodes: list[Server], endpoint: str) -> int:
    """The node whose registrar serves ``endpoint`` (the store is one for both)."""
    found = [index for index, node in enumerate(nodes) if node.registrar.peers.get(endpoint) is not None]
    assert len(found) == 1, f"{endpoint} served by nodes {found}"
    return found[0]


@pytest.mark.parametrize("proxy_protocol", [True, False], ids=["proxy-protocol", "without"])
async def test_a_send_first_after_failover_is_served_when_the_balancer_names_the_device(
    tmp_path: FsPath, proxy_protocol: bool
) -> None:
    store = MemoryStore.create()
    proxy = ProxyConfig(("127.0.0.1",)) if proxy_protocol else None
    config = ServerConfig(port=0, shared_store=True, proxy=proxy)
    async with Server(config, store) as a, Server(config, store) as b:
        nodes = [a, b]
        upstreams = [("127.0.0.1", node.port) for node in nodes]
        with NginxBalancer(
            tmp_path / "nginx",
            udp_upstreams=upstreams,
            hash_key="$remote_addr$remote_port",
            proxy_protocol=proxy_protocol,
        ) as balancer:
            async with AsyncExitStack() as stack:
                uri = f"coap://127.0.0.1:{balancer.udp_port}"
                devices: dict[str, Client] = {}
                placed: dict[str, int] = {}
                while len(devices) < MOST and len(set(placed.values())) < 2:
                    endpoint = f"dev-{len(devices)}"
                    config_ = ClientConfig(lifetime=300, coap_config=FAST, retry_initial=0.1, retry_max=0.5)
                    client = Client(endpoint, uri, [temperature(20.0 + len(devices))], config=config_)
                    devices[endpoint] = await stack.enter_async_context(client)
                    await client.wait_registered(5)
                    placed[endpoint] = await owner(nodes, endpoint)
                assert set(placed.values()) == {0, 1}
                for endpoint, index in placed.items():
                    registration = await nodes[index].registration(endpoint)
                    own = ("127.0.0.1", devices[endpoint].port)
                    # With the header the node sees the device itself, else the balancer's socket.
                    assert (registration.address == own) is proxy_protocol
                    response = await nodes[index].read(endpoint, TEMPERATURE, timeout=5)
                    assert response.code == Code.CONTENT

                dead, survivor = nodes[0], nodes[1]
                orphans = [ep for ep, index in placed.items() if index == 0]
                events = survivor.events()
                await dead.stop()
                balancer.replace_upstreams(udp_upstreams=[("127.0.0.1", survivor.port)])
                for endpoint in orphans:
                    # The orphan's first datagram at the survivor is a Send (no endpoint in it).
                    answer = await devices[endpoint].send([TEMPERATURE], timeout=5)
                    if not proxy_protocol:
                        assert answer.code == Code.FORBIDDEN  # found by nothing it carries
                        continue
                    assert answer.code == Code.CHANGED
                    sent = await next_event(events, SendReceived)
                    assert sent.endpoint == endpoint
                    assert [r.path for r in sent.records] == [TEMPERATURE]
                    # Adopted: the survivor reaches it through the new session, at its own address.
                    response = await survivor.read(endpoint, TEMPERATURE, timeout=5)
                    assert response.records == (Record(TEMPERATURE, 20.0 + int(endpoint[4:])),)
                    assert (await survivor.registration(endpoint)).address == (
                        "127.0.0.1",
                        devices[endpoint].port,
                    )
                events.close()
