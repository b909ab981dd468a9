"""Hostile request bodies against every REST route that takes one: never a 500.

One LwM2M server with a registered device and a bootstrap server beside it run
on an event loop in a thread for the whole module; each hypothesis example sends
its request through httpx's ASGI transport on that loop. A body the API cannot
use answers 4xx with a JSON ``{"error": ...}``; one it can use reaches the
device, which answers (2xx with the device's code).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.server import register
from tests.helpers.web import Gadget

from lwm2m.bootstrap import BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web import errors
from lwm2m.web.app import create_app

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Api:
    """The app on a loop of its own; ``send`` runs one request there and waits for its answer."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._stop = self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self) -> asyncio.Event:
        ready = asyncio.Event()
        stop = asyncio.Event()

        async def serve() -> None:
            gadget = Gadget()
            async with (
                Server(ServerConfig(port=0)) as server,
                BootstrapServer(BootstrapServerConfig(port=0)) as bs,
                open_udp_endpoint("127.0.0.1", 0, handler=gadget) as device,
            ):
                answer = await device.request(register("dev-1"), ("127.0.0.1", server.port))
                assert answer.code == Code.CREATED
                app = create_app(server, bootstrap=bs)
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=30
                ) as client:
                    self.client = client
                    ready.set()
                    await stop.wait()

        self.task = asyncio.ensure_future(serve())
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([self.task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            self.task.result()  # raises what went wrong
        return stop

    def send(
        self, method: str, url: str, content: bytes, content_type: str = "application/json"
    ) -> httpx.Response:
        headers = {"content-type": content_type}
        return self.run(self.client.request(method, url, content=content, headers=headers))

    def close(self) -> None:
        async def stop() -> None:
            self._stop.set()
            await self.task

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    # No rule answers a bare ValueError 400: one that a decoder let out answers 500 here and
    # fails the test, so each error must be of its class in the error tree.
    assert ValueError not in errors.RULES
    running = Api()
    try:
        yield running
    finally:
        running.close()


# (method, url) of every route that reads a body or parameters from the request.
ROUTES = [
    ("PUT", "/api/clients/dev-1/3/0/1?timeout=2"),
    ("PUT", "/api/clients/dev-1/3/0?timeout=2&replace=false"),
    ("PUT", "/api/clients/dev-1/3303/0/5700?timeout=2"),
    ("PUT", "/api/clients/dev-1/3303/0?timeout=2&format=senml-json"),
    ("POST", "/api/clients/dev-1/3/0/4?timeout=2"),
    ("POST", "/api/clients/dev-1/3?timeout=2"),
    ("POST", "/api/clients/dev-1/composite/read?timeout=2"),
    ("POST", "/api/clients/dev-1/composite/write?timeout=2"),
    ("POST", "/api/clients/dev-1/composite/observe?timeout=2"),
    ("PUT", "/api/bootstrap/x"),
    ("PUT", "/api/security/clients/x"),
]


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        body = answer.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], answer.text


HOSTILE = [
    b"",
    b"null",
    b"[]",
    b"[1]",
    b'"x"',
    b"{",
    b"\xff\xfe",
    b'{"a": 1, "a": 2}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"value":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"value": ' + b"9" * 5000 + b"}",
    b'{"value": NaN}',
    b'{"value": ' + b"9" * 400 + b"}",
    b'{"value": -' + b"9" * 400 + b"}",
    b'{"value": "x", "time": ' + b"9" * 400 + b"}",
    b'{"records": [{"path": "/3303/0/5700", "value": ' + b"9" * 400 + b"}]}",
    b'{"records": [{"path": "/3303/0/5701", "value": "C", "time": ' + b"9" * 400 + b"}]}",
    b'{"records": [{"path": "/3303/0/5700", "value": 1.5, "time": 1e308}]}',
    b'{"value": 1e999}',
    b'{"records": [{"path": "/3/0/' + b"9" * 5000 + b'", "value": 1}]}',
    b'{"records": [{"path": {}, "value": 1}]}',
    b'{"records": {"path": "/3/0/1"}}',
    b'{"records": [{"path": "/3/0/1", "value": {"a": []}}]}',
    b'{"records": [{"path": "/3/0/1", "value": 1, "time": "x"}]}',
    b'{"paths": [{}]}',
    b'{"paths": ["/3/0/' + b"9" * 5000 + b'"]}',
    b'{"args": []}',
    b'{"args": "0=\'' + b"x" * 10 + b'"}',
    b'{"security": {"mode": {}}}',
    b'{"servers": [{"uri": "coaps://[::1", "shortServerId": 1}]}',
    b'{"servers": [{"uri": "coap://h", "shortServerId": 1, "security": {"mode": []}}]}',
    b'{"accessControl": [{"objectId": 3, "objectInstanceId": 0, "acl": {"' + b"9" * 5000 + b'": 1}}]}',
    b'{"pskIdentity": {}, "pskKey": "00"}',
    b'{"pskIdentity": "a", "pskKey": "' + b"00" * 65 + b'"}',
    b'{"pskIdentity": "a", "pskKey": ""}',
    b'{"pskIdentity": "a", "pskKey": 1}',
    b'{"x509": 1}',
    b'{"endpoint": {}, "x509": true}',
    b'{"mode": {}}',
]


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {u.split('?')[0]}" for m, u in ROUTES])
def test_a_table_of_hostile_bodies(api: Api, route: tuple[str, str]) -> None:
    method, url = route
    for body in HOSTILE:
        check(api.send(method, url, body))


def test_usable_bodies_reach_the_device(api: Api) -> None:
    # The routes under test do work: the fuzzing is not only of a route that refuses everything.
    for method, url, body in [
        ("PUT", "/api/clients/dev-1/3/0/1?timeout=2", b'{"value": "x"}'),
        ("POST", "/api/clients/dev-1/composite/read?timeout=2", b'{"paths": ["/3/0/0"]}'),
        ("PUT", "/api/bootstrap/x", b'{"servers": [{"uri": "coap://h", "shortServerId": 1}]}'),
        ("PUT", "/api/security/clients/x", b'{"pskIdentity": "x-id", "pskKey": "0011"}'),
    ]:
        answer = api.send(method, url, body)
        assert 200 <= answer.status_code < 300, answer.text


def test_the_issue_example_is_a_400(api: Api) -> None:
    answer = api.send("PUT", "/api/bootstrap/x", b'{"servers": [{"uri": "coap://h", "shortServerId": 1,'
                      b' "security": {"mode": {}}}]}')  # fmt: skip
    assert answer.status_code == 400
    assert "mode" in answer.json()["error"]
    answer = api.send("PUT", "/api/bootstrap/x", b'{"security": {"mode": {}}}')
    assert answer.status_code == 400 and "security" in answer.json()["error"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["/3/0/1", "/3/0", "/", "/3/0/7/0", "psk", "nosec", "00ff", "coap://h", "3:0"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(
            ["value", "records", "path", "time", "paths", "args", "servers", "uri", "shortServerId",
             "security", "mode", "pskIdentity", "pskKey", "x509", "endpoint", "objects", "deletePaths"]
        ) | st.text(max_size=4),
        inner,
        max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip


@FUZZ
@given(route=st.sampled_from(ROUTES), body=json_values)
def test_any_json_body(api: Api, route: tuple[str, str], body: object) -> None:
    method, url = route
    check(api.send(method, url, json.dumps(body).encode()))


@FUZZ
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=64))
def test_any_bytes_as_body(api: Api, route: tuple[str, str], body: bytes) -> None:
    method, url = route
    check(api.send(method, url, body))


params = st.sampled_from(["pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con", "hqmax", "x"])
values = st.sampled_from(
    ["", "1", "-1", "1.5", "nan", "inf", "9" * 5000, "1e999", "\u0663", "0x1"]
) | st.text(max_size=6)


@FUZZ
@given(st.lists(st.tuples(params, values), max_size=4))
def test_attributes_as_query_parameters(api: Api, attrs: list[tuple[str, str]]) -> None:
    query = str(httpx.QueryParams([*attrs, ("timeout", "2")]))
    check(api.send("PUT", f"/api/clients/dev-1/3/0/1/attributes?{query}", b""))


@FUZZ
@given(st.sampled_from(["format", "timeout", "replace", "wait"]), values)
def test_query_parameters_of_a_write(api: Api, name: str, value: str) -> None:
    query = str(httpx.QueryParams([(name, value)] + ([("timeout", "2")] if name != "timeout" else [])))
    check(api.send("PUT", f"/api/clients/dev-1/3/0/1?{query}", b'{"value": "x"}'))


@pytest.mark.parametrize("raw", ["9" * 5000, "\u0663", "99999", "-1", "3.0"])
def test_model_ids_that_are_no_object_id_are_404(api: Api, raw: str) -> None:
    answer = api.send("GET", f"/api/models/{raw}", b"")
    assert answer.status_code == 404 and "error" in answer.json()
