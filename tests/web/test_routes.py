"""The route table against what the app serves and what its OpenAPI document says: every route
served is documented with the methods it takes, every URL under a client reaches the view the
table names (or a 405 naming the documented methods), and every documented operation answers a
documented status with a body that matches its schema."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Mount, Route
from tests.helpers.openapi import answer_problems, template_of
from tests.helpers.web import client_for, running

from lwm2m.bootstrap import BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.errors import InvalidPath, ResourceNotFound, UnsupportedMethod
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web import bodies
from lwm2m.web.app import create_app
from lwm2m.web.openapi import openapi_document
from lwm2m.web.routes import ACTIONS, ANY_METHOD, CLIENT_PREFIX, REFUSED, ROUTES, resolve

pytest.importorskip("jsonschema_rs")

# Example values of the path parameters: a temperature reading of the test device.
EXAMPLE = {
    "ep": "dev-1",
    "prefix": "dev1",
    "objectId": "3303",
    "instanceId": "0",
    "resourceId": "5700",
    "resourceInstanceId": "0",
    "id": "3",
    "file": "lamp@2.1.0",
}


def _url(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: EXAMPLE[m.group(1)], template)


def _client_segments(template: str) -> list[str]:
    return [s for s in _url(template).removeprefix(_url(CLIENT_PREFIX)).split("/") if s]


def _served_and_documented(app: Any) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(URL template, method) of every operation ``app`` serves, and of every one its document has."""
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path in ("/console", "/api/docs/static")  # static files only
            continue
        assert isinstance(route, Route)
        if route.path in ("/", "/api/docs/init.js"):
            continue  # the console's page and the API page's script: not API operations
        if route.path == "/api/clients/{ep}/{rest:path}":
            served |= {(r.path, m) for r in ROUTES if r.client for m in r.operations}
            continue
        served |= {(route.path, m) for m in route.methods or () if m != "HEAD"}
    document = app.state.api.document
    documented = {(path, m.upper()) for path, ops in document["paths"].items() for m in ops}
    return served, documented


@pytest.mark.parametrize("with_bootstrap", [False, True])
def test_every_route_the_app_serves_is_documented(with_bootstrap: bool) -> None:
    server = Server(ServerConfig(host="127.0.0.1", port=0))
    bootstrap = BootstrapServer(BootstrapServerConfig(host="127.0.0.1", port=0)) if with_bootstrap else None
    app = create_app(server, bootstrap=bootstrap)
    assert app.state.api.document == openapi_document(bootstrap=with_bootstrap)
    served, documented = _served_and_documented(app)
    assert served == documented


def test_a_route_outside_the_table_fails_the_check() -> None:
    """The check above sees a route added to the app but not to the table."""
    app = create_app(Server(ServerConfig(host="127.0.0.1", port=0)))
    app.router.routes.append(Route("/api/extra", lambda request: None, methods=["GET"]))
    served, documented = _served_and_documented(app)
    assert served - documented == {("/api/extra", "GET")}


@pytest.mark.parametrize("route", [r for r in ROUTES if r.client], ids=lambda r: r.path)
def test_every_url_under_a_client_reaches_the_view_of_the_table(route: Any) -> None:
    segments = _client_segments(route.path)
    url = _url(route.path)
    for method in ANY_METHOD:
        if method in route.operations:
            view = resolve(method, url, segments)
            assert getattr(view, "func", view) is route.operations[method].view
        else:
            with pytest.raises(UnsupportedMethod) as refused:
                resolve(method, url, segments)
            assert set(refused.value.allow) == set(route.operations)


def test_what_no_template_takes_is_refused() -> None:
    # The words of REFUSED reach their view, whose operation answers 400 (not documented).
    for action, level in REFUSED:
        segments = [*["3", "0", "1", "0"][:level], action]
        method = "GET" if action == "discover" else "PUT"
        view = resolve(method, "/api/clients/dev-1/" + "/".join(segments), segments)
        assert getattr(view, "func", view) is ACTIONS[action][method]
    with pytest.raises(InvalidPath):
        resolve("GET", "/api/clients/dev-1/3/0/1/0/9", ["3", "0", "1", "0", "9"])
    with pytest.raises(InvalidPath):
        resolve("GET", "/api/clients/dev-1/x/0", ["x", "0"])
    with pytest.raises(ResourceNotFound):
        resolve("POST", "/api/clients/dev-1/composite/delete", ["composite", "delete"])


# --- every documented operation, answered per its schema ----------------------------------------

BODIES: dict[Any, Any] = {
    bodies.WriteRecords: {"records": [{"path": "/3303/0/5700", "value": 22.5}]},
    bodies.WriteBody: {"value": 22.5},
    bodies.CreateBody: {},
    bodies.ExecuteBody: {},
    bodies.Paths: {"paths": ["/3303/0/5700"]},
    bodies.SecurityBody: {"pskIdentity": "id-x", "pskKey": "00112233"},
    bodies.BootstrapConfig: {"servers": [{"uri": "coap://192.0.2.1", "shortServerId": 1}]},
    bodies.Labels: {"site": "north"},
    bodies.WebhookBody: {"url": "http://192.0.2.1/hook", "events": ["NOTIFICATION"]},
    bodies.CampaignBody: {"packageId": "AAAAAAAAAAAAAAAAAAAAAA"},  # no such package: 404
}


def _query(operation: dict[str, Any]) -> dict[str, str]:
    names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    query = {"timeout": "2"} if "timeout" in names else {}
    if "pmin" in names:
        query["pmin"] = "1"
    return query


async def test_every_documented_operation_answers_per_its_schema() -> None:
    async with (
        running() as (server, _, _),
        BootstrapServer(BootstrapServerConfig(host="127.0.0.1", port=0)) as bootstrap,
    ):
        app = create_app(server, bootstrap=bootstrap)
        document = app.state.api.document
        checked = 0
        async with client_for(server, app=app) as api:
            for route in ROUTES:
                if route.path not in document["paths"]:
                    continue
                for method, op in route.operations.items():
                    operation = document["paths"][route.path][method.lower()]
                    if "text/event-stream" in operation["responses"].get("200", {}).get("content", {}):
                        continue  # a stream never ends: test_sse reads it
                    body = BODIES[op.doc.body] if op.doc.body is not None else None
                    answer = await api.request(method, _url(route.path), params=_query(operation), json=body)
                    status, path = answer.status_code, answer.url.path
                    problems = answer_problems(document, method, path, status, answer.content)
                    assert not problems, (answer.text, problems)
                    checked += 1
        assert checked >= 50


def test_an_answer_off_its_schema_is_a_problem() -> None:
    document = openapi_document(bootstrap=True)
    good = b'{"code": "2.05", "records": [{"path": "/3/0/0", "value": "x"}]}'
    assert answer_problems(document, "GET", "/api/clients/dev-1/3/0/0", 200, good) == []
    assert answer_problems(document, "GET", "/api/clients/dev-1/3/0/0", 200, b'{"records": []}')  # no code
    assert answer_problems(document, "GET", "/api/clients/dev-1/3/0/0", 200, b'{"code": 205}')
    assert answer_problems(document, "GET", "/api/clients/dev-1", 200, b'{"endpoint": "dev-1"}')
    assert answer_problems(document, "GET", "/api/clients/dev-1/3/0/0", 418, b"{}")  # not documented
    assert answer_problems(document, "GET", "/api/nothing", 200, b"{}")
    history = "/api/clients/{ep}/history/{objectId}/{instanceId}"
    assert template_of(document, "/api/clients/dev-1/history/3/0") == history
