"""The REST API's answer per error category, and a 500 with a log line for anything else."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lwm2m import errors
from lwm2m.web.errors import EXCEPTION_HANDLERS, describe

RAISED: dict[str, BaseException] = {
    "not-registered": errors.NotRegistered("dev-1 is not registered"),
    "codec": errors.CodecError("not TLV"),
    "path": errors.InvalidPath("/a/b"),
    "protocol": errors.InvalidAttributes("pmin=-1"),
    "config": errors.ConfigError("mode: 'x' is not psk, x509 or nosec"),
    "answer": errors.ResponseError("bad SenML"),
    "device": errors.NotFound("no such instance"),
    "asleep": errors.QueueTimeout("30 s"),
    "timeout": errors.RequestTimeout("no answer"),
    "reset": errors.RequestReset("RST"),
    "store": errors.StoreError("closed"),
    "api": errors.InvalidRequest("limit: 'x' is not a number"),
    "missing": errors.ResourceNotFound("no such observation"),
    "full": errors.TableFull("1000 requests are waiting"),
    "method": errors.UnsupportedMethod("PATCH", ["GET", "PUT"], "/api/clients/dev-1/3/0/1"),
    "bug-value": ValueError("an internal bug"),
    "bug-key": KeyError("x"),
}
STATUS = {
    "not-registered": 404,
    "codec": 400,
    "path": 400,
    "protocol": 400,
    "config": 400,
    "answer": 502,
    "device": 502,
    "asleep": 504,
    "timeout": 504,
    "reset": 502,
    "store": 503,
    "api": 400,
    "missing": 404,
    "full": 503,
    "method": 405,
    "bug-value": 500,
    "bug-key": 500,
}


async def _raise(request: Request) -> Response:
    raise RAISED[request.path_params["what"]]


@pytest.fixture
def api() -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/{what}", _raise)], exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://api")


@pytest.mark.parametrize("what", sorted(RAISED))
async def test_each_category_has_its_status(
    api: httpx.AsyncClient, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="lwm2m.web"):
        answer = await api.get(f"/{what}")
    assert answer.status_code == STATUS[what]
    message = answer.json()["error"]
    if STATUS[what] == 500:
        # A bug is not the client's fault: no details in the answer, the traceback in the log.
        assert "internal server error" in message and str(RAISED[what]) not in message
        assert any(r.exc_info and r.exc_info[1] is RAISED[what] for r in caplog.records)
    else:
        assert str(RAISED[what]).strip("'") in message
        assert not caplog.records
    if what == "method":
        assert answer.headers["Allow"] == "GET, PUT"


def test_a_bare_value_error_is_not_a_client_error() -> None:
    assert describe(ValueError("x")) is None
    assert describe(errors.CodecError("x")) == (400, "x")
