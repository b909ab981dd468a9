"""The package's one outgoing HTTP client: HTTP/1.1 (RFC 9110, RFC 9112) over asyncio streams,
with nothing beyond the stdlib.

Everything the package sends over HTTP goes through :class:`HttpClient`: a device pulling a
firmware package from an ``http://`` or ``https://`` URI (:func:`http_get`), the CLI's calls
to a running server's REST API and the simulator provisioning its devices there. It keeps
connections alive between requests (a few thousand PUTs go by in seconds), follows redirects
when asked, reads a body sent with Content-Length, chunked, or up to the close of the
connection, and never more than ``max_size`` bytes of a successful answer.

Failures raise :class:`HttpError` subclasses (a :class:`~lwm2m.errors.TransportError`) that say
what went wrong, for the caller to map; an answer with an error status is an answer, not an
exception, except for :meth:`HttpClient.get`, which wants a 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from lwm2m.errors import (
    HttpBodyTooLarge,
    HttpError,
    HttpNameError,
    HttpProtocolError,
    HttpRedirectError,
    HttpStatusError,
)

__all__ = [
    "HttpBodyTooLarge",
    "HttpClient",
    "HttpError",
    "HttpNameError",
    "HttpProtocolError",
    "HttpRedirectError",
    "HttpResponse",
    "HttpStatusError",
    "http_get",
    "url_path",
]

MAX_REDIRECTS = 3
MAX_HEADER_LINES = 100
MAX_BODY = 64 << 20  # of an API answer, unless the caller says otherwise
MAX_IDLE = 16  # kept-alive connections per origin
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "lwm2m"
_NO_BODY = object()
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")  # controls and space: not in a request target
_LINE_BREAK = re.compile("[\r\n]")


def url_path(*segments: str) -> str:
    """``/a/b/c`` from path segments, each percent-encoded whole (RFC 3986 §3.3): an endpoint name
    with ``/``, ``?`` or a space stays one segment."""
    return "".join("/" + quote(segment, safe="") for segment in segments)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One answer: its status, headers (names in lower case) and body, and the URL that gave it."""

    status: int
    reason: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    url: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx answer (RFC 9110 §15.3): anything else is a refusal or a failure."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON (None for an empty or non-JSON body)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_Origin = tuple[str, str, int]


class HttpClient:
    """HTTP/1.1 requests to ``base`` (a relative target is joined to it) or to absolute URLs.

    ``headers`` go with every request (e.g. ``Authorization``); ``timeout`` bounds each request
    (connect, send, answer; None: no bound); ``keep_alive`` keeps connections open between
    requests, up to ``MAX_IDLE`` idle ones per origin. Requests may run concurrently: each takes
    an idle connection or opens one. Use it as an async context manager, or :meth:`close` it.
    """

    def __init__(
        self,
        base: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        keep_alive: bool = True,
        max_size: int = MAX_BODY,
    ) -> None:
        self.base: SplitResult | None = None
        if base is not None:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"URL {base!r}: expected http://HOST[:PORT]")
            try:
                parts.port  # noqa: B018 - urlsplit checks the port only when asked
            except ValueError:
                raise ValueError(f"URL {base!r} has a bad port") from None
            self.base = parts
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.keep_alive = keep_alive
        self.max_size = max_size
        self._idle: dict[_Origin, list[_Connection]] = {}

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the idle connections."""
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        for _, writer in idle:
            await _close(writer)

    def url(self, target: str | SplitResult) -> SplitResult:
        """The absolute URL of ``target``: a path (with its query) goes under ``base``'s path."""
        if isinstance(target, SplitResult):
            return target
        if self.base is None or "://" in target:
            return urlsplit(target)
        path, _, query = target.partition("?")
        return self.base._replace(path=self.base.path.rstrip("/") + path, query=query, fragment="")

    async def get(self, url: str | SplitResult, *, max_size: int | None = None) -> bytes:
        """The body of a 200 answer to GET ``url``, following up to ``MAX_REDIRECTS`` redirects;
        :class:`HttpStatusError` for any other status."""
        answer = await self.request("GET", url, max_size=max_size, follow_redirects=True)
        if answer.status != 200:
            raise HttpStatusError(answer.url, answer.status)
        return answer.body

    async def request(
        self,
        method: str,
        url: str | SplitResult,
        *,
        body: bytes | None = None,
        json: Any = _NO_BODY,
        headers: Mapping[str, str] | None = None,
        max_size: int | None = None,
        follow_redirects: bool = False,
    ) -> HttpResponse:
        """``method url``: the answer, whatever its status. ``json`` (a value) is sent as the
        body with its Content-Type; ``max_size`` bounds the body of a 2xx answer."""
        extra = dict(headers or {})
        if json is not _NO_BODY:
            body = _json_body(json)
            extra.setdefault("Content-Type", "application/json")
        parts = self.url(url)
        limit = self.max_size if max_size is None else max_size
        for _ in range(MAX_REDIRECTS + 1):
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpError(f"{parts.geturl()!r}: not an http:// or https:// URL")
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await self._exchange(method, parts, body, extra, limit)
            except TimeoutError:
                raise HttpError(f"{parts.geturl()}: no answer in {self.timeout} s") from None
            location = answer.headers.get("location")
            if not (follow_redirects and answer.status in REDIRECTS and location):
                return answer
            parts = urlsplit(urljoin(parts.geturl(), location))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpRedirectError(f"redirected to {location!r}", unsupported=True)
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                method, body = "GET", None  # RFC 9110 §15.4.4: the answer is elsewhere, GET it
        raise HttpRedirectError("too many redirects", unsupported=False)

    # --- one exchange on one connection -----------------------------------------------------------

    async def _exchange(
        self, method: str, parts: SplitResult, body: bytes | None, extra: Mapping[str, str], limit: int
    ) -> HttpResponse:
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        origin = (parts.scheme, host, port)
        request = self._head(method, parts, host, body, extra) + (body or b"")
        while True:
            reused, (reader, writer) = await self._connection(origin)
            try:
                writer.write(request)
                await writer.drain()
                line = await reader.readline()
            except (OSError, asyncio.IncompleteReadError) as exc:
                await _close(writer)
                if reused:  # a kept-alive connection the server closed meanwhile: a new one
                    continue
                raise HttpError(f"{parts.geturl()}: {getattr(exc, 'strerror', None) or exc}") from None
            except BaseException:
                await _close(writer)
                raise
            if not line and reused:  # closed while idle (RFC 9112 §9.3.1): nothing was sent
                await _close(writer)
                continue
            break
        reusable = False
        try:
            answer, reusable = await _answer(line, reader, method, limit, parts.geturl())
        except HttpError:  # a ConnectionError itself: not to be wrapped again
            raise
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise HttpError(f"{parts.geturl()}: connection lost: {exc}") from None
        finally:
            if reusable and self.keep_alive and len(self._idle.setdefault(origin, [])) < MAX_IDLE:
                self._idle[origin].append((reader, writer))
            else:
                await _close(writer)
        return answer

    def _head(
        self, method: str, parts: SplitResult, host: str, body: bytes | None, extra: Mapping[str, str]
    ) -> bytes:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.isascii() or _BAD_TARGET.search(target):
            raise HttpError(f"{parts.geturl()!r}: not a valid request target")  # RFC 9112 §3.2
        authority = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            authority += f":{parts.port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
        lines += ["Accept-Encoding: identity", f"Connection: {'keep-alive' if self.keep_alive else 'close'}"]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        for name, value in {**self.headers, **extra}.items():
            if _LINE_BREAK.search(name) or _LINE_BREAK.search(value):  # no header injection through a value
                raise HttpError(f"header {name!r}: line breaks are not allowed")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _connection(self, origin: _Origin) -> tuple[bool, _Connection]:
        """(reused, connection): an idle one to ``origin`` if there is one, else a new one."""
        idle = self._idle.get(origin)
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return True, (reader, writer)
            await _close(writer)
        scheme, host, port = origin
        context = (self.ssl_context or ssl.create_default_context()) if scheme == "https" else None
        try:
            return False, await asyncio.open_connection(host, port, ssl=context)
        except socket.gaierror as exc:
            raise HttpNameError(f"cannot resolve {host!r}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpError(f"{scheme}://{host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None


async def http_get(
    url: str | SplitResult, *, max_size: int, ssl_context: ssl.SSLContext | None = None
) -> bytes:
    """The body of a 200 answer to GET ``url`` (``http://`` or ``https://``), on a connection of
    its own: what a device needs to pull a firmware package."""
    async with HttpClient(timeout=None, ssl_context=ssl_context, keep_alive=False) as client:
        return await client.get(url, max_size=max_size)


def _json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


async def _answer(
    line: bytes, reader: asyncio.StreamReader, method: str, limit: int, url: str
) -> tuple[HttpResponse, bool]:
    """The answer whose status line is ``line``, and whether its connection can carry another."""
    status, reason = _status(line)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, sep, value = header.decode("latin-1").partition(":")
        if not sep:
            raise HttpProtocolError("malformed HTTP header")
        headers[name.strip().lower()] = value.strip()
    else:
        raise HttpProtocolError("too many HTTP headers")
    keep = "close" not in headers.get("connection", "").lower()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return HttpResponse(status, reason, headers, b"", url), keep  # RFC 9112 §6.3: no body
    # An error answer's body only says why: read what fits, never fail on its size.
    ok = 200 <= status < 300
    body, complete = await _body(reader, headers, limit, strict=ok)
    return HttpResponse(status, reason, headers, body, url), keep and complete


def _status(line: bytes) -> tuple[int, str]:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpProtocolError(f"not an HTTP response: {line[:40]!r}")
    reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
    return int(parts[1]), reason


async def _body(
    reader: asyncio.StreamReader, headers: Mapping[str, str], limit: int, *, strict: bool
) -> tuple[bytes, bool]:
    """The body and whether it ended where the framing says (the connection can carry on).
    Over ``limit`` bytes: HttpBodyTooLarge when ``strict``, else the first ``limit`` bytes."""

    def too_big(size: int) -> bool:
        if size > limit and strict:
            raise HttpBodyTooLarge(f"body over {limit} bytes")
        return size > limit

    if "chunked" in headers.get("transfer-encoding", "").lower():  # RFC 9112 §7.1
        out = bytearray()
        while True:
            size_line = (await reader.readline()).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise HttpProtocolError("malformed chunk size") from None
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return bytes(out), True
            if too_big(len(out) + size):
                return bytes(out[:limit]), False
            out += await reader.readexactly(size)
            await reader.readline()  # the CRLF after each chunk
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpProtocolError(f"bad Content-Length {length!r}")
        if too_big(int(length)):
            return await reader.read(limit), False
        return await reader.readexactly(int(length)), True
    body = bytearray()  # no length: the body ends with the connection
    while chunk := await reader.read(1 << 16):
        body += chunk
        if too_big(len(body)):
            return bytes(body[:limit]), False
    return bytes(body), False
