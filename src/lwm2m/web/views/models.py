"""``/api/models``: the object definitions the server knows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import ResourceNotFound
from lwm2m.model.catalogue import object_to_dict
from lwm2m.web.context import api_context
from lwm2m.web.shapes import ADD_MODEL

__all__ = ["model", "models"]


async def models(request: Request) -> Response:
    listing = [{"id": d.id, "name": d.name, "version": d.version} for d in api_context(request).server.models]
    return JSONResponse(sorted(listing, key=lambda d: (d["id"], d["version"] or "")))


async def model(request: Request) -> Response:
    raw = request.path_params["id"]
    registry = api_context(request).server.models
    definition = registry.get(int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 6 else None
    if definition is None:
        raise ResourceNotFound(f"no object {raw!r} among the models: to add one, {ADD_MODEL}")
    return JSONResponse(object_to_dict(definition))
