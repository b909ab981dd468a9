"""``/api/clients/{ep}/{path}``: the device operations on one LwM2M path (LwM2M-TS-Core 1.2
§6.3): Read, Write, Create, Execute, Delete, Discover and Write-Attributes.

Every device operation answers HTTP 200 with the device's CoAP result in ``code``. For a
sleeping queue-mode client it answers 202 with a request ID instead
(:func:`lwm2m.web.views.base.run`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from lwm2m.errors import InvalidRequest
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import AttributeChange
from lwm2m.protocol.management import Response as DeviceAnswer
from lwm2m.protocol.registration import Registration
from lwm2m.web.context import api_context
from lwm2m.web.params import (
    body_records,
    flag,
    json_body,
    on_device,
    query_format,
    timeout,
    write_records,
)
from lwm2m.web.shapes import model_hint
from lwm2m.web.views.base import answer, run

__all__ = ["attributes", "discover", "operation"]


async def operation(request: Request, registration: Registration, path: Path) -> Response:
    """Read (GET), Write (PUT), Create or Execute (POST), Delete (DELETE) ``path``."""
    server = api_context(request).server
    ep = registration.endpoint
    wait = timeout(request)
    fmt = query_format(request)
    call: Callable[[], Awaitable[DeviceAnswer]]
    if request.method == "GET":
        call = partial(server.read, ep, path, format=fmt, timeout=wait, known=registration)
        # Values of an object without a model: say what they are and how to add the model.
        work = answer(call, lambda got: model_hint(server.models, path, got.records))
        return await run(request, registration, work)
    elif request.method == "PUT":
        records = write_records(await json_body(request), path, server.models)
        # replace=false is a partial update: a CoAP POST (LwM2M-TS-Core 1.2 §6.3.3).
        replace = flag(request, "replace", True)
        call = partial(
            server.write, ep, path, records, replace=replace, format=fmt, timeout=wait, known=registration
        )
    elif request.method == "POST":
        body = await json_body(request)
        if path.is_object:
            records = on_device(body_records(body, server.models), path) if body else []
            call = partial(server.create, ep, path, records, format=fmt, timeout=wait, known=registration)
        else:  # a resource: path_methods lets POST through only for an object or a resource
            args = body.get("args", "")
            if not isinstance(args, str):
                raise InvalidRequest(f"args: {args!r} is not a string like \"0='x',1\"")
            call = partial(server.execute, ep, path, args, timeout=wait, known=registration)
    else:  # DELETE
        call = partial(server.delete, ep, path, timeout=wait, known=registration)
    return await run(request, registration, answer(call))


async def discover(request: Request, registration: Registration, path: Path) -> Response:
    """Discover: the attributes and resources under ``path``, as the device links them."""
    server = api_context(request).server
    work = answer(partial(server.discover, registration.endpoint, path, timeout=timeout(request)))
    return await run(request, registration, work)


async def attributes(request: Request, registration: Registration, path: Path) -> Response:
    """Write-Attributes from the query; an attribute given without a value (``?gt``) is removed
    (LwM2M-TS-Core 1.2 §5.1.2)."""
    given: dict[str, object] = {
        k: (v if v != "" else None)
        for k, v in request.query_params.multi_items()
        if k not in ("timeout", "wait")
    }
    if not given:
        raise InvalidRequest("give attributes as query parameters, e.g. ?pmin=10&pmax=60")
    AttributeChange.from_mapping(given)  # bad values are a 400 now, even for a sleeping client
    server = api_context(request).server
    work = answer(
        partial(server.write_attributes, registration.endpoint, path, given, timeout=timeout(request))
    )
    return await run(request, registration, work)
