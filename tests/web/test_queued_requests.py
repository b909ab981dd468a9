"""Requests for sleeping queue-mode clients over the REST API: 202 with a request ID at once,
the request sent when the client wakes up, the outcome as a REQUEST_DONE event and at
/api/requests/{id} (LwM2M-TS-Core 1.2 §6.5)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from tests.helpers.devices import TEMPERATURE
from tests.helpers.server import next_event, register_queued
from tests.helpers.web import Gadget, client_for, served, sse_events

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import TableFull
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientSleeping
from lwm2m.server.role import Server
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.web import requests as requests_module
from lwm2m.web.app import create_app
from lwm2m.web.requests import RequestTable


async def asleep(server: Server, device: CoapUdpEndpoint, ep: str) -> Message:
    """Register ``ep`` in queue mode and wait until the server takes it for asleep."""
    events = server.events()
    created = await device.request(register_queued(ep), ("127.0.0.1", server.port))
    await next_event(events, ClientSleeping)
    events.close()
    return created


async def wake(server: Server, device: CoapUdpEndpoint, created: Message) -> None:
    """The client's Update: it is awake again (LwM2M-TS-Transport 1.2 §6.5)."""
    update = Message.build(Type.CON, Code.POST, uri_path="/".join(created.location_path))
    assert (await device.request(update, ("127.0.0.1", server.port))).code == Code.CHANGED


async def outcome(api: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    for _ in range(200):
        answer = (await api.get(f"/api/requests/{request_id}")).json()
        if answer["status"] != "queued":
            return answer
        await asyncio.sleep(0.02)
    raise AssertionError(f"request {request_id} is still queued")


async def test_a_read_of_a_sleeping_client_is_queued_and_reported() -> None:
    gadget = Gadget()
    async with (
        Server(ServerConfig(port=0, awake_time=0.2)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
        served(create_app(server)) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as api,
        api.stream("GET", "/api/events", params={"ep": "sleepy"}) as stream,
    ):
        events = sse_events(stream)
        assert await asyncio.wait_for(anext(events), 5) == (":", None)
        created = await asleep(server, device, "sleepy")

        queued = await api.get("/api/clients/sleepy/3/0/9")
        assert queued.status_code == 202
        body = queued.json()
        assert body["status"] == "queued" and body["endpoint"] == "sleepy"
        request_id = body["requestId"]
        assert queued.headers["location"] == f"/api/requests/{request_id}"
        pending = (await api.get(f"/api/requests/{request_id}")).json()
        assert pending["status"] == "queued" and "result" not in pending
        await asyncio.sleep(0.1)
        assert gadget.requests == []  # nothing reaches a sleeping client

        await wake(server, device, created)
        expected = {"code": "2.05", "contentFormat": 112, "records": [{"path": "/3/0/9", "value": 85}]}
        while True:
            name, data = await asyncio.wait_for(anext(events), 5)
            if name == "REQUEST_DONE":
                break
        assert data is not None
        assert (data["requestId"], data["endpoint"], data["status"]) == (request_id, "sleepy", "done")
        assert data["result"] == expected
        assert gadget.requests[-1].code == Code.GET and gadget.requests[-1].uri_path == ("3", "0", "9")
        done = (await api.get(f"/api/requests/{request_id}")).json()
        assert done["status"] == "done" and done["result"] == expected
        assert done["finishedAt"] >= done["createdAt"]
        await events.aclose()


async def test_a_queued_request_that_expires_fails_with_504() -> None:
    async with (
        Server(ServerConfig(port=0, awake_time=0.1, queue_timeout=0.3)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=Gadget()) as device,
        client_for(server) as api,
    ):
        await asleep(server, device, "sleepy-2")
        queued = await api.put("/api/clients/sleepy-2/3/0/14", json={"value": "+02:00"})
        assert queued.status_code == 202
        failed = await outcome(api, queued.json()["requestId"])
        assert failed["status"] == "failed"
        assert failed["result"]["httpStatus"] == 504 and "did not wake up" in failed["result"]["error"]
        assert (await api.get("/api/requests/no-such-id")).status_code == 404


async def test_a_request_queued_for_a_client_that_expires_fails_at_once() -> None:
    async with (
        Server(ServerConfig(port=0, awake_time=0.1, queue_timeout=30, expiry_interval=0.05)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=Gadget()) as device,
        client_for(server) as api,
    ):
        events = server.events()
        query = ["ep=fading", "lt=1", "lwm2m=1.1", "b=U", "Q"]
        short = Message.build(Type.CON, Code.POST, uri_path="/rd", uri_query=query, payload=b"</3/0>")
        await device.request(short, ("127.0.0.1", server.port))
        await next_event(events, ClientSleeping)
        queued = await api.get("/api/clients/fading/3/0/9")
        assert queued.status_code == 202
        # The expiry lets the request go (long before the 30 s queue timeout), to find no client.
        failed = await outcome(api, queued.json()["requestId"])
        assert failed["status"] == "failed" and failed["result"]["httpStatus"] == 404
        assert "fading" in failed["result"]["error"]


async def test_wait_true_holds_the_call_until_the_client_wakes() -> None:
    async with (
        Server(ServerConfig(port=0, awake_time=0.1, queue_timeout=5)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=Gadget()) as device,
        client_for(server) as api,
    ):
        created = await asleep(server, device, "sleepy-3")
        call = asyncio.create_task(api.get("/api/clients/sleepy-3/3/0/9", params={"wait": "true"}))
        await asyncio.sleep(0.1)
        assert not call.done()
        await wake(server, device, created)
        answer = await asyncio.wait_for(call, 5)
        assert answer.status_code == 200 and answer.json()["records"] == [{"path": "/3/0/9", "value": 85}]


async def test_a_bad_request_for_a_sleeping_client_is_refused_at_once() -> None:
    async with (
        Server(ServerConfig(port=0, awake_time=0.1)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=Gadget()) as device,
        client_for(server) as api,
    ):
        await asleep(server, device, "sleepy-4")
        cases = [
            api.get("/api/clients/sleepy-4/3/0/9", params={"format": "klingon"}),
            api.put("/api/clients/sleepy-4/3/0/9/attributes", params={"pmin": "soon"}),
            api.post("/api/clients/sleepy-4/composite/read", json={"paths": ["/3/x"]}),
            api.get("/api/clients/sleepy-4/3/0/9", params={"wait": "perhaps"}),
        ]
        for request in cases:
            assert (await request).status_code == 400


async def test_a_queued_observe_is_kept_and_cancelled_like_any() -> None:
    gadget = Gadget()
    async with (
        Server(ServerConfig(port=0, awake_time=0.2)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
        client_for(server) as api,
    ):
        created = await asleep(server, device, "sleepy-5")
        queued = await api.post("/api/clients/sleepy-5/3303/0/5700/observe")
        assert queued.status_code == 202
        await wake(server, device, created)
        done = await outcome(api, queued.json()["requestId"])
        assert done["status"] == "done"
        assert done["result"]["records"] == [{"path": str(TEMPERATURE), "value": 20.0}]
        assert done["result"]["token"] == server.observations()[0].token.hex()
        cancelled = await api.delete("/api/clients/sleepy-5/3303/0/5700/observe")
        assert cancelled.status_code == 200 and server.observations() == []


async def test_the_table_is_bounded_in_size_and_age() -> None:
    now = [1000.0]
    table = RequestTable(capacity=2, keep=60.0, clock=lambda: now[0])
    release = asyncio.Event()

    async def slow() -> dict[str, Any]:
        await release.wait()
        return {"code": "2.05"}

    async def fast() -> dict[str, Any]:
        return {"code": "2.04"}

    first = table.submit("a", slow)
    second = table.submit("b", slow)
    with pytest.raises(TableFull):
        table.submit("c", fast)  # both entries still wait for their clients
    release.set()
    await asyncio.sleep(0.01)
    assert table.get(first.request_id).status == "done"  # type: ignore[union-attr]
    third = table.submit("c", fast)  # room made by dropping the oldest finished entry
    assert table.get(first.request_id) is None and table.get(second.request_id) is not None
    await asyncio.sleep(0.01)
    now[0] += 61.0
    assert table.get(third.request_id) is None and len(table) == 0  # outcomes expire
    await table.close()


async def test_a_subscriber_that_never_reads_holds_a_bounded_number_of_outcomes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(requests_module, "MAX_UNREAD_OUTCOMES", 5)
    table = RequestTable(capacity=100)
    stalled = table.subscribe()

    async def fast() -> dict[str, Any]:
        return {"code": "2.04"}

    for i in range(20):
        table.submit(f"ep-{i}", fast)
    await asyncio.sleep(0.01)
    assert stalled.qsize() == 5  # the first five; the others were not kept for it
    assert [stalled.get_nowait().endpoint for _ in range(5)] == [f"ep-{i}" for i in range(5)]
    table.unsubscribe(stalled)
    await table.close()
