"""``GET /api/clients/{ep}/history/{path}``: the values stored from notifications, newest first."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import InvalidRequest
from lwm2m.model.path import Path
from lwm2m.protocol.registration import Registration
from lwm2m.web.context import api_context
from lwm2m.web.params import number
from lwm2m.web.shapes import history_view

__all__ = ["history"]


async def history(request: Request, registration: Registration, path: Path) -> Response:
    limit = number(request, "limit", int)
    if limit is not None and limit < 0:
        raise InvalidRequest(f"limit: {limit} must not be negative")
    server = api_context(request).server
    entries = await server.history(
        registration.endpoint, path, since=number(request, "since", float), limit=limit
    )
    return JSONResponse({"records": [history_view(e) for e in entries]})
