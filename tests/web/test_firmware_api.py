"""``/api/firmware`` (upload, list, one, delete, bad input) and ``/fw/{id}`` (the bytes for devices:
Range, 206, 416, HEAD, ETag), every answer checked against the OpenAPI document."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.helpers.web import client_for

from lwm2m.fleet.packages import PackageConfig, Packages
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app
from lwm2m.web.views.firmware import byte_range

DATA = os.urandom(5000)
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server, client_for(server, "tok") as client:
        client.headers["Authorization"] = "Bearer tok"
        yield client


async def upload(api: httpx.AsyncClient, data: bytes = DATA, **query: str) -> httpx.Response:
    params = {"name": "lamp", "version": "2.1.0", **query}
    return await api.post("/api/firmware", params=params, content=data, headers=OCTETS)


async def test_upload_list_get_delete(api: httpx.AsyncClient) -> None:
    answer = await upload(api)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    pid = created["id"]
    assert created["size"] == len(DATA) and created["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert (created["name"], created["version"]) == ("lamp", "2.1.0")
    assert answer.headers["location"] == f"/api/firmware/{pid}"
    assert created["uris"]["http"] == f"http://api/fw/{pid}/lamp@2.1.0"
    assert created["uris"]["coap"].startswith("coap://127.0.0.1:")
    assert created["uris"]["coap"].endswith(f"/fw/{pid}/lamp@2.1.0")
    assert "coaps" not in created["uris"]  # no DTLS endpoint
    assert (await api.get(f"/api/firmware/{pid}")).json() == created
    second = (await upload(api, b"other", version="2.2.0")).json()
    assert [p["id"] for p in (await api.get("/api/firmware")).json()] == [pid, second["id"]]
    removed = await api.delete(f"/api/firmware/{pid}")
    assert removed.status_code == 200 and removed.json() == {"removed": pid}
    assert (await api.get(f"/api/firmware/{pid}")).status_code == 404
    assert (await api.delete(f"/api/firmware/{pid}")).status_code == 404
    assert (await api.get(f"/fw/{pid}")).status_code == 404
    assert [p["id"] for p in (await api.get("/api/firmware")).json()] == [second["id"]]


@pytest.mark.parametrize(
    ("query", "body", "words"),
    [
        ({}, b"", "empty"),
        ({"version": "2.1 beta"}, DATA, "version '2.1 beta'"),
        ({"version": ""}, DATA, "version ''"),
        ({"name": "a/b"}, DATA, "name 'a/b'"),
        ({"name": "lamp@x"}, DATA, "name 'lamp@x'"),
    ],
)
async def test_bad_input_is_400_with_a_message(
    api: httpx.AsyncClient, query: dict[str, str], body: bytes, words: str
) -> None:
    answer = await upload(api, body, **query)
    assert answer.status_code == 400
    assert words in answer.json()["error"]
    assert (await api.get("/api/firmware")).json() == []


async def test_name_and_version_are_required(api: httpx.AsyncClient) -> None:
    answer = await api.post("/api/firmware", params={"name": "lamp"}, content=DATA, headers=OCTETS)
    assert answer.status_code == 400 and "version" in answer.json()["error"]


async def test_a_package_over_the_limit_is_413_and_not_kept() -> None:
    async with Server(ServerConfig(port=0)) as server:
        app = create_app(server, packages=Packages(server.store.firmware, PackageConfig(max_size=4096)))
        async with client_for(server, app=app) as api:
            answer = await upload(api, os.urandom(4097))
            assert answer.status_code == 413 and "4096" in answer.json()["error"]
            assert (await upload(api, os.urandom(4096))).status_code == 201

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
                for _ in range(5):
                    yield os.urandom(1000)

            streamed = await api.post("/api/firmware?name=a&version=1", content=chunks(), headers=OCTETS)
            assert streamed.status_code == 413
            assert len((await api.get("/api/firmware")).json()) == 1


async def test_the_api_needs_its_token_but_devices_fetch_without(api: httpx.AsyncClient) -> None:
    pid = (await upload(api)).json()["id"]
    bare = {"Authorization": ""}
    assert (await api.get("/api/firmware", headers=bare)).status_code == 401
    fetched = await api.get(f"/fw/{pid}", headers=bare)
    assert fetched.status_code == 200 and fetched.content == DATA


async def test_download_whole_and_by_range(api: httpx.AsyncClient) -> None:
    created = (await upload(api)).json()
    pid = created["id"]
    etag = f'"{created["sha256"]}"'
    whole = await api.get(f"/fw/{pid}")
    assert whole.status_code == 200 and whole.content == DATA
    assert whole.headers["etag"] == etag and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "application/octet-stream"
    named = await api.get(f"/fw/{pid}/lamp@2.1.0")
    assert named.content == DATA
    for header, start, end in [
        ("bytes=0-99", 0, 100),
        ("bytes=4990-", 4990, 5000),
        ("bytes=-10", 4990, 5000),
        ("bytes=4000-99999", 4000, 5000),
        ("bytes=1024-2047", 1024, 2048),
    ]:
        part = await api.get(f"/fw/{pid}", headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == DATA[start:end], header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/5000"
        assert part.headers["content-length"] == str(end - start)
    for header in ("bytes=5000-", "bytes=9999-10000", "bytes=-0"):
        refused = await api.get(f"/fw/{pid}", headers={"Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == "bytes */5000"
    for header in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3"):  # ignored: the whole package
        ignored = await api.get(f"/fw/{pid}", headers={"Range": header})
        assert ignored.status_code == 200 and ignored.content == DATA, header
    matching = await api.get(f"/fw/{pid}", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert matching.status_code == 206 and matching.content == DATA[:10]
    stale = await api.get(f"/fw/{pid}", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == DATA
    unchanged = await api.get(f"/fw/{pid}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""


async def test_head_answers_the_headers_of_get(api: httpx.AsyncClient) -> None:
    pid = (await upload(api)).json()["id"]
    # The document lists GET (whose summary names HEAD): a client without its check.
    app = api._transport.app  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as plain:
        head = await plain.head(f"/fw/{pid}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == "5000" and head.headers["etag"].startswith('"')
        ranged = await plain.head(f"/fw/{pid}", headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.headers["content-length"] == "10"
        assert ranged.headers["content-range"] == "bytes 10-19/5000"
        assert (await plain.head("/fw/AAAAAAAAAAAAAAAAAAAAAA")).status_code == 404


async def test_unknown_and_malformed_ids_are_404(api: httpx.AsyncClient) -> None:
    for url in ("/fw/AAAAAAAAAAAAAAAAAAAAAA", "/fw/..%2Flwm2m.db", "/fw/x", "/api/firmware/x"):
        answer = await api.get(url)
        assert answer.status_code == 404, url
        assert "error" in answer.json()


def test_byte_range_per_rfc_9110() -> None:
    assert byte_range(None, 10) is None
    assert byte_range("bytes=2-4", 10) == (2, 5)
    assert byte_range("bytes=2-", 10) == (2, 10)
    assert byte_range("bytes=-3", 10) == (7, 10)
    assert byte_range("bytes=-30", 10) == (0, 10)  # a suffix longer than the body: all of it
    assert byte_range("bytes=9-9", 10) == (9, 10)
    assert byte_range("bytes=10-", 10) is False
    assert byte_range("bytes=-0", 10) is False
    assert byte_range("bytes=-", 10) is None
    assert byte_range("bytes=4-2", 10) is None
    assert byte_range("bytes=1-2,4-5", 10) is None


async def test_a_server_on_every_address_gives_uris_at_the_address_the_api_was_reached() -> None:
    async with Server(ServerConfig(host="0.0.0.0", port=0)) as server, client_for(server) as api:
        created = (await upload(api)).json()
        assert created["uris"]["coap"] == f"coap://api:{server.port}/fw/{created['id']}/lamp@2.1.0"
