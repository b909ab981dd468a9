"""``/api/clients/{ep}/labels``: a device's labels (:mod:`lwm2m.fleet.labels`), and the label
filter of the listings (``?label=key=value``, repeated: every one must hold).

Labels belong to the endpoint name, not to its registration: they are kept when the device
leaves, and it has them again when it comes back. The API reads and sets those of a registered
device (404 for another, as everywhere under ``/api/clients/{ep}/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import InvalidLabels
from lwm2m.fleet.labels import DeviceLabels, parse_selector
from lwm2m.protocol.registration import Registration
from lwm2m.web.context import api_context

__all__ = ["MAX_BODY", "get", "labelled", "put", "with_endpoints"]

MAX_BODY = 16 << 10  # bytes of a PUT body: 32 labels of the longest keys and values fit


def labels_of(request: Request) -> DeviceLabels:
    return DeviceLabels(api_context(request).server.store.labels)


async def get(request: Request, registration: Registration) -> Response:
    """The device's labels (an empty object when it has none)."""
    return JSONResponse(await labels_of(request).get(registration.endpoint))


async def put(request: Request, registration: Registration) -> Response:
    """Replace the device's labels by the body's: 200 with them; ``{}`` removes them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidLabels(f"a body of {declared} bytes: labels take at most {MAX_BODY}")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidLabels(f"a body of {len(raw)} bytes: labels take at most {MAX_BODY}")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        raise InvalidLabels(
            "the body is not JSON: labels are an object of string keys to string values"
        ) from None
    return JSONResponse(await labels_of(request).put(registration.endpoint, body))


def with_endpoints(
    match: Callable[[Registration], bool] | None, endpoints: set[str]
) -> Callable[[Registration], bool]:
    """``match`` (None: every registration) and the endpoint among ``endpoints``."""
    if match is None:
        return lambda r: r.endpoint in endpoints
    first = match
    return lambda r: r.endpoint in endpoints and first(r)


async def labelled(request: Request) -> set[str] | None:
    """The endpoints the listing's ``label`` filters select (None: the query has none)."""
    terms = request.query_params.getlist("label")
    if not terms:
        return None
    return await labels_of(request).matching(parse_selector(terms))
