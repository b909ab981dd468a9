"""Two server nodes behind a real nginx UDP balancer (stream module, ``hash … consistent``):
where registrations land, the nodes' own requests and the devices' notifications over the
proxied sessions, failover by a reload without the dead node, the REST API balanced over the
nodes; and the deploy/ files kept true (``nginx -t`` on nginx-lwm2m.conf, the unit's options)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path as FsPath

import httpx
import pytest
from tests.helpers.client import temperature, until
from tests.helpers.devices import Thermometer
from tests.helpers.nginx import NGINX, HashKey, NginxBalancer
from tests.helpers.pki import KEY
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.security import psk
from tests.helpers.server import Device, register
from tests.helpers.web import served, sse_events

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.numbers import Code
from lwm2m.errors import NotRegistered
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import open_dtls_endpoint
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web.app import create_app

DEPLOY = FsPath(__file__).resolve().parents[2] / "deploy"
TEMPERATURE = Path.parse("/3303/0/5700")
FAST = EndpointConfig(ack_timeout=0.2, max_retransmit=2)


@pytest.fixture
async def nodes() -> AsyncIterator[list[Server]]:
    """Two server nodes (memory store) on free loopback ports."""
    async with Server(ServerConfig(port=0)) as a, Server(ServerConfig(port=0)) as b:
        yield [a, b]


def balancer_for(folder: FsPath, nodes: list[Server], hash_key: HashKey) -> NginxBalancer:
    return NginxBalancer(
        folder, udp_upstreams=[("127.0.0.1", node.port) for node in nodes], hash_key=hash_key
    )


@pytest.fixture
def spread(tmp_path: FsPath, nodes: list[Server]) -> Iterator[NginxBalancer]:
    """A balancer hashing on address and port: devices of one host spread over the nodes."""
    with balancer_for(tmp_path / "nginx", nodes, "$remote_addr$remote_port") as balancer:
        yield balancer


# Devices are added until every node holds one, up to this many: with a hash that spreads them,
# all on one node by chance is then a 1 in 2**39 event; with one that does not, the test fails.
MOST = 40
Devices = dict[str, tuple[Client, ObjectInstance]]


async def start_devices(
    stack: AsyncExitStack,
    balancer: NginxBalancer,
    nodes: list[Server],
    count: int,
    *,
    every_node: bool = True,
) -> tuple[Devices, dict[str, int]]:
    """At least ``count`` clients registering through the balancer, each from its own source
    port (more, up to MOST, until every node holds one, if ``every_node``); and the index of
    the node each registered on, checked to be exactly one."""
    uri = f"coap://127.0.0.1:{balancer.udp_port}"
    devices: Devices = {}
    placed: dict[str, int] = {}
    while len(devices) < MOST and (
        len(devices) < count or (every_node and len(set(placed.values())) < len(nodes))
    ):
        i = len(devices)
        temp = temperature(20.0 + i)
        config = ClientConfig(lifetime=300, coap_config=FAST, retry_initial=0.1, retry_max=0.5)
        client = await stack.enter_async_context(Client(f"dev-{i}", uri, [temp], config=config))
        await client.wait_registered(5)
        devices[f"dev-{i}"] = (client, temp)
        found = await owners(nodes, f"dev-{i}")
        assert len(found) == 1, f"dev-{i} registered on nodes {found}"
        placed[f"dev-{i}"] = found[0]
    return devices, placed


async def owners(nodes: list[Server], endpoint: str) -> list[int]:
    """Indexes of the nodes that hold a registration of ``endpoint``."""
    found = []
    for index, node in enumerate(nodes):
        try:
            await node.registration(endpoint)
        except NotRegistered:
            continue
        found.append(index)
    return found


async def registered_on(node: Server, endpoint: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                await node.registration(endpoint)
                return
            except NotRegistered:
                await asyncio.sleep(0.02)


async def test_registrations_spread_and_each_node_reaches_its_devices(
    nodes: list[Server], spread: NginxBalancer
) -> None:
    async with AsyncExitStack() as stack:
        devices, placed = await start_devices(stack, spread, nodes, 6)
        assert set(placed.values()) == {0, 1}
        for index, node in enumerate(nodes):
            endpoint = next(ep for ep, owner in placed.items() if owner == index)
            client, temp = devices[endpoint]
            registration = await node.registration(endpoint)
            # The node sees the balancer's side of the session, not the device's own port.
            assert registration.address[1] not in (client.port, spread.udp_port, node.port)
            # A request of the node's own travels to the device over the proxied session.
            response = await node.read(endpoint, TEMPERATURE, timeout=5)
            assert response.records == (Record(TEMPERATURE, 20.0 + int(endpoint[4:])),)
            # And the device's notifications come back over it.
            observation = await node.observe(endpoint, TEMPERATURE, timeout=5)
            temp.set(5700, 42.5 + index)
            notification = await observation.next(timeout=5)
            assert notification.records == (Record(TEMPERATURE, 42.5 + index),)


async def test_hash_on_the_address_alone_keeps_one_host_on_one_node(
    tmp_path: FsPath, nodes: list[Server]
) -> None:
    with balancer_for(tmp_path / "nginx", nodes, "$remote_addr") as balancer:
        async with AsyncExitStack() as stack:
            _, placed = await start_devices(stack, balancer, nodes, 6, every_node=False)
            assert len(set(placed.values())) == 1, placed


async def test_after_a_node_dies_a_reload_sends_its_devices_to_the_survivor(
    nodes: list[Server], spread: NginxBalancer
) -> None:
    async with AsyncExitStack() as stack:
        devices, placed = await start_devices(stack, spread, nodes, 6)
        assert set(placed.values()) == {0, 1}
        dead, survivor = nodes[0], nodes[1]
        orphans = [ep for ep, owner in placed.items() if owner == 0]
        stayed = [ep for ep, owner in placed.items() if owner == 1]
        await dead.stop()
        spread.replace_upstreams(udp_upstreams=[("127.0.0.1", survivor.port)])
        for client, _ in devices.values():
            # Its next message (an Update) opens a session with the new workers. An orphan's
            # reaches the survivor, which does not know it (4.04: its store is its own), so the
            # device registers again: there.
            client.trigger_update()
        for endpoint in orphans:
            await registered_on(survivor, endpoint)
        # The survivor follows the others to their new sessions' ports.
        await until(lambda: all(devices[ep][0].updates >= 1 for ep in stayed))
        for endpoint in devices:
            response = await survivor.read(endpoint, TEMPERATURE, timeout=5)
            assert response.records == (Record(TEMPERATURE, 20.0 + int(endpoint[4:])),)


async def test_the_rest_api_is_balanced_over_the_nodes_and_events_stream_through(
    tmp_path: FsPath, nodes: list[Server]
) -> None:
    async with served(create_app(nodes[0])) as first, served(create_app(nodes[1])) as second:
        apis = [("127.0.0.1", int(base.rsplit(":", 1)[1])) for base in (first, second)]
        udp = [("127.0.0.1", node.port) for node in nodes]
        with NginxBalancer(tmp_path / "nginx", udp_upstreams=udp, tcp_upstreams=apis) as balancer:
            async with (
                open_udp_endpoint("127.0.0.1", 0, handler=Thermometer()) as device,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{balancer.http_port}", timeout=5) as api,
            ):
                for index, node in enumerate(nodes):
                    await device.request(register(f"api-{index}"), ("127.0.0.1", node.port))
                # Round robin: successive calls are answered by both nodes, each with its own.
                listings = set()
                for _ in range(4):
                    answer = await api.get("/api/clients")
                    assert answer.status_code == 200, answer.text
                    listings.add(tuple(c["endpoint"] for c in answer.json()["clients"]))
                assert listings == {("api-0",), ("api-1",)}
                # The event stream passes through: an event arrives while the stream is open.
                async with api.stream("GET", "/api/events") as stream:
                    events = sse_events(stream)
                    assert await asyncio.wait_for(anext(events), 5) == (":", None)  # subscribed
                    for index, node in enumerate(nodes):
                        await device.request(register(f"sse-{index}"), ("127.0.0.1", node.port))
                    name, data = await asyncio.wait_for(anext(events), 5)
                    assert name == "REGISTRATION" and data is not None
                    assert data["endpoint"] in ("sse-0", "sse-1")
                    await events.aclose()


async def test_dtls_sessions_are_balanced_and_carry_the_nodes_requests(tmp_path: FsPath) -> None:
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(Server(ServerConfig(port=0, coaps_port=0))) for _ in "ab"]
        for node in nodes:
            for index in range(MOST):
                await node.security.put(SecurityInfo(f"dtls-{index}", f"dtls-{index}-id", KEY))
        balancer = NginxBalancer(
            tmp_path / "nginx",
            udp_upstreams=[("127.0.0.1", node.port) for node in nodes],
            coaps_upstreams=[("127.0.0.1", node.coaps_port) for node in nodes if node.coaps_port],
            hash_key="$remote_addr$remote_port",
        )
        stack.enter_context(balancer)
        assert balancer.coaps_port is not None
        placed: dict[str, int] = {}
        while len(placed) < MOST and (len(placed) < 4 or len(set(placed.values())) < 2):
            endpoint = f"dtls-{len(placed)}"
            device = await stack.enter_async_context(
                open_dtls_endpoint(client=psk(f"{endpoint}-id", KEY), handler=Device())
            )
            created = await device.request(register(endpoint), ("127.0.0.1", balancer.coaps_port), timeout=5)
            assert created.code == Code.CREATED
            (placed[endpoint],) = await owners(nodes, endpoint)
        assert set(placed.values()) == {0, 1}
        for endpoint, owner in placed.items():
            # The owner reaches the device over the device's DTLS session, through nginx.
            response = await nodes[owner].read(endpoint, "/3/0/0", timeout=5)
            assert response.records[0].value == "Open Mobile Alliance"


# --- deploy/nginx-lwm2m.conf -----------------------------------------------------------------

# The places the deploy configuration writes to, and the ports it listens on: replaced by a
# temporary folder and free ports so that `nginx -t` (which binds the ports) runs anywhere.
DEPLOY_FOLDERS = ("/run/lwm2m", "/var/log/lwm2m", "/var/lib/lwm2m")


def deploy_conf_for_test(folder: FsPath) -> tuple[str, dict[int, int]]:
    text = (DEPLOY / "nginx-lwm2m.conf").read_text()
    for index, path in enumerate(DEPLOY_FOLDERS):
        local = folder / f"d{index}"
        (local / "nginx").mkdir(parents=True)  # deploy/README.md: made before nginx starts
        text = text.replace(path, str(local))
    ports: dict[int, int] = {}
    for match in re.finditer(r"^\s*listen\s+(\d+)(\s+udp)?", text, re.MULTILINE):
        port = int(match.group(1))
        ports[port] = free_udp_port() if match.group(2) else free_tcp_port()
    text = re.sub(
        r"^(\s*listen\s+)(\d+)",
        lambda m: f"{m.group(1)}127.0.0.1:{ports[int(m.group(2))]}",
        text,
        flags=re.MULTILINE,
    )
    return text, ports


def test_the_deploy_nginx_config_is_accepted_by_nginx(tmp_path: FsPath) -> None:
    text, ports = deploy_conf_for_test(tmp_path)
    assert set(ports) == {5683, 5684, 8080}
    # Three nodes behind each balanced port, UDP sessions picked by the device's address.
    for name in ("lwm2m_coap", "lwm2m_coaps", "lwm2m_api"):
        block = re.search(rf"upstream {name} \{{(.*?)\}}", text, re.DOTALL)
        assert block is not None, name
        assert len(re.findall(r"^\s*server 127\.0\.0\.1:\d+", block.group(1), re.MULTILINE)) == 3
        if name != "lwm2m_api":
            assert "hash $remote_addr consistent;" in block.group(1)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    test = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    assert "test is successful" in test.stderr


# --- deploy/lwm2m-server@.service ------------------------------------------------------------


def unit_options() -> set[str]:
    """The long options of the unit's ``lwm2m server`` command line."""
    text = (DEPLOY / "lwm2m-server@.service").read_text()
    command = re.search(r"^ExecStart=(.*?)(?<!\\)$", text, re.MULTILINE | re.DOTALL)
    assert command is not None and " server " in command.group(1)
    return set(re.findall(r"(?<=\s)--[a-z][a-z-]*", command.group(1)))


# Options the unit may name that `lwm2m server` has not (yet): none.
PENDING_OPTIONS: set[str] = set()


def test_the_unit_uses_only_options_of_lwm2m_server() -> None:
    from click.testing import CliRunner

    from lwm2m.cli import main

    options = unit_options()
    assert {"--store", "--coap-port", "--http-port"} <= options
    help_text = CliRunner().invoke(main, ["server", "--help"], terminal_width=200).output
    known = set(re.findall(r"--[a-z][a-z-]*", help_text))
    assert options - known == PENDING_OPTIONS
