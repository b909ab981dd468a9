"""``/api/clients/{ep}/devices``: the end devices behind a gateway (LwM2M-TS-Gateway 1.1, object 25),
as its object 25 last told them. Their operations, ``/api/clients/{ep}/devices/{prefix}/...``,
are the device views of ``/api/clients/{ep}/...`` on the prefixed paths (lwm2m.web.routes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.protocol.registration import Registration
from lwm2m.server.jsonform import end_device_view

__all__ = ["list_devices"]


async def list_devices(request: Request, registration: Registration) -> Response:
    """The gateway's end devices by prefix (none for a client that is not a gateway)."""
    return JSONResponse(
        {"endpoint": registration.endpoint, "devices": [end_device_view(d) for d in registration.end_devices]}
    )
