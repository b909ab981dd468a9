"""Observe and its cancel (LwM2M-TS-Core 1.2 §6.4.2, §6.4.4): ``POST .../observe`` starts an
observation kept by the app (:class:`~lwm2m.web.observations.ObservationKeeper`), whose
notifications reach API users as SSE events; ``DELETE`` cancels it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import ObserveRefused, ResourceNotFound
from lwm2m.model.path import Path
from lwm2m.protocol.registration import Registration
from lwm2m.server.observation import ServerObservation
from lwm2m.web.context import api_context
from lwm2m.web.observations import ObservationKey, composite_key
from lwm2m.web.params import flag, json_body, on_end_device, query_format, query_paths, request_paths, timeout
from lwm2m.web.shapes import response_view
from lwm2m.web.views.base import run

__all__ = ["cancel", "cancel_path", "composite_cancel", "composite_observe", "observe"]


def _observed(observation: ServerObservation) -> dict[str, Any]:
    assert observation.response is not None  # a new observation has its first answer
    return {**response_view(observation.response), "token": observation.token.hex()}


async def observe(request: Request, registration: Registration, path: Path) -> Response:
    api = api_context(request)
    ep = registration.endpoint
    fmt, wait = query_format(request), timeout(request)

    async def work() -> dict[str, Any]:
        try:
            observation = await api.server.observe(ep, path, format=fmt, timeout=wait)
        except ObserveRefused as exc:
            return response_view(exc.response)
        await api.observations.keep(ep, path, observation)
        return _observed(observation)

    return await run(request, registration, work)


async def cancel(
    request: Request, registration: Registration, key: ObservationKey, named: str | list[str]
) -> Response:
    """Cancel a kept observation: passive at once; active (``?active=true``) also tells the
    client, which waits for a sleeping one like any request."""
    keeper = api_context(request).observations
    ep = registration.endpoint
    active = flag(request, "active", False)
    missing = f"no observation of {', '.join(named) if isinstance(named, list) else named} on {ep!r}"
    if (ep, key) not in keeper:
        await keeper.settled()  # after a restart: maybe one the server has not taken up yet
    if (ep, key) not in keeper:
        raise ResourceNotFound(missing)

    async def work() -> dict[str, Any]:
        if not await keeper.cancel(ep, key, active=active):
            raise ResourceNotFound(missing)
        return {"cancelled": named, "active": active}

    if not active:
        return JSONResponse(await work())
    return await run(request, registration, work)


async def cancel_path(request: Request, registration: Registration, path: Path) -> Response:
    """``DELETE .../{path}/observe``: cancel the observation of one path."""
    return await cancel(request, registration, path, str(path))


async def composite_observe(request: Request, registration: Registration, prefix: str = "") -> Response:
    """Observe-Composite (LwM2M-TS-Core 1.2 §6.4.4), kept under its set of paths: POST starts it
    (``{"paths": [...]}``; on an end device's URL, ``prefix``, its own paths)."""
    api = api_context(request)
    ep = registration.endpoint
    paths = on_end_device(request_paths(await json_body(request)), prefix)
    fmt, wait = query_format(request), timeout(request)

    async def work() -> dict[str, Any]:
        try:
            observation = await api.server.observe_composite(ep, paths, format=fmt, timeout=wait)
        except ObserveRefused as exc:
            return response_view(exc.response)
        await api.observations.keep(ep, composite_key(paths), observation)
        return _observed(observation)

    return await run(request, registration, work)


async def composite_cancel(request: Request, registration: Registration, prefix: str = "") -> Response:
    """``DELETE .../composite/observe?paths=...`` cancels it like a single-path observation."""
    key = composite_key(on_end_device(query_paths(request), prefix))
    return await cancel(request, registration, key, [str(p) for p in key])
