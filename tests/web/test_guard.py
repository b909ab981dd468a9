"""The local API refuses what a web page on another site could send it (cross-site requests,
simple bodies, DNS rebinding), while curl-like calls and the console's own requests work."""

from __future__ import annotations

import httpx
import pytest
from tests.helpers.web import client_for, running, served

from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.web.app import create_app
from lwm2m.web.guard import LocalApiGuard, normalize_origin, split_host

EVIL = "http://evil.example"


def _executes(gadget: object) -> list[object]:
    return [m for m in gadget.requests if m.code == Code.POST]  # type: ignore[attr-defined]


async def test_a_cross_site_execute_never_reaches_the_device() -> None:
    async with running() as (server, gadget, _), client_for(server) as api:
        before = len(gadget.requests)
        # What a page on evil.example can send without a preflight: a form-like text/plain POST.
        simple = await api.post(
            "/api/clients/dev-1/3/0/4",
            content=b'{"args": ""}',
            headers={"Origin": EVIL, "Content-Type": "text/plain"},
        )
        assert simple.status_code == 403 and "evil.example" in simple.json()["error"]
        # The same without an Origin (stripped on the way): its body type still refuses it.
        for kind in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            None,
        ):
            headers = {} if kind is None else {"Content-Type": kind}
            answer = await api.post("/api/clients/dev-1/3/0/4", content=b"args=", headers=headers)
            assert answer.status_code == 415, answer.text
            assert "application/json" in answer.json()["error"]
        # An Execute without a body, cross-site or from a sandboxed page (Origin: null).
        for origin in (EVIL, "null", "http://127.0.0.1.evil.example"):
            bare = await api.post("/api/clients/dev-1/3/0/4", headers={"Origin": origin})
            assert bare.status_code == 403
        assert len(gadget.requests) == before  # the device saw nothing
        # curl: no Origin, a JSON body or none at all; and the console's same-origin request.
        curl = await api.post("/api/clients/dev-1/3/0/4", json={"args": ""})
        assert curl.status_code == 200 and curl.json()["code"] == "2.04"
        bare = await api.post("/api/clients/dev-1/3/0/4")
        assert bare.status_code == 200 and bare.json()["code"] == "2.04"
        own = await api.post("/api/clients/dev-1/3/0/4", json={"args": ""}, headers={"Origin": "http://api"})
        assert own.status_code == 200
        assert len(_executes(gadget)) == 3


async def test_a_cross_site_delete_keeps_the_key() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", b"\x01" * 16))
        for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Host": "evil.example"}):
            refused = await api.delete("/api/security/clients/dev-1", headers=headers)
            assert refused.status_code in (403, 421), refused.text
            assert "error" in refused.json()
        assert await server.security.get("dev-1") is not None
        assert (await api.delete("/api/security/clients/dev-1")).status_code in (200, 204)
        assert await server.security.get("dev-1") is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "rebind.attacker.example",  # a name that an attacker's DNS points at 127.0.0.1
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "",
        "[::1",
        "::1",
        "127.0.0.1:99999",
    ],
)
async def test_a_foreign_host_gets_421(host: str) -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        served(create_app(server)) as base,
        httpx.AsyncClient() as http,
    ):
        for path in ("/api/clients", "/", "/console/console.js", "/api/openapi.json"):
            answer = await http.get(base + path, headers={"Host": host})
            assert answer.status_code == 421, (path, answer.text)
            assert "Host" in answer.json()["error"]


async def test_hosts_of_a_loopback_api() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        served(create_app(server, bind_host="127.0.0.1", allowed_hosts=["lwm2m.lan"])) as base,
        httpx.AsyncClient() as http,
    ):
        port = base.rsplit(":", 1)[1]
        for host in (
            f"127.0.0.1:{port}",
            "127.0.0.1",
            f"localhost:{port}",
            "LOCALHOST",
            "127.0.0.2",
            "[::1]:80",
        ):
            answer = await http.get(base + "/api/clients", headers={"Host": host})
            assert answer.status_code == 200, (host, answer.text)
        assert (await http.get(base + "/", headers={"Host": f"lwm2m.lan:{port}"})).status_code == 200
        # An address of the machine that is not the bound one: not this API's.
        assert (await http.get(base + "/", headers={"Host": "192.0.2.7"})).status_code == 421
        # The console's own requests carry its origin, built from the Host it used.
        own = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
        assert (await http.get(base + "/api/clients", headers=own)).status_code == 200
        other_port = {"Host": f"localhost:{port}", "Origin": "http://localhost:1"}
        assert (await http.get(base + "/api/clients", headers=other_port)).status_code == 403


async def test_a_wildcard_bind_takes_any_address_literal_but_no_name() -> None:
    guard = LocalApiGuard(create_app, bind_host="0.0.0.0")  # type: ignore[arg-type]
    scope = {"type": "http", "server": ("10.0.0.5", 8080)}
    assert guard._host_allowed("192.0.2.7", scope)
    assert guard._host_allowed("2001:db8::1", scope)
    assert guard._host_allowed("localhost", scope)
    assert not guard._host_allowed("evil.example", scope)
    named = LocalApiGuard(create_app, bind_host="lwm2m.lan")  # type: ignore[arg-type]
    assert named._host_allowed("lwm2m.lan", scope) and not named._host_allowed("evil.example", scope)


async def test_no_cors_headers_unless_an_origin_is_given() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        plain = await api.get("/api/clients")
        assert not any(k.lower().startswith("access-control") for k in plain.headers)
        preflight = await api.options(
            "/api/clients", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers


async def test_cors_for_the_given_origins_only() -> None:
    dash = "https://dash.example:8443"
    async with running() as (server, gadget, _):
        app = create_app(server, api_token="t0ken", cors_origins=[dash])
        async with client_for(server, app=app) as api:
            # A preflight carries no token: it is answered before the token check.
            preflight = await api.options(
                "/api/clients/dev-1/3/0/4",
                headers={
                    "Origin": dash,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == dash
            assert "POST" in preflight.headers["access-control-allow-methods"]
            assert "Authorization" in preflight.headers["access-control-allow-headers"]
            auth = {"Origin": dash, "Authorization": "Bearer t0ken"}
            answer = await api.post("/api/clients/dev-1/3/0/4", json={"args": ""}, headers=auth)
            assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == dash
            assert "Origin" in answer.headers["vary"]
            # The token still applies to the allowed origin, and the answer says so to it.
            no_token = await api.get("/api/clients", headers={"Origin": dash})
            assert no_token.status_code == 401 and no_token.headers["access-control-allow-origin"] == dash
            # Another origin gets nothing, and no CORS header to read it with.
            other = await api.post(
                "/api/clients/dev-1/3/0/4", json={}, headers={"Origin": EVIL, "Authorization": "Bearer t0ken"}
            )
            assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
            assert len(_executes(gadget)) == 1


def test_host_and_origin_parsing() -> None:
    assert split_host("Example.COM:80") == ("example.com", 80)
    assert split_host("[::1]:8080") == ("::1", 8080)
    assert split_host("[::1]") == ("::1", None)
    assert split_host("[evil]") is None and split_host("a:b") is None and split_host("::1") is None
    assert normalize_origin("HTTP://LocalHost:80") == "http://localhost"
    assert normalize_origin("https://[::1]:8443") == "https://[::1]:8443"
    for bad in ("null", "file://", "http://a/b", "localhost:8080", "http://a:b"):
        with pytest.raises(ValueError):
            normalize_origin(bad)


async def test_the_bootstrap_api_on_its_own_has_the_guard_too() -> None:
    from lwm2m.bootstrap.config import BootstrapServerConfig
    from lwm2m.bootstrap.server import BootstrapServer
    from lwm2m.web.bootstrap_api import create_bootstrap_app

    config = {"servers": [{"uri": "coap://127.0.0.1:5683", "shortServerId": 101}]}
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs:
        app = create_bootstrap_app(bs)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
            url = "/api/bootstrap/dev-1"
            assert (await api.put(url, json=config, headers={"Host": "evil.example"})).status_code == 421
            assert (await api.put(url, json=config, headers={"Origin": EVIL})).status_code == 403
            sneaky = await api.put(url, content=b"{}", headers={"Content-Type": "text/plain"})
            assert sneaky.status_code == 415
            assert (await api.get(url)).status_code == 404
            assert (await api.put(url, json=config)).status_code in (200, 201)
