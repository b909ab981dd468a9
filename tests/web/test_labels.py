"""``/api/clients/{ep}/labels`` (get, replace, bad bodies 400 with a message) and the label filter
of ``GET /api/clients`` (``?label=k=v``, repeated: AND); labels outlast a re-registration and a
restart on SQLite. Every answer is checked against the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.helpers.server import register
from tests.helpers.web import client_for

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import InvalidLabels
from lwm2m.fleet.labels import check_labels, labels_match, parse_selector
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint


async def _register(device: CoapUdpEndpoint, server: Server, ep: str) -> Message:
    answer = await device.request(register(ep), ("127.0.0.1", server.port))
    assert answer.code == Code.CREATED
    return answer


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[Server, httpx.AsyncClient, CoapUdpEndpoint]]:
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0) as device,
        client_for(server) as api,
    ):
        for ep in ("lamp-1", "lamp-2", "lamp-3", "meter-1"):
            await _register(device, server, ep)
        yield server, api, device


async def test_put_then_get_replaces_the_whole_set(
    fleet: tuple[Server, httpx.AsyncClient, CoapUdpEndpoint],
) -> None:
    _, api, _ = fleet
    assert (await api.get("/api/clients/lamp-1/labels")).json() == {}
    answer = await api.put("/api/clients/lamp-1/labels", json={"site": "north", "hw": "rev2"})
    assert answer.status_code == 200 and answer.json() == {"site": "north", "hw": "rev2"}
    assert (await api.get("/api/clients/lamp-1/labels")).json() == {"site": "north", "hw": "rev2"}
    await api.put("/api/clients/lamp-1/labels", json={"site": "south"})
    assert (await api.get("/api/clients/lamp-1/labels")).json() == {"site": "south"}
    await api.put("/api/clients/lamp-1/labels", json={})
    assert (await api.get("/api/clients/lamp-1/labels")).json() == {}
    # Under /api/clients/{ep}/, an endpoint that is not registered is unknown.
    assert (await api.put("/api/clients/later/labels", json={"site": "x"})).status_code == 404
    assert (await api.get("/api/clients/later/labels")).status_code == 404


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[1, 2]", "JSON object"),
        (b"not json", "not JSON"),
        (b'{"site": 3}', "must be a string"),
        (b'{"": "x"}', "label key ''"),
        (b'{"a b": "x"}', "label key 'a b'"),
        (b'{"-x": "x"}', "label key '-x'"),
        (b'{"site": "' + b"v" * 256 + b'"}', "at most 255"),
        (b'{"site": "a\\u0001b"}', "control"),
        (b"{" + b",".join(b'"k%d": "v"' % i for i in range(33)) + b"}", "33 labels"),
        (b'{"k": "' + b"v" * 20000 + b'"}', "at most 16384"),
    ],
)
async def test_a_bad_label_set_is_400_with_a_message(
    fleet: tuple[Server, httpx.AsyncClient, CoapUdpEndpoint], body: bytes, words: str
) -> None:
    _, api, _ = fleet
    await api.put("/api/clients/lamp-1/labels", json={"site": "north"})
    answer = await api.put(
        "/api/clients/lamp-1/labels", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert (await api.get("/api/clients/lamp-1/labels")).json() == {"site": "north"}  # unchanged


async def test_the_listing_filters_by_labels_with_and(
    fleet: tuple[Server, httpx.AsyncClient, CoapUdpEndpoint],
) -> None:
    server, api, _ = fleet
    await api.put("/api/clients/lamp-1/labels", json={"site": "north", "hw": "rev2"})
    await api.put("/api/clients/lamp-2/labels", json={"site": "north", "hw": "rev1"})
    await api.put("/api/clients/meter-1/labels", json={"site": "north", "hw": "rev2"})
    await server.store.labels.put("gone", {"site": "north"})  # labelled, not registered

    async def names(*terms: str, **query: str) -> list[str]:
        params = [("label", t) for t in terms] + list(query.items())
        answer = await api.get("/api/clients", params=params)
        assert answer.status_code == 200, answer.text
        return [c["endpoint"] for c in answer.json()["clients"]]

    assert await names() == ["lamp-1", "lamp-2", "lamp-3", "meter-1"]
    assert await names("site=north") == ["lamp-1", "lamp-2", "meter-1"]
    assert await names("site=north", "hw=rev2") == ["lamp-1", "meter-1"]
    assert await names("site=north", "hw=rev2", endpoint="lamp") == ["lamp-1"]
    assert await names("site=south") == []
    assert await names("hw=") == []
    assert await names("site=north", limit="1") == ["lamp-1"]
    for bad in ("site", "=x", "site=north&site=south"):
        terms = bad.split("&")
        answer = await api.get("/api/clients", params=[("label", t) for t in terms])
        assert answer.status_code == 400 and "label" in answer.json()["error"]


async def test_labels_outlast_a_re_registration_and_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "lwm2m.db"
    with SqliteStore(db) as store:
        async with (
            Server(ServerConfig(port=0), store) as server,
            open_udp_endpoint("127.0.0.1", 0) as device,
            client_for(server) as api,
        ):
            created = await _register(device, server, "lamp-1")
            await api.put("/api/clients/lamp-1/labels", json={"site": "north"})
            location = "/".join(created.location_path)
            gone = await device.request(
                Message.build(Type.CON, Code.DELETE, uri_path=location), ("127.0.0.1", server.port)
            )
            assert gone.code == Code.DELETED
            await _register(device, server, "lamp-1")
            assert (await api.get("/api/clients/lamp-1/labels")).json() == {"site": "north"}
    with SqliteStore(db) as store:
        async with Server(ServerConfig(port=0), store) as server, client_for(server) as api:
            assert (await api.get("/api/clients/lamp-1/labels")).json() == {"site": "north"}
            listed = (await api.get("/api/clients", params={"label": "site=north"})).json()["clients"]
            assert [c["endpoint"] for c in listed] == ["lamp-1"]


def test_labels_match_and_the_selector_rules() -> None:
    labels = {"site": "north", "hw": "rev2"}
    assert labels_match(labels, {})
    assert labels_match(labels, {"site": "north"})
    assert labels_match(labels, {"site": "north", "hw": "rev2"})
    assert not labels_match(labels, {"site": "north", "hw": "rev1"})
    assert not labels_match({}, {"site": "north"})
    assert parse_selector(["site=north", "hw=rev2", "site=north"]) == {"site": "north", "hw": "rev2"}
    assert parse_selector(["note=a=b"]) == {"note": "a=b"}  # the first = parts key and value
    with pytest.raises(InvalidLabels):
        parse_selector(["site=north", "site=south"])
    assert check_labels({"a.b/c-d_e": ""}) == {"a.b/c-d_e": ""}
