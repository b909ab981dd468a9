"""What every device operation shares: the device's answer in its JSON form, and running the
operation now or, for a sleeping queue-mode client or a request a gateway holds for an end device,
later (202 with a request ID)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import TableFull
from lwm2m.protocol.management import Response as DeviceAnswer
from lwm2m.protocol.registration import Registration
from lwm2m.storage.requests import StoredRequest
from lwm2m.transport.separate import SEPARATE_RESPONSE
from lwm2m.web.context import ApiContext, api_context
from lwm2m.web.errors import error
from lwm2m.web.params import flag
from lwm2m.web.requests import QueuedRequest, Work
from lwm2m.web.shapes import response_view

__all__ = ["answer", "run", "run_or_hold", "stored_call"]

# The request headers a queued call keeps: what the view reads of them.
_KEPT_HEADERS = ("content-type", "accept")


def answer(
    call: Callable[[], Awaitable[DeviceAnswer]], hint: Callable[[DeviceAnswer], str | None] | None = None
) -> Work:
    """Work that answers the device's answer in its JSON form (with ``hint``'s note, if any)."""

    async def work() -> dict[str, Any]:
        got = await call()
        out = response_view(got)
        note = hint(got) if hint is not None else None
        if note:
            out["hint"] = note
        return out

    return work


async def run(request: Request, registration: Registration, work: Work) -> Response:
    """Run ``work`` now; for a sleeping client, queue it and answer 202 (LwM2M-TS-Core 1.2 §6.5:
    the request goes out when the client wakes up), unless ``?wait=true``. A request to a gateway
    that it holds (:func:`run_or_hold`) answers 202 too."""
    api = api_context(request)
    waits = flag(request, "wait", False)
    if waits or not api.sleeping(registration):
        if registration.end_devices and not waits:
            return await run_or_hold(api, registration, work)
        return JSONResponse(await work())
    try:
        queued = await api.requests.queue(await stored_call(request, registration.endpoint), work)
    except TableFull as exc:
        return error(503, str(exc))
    return _accepted(queued)


async def run_or_hold(api: ApiContext, registration: Registration, work: Work) -> Response:
    """Run ``work``, a request to a gateway, and answer its outcome; or 202 with a request ID as
    for a sleeping client once the gateway holds the request: it acknowledged it with an empty ACK
    and answers later in a separate response (RFC 7252 §5.2.2), as for an end device that hears
    only after its own uplinks (LoRaWAN class A). The request then goes on in the background
    until that answer comes, within the CoAP endpoint's ``response_timeout``
    (:mod:`lwm2m.transport.separate`), and its outcome is a ``REQUEST_DONE`` event and
    ``GET /api/requests/{id}``."""
    held = asyncio.Event()
    context = SEPARATE_RESPONSE.set(held.set)
    try:
        task = asyncio.ensure_future(work())  # the task keeps the context it was made in
    finally:
        SEPARATE_RESPONSE.reset(context)
    acknowledged = asyncio.ensure_future(held.wait())
    try:
        await asyncio.wait((task, acknowledged), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        acknowledged.cancel()
    if task.done():
        return JSONResponse(task.result())  # its error, if any, answers as a direct call's would
    try:
        queued = api.requests.submit(registration.endpoint, lambda: task)
    except TableFull as exc:
        task.cancel()
        return error(503, str(exc))
    return _accepted(queued)


def _accepted(queued: QueuedRequest) -> Response:
    location = f"/api/requests/{queued.request_id}"
    return JSONResponse(queued.to_json(), status_code=202, headers={"Location": location})


async def stored_call(request: Request, endpoint: str) -> StoredRequest:
    """The API call ``request`` as the store keeps it, to run again on any node (its ID and time
    are set when it is queued)."""
    headers = tuple((name, request.headers[name]) for name in _KEPT_HEADERS if name in request.headers)
    return StoredRequest(
        request_id="",
        endpoint=endpoint,
        created_at=0.0,
        method=request.method,
        path=request.scope["path"],
        query=request.scope.get("query_string", b"").decode("latin-1"),
        body=await request.body(),
        headers=headers,
    )
