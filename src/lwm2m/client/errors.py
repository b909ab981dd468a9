"""Errors an object handler raises to answer the server with a CoAP error code.

A handler (``ObjectInstance.read``/``write``/``execute``, an object's create or
delete) raises one of these; the request handler turns it into the response
code with the message as diagnostic payload (LwM2M-TS-Core 1.2 §6.3, the
response codes of each operation).
"""

from __future__ import annotations

from lwm2m.coap.numbers import Code


class OperationFailed(Exception):
    """An operation the client refuses; ``code`` is the CoAP response code."""

    code: Code = Code.INTERNAL_SERVER_ERROR

    def __init__(self, message: str = "", code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class BadRequest(OperationFailed):
    code = Code.BAD_REQUEST


class Unauthorized(OperationFailed):
    code = Code.UNAUTHORIZED


class NotFound(OperationFailed):
    code = Code.NOT_FOUND


class MethodNotAllowed(OperationFailed):
    code = Code.METHOD_NOT_ALLOWED


class NotAcceptable(OperationFailed):
    code = Code.NOT_ACCEPTABLE


class UnsupportedContentFormat(OperationFailed):
    code = Code.UNSUPPORTED_CONTENT_FORMAT


class RegistrationFailed(Exception):
    """The server refused a Register or an Update; ``code`` is its answer and ``diagnostic``
    the reason its payload gave (RFC 7252 §5.5.2), if any."""

    def __init__(self, message: str, code: int | None = None, diagnostic: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.diagnostic = diagnostic
