"""What keeps a web page on another site from driving the local REST API.

A browser lets any page send some requests to any address, the API's loopback
one included: "simple" requests (Fetch Standard §3.2.3, CORS-safelisted
request headers) go out without a CORS preflight, with a ``text/plain``,
form or multipart body, and DNS rebinding lets a page on a name its owner
controls make same-origin requests to 127.0.0.1 under that name. So, with or
without a bearer token, every request must pass three rules:

- its ``Host`` is the address the API was reached at, ``localhost``, a
  loopback literal when served on loopback, any IP literal when served on a
  wildcard address, or a name given with ``allowed_hosts``: otherwise 421
  (RFC 9110 §15.5.20, the request was not meant for this server). Rebinding
  needs a name, so a name not listed never gets in;
- its ``Origin``, when present, is the API's own (``scheme://host[:port]`` as
  served) or one of ``cors_origins``: otherwise 403 (``Origin: null`` is
  cross-site, RFC 6454 §7.3);
- a POST, PUT, PATCH or DELETE with a body that a page could send without a
  preflight (``text/plain``, ``application/x-www-form-urlencoded``,
  ``multipart/form-data``, or no ``Content-Type`` at all) gets 415: the API
  takes JSON (and ``application/octet-stream`` uploads).

No CORS header is ever sent unless ``cors_origins`` names origins; then
preflights from those origins are answered and their responses carry
``Access-Control-Allow-Origin`` (Fetch Standard §3.2.5).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwm2m.errors import ConfigError

log = logging.getLogger(__name__)

# Content types of a body a page may send anywhere without a preflight (Fetch Standard §2.2.2,
# CORS-safelisted request-header `Content-Type`).
SIMPLE_CONTENT_TYPES = frozenset(("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"))
STATE_CHANGING = frozenset(("POST", "PUT", "PATCH", "DELETE"))
WILDCARD = frozenset(("0.0.0.0", "::", ""))
ALLOWED_METHODS = "GET, PUT, POST, DELETE, PATCH"
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE = "600"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (IPv6 in brackets) as (lowercased host without brackets, port); None if malformed."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if host == "" or not _is_ip(host):
            return None
    else:
        host, sep, port_text = value.partition(":")
        rest = sep + port_text
        if ":" in port_text:  # an unbracketed IPv6 literal is not a valid Host (RFC 3986 §3.2.2)
            return None
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        return None
    port = int(rest[1:])
    return (host, port) if port <= 65535 else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lowercased, the default port dropped; ValueError if it is not one."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or not rest or "/" in rest:
        raise ConfigError(f"{origin!r} is not an origin like http://host:port")
    parts = split_host(rest)
    if parts is None:
        raise ConfigError(f"{origin!r} is not an origin like http://host:port")
    host, port = parts
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class LocalApiGuard:
    """ASGI middleware applying the rules of this module to every HTTP request, static files included.

    ``bind_host`` is the address the API listens on, when known: with a wildcard
    (``0.0.0.0``, ``::``) any IP literal is a fine ``Host``. Without it, the address
    each connection arrived at (the ASGI ``server``) is the bound one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bind_host: str | None = None,
        allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.bind_host = None if bind_host is None else bind_host.strip("[]").lower()
        self.allowed_hosts = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts)
        self.cors_origins = frozenset(normalize_origin(o) for o in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        refusal = self._check(scope, headers)
        origin = self._cors_origin(headers)
        preflight = scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers
        if refusal is None and origin is not None and preflight:
            refusal = self._preflight()
        if refusal is not None:
            await self._send(refusal, origin, scope, receive, send)
            return
        if not self.cors_origins:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add_cors(MutableHeaders(scope=message), origin)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    # --- the rules ---------------------------------------------------------------------------

    def _check(self, scope: Scope, headers: dict[bytes, bytes]) -> Response | None:
        raw_host = headers.get(b"host", b"").decode("latin-1")
        host = split_host(raw_host)
        if host is None or not self._host_allowed(host[0], scope):
            log.warning("refused %s: Host %r is not this API's", _what(scope), raw_host)
            return _refuse(
                421,
                f"Host {raw_host!r} is not an address of this API; "
                "a name used to reach it must be given with --allowed-host",
            )
        raw_origin = headers.get(b"origin")
        if raw_origin is not None:
            origin_text = raw_origin.decode("latin-1")
            if not self._origin_allowed(origin_text, scope, raw_host):
                log.warning("refused %s: cross-site Origin %r", _what(scope), origin_text)
                return _refuse(403, f"cross-site request from {origin_text!r} refused (see --cors-origin)")
        method = scope.get("method", "GET")
        if method in STATE_CHANGING and _has_body(headers):
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            kind = content_type.partition(";")[0].strip().lower()
            if kind == "" or kind in SIMPLE_CONTENT_TYPES:
                log.warning("refused %s %s: body of type %r", method, scope["path"], content_type)
                given = f"not {content_type!r}" if content_type else "with a Content-Type"
                wanted = "application/json (or application/octet-stream)"
                return _refuse(415, f"a {method} body must be sent as {wanted}, {given}")
        return None

    def _host_allowed(self, host: str, scope: Scope) -> bool:
        if host == "localhost" or host in self.allowed_hosts or host == self.bind_host:
            return True  # the bound address, even when given as a name, is the user's choice
        served = scope.get("server")
        served_host = str(served[0]).lower() if served else None
        if host == served_host:
            return True
        if not _is_ip(host):
            return False
        bound = self.bind_host if self.bind_host is not None else served_host
        if bound in WILDCARD:
            # Any literal: DNS rebinding needs a name, and the machine may have many addresses.
            return True
        if bound is not None and host == bound:
            return True
        return bound is not None and _is_loopback(bound) and _is_loopback(host)

    def _origin_allowed(self, origin: str, scope: Scope, raw_host: str) -> bool:
        try:
            given = normalize_origin(origin)
        except ValueError:
            return False  # "null" and anything else that is not scheme://host[:port]
        if given in self.cors_origins:
            return True
        scheme = scope.get("scheme", "http")
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        try:
            return given == normalize_origin(f"{scheme}://{raw_host}")
        except ValueError:
            return False

    # --- CORS for the configured origins -------------------------------------------------------

    def _cors_origin(self, headers: dict[bytes, bytes]) -> str | None:
        raw = headers.get(b"origin")
        if raw is None or not self.cors_origins:
            return None
        try:
            given = normalize_origin(raw.decode("latin-1"))
        except ValueError:
            return None
        return raw.decode("latin-1") if given in self.cors_origins else None

    @staticmethod
    def _preflight() -> Response:
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            },
        )

    @staticmethod
    def _add_cors(headers: MutableHeaders, origin: str | None) -> None:
        # Vary on every answer once CORS is on: a cache must not hand one origin's answer to another.
        headers.add_vary_header("Origin")
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin

    async def _send(
        self, response: Response, origin: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if self.cors_origins:
            self._add_cors(response.headers, origin)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await response(scope, receive, send)


def _what(scope: Scope) -> str:
    return f"{scope.get('method', scope['type'])} {scope['path']}"


def _has_body(headers: dict[bytes, bytes]) -> bool:
    if b"transfer-encoding" in headers:
        return True
    length = headers.get(b"content-length", b"0").strip()
    return not (length.isdigit() and int(length) == 0)
