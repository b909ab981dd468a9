"""``GET /api/clients`` in pages: limit, cursor, filters, and the errors of each."""

from __future__ import annotations

import fnmatch
import time

import pytest
from tests.helpers.web import client_for, running

from lwm2m.protocol.registration import ObjectLink, Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.listing import decode_cursor, encode_cursor


def registration(
    endpoint: str, n: int, *, queue: bool = False, objects: tuple[int, ...] = (1, 3)
) -> Registration:
    return Registration(
        endpoint=endpoint,
        registration_id=f"r{n}",
        address=("192.0.2.1", 5683 + n % 1000),
        queue_mode=queue,
        objects=tuple(ObjectLink(o, 0) for o in objects),
        registered_at=time.time(),  # not expired: the server drops registrations past their lifetime
        last_update=time.time(),
    )


async def fill(server: Server, names: list[str]) -> None:
    for n, name in enumerate(names):
        sensor = (3303,) if n % 4 == 0 else ()
        await server.store.registrations.add(registration(name, n, queue=n % 5 == 0, objects=(1, 3, *sensor)))


async def walk(api: object, **params: object) -> tuple[list[str], int]:
    names: list[str] = []
    cursor, pages = None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = await api.get("/api/clients", params=query)  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages += 1
        names += [c["endpoint"] for c in page["clients"]]
        if page["next"] is None:
            return names, pages
        cursor = page["next"]


NAMES = (
    [f"lamp-{i:04d}" for i in range(230)] + [f"meter-{i:03d}" for i in range(40)] + ["hub", "Hub-2", "lamp"]
)


async def test_pages_walk_every_client_once_in_order() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        await fill(server, NAMES)
        first = (await api.get("/api/clients")).json()
        assert len(first["clients"]) == 100 and first["next"]
        assert [c["endpoint"] for c in first["clients"]] == sorted(NAMES)[:100]
        assert set(first["clients"][0]) >= {"endpoint", "address", "objects", "sleeping", "lastUpdate"}
        assert await walk(api) == (sorted(NAMES), 3)
        assert await walk(api, limit=1000) == (sorted(NAMES), 1)
        assert await walk(api, limit=50) == (sorted(NAMES), 6)
        # A page stays right whatever registers or leaves between two calls.
        page = (await api.get("/api/clients", params={"limit": 10})).json()
        await server.store.registrations.remove(sorted(NAMES)[10])
        await server.store.registrations.add(registration("Hub-1", 999))
        rest = (await api.get("/api/clients", params={"limit": 10, "cursor": page["next"]})).json()
        assert [c["endpoint"] for c in rest["clients"]] == sorted(NAMES)[11:21]


async def test_filters() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        await fill(server, NAMES)

        def expect(test: object) -> list[str]:
            return sorted(n for i, n in enumerate(NAMES) if test(i, n))  # type: ignore[operator]

        assert (await walk(api, endpoint="meter-0"))[0] == expect(lambda i, n: n.startswith("meter-0"))
        assert (await walk(api, endpoint="lamp"))[0] == expect(lambda i, n: n.startswith("lamp"))
        for glob in ("*-01?", "lamp-00[1-3]*", "?ub*", "*"):
            assert (await walk(api, endpoint=glob, limit=7))[0] == expect(
                lambda i, n, g=glob: fnmatch.fnmatchcase(n, g)
            )
        assert (await walk(api, object=3303))[0] == expect(lambda i, n: i % 4 == 0)
        assert (await walk(api, object=3303, online="false"))[0] == expect(lambda i, n: i % 20 == 0)
        assert (await walk(api, online="true", endpoint="meter-"))[0] == expect(
            lambda i, n: i % 5 != 0 and n.startswith("meter-")
        )
        assert await walk(api, object=9999) == ([], 1)
        assert await walk(api, endpoint="nobody") == ([], 1)


async def test_the_online_state_is_the_one_the_views_show() -> None:
    async with running() as (server, _, _), client_for(server) as api:
        await server.store.registrations.add(registration("sleepy", 1, queue=True))
        online = (await api.get("/api/clients", params={"online": "true"})).json()["clients"]
        sleeping = (await api.get("/api/clients", params={"online": "false"})).json()["clients"]
        assert [(c["endpoint"], c["sleeping"]) for c in online] == [("dev-1", False)]
        assert [(c["endpoint"], c["sleeping"]) for c in sleeping] == [("sleepy", True)]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "1001"),
        ({"limit": "ten"}, "ten"),
        ({"limit": "-5"}, "-5"),
        ({"limit": "²"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "bGFtcA=="}, "cursor"),  # padded: not a cursor this API gave
        ({"cursor": "_w"}, "cursor"),  # not UTF-8
        ({"cursor": "x" * 5000}, "cursor"),
        ({"object": "lamp"}, "lamp"),
        ({"object": "70000"}, "70000"),
        ({"online": "maybe"}, "maybe"),
    ],
)
async def test_bad_queries_are_400(params: dict[str, str], needle: str) -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        answer = await api.get("/api/clients", params=params)
        assert answer.status_code == 400 and needle in answer.json()["error"]


def test_cursors_round_trip() -> None:
    for name in ("lamp-0001", "é/ü", "a b", "x" * 255):
        assert decode_cursor(encode_cursor(name)) == name
        assert "=" not in encode_cursor(name)


async def test_the_openapi_document_describes_the_pages() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        doc = (await api.get("/api/openapi.json")).json()
        listing = doc["paths"]["/api/clients"]["get"]
        names = [p["name"] for p in listing["parameters"]]
        assert names == ["limit", "cursor", "endpoint", "object", "online", "label"]
        assert listing["parameters"][0]["schema"]["maximum"] == 1000
        page = doc["components"]["schemas"]["ClientPage"]
        assert page["required"] == ["clients", "next"] and "400" in listing["responses"]
