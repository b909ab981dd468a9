"""``/api/security/clients``: the security information of endpoints (LwM2M-TS-Core 1.2 §7.1);
the body's rules are :func:`lwm2m.web.security.security_info_from_json`. A key goes in and
never comes back out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import IdentityInUse, InvalidRequest, ResourceNotFound
from lwm2m.web.context import api_context
from lwm2m.web.errors import error
from lwm2m.web.security import security_info_from_json

__all__ = ["listing", "one", "put", "remove"]


async def listing(request: Request) -> Response:
    policy = api_context(request).server.security
    return JSONResponse([info.to_dict() for info in await policy.all()])


async def one(request: Request) -> Response:
    ep = request.path_params["ep"]
    info = await api_context(request).server.security.get(ep)
    if info is None:
        raise ResourceNotFound(f"no security information for {ep!r}")
    return JSONResponse(info.to_dict())


async def remove(request: Request) -> Response:
    ep = request.path_params["ep"]
    if await api_context(request).server.security.remove(ep) is None:
        raise ResourceNotFound(f"no security information for {ep!r}")
    return JSONResponse({"removed": ep})


async def put(request: Request) -> Response:
    """Set an endpoint's entry: 201 when new, 200 when it replaced one; a changed entry ends the
    DTLS sessions made with the old one."""
    ep = request.path_params["ep"]
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    info = security_info_from_json(ep, body)
    try:
        replaced = await api_context(request).server.security.put(info)
    except IdentityInUse as exc:
        return error(409, str(exc))
    return JSONResponse(info.to_dict(), status_code=200 if replaced is not None else 201)
