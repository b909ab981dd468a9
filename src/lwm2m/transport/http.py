"""A minimal HTTP/1.1 GET (RFC 9112) over asyncio streams: what a device needs to pull a
firmware package from an ``http://`` or ``https://`` URI, with nothing beyond the stdlib.

It follows up to three redirects and reads a body sent with Content-Length, chunked, or
up to the close of the connection, never more than ``max_size`` bytes. Failures raise
:class:`HttpError` subclasses that say what went wrong, for the caller to map.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from urllib.parse import SplitResult, urljoin, urlsplit

from lwm2m.errors import (
    HttpBodyTooLarge,
    HttpNameError,
    HttpProtocolError,
    HttpRedirectError,
    HttpStatusError,
)

MAX_REDIRECTS = 3
MAX_HEADER_LINES = 100
REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def http_get(
    url: str | SplitResult, *, max_size: int, ssl_context: ssl.SSLContext | None = None
) -> bytes:
    """The body of a 200 answer to GET ``url`` (``http://`` or ``https://``)."""
    parts = urlsplit(url) if isinstance(url, str) else url
    for _ in range(MAX_REDIRECTS + 1):
        status, headers, body = await _get_once(parts, max_size, ssl_context)
        location = headers.get("location")
        if status in REDIRECTS and location:
            parts = urlsplit(urljoin(parts.geturl(), location))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpRedirectError(f"redirected to {location!r}", unsupported=True)
            continue
        if status == 200:
            return body
        raise HttpStatusError(parts.geturl(), status)
    raise HttpRedirectError("too many redirects", unsupported=False)


async def _get_once(
    parts: SplitResult, max_size: int, ssl_context: ssl.SSLContext | None
) -> tuple[int, dict[str, str], bytes]:
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    context = (ssl_context or ssl.create_default_context()) if secure else None
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except socket.gaierror as exc:
        raise HttpNameError(f"cannot resolve {host!r}: {exc}") from None
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            authority += f":{parts.port}"
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: lwm2m-client\r\n"
            "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii", "strict"))
        await writer.drain()
        status = _status(await reader.readline())
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise HttpProtocolError("malformed HTTP header")
            headers[name.strip().lower()] = value.strip()
        else:
            raise HttpProtocolError("too many HTTP headers")
        if status != 200:
            return status, headers, b""
        return status, headers, await _body(reader, headers, max_size)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpProtocolError(f"not an HTTP response: {line[:40]!r}")
    return int(parts[1])


def _too_big(size: int, max_size: int) -> None:
    if size > max_size:
        raise HttpBodyTooLarge(f"body over {max_size} bytes")


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], max_size: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = (await reader.readline()).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise HttpProtocolError("malformed chunk size") from None
            if size == 0:
                return bytes(out)
            _too_big(len(out) + size, max_size)
            out += await reader.readexactly(size)
            await reader.readline()  # the CRLF after each chunk
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpProtocolError(f"bad Content-Length {length!r}")
        _too_big(int(length), max_size)
        return await reader.readexactly(int(length))
    body = bytearray()  # no length: the body ends with the connection
    while chunk := await reader.read(1 << 16):
        body += chunk
        _too_big(len(body), max_size)
    return bytes(body)
