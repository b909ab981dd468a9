"""``GET /metrics``: the server's Prometheus metrics (:mod:`lwm2m.export.metrics`), in the text
exposition format. Served beside ``/api``, not under it: the API's token does not cover it.
Open by default, as exporters are (keep the port internal); with a metrics token it requires
``Authorization: Bearer TOKEN`` (Prometheus's ``authorization`` scrape setting), which may be
the API's own token."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.web.context import api_context

__all__ = ["metrics"]


async def metrics(request: Request) -> Response:
    api = api_context(request)
    exposition = api.metrics
    assert exposition is not None, "the route is served only with metrics"
    if api.metrics_token is not None:
        given = request.headers.get("authorization", "").encode()
        # compare_digest: the time taken must not tell how much of the token matched.
        if not hmac.compare_digest(given, f"Bearer {api.metrics_token}".encode()):
            return JSONResponse(
                {"error": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="lwm2m metrics"'},
            )
    return Response(exposition.exposition(), media_type=exposition.content_type)
