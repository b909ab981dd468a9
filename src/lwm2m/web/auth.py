"""The bearer token every ``/api`` request carries when the API was started with one."""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BearerAuth"]


class BearerAuth:
    """Every ``/api`` request but the OpenAPI document and its page must carry
    ``Authorization: Bearer TOKEN`` (RFC 6750 §2.1)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # The document and its page describe the API and hold nothing secret; a browser opening
        # the page cannot send a bearer token, but the page's "Authorize" can for the calls.
        public = path == "/api/openapi.json" or path == "/api/docs" or path.startswith("/api/docs/")
        if scope["type"] == "http" and path.startswith("/api") and not public:
            given = dict(scope["headers"]).get(b"authorization", b"")
            # compare_digest: the time taken must not tell how much of the token matched.
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="lwm2m"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
