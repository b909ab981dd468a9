"""Requests queued for a sleeping device move with the device (LwM2M-TS-Core 1.2 §6.5; DESIGN.md,
"Where its users outgrow one machine"): they are kept in the store, and a node the device wakes
at takes and runs them once, even when the node that queued them was killed; their outcome is
at ``GET /api/requests/{id}`` on any node and a ``REQUEST_DONE`` event on the fleet's stream.
A single node on SQLite takes its queued requests up again after a restart.

Node A of the first test is a real ``lwm2m server`` process (killed with SIGKILL); the other
nodes are ``Server`` objects in this process, each with its API on a real uvicorn (the app's
lifespan starts its request table); the device is our CoAP endpoint on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.helpers.cluster_nodes import NodeProcess
from tests.helpers.polling import eventually
from tests.helpers.server import next_event, register_queued
from tests.helpers.web import Gadget, served

from lwm2m.cluster.node import ClusterConfig
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import BusTimeout
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientSleeping
from lwm2m.server.membership import ClusterMember, MembershipConfig
from lwm2m.server.role import Server
from lwm2m.storage import open_store
from lwm2m.storage.base import Store
from lwm2m.storage.redisconn import connect
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.web.app import create_app
from lwm2m.web.cluster import ForwardToOwner

EP = "sleepy"
AWAKE = 0.3  # seconds a queue-mode device is taken to be awake after it sent something


@dataclass
class Node:
    server: Server
    store: Store
    base: str  # its API


@contextlib.asynccontextmanager
async def node(redis_url: str, node_id: str) -> AsyncIterator[Node]:
    """A cluster node in this process, its heartbeat lapsing one second after it stops."""
    store = open_store(redis_url)
    config = MembershipConfig(cluster=ClusterConfig(node_id=node_id, heartbeat_interval=0.2, node_ttl=1.0))
    member = ClusterMember(connect(redis_url), config)
    try:
        config_node = ServerConfig(port=0, shared_store=True, awake_time=AWAKE)
        async with (
            Server(config_node, store) as server,
            served(create_app(server, cluster=member)) as base,
        ):
            yield Node(server, store, base)
    finally:
        store.close()


async def register_asleep(device: CoapUdpEndpoint, coap: tuple[str, int], server: Server | None) -> Message:
    """Register ``EP`` in queue mode at ``coap``; answer the Created once it is asleep there."""
    events = server.events() if server is not None else None
    created = await device.request(register_queued(EP), coap)
    assert created.code == Code.CREATED
    if events is not None:
        await next_event(events, ClientSleeping)
        events.close()
    else:
        await asyncio.sleep(AWAKE + 0.7)  # a node in another process: its awake time runs out
    return created


def update(created: Message) -> Message:
    """The device's Update: it is awake (LwM2M-TS-Transport 1.2 §6.5)."""
    return Message.build(Type.CON, Code.POST, uri_path="/".join(created.location_path))


async def queue(http: httpx.AsyncClient, base: str, method: str, path: str, **kw: Any) -> str:
    answer = await http.request(method, f"{base}/api/clients/{EP}/{path}", **kw)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["requestId"])


async def outcome(http: httpx.AsyncClient, base: str, request_id: str) -> dict[str, Any]:
    async def look() -> dict[str, Any]:
        answer = await http.get(f"{base}/api/requests/{request_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    return await eventually(look, lambda a: a["status"] != "queued", timeout=15)


def reads(gadget: Gadget, *path: str) -> int:
    """How many requests for ``path`` reached the device."""
    return sum(1 for m in gadget.requests if m.uri_path == path)


async def request_done(base: str, request_id: str, found: asyncio.Future[dict[str, Any]]) -> None:
    """Resolve ``found`` with the REQUEST_DONE of ``request_id`` on ``base``'s (fleet) stream."""
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream("GET", f"{base}/api/events") as response,
    ):
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == "REQUEST_DONE":
                data = json.loads(line.removeprefix("data: "))
                if data["requestId"] == request_id:
                    found.set_result(data)
                    return


async def test_a_request_queued_at_a_killed_node_runs_where_the_device_wakes(
    redis_url: str, tmp_path: Path
) -> None:
    a = NodeProcess(tmp_path, redis_url, "a", ("--awake-time", str(AWAKE), "--log-level", "warning"))
    a.start()
    try:
        await asyncio.to_thread(a.wait_ready)
        gadget = Gadget()
        async with (
            node(redis_url, "b") as b,
            node(redis_url, "c") as c,
            open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
            httpx.AsyncClient(timeout=10) as http,
        ):
            created = await register_asleep(device, a.coap, None)
            request_id = await queue(http, a.base, "GET", "3/0/9")
            assert request_id.startswith("a~")
            assert reads(gadget, "3", "0", "9") == 0
            stored = await b.store.queued_requests.get(request_id)
            assert stored is not None and stored.state == "queued"
            assert stored.path == f"/api/clients/{EP}/3/0/9"

            loop = asyncio.get_running_loop()
            done_event: asyncio.Future[dict[str, Any]] = loop.create_future()
            watcher = asyncio.create_task(request_done(c.base, request_id, done_event))
            await asyncio.sleep(0.3)  # C's stream is subscribed

            a.kill()  # kill -9: nothing of A's shutdown runs
            assert (await device.request(update(created), ("127.0.0.1", b.server.port))).code == Code.CHANGED

            expected = {"code": "2.05", "contentFormat": 112, "records": [{"path": "/3/0/9", "value": 85}]}
            on_b = await outcome(http, b.base, request_id)
            assert on_b["status"] == "done" and on_b["result"] == expected
            on_c = await outcome(http, c.base, request_id)  # a node that neither queued nor ran it
            assert on_c == on_b
            event = await asyncio.wait_for(done_event, 10)
            assert (event["status"], event["endpoint"], event["node"]) == ("done", EP, "b")
            assert event["result"] == expected
            watcher.cancel()
            assert reads(gadget, "3", "0", "9") == 1  # run once, by B
            ran = await b.store.queued_requests.get(request_id)
            assert ran is not None and ran.runner == "b"
    finally:
        a.kill()


async def test_two_nodes_the_device_wakes_at_together_run_each_request_once(redis_url: str) -> None:
    gadget = Gadget()
    async with (
        node(redis_url, "b") as b,
        node(redis_url, "c") as c,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
        httpx.AsyncClient(timeout=10) as http,
    ):
        async with node(redis_url, "a") as a:
            created = await register_asleep(device, ("127.0.0.1", a.server.port), a.server)
            ids = [
                await queue(http, a.base, "GET", "3/0/0"),
                await queue(http, a.base, "GET", "3/0/9"),
                await queue(http, a.base, "PUT", "3/0/14", json={"value": "+02:00"}),
                await queue(http, a.base, "PUT", "3/0/15", json={"value": "Europe/Paris"}),
            ]
        # A is gone (its requests stay in the store); the device's Update reaches B and C at once.
        answers = await asyncio.gather(
            device.request(update(created), ("127.0.0.1", b.server.port)),
            device.request(update(created), ("127.0.0.1", c.server.port)),
        )
        assert [m.code for m in answers] == [Code.CHANGED, Code.CHANGED]
        outcomes = [await outcome(http, b.base, i) for i in ids]
        assert [o["status"] for o in outcomes] == ["done"] * 4, outcomes
        assert [o["result"]["code"] for o in outcomes] == ["2.05", "2.05", "2.04", "2.04"]
        for path in (("3", "0", "0"), ("3", "0", "9"), ("3", "0", "14"), ("3", "0", "15")):
            assert reads(gadget, *path) == 1, path  # each request ran once
        runners = {(await b.store.queued_requests.get(i)).runner for i in ids}  # type: ignore[union-attr]
        assert runners <= {"b", "c"}


async def test_a_request_whose_holder_lives_runs_there_when_the_device_wakes_there(redis_url: str) -> None:
    gadget = Gadget()
    async with (
        node(redis_url, "a") as a,
        node(redis_url, "b") as b,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
        httpx.AsyncClient(timeout=10) as http,
    ):
        created = await register_asleep(device, ("127.0.0.1", a.server.port), a.server)
        request_id = await queue(http, b.base, "GET", "3/0/9")  # through B, to A, the owner
        assert request_id.startswith("a~")
        assert (await device.request(update(created), ("127.0.0.1", a.server.port))).code == Code.CHANGED
        done = await outcome(http, b.base, request_id)
        assert done["status"] == "done" and done["result"]["records"] == [{"path": "/3/0/9", "value": 85}]
        ran = await a.store.queued_requests.get(request_id)
        assert ran is not None and (ran.state, ran.runner) == ("done", "a")
        assert reads(gadget, "3", "0", "9") == 1


async def test_a_single_node_on_sqlite_runs_its_queued_requests_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "lwm2m.db"
    gadget = Gadget()
    config = ServerConfig(port=0, awake_time=AWAKE)
    async with (
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
        httpx.AsyncClient(timeout=10) as http,
    ):
        with SqliteStore(path) as store:
            async with Server(config, store) as server, served(create_app(server)) as base:
                created = await register_asleep(device, ("127.0.0.1", server.port), server)
                first = await queue(http, base, "GET", "3/0/9")
                second = await queue(http, base, "PUT", "3/0/14", json={"value": "+02:00"})
        assert gadget.requests == []

        with SqliteStore(path) as store:
            async with Server(config, store) as server, served(create_app(server)) as base:
                pending = (await http.get(f"{base}/api/requests/{first}")).json()
                assert pending["status"] == "queued" and pending["endpoint"] == EP
                woke = await device.request(update(created), ("127.0.0.1", server.port))
                assert woke.code == Code.CHANGED
                done = await outcome(http, base, first)
                assert done["result"]["records"] == [{"path": "/3/0/9", "value": 85}]
                assert (await outcome(http, base, second))["result"]["code"] == "2.04"
        assert [m.uri_path for m in gadget.requests] == [("3", "0", "9"), ("3", "0", "14")]  # in order


async def test_a_single_node_stores_only_what_waits_and_the_outcome_of_an_expired_wait() -> None:
    gadget = Gadget()
    config = ServerConfig(port=0, awake_time=AWAKE, queue_timeout=0.5)
    async with (
        Server(config) as server,
        served(create_app(server)) as base,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
        httpx.AsyncClient(timeout=10) as http,
    ):
        stored = server.store.queued_requests
        events = server.events()
        assert (await device.request(register_queued(EP), ("127.0.0.1", server.port))).code == Code.CREATED
        awake = await http.get(f"{base}/api/clients/{EP}/3/0/9")
        assert awake.status_code == 200  # run at once: nothing stored
        assert await stored.waiting() == 0
        await next_event(events, ClientSleeping)
        events.close()
        request_id = await queue(http, base, "GET", "3/0/9")
        assert await stored.waiting() == 1
        failed = await outcome(http, base, request_id)
        assert failed["status"] == "failed" and failed["result"]["httpStatus"] == 504
        kept = await stored.get(request_id)
        assert kept is not None and (kept.state, kept.result) == ("failed", failed["result"])
        assert await stored.waiting() == 0  # taken when its wait ran out: nobody runs it later


async def test_a_request_left_running_by_a_stop_fails_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "lwm2m.db"
    hold = asyncio.Event()

    def silent(event: Any) -> None:
        hold.set()  # the request reached the device, which never answers

    config = ServerConfig(port=0, awake_time=AWAKE)
    async with (
        open_udp_endpoint("127.0.0.1", 0, handler=silent) as device,
        httpx.AsyncClient(timeout=10) as http,
    ):
        with SqliteStore(path) as store:
            async with Server(config, store) as server, served(create_app(server)) as base:
                created = await register_asleep(device, ("127.0.0.1", server.port), server)
                request_id = await queue(http, base, "GET", "3/0/9")
                woke = await device.request(update(created), ("127.0.0.1", server.port))
                assert woke.code == Code.CHANGED
                await asyncio.wait_for(hold.wait(), 5)  # running when the server stops
        with SqliteStore(path) as store:
            async with Server(config, store) as server, served(create_app(server)) as base:
                failed = (await http.get(f"{base}/api/requests/{request_id}")).json()
                assert failed["status"] == "failed" and failed["result"]["httpStatus"] == 503
                assert "may have reached the device" in failed["result"]["error"]


class SingleNode(NodeProcess):
    """``lwm2m server`` on a SQLite file, no cluster: ``redis_url`` is the store's URL."""

    def start(self) -> SingleNode:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "lwm2m", "server", "--store", self.redis_url]
        argv += ["--coap-port", "0", "--http-port", "0", *self.options]
        with self.log.open("wb") as out:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self


async def test_a_single_node_killed_runs_its_queued_requests_after_it_starts_again(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'lwm2m.db'}"
    options = ("--awake-time", str(AWAKE), "--log-level", "warning")
    first = SingleNode(tmp_path / "first", url, "first", options).start()
    try:
        await asyncio.to_thread(first.wait_ready)
        gadget = Gadget()
        async with (
            open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
            httpx.AsyncClient(timeout=10) as http,
        ):
            created = await register_asleep(device, first.coap, None)
            request_id = await queue(http, first.base, "GET", "3/0/9")
            first.kill()  # kill -9
            again = SingleNode(tmp_path / "again", url, "again", options).start()
            try:
                await asyncio.to_thread(again.wait_ready)
                assert (await device.request(update(created), again.coap)).code == Code.CHANGED
                done = await outcome(http, again.base, request_id)  # the same ID
                assert done["result"]["records"] == [{"path": "/3/0/9", "value": 85}]
                assert reads(gadget, "3", "0", "9") == 1
            finally:
                again.stop()
    finally:
        first.kill()


class _GoneHolder:
    """A cluster where node "a", which queued the requests, beats (``beating``) or not, and never
    answers on the bus."""

    node_id = "b"
    fleet: Any = None

    def __init__(self, beating: bool) -> None:
        self.beating = beating
        self.asked: list[str] = []

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None:
        return None

    async def alive(self, node: str) -> bool:
        return self.beating and node == "a"

    async def ask(self, node: str, payload: Any, timeout: float) -> Any:
        self.asked.append(node)
        raise BusTimeout(f"no answer from {node}")


async def test_a_queued_requests_holder_that_is_gone_or_silent_is_answered_from_here() -> None:
    async def here(scope: Any, receive: Any, send: Any) -> None:
        body = b'{"status": "done"}'
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    for beating in (False, True):
        cluster = _GoneHolder(beating)
        app = ForwardToOwner(here, cluster)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            answer = await http.get("/api/requests/a~0123abcd")
        assert answer.status_code == 200 and answer.json() == {"status": "done"}
        assert cluster.asked == (["a"] if beating else [])  # asked only while it beats
