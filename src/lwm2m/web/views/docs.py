"""``/api/openapi.json`` and ``/api/docs``: the app's OpenAPI document, as JSON and as a page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from lwm2m.web.context import api_context
from lwm2m.web.docs import INIT_JS, interactive_html, plain_html

__all__ = ["docs", "docs_init", "openapi"]


async def openapi(request: Request) -> Response:
    return JSONResponse(api_context(request).document)


async def docs(request: Request) -> Response:
    api = api_context(request)
    if api.swagger_dir is None:
        return HTMLResponse(plain_html(api.document))
    return HTMLResponse(interactive_html(api.document["info"]["title"]))


async def docs_init(request: Request) -> Response:
    return Response(INIT_JS, media_type="text/javascript")
