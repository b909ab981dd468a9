"""Firmware packages: ``/api/firmware`` (upload, list, one, delete; behind the API's token) and
``/fw/{id}`` (the bytes, for devices; open, as a device holds no API token: the id, 128
random bits, is the key; see :mod:`lwm2m.fleet.packages`).

``GET /fw/{id}`` answers ranges (RFC 9110 §14): one range of ``Range: bytes=…`` gets 206 with
``Content-Range``; a range that starts past the end gets 416 with ``Content-Range: bytes */SIZE``
(§15.5.17); several ranges, a malformed header, or an ``If-Range`` that does not name the
package's ETag get the whole package (§14.2: a server may ignore ``Range``). The ETag is the
package's SHA-256 (a strong validator: the bytes of an id never change), so
``If-None-Match`` gets 304. HEAD answers the headers of GET.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from lwm2m.errors import InvalidPackage, PackageNotFound
from lwm2m.fleet.packages import Packages, reachable
from lwm2m.storage.firmware import FirmwarePackage
from lwm2m.web.context import api_context

__all__ = ["byte_range", "download", "listing", "one", "remove", "upload"]

STREAM_PIECE = 1 << 20  # bytes read from the store per piece of an HTTP body
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def packages_of(request: Request) -> Packages:
    packages: Packages = request.app.state.packages
    return packages


def package_view(package: FirmwarePackage, request: Request) -> dict[str, Any]:
    """A package's JSON form with the URIs a device pulls it from: when the server listens on
    every address, at the host this request reached (a device cannot use 0.0.0.0)."""
    server = api_context(request).server
    host = request.url.hostname or "127.0.0.1"
    http = str(request.base_url).rstrip("/")
    uris = Packages.uris(
        package, coap=reachable(server.uri, host), coaps=reachable(server.coaps_uri, host), http=http
    )
    return {**package.to_dict(), "uris": uris}


# --- /api/firmware ---------------------------------------------------------------------------------


async def upload(request: Request) -> Response:
    """``POST /api/firmware?name=&version=`` with the package as the body (octet-stream): 201."""
    packages = packages_of(request)
    name = request.query_params.get("name")
    version = request.query_params.get("version")
    if name is None or version is None:
        raise InvalidPackage("give the package's name and version: POST /api/firmware?name=N&version=V")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        packages.check_size(int(declared))  # refused before a byte is read
    pieces: list[bytes] = []
    received = 0
    async for piece in request.stream():
        received += len(piece)
        if received > packages.config.max_size:
            packages.check_size(received)  # raises PackageTooLarge: nothing more is read
        pieces.append(piece)
    package = await packages.add(name, version, b"".join(pieces))
    view = package_view(package, request)
    return JSONResponse(view, status_code=201, headers={"Location": f"/api/firmware/{package.id}"})


async def listing(request: Request) -> Response:
    return JSONResponse([package_view(p, request) for p in await packages_of(request).all()])


async def one(request: Request) -> Response:
    package = await packages_of(request).get(request.path_params["id"])
    return JSONResponse(package_view(package, request))


async def remove(request: Request) -> Response:
    removed = await packages_of(request).remove(request.path_params["id"])
    return JSONResponse({"removed": removed.id})


# --- /fw/{id}: the bytes -----------------------------------------------------------------------------


def byte_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """The one range ``[start, end)`` a ``Range`` header asks of ``size`` bytes (RFC 9110
    §14.1.2); None to send the whole body (no header, another unit, several ranges, bad syntax);
    False when the range is unsatisfiable (416)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)  # the last N bytes
        return False if suffix == 0 else (max(size - suffix, 0), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # last-pos before first-pos: an invalid range, ignored (§14.1.1)
    if start >= size:
        return False
    return start, min(end, size)


def _etag(package: FirmwarePackage) -> str:
    return f'"{package.sha256}"'


async def download(request: Request) -> Response:
    """``GET``/``HEAD /fw/{id}`` (and ``/fw/{id}/{file}``): the package, whole or one range."""
    packages = packages_of(request)
    try:
        package = await packages.get(request.path_params["id"])
    except PackageNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    etag = _etag(package)
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # §13.1.5: the representation changed (or a date): the whole of it
    chosen = byte_range(wanted, package.size)
    if chosen is False:
        headers["Content-Range"] = f"bytes */{package.size}"
        return JSONResponse(
            {"error": f"range {wanted} is outside the package's {package.size} bytes"},
            status_code=416,
            headers=headers,
        )
    status = 200
    start, end = 0, package.size
    if isinstance(chosen, tuple):
        start, end = chosen
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{package.size}"
    headers["Content-Length"] = str(end - start)
    media = "application/octet-stream"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media)
    return StreamingResponse(_pieces(packages, package, start, end), status, headers, media_type=media)


async def _pieces(packages: Packages, package: FirmwarePackage, start: int, end: int) -> AsyncIterator[bytes]:
    """The bytes ``[start, end)``, read ``STREAM_PIECE`` at a time: a large package is never held
    whole for one download. A package deleted meanwhile ends the body short."""
    for low in range(start, end, STREAM_PIECE):
        piece = await packages.read(package, low, min(low + STREAM_PIECE, end))
        if not piece:
            return
        yield piece
