"""``/api/bootstrap``: configurations in and out, 400 for bad ones with the reason, recent sessions,
BOOTSTRAP_* events on the SSE stream, provisioning of the LwM2M server's security store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from tests.helpers.web import served, sse_events

from lwm2m.bootstrap import BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app
from lwm2m.web.bootstrap_api import create_bootstrap_app

KEY = "00112233445566778899aabbccddeeff"


def psk_config(uri: str = "coaps://lwm2m.example:5684") -> dict[str, Any]:
    return {
        "servers": [
            {
                "uri": uri,
                "shortServerId": 101,
                "lifetime": 300,
                "binding": "U",
                "security": {"mode": "psk", "identity": "dev-1-id", "key": KEY},
            }
        ],
        "deletePaths": ["/0", "/1"],
    }


def api_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_put_get_list_delete_and_keys_never_come_back() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, api_for(create_bootstrap_app(bs)) as api:
        created = await api.put("/api/bootstrap/dev-1", json=psk_config())
        assert created.status_code == 201
        assert created.json()["config"]["servers"][0]["security"] == {"mode": "psk", "identity": "dev-1-id"}
        assert created.json()["provisioned"] is False  # no LwM2M server beside it
        assert (await api.put("/api/bootstrap/dev-1", json=psk_config())).status_code == 200
        default = {"servers": [{"uri": "coap://plain.example", "shortServerId": 1}]}
        assert (await api.put("/api/bootstrap/*", json=default)).status_code == 201

        one = (await api.get("/api/bootstrap/dev-1")).json()
        assert one["endpoint"] == "dev-1" and one["default"] is False and one["sessions"] == []
        assert one["config"]["deletePaths"] == ["/0", "/1"]
        assert KEY not in (await api.get("/api/bootstrap/dev-1")).text
        listing = (await api.get("/api/bootstrap")).json()
        assert listing["server"]["uri"] == bs.uri
        assert [(c["endpoint"], c["default"]) for c in listing["configs"]] == [("*", True), ("dev-1", False)]
        assert KEY not in (await api.get("/api/bootstrap")).text

        assert (await api.delete("/api/bootstrap/dev-1")).json() == {"removed": "dev-1"}
        assert (await api.delete("/api/bootstrap/dev-1")).status_code == 404
        assert (await api.get("/api/bootstrap/dev-1")).status_code == 404
        assert await bs.configs.get("dev-1") is None


async def test_bad_configurations_are_400_with_the_reason() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, api_for(create_bootstrap_app(bs)) as api:
        cases = [
            ({"servers": []}, "without a server account"),
            ({"deletePaths": ["/0"]}, "without a server account"),
            ({"servers": [{"uri": "coaps://h", "shortServerId": 1}]}, "give security mode psk"),
            ({"servers": [{"uri": "coap://h", "shortServerId": 70000}]}, "shortServerId"),
            ({"servers": [{"uri": "coap://h", "shortServerId": 1, "lifetme": 5}]}, "unknown field 'lifetme'"),
            ([1, 2], "expected an object"),
        ]
        for body, words in cases:
            answer = await api.put("/api/bootstrap/bad", json=body)
            assert answer.status_code == 400, body
            assert words in answer.json()["error"], answer.json()
        not_json = await api.put(
            "/api/bootstrap/bad", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
        assert await bs.configs.all() == {}


async def test_sessions_with_status_and_time_and_the_events_on_the_stream() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        served(create_app(server, bootstrap=bs)) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as api,
    ):
        config = {"servers": [{"uri": server.uri, "shortServerId": 5, "lifetime": 60}]}
        assert (await api.put("/api/bootstrap/web-dev", json=config)).status_code == 201
        async with api.stream("GET", "/api/events", params={"ep": "web-dev"}) as stream:
            events = sse_events(stream)
            assert await asyncio.wait_for(anext(events), 5) == (":", None)
            async with Client("web-dev", bootstrap=bs.uri):
                seen: list[tuple[str, Any]] = []
                while not any(name == "REGISTRATION" for name, _ in seen):
                    seen.append(await asyncio.wait_for(anext(events), 5))
                names = [name for name, _ in seen]
                assert names == ["BOOTSTRAP_STARTED", "BOOTSTRAP_FINISHED", "REGISTRATION"]
                finished = seen[1][1]
                assert finished["endpoint"] == "web-dev" and finished["session"]["status"] == "finished"
            await events.aclose()
        listing = (await api.get("/api/bootstrap")).json()
        (session,) = listing["sessions"]
        assert session["endpoint"] == "web-dev" and session["status"] == "finished"
        assert session["startedAt"] <= session["endedAt"]
        assert session["steps"][-1] == "Bootstrap-Finish -> 2.04 Changed"
        assert (await api.get("/api/bootstrap/web-dev")).json()["sessions"][0]["id"] == session["id"]
        assert (await api.get("/api/bootstrap", params={"ep": "other"})).json()["sessions"] == []


async def test_failed_session_is_listed_with_its_reason_and_told_as_an_event() -> None:
    async with (
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        served(create_bootstrap_app(bs)) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as api,
        api.stream("GET", "/api/events") as stream,
    ):
        events = sse_events(stream)
        assert await asyncio.wait_for(anext(events), 5) == (":", None)
        async with Client("unknown-dev", bootstrap=bs.uri, config=ClientConfig(retry_initial=10)):
            name, data = await asyncio.wait_for(anext(events), 5)
        assert name == "BOOTSTRAP_FAILED" and "no bootstrap configuration" in data["reason"]
        await events.aclose()
        (session,) = (await api.get("/api/bootstrap")).json()["sessions"]
        assert session["status"] == "failed" and "unknown-dev" in session["reason"]


async def test_with_an_lwm2m_server_the_credentials_are_provisioned() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        api_for(create_app(server, bootstrap=bs)) as api,
    ):
        created = await api.put("/api/bootstrap/dev-1", json=psk_config())
        assert created.status_code == 201 and created.json()["provisioned"] is True
        info = await server.security.get("dev-1")
        assert info is not None and info.psk_identity == "dev-1-id" and info.psk_key == bytes.fromhex(KEY)
        skipped = await api.put("/api/bootstrap/dev-2", params={"provision": "false"}, json=psk_config())
        assert skipped.json()["provisioned"] is False and await server.security.get("dev-2") is None
        # The identity is taken by dev-1: the configuration is kept, the conflict said.
        clash = await api.put("/api/bootstrap/dev-3", json=psk_config())
        assert clash.status_code == 409 and "security store" in clash.json()["error"]
        plain = {"servers": [{"uri": server.uri, "shortServerId": 1}]}
        assert (await api.put("/api/bootstrap/dev-4", json=plain)).json()["provisioned"] is False
        # A provision that is neither true nor false is refused before anything is stored.
        unclear = await api.put("/api/bootstrap/dev-5", params={"provision": "null"}, json=psk_config())
        assert unclear.status_code == 400 and "provision: 'null'" in unclear.json()["error"]
        assert (await api.get("/api/bootstrap/dev-5")).status_code == 404
