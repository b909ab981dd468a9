"""The REST API against a real Server on loopback and a simulated device."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from tests.helpers.devices import TEMPERATURE
from tests.helpers.server import Device, register
from tests.helpers.web import Gadget, client_for, running, served, sse_events

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web.app import create_app


async def test_clients_read_write_execute_discover_attributes() -> None:
    async with running() as (server, gadget, _), client_for(server) as api:
        listing = (await api.get("/api/clients")).json()
        assert [c["endpoint"] for c in listing["clients"]] == ["dev-1"] and listing["next"] is None
        one = (await api.get("/api/clients/dev-1")).json()
        assert one["lwm2mVersion"] == "1.1" and one["sleeping"] is False
        assert one["address"].startswith("127.0.0.1:")
        assert {"path": "/3/0"} in one["objects"]

        read = (await api.get("/api/clients/dev-1/3/0")).json()
        assert read["code"] == "2.05" and read["contentFormat"] == CF.SENML_CBOR
        assert {"path": "/3/0/9", "value": 85} in read["records"]
        tlv = (await api.get("/api/clients/dev-1/3/0/9", params={"format": "tlv"})).json()
        assert tlv == {"code": "2.05", "contentFormat": CF.TLV, "records": [{"path": "/3/0/9", "value": 85}]}
        missing = await api.get("/api/clients/dev-1/3/0/99")
        assert missing.status_code == 200 and missing.json()["code"] == "4.04"

        wrote = await api.put("/api/clients/dev-1/3/0/14", json={"value": "+02:00"})
        assert wrote.status_code == 200 and wrote.json()["code"] == "2.04"
        assert gadget.requests[-1].code == Code.PUT
        records = {"records": [{"path": "/3/0/14", "value": "+01:00"}]}
        assert (await api.put("/api/clients/dev-1/3/0", json=records)).json()["code"] == "2.04"

        executed = await api.post("/api/clients/dev-1/3/0/4", json={"args": "0='x'"})
        assert executed.json()["code"] == "2.04"
        assert gadget.requests[-1].payload == b"0='x'"

        discovered = (await api.get("/api/clients/dev-1/3/0/discover")).json()
        assert discovered["code"] == "2.05"
        assert discovered["links"][0] == "</3/0>;pmin=10"

        attrs = await api.put("/api/clients/dev-1/3/0/9/attributes", params={"pmin": "10", "gt": "50"})
        assert attrs.json()["code"] == "2.04"
        assert sorted(gadget.requests[-1].uri_query) == ["gt=50", "pmin=10"]


async def test_bad_requests_name_the_bad_value() -> None:
    async with running() as (server, _, _), client_for(server) as api:
        unknown = await api.get("/api/clients/nobody/3/0")
        assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]
        assert (await api.get("/api/clients/nobody")).status_code == 404
        cases = [
            api.get("/api/clients/dev-1/3/x"),
            api.get("/api/clients/dev-1/3/0", params={"format": "klingon"}),
            api.put("/api/clients/dev-1/3/0/9", json={"value": "lots"}),
            api.put("/api/clients/dev-1/3/0", content=b"{nope", headers={"Content-Type": "application/json"}),
            api.put("/api/clients/dev-1/3/0/9/attributes", params={"pmin": "soon"}),
            api.get("/api/clients/dev-1/3/0", params={"timeout": "later"}),
        ]
        needles = ["x", "klingon", "lots", "JSON", "soon", "later"]
        for request, needle in zip(cases, needles, strict=True):
            answer = await request
            assert answer.status_code == 400, answer.text
            assert needle in answer.json()["error"]


async def test_a_silent_device_gives_504() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=lambda event: None) as device,
        client_for(server) as api,
    ):
        await device.request(register("mute"), ("127.0.0.1", server.port))
        answer = await api.get("/api/clients/mute/3/0", params={"timeout": "1"})
        assert answer.status_code == 504 and "error" in answer.json()


async def test_observe_history_and_cancel() -> None:
    async with running() as (server, gadget, device), client_for(server) as api:
        first = (await api.post("/api/clients/dev-1/3303/0/5700/observe")).json()
        assert first["code"] == "2.05" and first["records"] == [{"path": str(TEMPERATURE), "value": 20.0}]
        relation = gadget.thermometer.relations[0]
        fmt = relation.message.accept
        events = server.events()
        gadget.thermometer.value = 21.5
        note = Message.build(
            Type.NON, Code.CONTENT, content_format=fmt, payload=gadget.thermometer.payload(fmt)
        )
        assert device.notify(relation.relation, note)
        await asyncio.wait_for(anext(events), 5)
        events.close()

        history = (await api.get("/api/clients/dev-1/history/3303", params={"limit": "5"})).json()
        (record,) = history["records"]
        assert record["path"] == str(TEMPERATURE) and record["value"] == 21.5 and "time" in record

        cancelled = await api.delete("/api/clients/dev-1/3303/0/5700/observe", params={"active": "true"})
        assert cancelled.status_code == 200 and gadget.thermometer.cancels == 1
        again = await api.delete("/api/clients/dev-1/3303/0/5700/observe")
        assert again.status_code == 404


async def test_models_and_openapi() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        models = (await api.get("/api/models")).json()
        assert {"id": 3, "name": "Device"}.items() <= next(m for m in models if m["id"] == 3).items()
        device = (await api.get("/api/models/3")).json()
        assert device["id"] == 3 and device["resources"]
        assert (await api.get("/api/models/99999")).status_code == 404
        doc = json.loads((await api.get("/api/openapi.json")).text)
        assert doc["openapi"].startswith("3.1")
        for path in (
            "/api/clients",
            "/api/clients/{ep}/{objectId}/{instanceId}/{resourceId}",
            "/api/events",
            "/api/clients/{ep}/{objectId}/{instanceId}/observe",
            "/api/clients/{ep}/composite/observe",
            "/api/requests/{id}",
        ):
            assert path in doc["paths"]
        read = doc["paths"]["/api/clients/{ep}/{objectId}/{instanceId}/{resourceId}"]["get"]
        assert "202" in read["responses"] and "wait" in [p["name"] for p in read["parameters"]]
        assert "REQUEST_DONE" in doc["paths"]["/api/events"]["get"]["summary"]
        assert set(doc["paths"]["/api/clients/{ep}/composite/observe"]) == {"post", "delete"}
        page = await api.get("/api/docs")
        assert page.headers["content-type"].startswith("text/html") and "/api/openapi.json" in page.text


async def test_a_token_is_required_when_set() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server, token="s3cret") as api:
        assert (await api.get("/api/clients")).status_code == 401
        wrong = await api.get("/api/clients", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await api.get("/api/clients", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and right.json() == {"clients": [], "next": None}


async def test_events_stream_registration_and_notification() -> None:
    gadget = Gadget()
    async with Server(ServerConfig(port=0)) as server, served(create_app(server)) as base:
        async with (
            open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
            httpx.AsyncClient(base_url=base, timeout=5) as api,
            api.stream("GET", "/api/events", params={"ep": "dev-sse"}) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream)
            assert await asyncio.wait_for(anext(events), 5) == (":", None)  # subscribed
            await device.request(register("other"), ("127.0.0.1", server.port))
            await device.request(register("dev-sse"), ("127.0.0.1", server.port))
            name, data = await asyncio.wait_for(anext(events), 5)
            assert name == "REGISTRATION" and data is not None and data["endpoint"] == "dev-sse"

            observed = await api.post("/api/clients/dev-sse/3303/0/5700/observe")
            assert observed.json()["code"] == "2.05"
            relation = gadget.thermometer.relations[0]
            fmt = relation.message.accept
            gadget.thermometer.value = 25.0
            payload = gadget.thermometer.payload(fmt)
            device.notify(
                relation.relation,
                Message.build(Type.NON, Code.CONTENT, content_format=fmt, payload=payload),
            )
            name, data = await asyncio.wait_for(anext(events), 5)
            assert name == "NOTIFICATION" and data is not None
            assert data["records"] == [{"path": str(TEMPERATURE), "value": 25.0}]
            await events.aclose()
        await asyncio.sleep(0.1)
        # The closed connection ended its subscription: only the app's ring of recent events
        # (for ?backlog=) follows the server still.
        assert len(server._subscribers) == 1


@pytest.mark.parametrize("path", ["/api/clients/dev-1/3/0/observe"])
async def test_cancelling_an_unknown_observation_is_404(path: str) -> None:
    async with running() as (server, _, _), client_for(server) as api:
        assert (await api.delete(path)).status_code == 404


async def test_a_queue_mode_client_shows_as_sleeping() -> None:
    from tests.helpers.server import register_queued

    async with (
        Server(ServerConfig(port=0, awake_time=0.2)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=Device()) as device,
        client_for(server) as api,
    ):
        await device.request(register_queued("sleepy"), ("127.0.0.1", server.port))
        awake = (await api.get("/api/clients/sleepy")).json()
        assert awake["queueMode"] is True and awake["sleeping"] is False
        await asyncio.sleep(0.4)
        assert (await api.get("/api/clients/sleepy")).json()["sleeping"] is True


async def test_every_refusal_is_json_and_405_says_what_the_path_takes() -> None:
    async with running() as (server, _, _), client_for(server) as api:
        for url in (
            "/nowhere",
            "/api/nowhere",
            "/console/missing.js",
            "/api/clients/dev-1/composite/nothing",
        ):
            answer = await api.get(url)
            assert answer.status_code == 404 and "error" in answer.json(), url
        cases = {
            ("PATCH", "/api/clients/dev-1/3"): "GET, POST",  # Read, Create
            ("PUT", "/api/clients/dev-1/3"): "GET, POST",
            ("POST", "/api/clients/dev-1/3/0"): "GET, PUT, DELETE",
            ("DELETE", "/api/clients/dev-1/3/0/9"): "GET, PUT, POST",  # Execute on a resource
            ("POST", "/api/clients/dev-1/3/0/7/0"): "GET, PUT",
            ("POST", "/api/clients/dev-1/3/0/discover"): "GET",
            ("GET", "/api/clients/dev-1/3/0/observe"): "POST, DELETE",
            ("GET", "/api/clients/dev-1/composite/read"): "POST",
            ("POST", "/api/clients/dev-1/history/3/0/9"): "GET",
            ("DELETE", "/api/clients"): "GET, HEAD",
            ("POST", "/api/openapi.json"): "GET, HEAD",
        }
        for (method, url), allow in cases.items():
            answer = await api.request(method, url)
            assert answer.status_code == 405, (method, url)
            given = answer.headers["allow"].split(", ")  # Starlette's own 405s list in any order
            assert sorted(given) == sorted(allow.split(", ")) and len(set(given)) == len(given), (method, url)
            assert answer.headers["content-type"] == "application/json" and answer.json()["error"], (
                method,
                url,
            )
        # A path segment that is not a bare ID is a 400, not the root.
        spaced = await api.get("/api/clients/dev-1/%C2%85")
        assert spaced.status_code == 400 and "IDs are decimal numbers" in spaced.json()["error"]
