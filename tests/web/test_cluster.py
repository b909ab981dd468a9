"""Two server nodes on one real Redis (store, ownership, bus, fleet events): any node's REST API
serves any device, requests for a device another node owns go to that node over the bus, and
every node's event stream carries the fleet's events with ids that resume on another node.

The nodes are two ``Server`` objects in this process, each with its API on a real uvicorn;
the device is our CoAP endpoint on loopback, registered at node A."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.helpers.client import until
from tests.helpers.polling import eventually
from tests.helpers.server import next_event, register, register_queued
from tests.helpers.web import Gadget, served

from lwm2m.cluster.node import ClusterConfig
from lwm2m.cluster.ownership import OwnershipConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import BusTimeout
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientSleeping
from lwm2m.server.membership import ClusterMember, MembershipConfig
from lwm2m.server.role import Server
from lwm2m.storage import open_store
from lwm2m.storage.redisconn import connect
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.web.app import create_app
from lwm2m.web.cluster import FleetPublisher, ForwardToOwner, device_of, holder_of

EP = "dev-1"


@dataclass
class Node:
    server: Server
    member: ClusterMember
    base: str  # its API


@contextlib.asynccontextmanager
async def node(redis_url: str, node_id: str, awake_time: float = 93.0) -> AsyncIterator[Node]:
    store = open_store(redis_url)
    config = MembershipConfig(
        cluster=ClusterConfig(node_id=node_id, heartbeat_interval=0.2, node_ttl=1.0),
        ownership=OwnershipConfig(lease=30.0),
    )
    member = ClusterMember(connect(redis_url), config)
    try:
        async with Server(ServerConfig(port=0, shared_store=True, awake_time=awake_time), store) as server:
            app = create_app(server, cluster=member)
            async with served(app) as base:
                yield Node(server, member, base)
    finally:
        store.close()


class Traced(Gadget):
    """A Gadget that also keeps where each request came from (which node's socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[Any] = []

    def __call__(self, event: RequestReceived) -> Message:
        self.sources.append(event.addr)
        return super().__call__(event)


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[Node, Node, Traced, CoapUdpEndpoint]]:
    gadget = Traced()
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
    ):
        answer = await device.request(register(EP), ("127.0.0.1", a.server.port))
        assert answer.code == Code.CREATED
        await until(lambda: EP in a.member.owned)
        yield a, b, gadget, device


Event = tuple[str, str, dict[str, Any]]


async def sse(base: str, headers: dict[str, str] | None = None) -> AsyncIterator[Event]:
    """(id, event name, data) of each event of ``base``'s stream."""
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream("GET", f"{base}/api/events", headers=headers or {}) as response,
    ):
        assert response.status_code == 200
        event_id = name = ""
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line.removeprefix("id: ")
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield event_id, name, json.loads(line.removeprefix("data: "))


async def test_a_read_through_another_node_reaches_the_device_from_its_owner(redis_url: str) -> None:
    async with two_nodes(redis_url) as (a, b, gadget, _device), httpx.AsyncClient() as http:
        assert await b.member.owner_elsewhere(EP) == "a"
        assert await a.member.owner_elsewhere(EP) is None
        before = len(gadget.requests)
        response = await http.get(f"{b.base}/api/clients/{EP}/3/0/0")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"] == "2.05"
        assert len(gadget.requests) == before + 1
        # The read went out from A's socket, the one the device's session (or NAT entry) is with.
        assert gadget.sources[-1] == ("127.0.0.1", a.server.port)
        # A write through B.
        written = await http.put(f"{b.base}/api/clients/{EP}/3/0/14", json={"value": "+02:00"})
        assert written.status_code == 200, written.text
        assert gadget.requests[-1].code == Code.PUT
        assert gadget.sources[-1] == ("127.0.0.1", a.server.port)


async def test_the_event_stream_of_any_node_carries_the_fleet_and_resumes_on_another(redis_url: str) -> None:
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        open_udp_endpoint("127.0.0.1", 0, handler=Gadget()) as device,
    ):
        seen: list[tuple[str, str, dict[str, Any]]] = []

        async def follow() -> None:
            async for event in sse(b.base):
                seen.append(event)

        reader = asyncio.create_task(follow())
        try:
            await asyncio.sleep(0.3)  # subscribed (the stream's opening comment is not an event)
            await device.request(register(EP), ("127.0.0.1", a.server.port))
            await until(lambda: any(e[2].get("endpoint") == EP for e in seen))
            first_id, name, data = next(e for e in seen if e[2].get("endpoint") == EP)
            assert name == "REGISTRATION" and data["node"] == "a", (name, data)
            # Something more happens at A after that event: a reader resuming from its id, on
            # node A this time, gets what came after it and not the event itself.
            await device.request(register("dev-2"), ("127.0.0.1", a.server.port))
            resumed: list[tuple[str, str, dict[str, Any]]] = []

            async def again() -> None:
                async for event in sse(a.base, {"Last-Event-ID": first_id}):
                    resumed.append(event)

            second = asyncio.create_task(again())
            try:
                await until(lambda: any(e[2].get("endpoint") == "dev-2" for e in resumed))
                assert all(e[0] != first_id for e in resumed)
                assert all(e[0] > first_id for e in resumed)
            finally:
                second.cancel()
        finally:
            reader.cancel()


async def test_a_device_whose_node_stopped_beating_is_served_where_asked(redis_url: str) -> None:
    async with two_nodes(redis_url) as (a, b, _, _device):
        assert await b.member.owner_elsewhere(EP) == "a"
        await a.member.identity.stop()  # A's heartbeats end, as when its process is killed
        await asyncio.sleep(a.member.config.cluster.node_ttl + b.member.config.alive_cache + 0.2)
        assert await b.member.owner_elsewhere(EP) is None


class _Silent:
    node_id = "b"
    fleet: Any = None

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None:
        return "a"

    async def ask(self, node: str, payload: Any, timeout: float) -> Any:
        raise BusTimeout(f"no answer from {node}")


async def test_an_owner_that_does_not_answer_is_a_504() -> None:
    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the request must not be served here")

    app = ForwardToOwner(never, _Silent(), timeout=0.1)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.get(f"/api/clients/{EP}/3/0/0")
    assert response.status_code == 504
    assert "did not answer" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/clients/dev-1/3/0/0", "dev-1"),
        ("/api/clients/dev%201/observe", "dev 1"),
        ("/api/clients/dev-1/composite/read", "dev-1"),
        ("/api/clients/dev-1/history", None),  # the shared store's: any node
        ("/api/clients/dev-1/history/3/0", None),
        ("/api/clients/dev-1", None),  # the registration: the shared store's
        ("/api/clients", None),
        ("/api/events", None),
    ],
)
def test_which_requests_go_to_the_owner(path: str, endpoint: str | None) -> None:
    assert device_of(path) == endpoint


@pytest.mark.parametrize(
    ("path", "node_id"),
    [
        ("/api/requests/a~0123abcd", "a"),
        ("/api/requests/n.1~0123abcd", "n.1"),
        ("/api/requests/0123abcd", None),  # a single node's
        ("/api/requests/a~b/c", None),
        ("/api/clients/a~b", None),
    ],
)
def test_which_queued_requests_another_node_holds(path: str, node_id: str | None) -> None:
    assert holder_of(path) == node_id


async def test_a_request_queued_through_another_node_is_followed_on_it(redis_url: str) -> None:
    async with (
        node(redis_url, "a", awake_time=0.2) as a,
        node(redis_url, "b") as b,
        open_udp_endpoint("127.0.0.1", 0, handler=Gadget()) as device,
        httpx.AsyncClient(timeout=10) as http,
    ):
        events = a.server.events()
        created = await device.request(register_queued("sleepy"), ("127.0.0.1", a.server.port))
        await next_event(events, ClientSleeping)
        events.close()
        await until(lambda: "sleepy" in a.member.owned)
        queued = await http.get(f"{b.base}/api/clients/sleepy/3/0/9")
        assert queued.status_code == 202, queued.text
        request_id = queued.json()["requestId"]
        assert request_id.startswith("a~")  # node A holds it: the device is A's
        pending = await http.get(f"{b.base}/api/requests/{request_id}")
        assert pending.status_code == 200 and pending.json()["status"] == "queued"
        update = Message.build(Type.CON, Code.POST, uri_path="/".join(created.location_path))
        assert (await device.request(update, ("127.0.0.1", a.server.port))).code == Code.CHANGED

        async def status() -> str:
            return str((await http.get(f"{b.base}/api/requests/{request_id}")).json()["status"])

        assert await eventually(status, lambda s: s == "done") == "done"


async def test_a_last_event_id_no_node_gave_is_a_400(redis_url: str) -> None:
    async with node(redis_url, "a") as a, httpx.AsyncClient() as http:
        response = await http.get(f"{a.base}/api/events", headers={"Last-Event-ID": "yesterday"})
        assert response.status_code == 400
        assert "yesterday" in response.text


class _Batches:
    """A fleet that keeps the batches it is given."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    async def publish_many(self, events: list[dict[str, Any]]) -> list[str]:
        self.batches.append(events)
        await asyncio.sleep(0.01)  # a round trip
        return [f"{len(self.batches)}-{i}" for i in range(len(events))]


async def test_a_burst_of_events_goes_on_the_fleets_stream_in_a_few_round_trips() -> None:
    member = _Silent()
    member.fleet = _Batches()
    publisher = FleetPublisher(member)  # type: ignore[arg-type]
    async with Server(ServerConfig(port=0)) as server:
        publisher.follow_server(server)
        await asyncio.sleep(0)  # the pump subscribes
        for n in range(200):
            server._emit(ClientSleeping(f"dev-{n}"))
        await until(lambda: sum(len(b) for b in member.fleet.batches) == 200)
        await publisher.close()
    published = [e for batch in member.fleet.batches for e in batch]
    assert [e["endpoint"] for e in published] == [f"dev-{n}" for n in range(200)]  # in order
    assert {e["node"] for e in published} == {"b"} and published[0]["event"] == "SLEEPING"
    assert len(member.fleet.batches) < 20  # not a round trip each
