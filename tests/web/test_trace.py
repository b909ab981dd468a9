"""``/api/clients/{ep}/trace``: switched on through the API, our client's CoAP messages over UDP
and over DTLS (the plaintext inside the session) are kept and streamed as SSE; off again by
DELETE; bad ttl 400, too many traced 409. Every answer is checked against the OpenAPI document."""

from __future__ import annotations

import asyncio

import httpx
from tests.helpers.client import temperature
from tests.helpers.server import register
from tests.helpers.web import client_for, served, sse_events

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.server.trace import TraceConfig
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import PskCredentials
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web.app import create_app

KEY = bytes(range(16))


async def _read_twice(server: Server, api: httpx.AsyncClient, ep: str) -> list[dict]:
    on = await api.put(f"/api/clients/{ep}/trace", params={"ttl": "60"})
    assert on.status_code == 200 and on.json()["on"] and on.json()["kept"] == 0
    for _ in range(2):
        assert (await server.read(ep, "/3303/0/5700", timeout=5)).success
    got = (await api.get(f"/api/clients/{ep}/trace")).json()
    assert got["on"] and got["kept"] == len(got["entries"])
    return list(got["entries"])


def _check_reads(entries: list[dict]) -> None:
    """Two Reads out and their piggybacked answers in, decoded."""
    out = [e for e in entries if e["direction"] == "out"]
    into = [e for e in entries if e["direction"] == "in"]
    assert [e["code"] for e in out] == ["GET", "GET"]
    assert all(e["type"] == "CON" and "Uri-Path: 3303" in e["options"] for e in out)
    assert [e["code"] for e in into] == ["2.05 Content", "2.05 Content"]
    for request, answer in zip(out, into, strict=True):
        assert (answer["mid"], answer["token"]) == (request["mid"], request["token"])
        assert (
            answer["type"] == "ACK" and answer["payloadSize"] > 0 and answer["size"] > answer["payloadSize"]
        )


async def test_a_trace_over_udp_keeps_the_messages_and_goes_off() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        Client("lamp", server.uri, [temperature()]) as client,
        client_for(server) as api,
    ):
        await client.wait_registered(5)
        assert (await api.get("/api/clients/lamp/trace")).json() == {
            "endpoint": "lamp",
            "on": False,
            "until": None,
            "kept": 0,
            "entries": [],
        }
        assert (await server.read("lamp", "/3303/0/5700", timeout=5)).success  # before: not kept
        entries = await _read_twice(server, api, "lamp")
        _check_reads(entries)
        gone = await api.delete("/api/clients/lamp/trace")
        assert gone.status_code == 200 and gone.json() == {"removed": "lamp"}
        assert (await server.read("lamp", "/3303/0/5700", timeout=5)).success
        assert (await api.get("/api/clients/lamp/trace")).json()["entries"] == []
        assert (await api.delete("/api/clients/lamp/trace")).status_code == 404


async def test_a_trace_over_dtls_sees_the_plaintext() -> None:
    async with Server(ServerConfig(port=0, coaps_port=0)) as server, client_for(server) as api:
        await server.security.put(SecurityInfo("safe", "safe-id", KEY))
        assert server.coaps_uri is not None
        config = ClientConfig(psk=PskCredentials("safe-id", KEY))
        async with Client("safe", server.coaps_uri, [temperature()], config=config) as client:
            await client.wait_registered(5)
            _check_reads(await _read_twice(server, api, "safe"))


async def test_bad_ttl_and_too_many_traces() -> None:
    config = ServerConfig(port=0, trace=TraceConfig(max_endpoints=1))
    async with (
        Server(config) as server,
        open_udp_endpoint("127.0.0.1", 0) as device,
        client_for(server) as api,
    ):
        for ep in ("a", "b"):
            assert (await device.request(register(ep), ("127.0.0.1", server.port))).code == Code.CREATED
        assert (await api.put("/api/clients/nobody/trace")).status_code == 404
        for ttl in ("0", "-1", "nan", "86401", "x"):
            answer = await api.put("/api/clients/a/trace", params={"ttl": ttl})
            assert answer.status_code == 400 and "ttl" in answer.json()["error"]
        assert (await api.put("/api/clients/a/trace")).status_code == 200
        full = await api.put("/api/clients/b/trace")
        assert full.status_code == 409 and "traced already" in full.json()["error"]
        assert (await api.get("/api/clients/b/trace/events")).status_code == 404


async def test_the_trace_streams_as_server_sent_events() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        Client("lamp", server.uri, [temperature()]) as client,
        served(create_app(server)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        await client.wait_registered(5)
        assert (await http.put("/api/clients/lamp/trace")).status_code == 200
        async with http.stream("GET", "/api/clients/lamp/trace/events") as stream:
            events = sse_events(stream)
            assert await anext(events) == (":", None)  # subscribed
            assert (await server.read("lamp", "/3303/0/5700", timeout=5)).success
            got = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
            assert [name for name, _ in got] == ["TRACE", "TRACE"]
            assert [data["direction"] for _, data in got] == ["out", "in"]  # type: ignore[index]
            await http.delete("/api/clients/lamp/trace")
            end = await asyncio.wait_for(anext(events), 5)
            assert end == ("TRACE_END", {"endpoint": "lamp", "reason": "stopped"})
