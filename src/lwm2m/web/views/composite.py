"""``/api/clients/{ep}/composite/read`` and ``/write``: Read-Composite and Write-Composite
(LwM2M-TS-Core 1.2 §6.3.4, §6.3.5), on several paths at once (Observe-Composite is in
:mod:`lwm2m.web.views.observations`)."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from lwm2m.protocol.registration import Registration
from lwm2m.web.context import api_context
from lwm2m.web.params import (
    body_records,
    json_body,
    on_end_device,
    query_format,
    records_on_end_device,
    request_paths,
    timeout,
)
from lwm2m.web.views.base import answer, run

__all__ = ["read", "write"]


async def read(request: Request, registration: Registration, prefix: str = "") -> Response:
    """On an end device's URL (``prefix``), the paths are the end device's own."""
    server = api_context(request).server
    body = await json_body(request)
    fmt, wait = query_format(request), timeout(request)
    paths = on_end_device(request_paths(body), prefix)
    call = partial(server.read_composite, registration.endpoint, paths, format=fmt, timeout=wait)
    return await run(request, registration, answer(call))


async def write(request: Request, registration: Registration, prefix: str = "") -> Response:
    """On an end device's URL (``prefix``), the records' paths are the end device's own."""
    server = api_context(request).server
    body = await json_body(request)
    fmt, wait = query_format(request), timeout(request)
    records = records_on_end_device(body_records(body, server.models, prefixed=True), prefix)
    call = partial(server.write_composite, registration.endpoint, records, format=fmt, timeout=wait)
    return await run(request, registration, answer(call))
