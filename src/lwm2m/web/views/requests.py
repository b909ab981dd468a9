"""``GET /api/requests/{id}``: a request queued for a sleeping client, still queued, done or failed:
as this node's table holds it, else as the store does (another node ran it, or this node restarted)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import ResourceNotFound
from lwm2m.web.context import api_context

__all__ = ["queued_request"]


async def queued_request(request: Request) -> Response:
    request_id = request.path_params["id"]
    entry = await api_context(request).requests.lookup(request_id)
    if entry is None:
        raise ResourceNotFound(f"no request {request_id!r}: unknown, or its outcome expired")
    return JSONResponse(entry.to_json())
