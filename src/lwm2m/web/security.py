"""``/api/security/clients``: the security information of endpoints (LwM2M-TS-Core 1.2 §7.1).

``PUT /api/security/clients/{ep}`` with ``{"pskIdentity": "...", "pskKey": "<hex>"}``,
``{"x509": true}`` (or ``{"mode": "x509"}``) or ``{"mode": "nosec"}`` (plain CoAP, for a
server run with ``--nosec-endpoints deny``) sets it (201 when new, 200 when it replaced an
entry); ``GET`` lists or shows it and ``DELETE`` removes it. A key goes in and never comes back out: answers
show ``pskKeyHint`` (its first byte and length) instead, and nothing here logs it.
A changed or removed entry ends the DTLS sessions made with the old one.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lwm2m.errors import IdentityInUse, InvalidRequest, ResourceNotFound
from lwm2m.server.server import LwM2MServer
from lwm2m.storage.base import SecurityInfo
from lwm2m.web.errors import error

__all__ = ["security_info_from_json", "security_routes"]

_HEX = re.compile(r"[0-9a-fA-F]+")
_MODES = ("psk", "x509", "nosec")


def security_info_from_json(endpoint: str, body: dict[str, Any]) -> SecurityInfo:
    """The entry a PUT body describes; InvalidRequest names what is wrong (never echoing the key)."""
    unknown = set(body) - {"pskIdentity", "pskKey", "x509", "endpoint", "mode"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if body.get("endpoint", endpoint) != endpoint:
        raise InvalidRequest("the body's endpoint differs from the one in the path")
    mode = body.get("mode")
    if "mode" in body and mode not in _MODES:  # null too: a mode given must be one of them
        raise InvalidRequest(f'"mode" must be one of {", ".join(_MODES)}')
    x509 = body.get("x509", False)
    if not isinstance(x509, bool):
        raise InvalidRequest('"x509" must be true or false')
    if x509 and mode not in (None, "x509"):
        raise InvalidRequest(f'"x509": true contradicts "mode": "{mode}"')
    if mode == "nosec":
        if "pskIdentity" in body or "pskKey" in body:
            raise InvalidRequest('mode nosec takes no "pskIdentity" or "pskKey"')
        return SecurityInfo(endpoint, nosec=True)
    if x509 or mode == "x509":
        if "pskIdentity" in body or "pskKey" in body:
            raise InvalidRequest('give "x509": true or a PSK, not both')
        return _checked(endpoint, None, None, x509=True)
    identity, key = body.get("pskIdentity"), body.get("pskKey")
    if not isinstance(identity, str) or not identity:
        raise InvalidRequest('give "pskIdentity" and "pskKey" (hex), "x509": true or "mode": "nosec"')
    if not isinstance(key, str) or not _HEX.fullmatch(key) or len(key) % 2:
        raise InvalidRequest('"pskKey" must be an even number of hexadecimal digits')
    return _checked(endpoint, identity, bytes.fromhex(key))


def _checked(endpoint: str, identity: str | None, key: bytes | None, *, x509: bool = False) -> SecurityInfo:
    """The entry, with what SecurityInfo refuses (a key too long, ...) as a InvalidRequest."""
    try:
        return SecurityInfo(endpoint, identity, key, x509=x509)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def security_routes(server: LwM2MServer) -> list[Route]:
    policy = server.security

    async def listing(request: Request) -> Response:
        return JSONResponse([info.to_dict() for info in await policy.all()])

    async def one(request: Request) -> Response:
        ep = request.path_params["ep"]
        if request.method == "GET":
            info = await policy.get(ep)
            if info is None:
                raise ResourceNotFound(f"no security information for {ep!r}")
            return JSONResponse(info.to_dict())
        if request.method == "DELETE":
            removed = await policy.remove(ep)
            if removed is None:
                raise ResourceNotFound(f"no security information for {ep!r}")
            return JSONResponse({"removed": ep})
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
            raise InvalidRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        info = security_info_from_json(ep, body)
        try:
            replaced = await policy.put(info)
        except IdentityInUse as exc:
            return error(409, str(exc))
        return JSONResponse(info.to_dict(), status_code=200 if replaced is not None else 201)

    return [
        Route("/api/security/clients", listing, methods=["GET"]),
        Route("/api/security/clients/{ep}", one, methods=["GET", "PUT", "DELETE"]),
    ]
