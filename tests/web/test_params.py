"""The request parsing the views share (:mod:`lwm2m.web.params`) and the app's context
(:mod:`lwm2m.web.context`), alone: a request built from its ASGI scope, no server running."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from lwm2m.errors import InvalidPath, InvalidRequest, UnsupportedMethod
from lwm2m.model.path import Path
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import DEFAULT_TIMEOUT, Server
from lwm2m.web import params
from lwm2m.web.context import ApiContext


def _request(query: str = "", body: bytes = b"") -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "PUT", "path": "/", "headers": []}
    scope["query_string"] = query.encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def test_query_parameters() -> None:
    assert params.timeout(_request()) == DEFAULT_TIMEOUT
    assert params.timeout(_request("timeout=2.5")) == 2.5
    for bad in ("timeout=0", "timeout=x", "timeout=-1"):
        with pytest.raises(InvalidRequest, match="timeout"):
            params.timeout(_request(bad))
    assert params.flag(_request("wait=yes"), "wait", False) is True
    assert params.flag(_request("wait=0"), "wait", True) is False
    assert params.flag(_request(), "wait", True) is True
    with pytest.raises(InvalidRequest, match="wait: 'maybe'"):
        params.flag(_request("wait=maybe"), "wait", False)
    assert params.number(_request("limit=3"), "limit", int) == 3
    assert params.number(_request(), "limit", int) is None
    with pytest.raises(InvalidRequest, match="limit"):
        params.number(_request("limit=three"), "limit", int)
    assert params.query_format(_request("format=senml-json")) == "senml-json"
    assert params.query_format(_request("format=112")) == 112
    assert params.query_format(_request("format=")) is None
    given = params.query_paths(_request("paths=/3/0/9,/3303/0/5700"))
    assert given == [Path.parse("/3/0/9"), Path.parse("/3303/0/5700")]
    with pytest.raises(InvalidRequest):
        params.query_paths(_request())


def test_paths_and_methods() -> None:
    assert params.lwm2m_path(["3", "0", "1"]) == Path.parse("/3/0/1")
    assert params.lwm2m_path([]) == Path.parse("/")
    with pytest.raises(InvalidPath, match="decimal numbers"):
        params.lwm2m_path(["3 "])  # Path.parse alone would take it
    params.allow("GET", ("GET", "PUT"), "/3/0")
    with pytest.raises(UnsupportedMethod) as refused:
        params.allow("POST", ("GET", "PUT"), "/3/0")
    assert refused.value.allow == ("GET", "PUT")


async def test_bodies() -> None:
    assert await params.json_body(_request(body=b"  ")) == {}
    assert await params.json_body(_request(body=b'{"a": 1}')) == {"a": 1}
    for bad, words in ((b"{", "not JSON"), (b"[1]", "JSON object")):
        with pytest.raises(InvalidRequest, match=words):
            await params.json_body(_request(body=bad))
    assert params.request_paths({"paths": ["/3/0"]}) == [Path.parse("/3/0")]
    for bad_paths in ({}, {"paths": []}, {"paths": [3]}):
        with pytest.raises(InvalidRequest, match="paths"):
            params.request_paths(bad_paths)


async def test_the_context_tells_a_sleeping_client() -> None:
    server = Server(ServerConfig(host="127.0.0.1", port=0))
    api = ApiContext(server)

    class Registration:
        endpoint = "q-1"
        queue_mode = True

    assert api.sleeping(Registration()) is True  # type: ignore[arg-type]
    Registration.queue_mode = False
    assert api.sleeping(Registration()) is False  # type: ignore[arg-type]
