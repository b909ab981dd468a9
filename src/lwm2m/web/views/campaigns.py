"""Firmware update campaigns: ``/api/campaigns`` (create, list), ``/api/campaigns/{id}`` (one, with
its waves and devices) and ``/api/campaigns/{id}/pause|resume|cancel`` (see
:mod:`lwm2m.fleet.campaigns`); their events go to the SSE stream as ``CAMPAIGN_*``.

On a cluster every node answers alike: the listing and a campaign come from the shared store
(the node that runs one, from its own copy), and pause, resume, cancel and delete go to the node
whose runner holds the campaign's lease, over the request bus, as the API call they are (marked
with :data:`RUNNER_HEADER`, so that they are never sent on again); a campaign no live node runs
is taken over by the node asked (:meth:`~lwm2m.fleet.campaigns.Campaigns.pause` and its kin)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import BusTimeout, InvalidCampaign, LwM2MError
from lwm2m.fleet.campaigns import Campaign, CampaignEvent, Campaigns, CampaignSpec, Retries, Target, Waves
from lwm2m.web import bodies
from lwm2m.web.cluster import Cluster
from lwm2m.web.context import api_context
from lwm2m.web.errors import error
from lwm2m.web.params import json_body
from lwm2m.web.sse import mixed_in

RUNNER_HEADER = "x-lwm2m-campaign-runner"  # a call sent on to the runner's node: served there
ACTION_TIMEOUT = 60.0  # seconds the runner's node has for an action (a cancel tells devices)

__all__ = [
    "cancel",
    "create",
    "event_view",
    "listing",
    "one",
    "pause",
    "resume",
    "spec_of",
    "with_campaign_events",
]


def campaigns_of(request: Request) -> Campaigns:
    campaigns: Campaigns = request.app.state.campaigns
    return campaigns


def _share(value: int | str) -> tuple[int | None, float | None]:
    """A count (``5``) or a percentage (``"5%"``)."""
    if isinstance(value, int):
        return value, None
    return None, float(value.rstrip("%"))


def _seconds(hhmm: str) -> float:
    hours, minutes = hhmm.split(":")
    return float(int(hours) * 3600 + int(minutes) * 60)


def spec_of(data: dict[str, Any]) -> CampaignSpec:
    """The campaign a ``POST /api/campaigns`` body describes (InvalidCampaign: 400)."""
    try:
        body = msgspec.convert(data, bodies.CampaignBody)
    except msgspec.ValidationError as exc:
        raise InvalidCampaign(f"campaign: {exc}") from None
    target = body.target if not isinstance(body.target, msgspec.UnsetType) else bodies.CampaignTarget()
    waves = body.waves if not isinstance(body.waves, msgspec.UnsetType) else bodies.CampaignWaves()
    retries = body.retries if not isinstance(body.retries, msgspec.UnsetType) else bodies.CampaignRetries()
    canary, canary_percent = _share(waves.canary)
    if canary_percent == 0:
        canary, canary_percent = 0, None  # no canary
    halt_after, halt_percent = _share(body.halt_after) if body.halt_after is not None else (None, None)
    return CampaignSpec(
        package_id=body.package_id,
        target=Target(
            target.endpoints,
            target.object_id,
            target.version_path,
            target.version_equal,
            target.version_not_equal,
            tuple((target.labels or {}).items()),
        ),
        delivery=body.delivery,
        waves=Waves(canary or 0, canary_percent, waves.batch, waves.in_flight),
        retries=Retries(retries.attempts, retries.backoff, retries.factor),
        window=None if body.window is None else (_seconds(body.window.start), _seconds(body.window.end)),
        halt_after=halt_after,
        halt_percent=halt_percent,
        step_timeout=body.step_timeout,
    )


async def create(request: Request) -> Response:
    """``POST /api/campaigns``: 201 with the campaign and its devices."""
    spec = spec_of(await json_body(request))
    campaign = await campaigns_of(request).create(spec)
    return JSONResponse(
        campaign.detail(), status_code=201, headers={"Location": f"/api/campaigns/{campaign.id}"}
    )


async def listing(request: Request) -> Response:
    return JSONResponse([c.summary() for c in await campaigns_of(request).listing()])


async def one(request: Request) -> Response:
    """``GET /api/campaigns/{id}``: also one stored by another node sharing the store."""
    return JSONResponse((await campaigns_of(request).find(request.path_params["id"])).detail())


async def pause(request: Request) -> Response:
    return await at_runner(request, campaigns_of(request).pause)


async def resume(request: Request) -> Response:
    return await at_runner(request, campaigns_of(request).resume)


async def cancel(request: Request) -> Response:
    return await at_runner(request, campaigns_of(request).cancel)


async def delete(request: Request) -> Response:
    """``DELETE /api/campaigns/{id}``: a done or cancelled campaign is forgotten; its last summary."""
    return await at_runner(request, campaigns_of(request).delete)


async def at_runner(request: Request, action: Callable[[str], Awaitable[Campaign]]) -> Response:
    """``action`` on the campaign, by the node whose runner holds it (this one, or another live
    node, which gets the call over the bus); its summary after the action."""
    campaign_id = request.path_params["id"]
    cluster = api_context(request).cluster
    if cluster is not None and RUNNER_HEADER not in request.headers:
        node = await campaigns_of(request).runner(campaign_id)
        if node is not None and node != cluster.node_id and await cluster.alive(node):
            return await _sent_to(request, cluster, node)
    return JSONResponse((await action(campaign_id)).summary())


async def _sent_to(request: Request, cluster: Cluster, node: str) -> Response:
    payload = {
        "method": request.method,
        "path": request.url.path,
        "query": "",
        "headers": [[RUNNER_HEADER, cluster.node_id]],
        "body": base64.b64encode(await request.body()).decode(),
    }
    try:
        answer = await cluster.ask(node, payload, ACTION_TIMEOUT)
        if not isinstance(answer, dict):
            raise ValueError("an answer that is not an HTTP response")
        status = int(answer["status"])
        content = base64.b64decode(answer["body"], validate=True)
        kind = next((v for k, v in answer["headers"] if k.lower() == "content-type"), "application/json")
    except BusTimeout:
        return error(
            504, f"the node {node} that runs campaign {request.path_params['id']} did not answer in time"
        )
    except (LwM2MError, ValueError, KeyError, TypeError) as exc:
        return error(502, f"the node {node} that runs campaign {request.path_params['id']} failed: {exc}")
    return Response(content, status_code=status, media_type=kind)


def event_view(event: CampaignEvent) -> tuple[str, dict[str, Any]]:
    """The SSE event name (``CAMPAIGN_*``) and its JSON data."""
    return event.kind, event.to_dict()


def event_endpoint(event: CampaignEvent) -> str | None:
    return event.endpoint


def with_campaign_events(
    stream: AsyncIterator[bytes], campaigns: Campaigns, endpoint: str | None = None
) -> AsyncIterator[bytes]:
    """``stream`` (the server's SSE bytes) with the campaigns' events (``CAMPAIGN_*``) mixed in:
    for one endpoint, only the device events of that endpoint."""
    return mixed_in(stream, campaigns.events, event_view, endpoint, maxsize=1000)
