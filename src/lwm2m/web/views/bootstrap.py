"""``/api/bootstrap``: the bootstrap server's configurations and recent sessions (LwM2M-TS-Core 1.2 §6.1).

- ``GET /api/bootstrap``: ``{"server": {...}, "configs": [...], "sessions": [...]}``: every
  configuration (``*`` is the default one for endpoints that have none) and the running and
  recently ended sessions with their status, times, steps and failure reason.
- ``PUT /api/bootstrap/{ep}`` with the configuration's JSON form
  (:mod:`lwm2m.protocol.bootstrap_config`): 201 when new, 200 when it replaced one, 400 with
  the first problem when it is not usable (e.g. it leaves the device without a server account).
- ``GET /api/bootstrap/{ep}``: the configuration and the endpoint's recent sessions;
  ``DELETE /api/bootstrap/{ep}`` removes the configuration.

Keys go in and never come back out: answers leave out PSKs and private keys. When the
bootstrap server runs beside an LwM2M server (``lwm2m server --bootstrap-port``), a PUT
also gives that server's security store the credentials handed out (``?provision=false``
does not), so that the device it sets up can register over DTLS.

Events ``BOOTSTRAP_STARTED``, ``BOOTSTRAP_FINISHED`` and ``BOOTSTRAP_FAILED`` join the
``/api/events`` stream (:func:`with_bootstrap_events`), or make it alone for a bootstrap
server on its own (:func:`events`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from lwm2m.bootstrap.events import BootstrapEvent, BootstrapFailed, BootstrapFinished, BootstrapStarted
from lwm2m.bootstrap.server import BootstrapServer, security_info
from lwm2m.errors import ConfigError, InvalidRequest, ResourceNotFound
from lwm2m.protocol.bootstrap_config import DEFAULT_ENDPOINT, BootstrapConfig
from lwm2m.web.context import bootstrap_context
from lwm2m.web.errors import error
from lwm2m.web.sse import KEEPALIVE_INTERVAL, format_event, mixed_in

__all__ = [
    "EVENT_NAMES",
    "bootstrap_event_stream",
    "bootstrap_event_view",
    "events",
    "listing",
    "one",
    "put",
    "remove",
    "with_bootstrap_events",
]

EVENT_NAMES: dict[type, str] = {
    BootstrapStarted: "BOOTSTRAP_STARTED",
    BootstrapFinished: "BOOTSTRAP_FINISHED",
    BootstrapFailed: "BOOTSTRAP_FAILED",
}
SESSIONS_SHOWN = 50


def bootstrap_event_view(event: BootstrapEvent) -> tuple[str, dict[str, Any]]:
    """The SSE event name and its JSON data."""
    data: dict[str, Any] = {"endpoint": event.endpoint, "session": event.session.to_json()}
    if isinstance(event, BootstrapFailed):
        data["reason"] = event.reason
    return EVENT_NAMES[type(event)], data


def _config_view(endpoint: str, config: BootstrapConfig) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "default": endpoint == DEFAULT_ENDPOINT,
        "config": config.to_json(secrets=False),
    }


async def listing(request: Request) -> Response:
    bootstrap, _ = bootstrap_context(request)
    configs = await bootstrap.configs.all()
    sessions = bootstrap.sessions()
    ep = request.query_params.get("ep")
    if ep is not None:
        sessions = [s for s in sessions if s.endpoint == ep]
    shown = _limit(request)
    return JSONResponse(
        {
            "server": {"uri": bootstrap.uri},
            "configs": [_config_view(e, c) for e, c in configs.items()],
            "sessions": [s.to_json() for s in sessions[:shown]],
        }
    )


async def one(request: Request) -> Response:
    bootstrap, _ = bootstrap_context(request)
    ep = request.path_params["ep"]
    config = await bootstrap.configs.get(ep)
    if config is None:
        raise ResourceNotFound(f"no bootstrap configuration for {ep!r}")
    view = _config_view(ep, config)
    view["sessions"] = [s.to_json() for s in bootstrap.sessions() if s.endpoint == ep][:SESSIONS_SHOWN]
    return JSONResponse(view)


async def remove(request: Request) -> Response:
    bootstrap, _ = bootstrap_context(request)
    ep = request.path_params["ep"]
    if await bootstrap.configs.remove(ep) is None:
        raise ResourceNotFound(f"no bootstrap configuration for {ep!r}")
    return JSONResponse({"removed": ep})


async def put(request: Request) -> Response:
    """Store the configuration of ``ep``; give the security store the credentials it hands out
    (unless ``?provision=false``)."""
    bootstrap, security = bootstrap_context(request)
    ep = request.path_params["ep"]
    provision = _provision(request)  # a bad value is refused before anything is stored
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        raise InvalidRequest("the body is not JSON") from None
    try:
        config = BootstrapConfig.from_json(body, bootstrap.models)
    except ConfigError as exc:
        return error(400, str(exc))
    replaced = await bootstrap.set_config(ep, config)
    view = _config_view(ep, config)
    view["provisioned"] = False
    info = security_info(ep, config)
    if security is not None and info is not None and provision:
        try:
            await security.put(info)
        except ValueError as exc:  # the PSK identity belongs to another endpoint
            return error(409, f"stored, but the LwM2M server's security store refused it: {exc}")
        view["provisioned"] = True
    return JSONResponse(view, status_code=200 if replaced is not None else 201)


def _provision(request: Request) -> bool:
    """``?provision=``: true (the default) or false, as the API's other flags (1/0, yes/no too)."""
    raw = request.query_params.get("provision")
    if raw is None or raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"provision: {raw[:40]!r} is not true or false")


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return SESSIONS_SHOWN
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise InvalidRequest(f"limit: {raw[:40]!r} is not a number of sessions")
    return int(raw)


# --- events --------------------------------------------------------------------------------


async def events(request: Request) -> Response:
    """``/api/events`` of a bootstrap server on its own: its events only."""
    bootstrap, _ = bootstrap_context(request)
    return StreamingResponse(
        bootstrap_event_stream(bootstrap, request.query_params.get("ep")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def bootstrap_event_stream(
    bootstrap: BootstrapServer, endpoint: str | None = None, *, keepalive: float = KEEPALIVE_INTERVAL
) -> AsyncIterator[bytes]:
    """The bootstrap events (of ``endpoint`` only, if given) as Server-Sent Events, from now on."""
    stream = bootstrap.events()
    try:
        yield b": subscribed\n\n"
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    event = await anext(stream)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if endpoint is None or event.endpoint == endpoint:
                yield format_event(*bootstrap_event_view(event))
    finally:
        stream.close()


def with_bootstrap_events(
    stream: AsyncIterator[bytes], bootstrap: BootstrapServer, endpoint: str | None = None
) -> AsyncIterator[bytes]:
    """``stream`` (the LwM2M server's SSE bytes) with the bootstrap events mixed in."""
    return mixed_in(stream, bootstrap.events, bootstrap_event_view, endpoint)
