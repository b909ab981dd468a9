"""``/metrics`` in the route table: served only with metrics, beside ``/api`` (the API's token
does not cover it, its own token does when given), not in the OpenAPI document."""

from __future__ import annotations

import httpx

from lwm2m.export.metrics import ServerMetrics
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app
from lwm2m.web.openapi import openapi_document
from lwm2m.web.routes import ROUTES, starlette_routes


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")  # type: ignore[arg-type]


def test_metrics_is_in_the_table_served_with_metrics_and_not_documented() -> None:
    (route,) = [r for r in ROUTES if r.path == "/metrics"]
    assert route.needs == "metrics" and set(route.views) == {"GET"} and not route.documented
    paths = {getattr(r, "path", None) for r in starlette_routes(ROUTES, bootstrap=False, swagger_dir=None)}
    assert "/metrics" not in paths
    served = starlette_routes(ROUTES, bootstrap=False, swagger_dir=None, metrics=True)
    assert "/metrics" in {getattr(r, "path", None) for r in served}
    assert "/metrics" not in openapi_document(bootstrap=True)["paths"]


async def test_the_metrics_token_guards_metrics_and_the_api_token_does_not() -> None:
    async with Server(ServerConfig(port=0)) as server:
        async with _client(create_app(server, api_token="api-secret", metrics=ServerMetrics(server))) as api:
            scraped = await api.get("/metrics")  # open by default: the API's token does not cover it
            assert scraped.status_code == 200 and "lwm2m_registrations 0.0" in scraped.text
            assert (await api.get("/api/clients")).status_code == 401
        app = create_app(server, metrics=ServerMetrics(server), metrics_token="scrape-secret")
        async with _client(app) as api:
            refused = await api.get("/metrics")
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await api.get("/metrics", headers={"Authorization": "Bearer api-secret"})
            assert wrong.status_code == 401
            right = await api.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
            assert right.status_code == 200 and "lwm2m_registrations" in right.text
        async with _client(create_app(server)) as api:
            assert (await api.get("/metrics")).status_code == 404
