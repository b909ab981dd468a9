"""The event stream's backlog: ``GET /api/events?backlog=N`` first sends the last N events the
app kept (:class:`lwm2m.web.sse.RecentEvents`), then live ones, none twice."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.helpers.server import register
from tests.helpers.web import served, sse_events

from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web.app import create_app
from lwm2m.web.sse import RecentEvents


def test_the_ring_keeps_the_newest_and_filters_by_endpoint() -> None:
    recent = RecentEvents(3)
    view = lambda e: ("TICK", {"endpoint": e[0], "n": e[1]})  # noqa: E731
    for n in range(5):
        recent.add((f"ep-{n % 2}", n), view, lambda e: e[0])
    assert len(recent) == 3
    chunks = recent.backlog(10)
    assert [c.split(b'"n": ')[1][:1] for c in chunks] == [b"2", b"3", b"4"]  # oldest first
    assert all(b'"receivedAt": ' in c for c in chunks)
    assert len(recent.backlog(1)) == 1 and b'"n": 4' in recent.backlog(1)[0]
    only = recent.backlog(10, "ep-1")
    assert len(only) == 1 and b'"n": 3' in only[0]
    with pytest.raises(ValueError):
        RecentEvents(-1)


async def test_backlog_first_then_live_events_and_bad_values_refused() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        served(create_app(server)) as base,
        open_udp_endpoint("127.0.0.1", 0) as device,
        httpx.AsyncClient(base_url=base, timeout=5) as api,
    ):
        for name in ("early-1", "early-2", "early-3"):
            answer = await device.request(register(name), ("127.0.0.1", server.port))
            assert answer.code == Code.CREATED
        await asyncio.sleep(0.1)  # the ring's pump runs
        async with api.stream("GET", "/api/events", params={"backlog": "2"}) as stream:
            events = sse_events(stream)
            assert await asyncio.wait_for(anext(events), 5) == (":", None)  # subscribed
            earlier = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
            assert [(n, d["endpoint"]) for n, d in earlier if d] == [
                ("REGISTRATION", "early-2"),
                ("REGISTRATION", "early-3"),
            ]
            assert all(isinstance(d["receivedAt"], float) for _, d in earlier if d)
            # Then live: the next event is the new one, without receivedAt (sent as it happens).
            await device.request(register("late"), ("127.0.0.1", server.port))
            name, data = await asyncio.wait_for(anext(events), 5)
            assert name == "REGISTRATION" and data is not None and data["endpoint"] == "late"
            assert "receivedAt" not in data
            await events.aclose()
        # One endpoint's backlog, from the whole ring.
        async with api.stream("GET", "/api/events", params={"backlog": "200", "ep": "early-1"}) as stream:
            events = sse_events(stream)
            assert await asyncio.wait_for(anext(events), 5) == (":", None)
            name, data = await asyncio.wait_for(anext(events), 5)
            assert name == "REGISTRATION" and data is not None and data["endpoint"] == "early-1"
            await events.aclose()
        documented = (await api.get("/api/openapi.json")).json()["paths"]["/api/events"]["get"]
        backlog = [p for p in documented["parameters"] if p["name"] == "backlog"]
        assert backlog and backlog[0]["schema"]["maximum"] == 200
        for bad in ("201", "-1", "many"):
            refused = await api.get("/api/events", params={"backlog": bad})
            assert refused.status_code == 400 and "backlog" in refused.json()["error"]
