"""``/api/clients``: a page of the registered clients, and one client's registration."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.web.context import api_context
from lwm2m.web.listing import VIEW_CHUNK, client_query, encode_cursor
from lwm2m.web.shapes import registration_view
from lwm2m.web.views import labels

__all__ = ["client", "clients"]


async def clients(request: Request) -> Response:
    """A page of the clients in endpoint order, from the store's index (never the whole
    fleet at once: listing must not hold up CoAP traffic)."""
    api = api_context(request)
    sleeping = api.sleeping  # once per page, not per registration
    transport_of = api.server.transport_of
    query = client_query(request.query_params)
    online = query.online
    match = query.matcher(None if online is None else (lambda r: sleeping(r) is not online))
    chosen = await labels.labelled(request)  # the label filter's endpoints, if there is one
    if chosen is not None:
        if not chosen:
            return Response(msgspec.json.encode({"clients": [], "next": None}), media_type="application/json")
        match = labels.with_endpoints(match, chosen)
    page = await api.server.store.registrations.page(
        query.after, query.limit, prefix=query.prefix, glob=query.glob, match=match
    )
    views: list[dict[str, Any]] = []
    for start in range(0, len(page.registrations), VIEW_CHUNK):
        if start:
            await asyncio.sleep(0)  # a long page is turned into JSON a slice at a time
        views += [
            registration_view(r, sleeping=sleeping(r), transport=transport_of(r.endpoint, r))
            for r in page.registrations[start : start + VIEW_CHUNK]
        ]
    body = {"clients": views, "next": None if page.next is None else encode_cursor(page.next)}
    return Response(msgspec.json.encode(body), media_type="application/json")


async def client(request: Request) -> Response:
    api = api_context(request)
    registration = await api.server.registration(request.path_params["ep"])
    view = registration_view(
        registration,
        sleeping=api.sleeping(registration),
        transport=api.server.transport_of(registration.endpoint, registration),
    )
    return JSONResponse(view)
