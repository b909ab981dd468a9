"""How the REST API answers failures: a JSON ``{"error": ...}`` and an HTTP status per cause.

The device's own CoAP result (4.04, 4.05, …) is not an HTTP error: it travels in
``code`` with HTTP 200. The statuses here are for what went wrong before or
around the device: an unknown endpoint (404), a bad request (400), a device
that never answered (504) or answered something we cannot decode (502).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.coap.linkformat import LinkFormatError
from lwm2m.codec.base import CodecError
from lwm2m.model.jsonform import JsonFormError
from lwm2m.model.path import InvalidPath
from lwm2m.protocol.attributes import InvalidAttributes
from lwm2m.protocol.management import OperationError, ResponseError
from lwm2m.server.server import UnknownEndpoint


class BadRequest(ValueError):
    """A query parameter or body the API cannot use; the message names the bad value."""


class NotFound(LookupError):
    """Something the API was asked about that it does not hold (an observation, a model)."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return error(404, str(exc))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return error(400, str(exc) or type(exc).__name__)


async def _bad_gateway(request: Request, exc: Exception) -> Response:
    return error(502, f"the device's answer cannot be understood: {exc}")


async def _reset(request: Request, exc: Exception) -> Response:
    return error(502, f"the device refused the request: {exc or type(exc).__name__}")


async def _timeout(request: Request, exc: Exception) -> Response:
    return error(504, f"the device did not answer: {exc or 'timeout'}")


# Starlette picks the handler by walking the raised exception's MRO, so ResponseError
# (a ValueError) reaches the 502 handler before the ValueError one.
EXCEPTION_HANDLERS = {
    UnknownEndpoint: _not_found,
    NotFound: _not_found,
    ResponseError: _bad_gateway,
    InvalidPath: _bad_request,
    CodecError: _bad_request,
    JsonFormError: _bad_request,
    OperationError: _bad_request,
    InvalidAttributes: _bad_request,
    LinkFormatError: _bad_request,
    BadRequest: _bad_request,
    ValueError: _bad_request,
    TimeoutError: _timeout,
    ConnectionError: _reset,
}
