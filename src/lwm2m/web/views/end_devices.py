"""``/api/clients/{ep}/devices``: the end devices behind a gateway (LwM2M-TS-Gateway 1.1 §5.2),
as its object 25 last told them. Their operations, ``/api/clients/{ep}/devices/{prefix}/...``,
are the device views of ``/api/clients/{ep}/...`` on the prefixed paths (lwm2m.web.routes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.protocol.registration import EndDevice, Registration

__all__ = ["end_device_view", "list_devices"]


def end_device_view(device: EndDevice) -> dict[str, Any]:
    """An end device's JSON form: its prefix, Device ID, /25 instance and objects."""
    return {
        "prefix": device.prefix,
        "deviceId": device.device_id,
        "instanceId": device.instance_id,
        "objects": EndDevice.to_dict(device)["objects"],
    }


async def list_devices(request: Request, registration: Registration) -> Response:
    """The gateway's end devices by prefix (none for a client that is not a gateway)."""
    return JSONResponse(
        {"endpoint": registration.endpoint, "devices": [end_device_view(d) for d in registration.end_devices]}
    )
