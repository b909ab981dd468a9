"""How the REST API answers failures: a JSON ``{"error": ...}`` and an HTTP status per cause.

The device's own CoAP result (4.04, 4.05, …) is not an HTTP error: it travels in
``code`` with HTTP 200. The statuses here are for what went wrong before or
around the device: an unknown endpoint (404), a bad request (400), a device
that never answered or never woke up (504) or answered something we cannot
decode (502). A request queued for a sleeping client reports the same status
and message in its result (:func:`describe`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.codec.base import CodecError
from lwm2m.codec.linkformat import LinkFormatError
from lwm2m.model.jsonform import JsonFormError
from lwm2m.model.path import InvalidPath
from lwm2m.protocol.attributes import InvalidAttributes
from lwm2m.protocol.bootstrap_config import ConfigError
from lwm2m.protocol.management import OperationError, ResponseError
from lwm2m.server.presence import QueueTimeout
from lwm2m.server.server import UnknownEndpoint

log = logging.getLogger("lwm2m.web")


class BadRequest(ValueError):
    """A query parameter or body the API cannot use; the message names the bad value."""


class NotFound(LookupError):
    """Something the API was asked about that it does not hold (an observation, a model)."""


class MethodNotAllowed(Exception):
    """A method the resource does not take; ``allow`` lists those it takes (RFC 9110 §15.5.6:
    a 405 carries ``Allow``)."""

    def __init__(self, method: str, allow: Iterable[str], what: str) -> None:
        self.allow = tuple(allow)
        super().__init__(f"{method} is not allowed on {what}; use {', '.join(self.allow)}")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _as_is(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# (status, message) by exception type. Looked up along the raised exception's MRO, as
# Starlette picks its handlers, so ResponseError (a ValueError) gets 502 before the
# ValueError rule, and QueueTimeout (a TimeoutError) its own words.
RULES: dict[type[BaseException], tuple[int, Callable[[BaseException], str]]] = {
    UnknownEndpoint: (404, _as_is),
    NotFound: (404, _as_is),
    ResponseError: (502, lambda exc: f"the device's answer cannot be understood: {exc}"),
    InvalidPath: (400, _as_is),
    CodecError: (400, _as_is),
    JsonFormError: (400, _as_is),
    OperationError: (400, _as_is),
    InvalidAttributes: (400, _as_is),
    LinkFormatError: (400, _as_is),
    ConfigError: (400, _as_is),  # a bootstrap configuration refused after parsing (set_config)
    BadRequest: (400, _as_is),
    ValueError: (400, _as_is),
    QueueTimeout: (504, lambda exc: f"the device did not wake up: {exc}"),
    TimeoutError: (504, lambda exc: f"the device did not answer: {str(exc) or 'timeout'}"),
    ConnectionError: (502, lambda exc: f"the device refused the request: {exc or type(exc).__name__}"),
}


def describe(exc: BaseException) -> tuple[int, str] | None:
    """The HTTP status and message the API gives for ``exc``; None for an unexpected error."""
    for kind in type(exc).__mro__:
        rule = RULES.get(kind)
        if rule is not None:
            status, message = rule
            return status, message(exc)
    return None


async def _handle(request: Request, exc: Exception) -> Response:
    found = describe(exc)
    assert found is not None  # registered only for the types of RULES
    return error(*found)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MethodNotAllowed)
    return error(405, str(exc), {"Allow": ", ".join(exc.allow)})


async def _http(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method the route does not take, a missing
    static file) in the API's one error shape, keeping their headers (``Allow`` on a 405)."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):  # no body allowed (RFC 9110 §15.3.5, §15.4.5)
        return Response(status_code=exc.status_code, headers=headers)
    if exc.status_code == 404:
        message = f"no such resource: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; use {headers.get('Allow', '')}"
    else:
        message = exc.detail or HTTPStatus(exc.status_code).phrase
    return error(exc.status_code, message, headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered in the error shape without its details."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, "internal server error (the server log has the details)")


EXCEPTION_HANDLERS: dict[object, Callable[[Request, Exception], object]] = {
    **dict.fromkeys(RULES, _handle),
    MethodNotAllowed: _not_allowed,
    HTTPException: _http,
    Exception: _unexpected,
}
