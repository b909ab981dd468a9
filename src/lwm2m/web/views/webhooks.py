"""Webhooks: ``/api/webhooks`` (register, list, one, delete), posted by
:mod:`lwm2m.export.webhooks`. A hook's secret is answered once, when it is registered."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import InvalidWebhook
from lwm2m.export.webhooks import Webhooks
from lwm2m.storage.webhooks import Webhook
from lwm2m.web.context import api_context
from lwm2m.web.params import json_body

__all__ = ["create", "listing", "one", "remove"]


def webhooks_of(request: Request) -> Webhooks:
    webhooks = api_context(request).webhooks
    assert webhooks is not None  # create_app sets them
    return webhooks


def hook_view(hook: Webhook) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": hook.hook_id,
        "url": hook.url,
        "events": list(hook.events),
        "createdAt": hook.created_at,
    }
    if hook.batch_events > 1:
        view["batch"] = {"maxEvents": hook.batch_events, "maxDelay": hook.batch_delay}
    return view


def batch_of(body: dict[str, Any]) -> tuple[int, float] | None:
    """``"batch": {"maxEvents": N, "maxDelay": SECONDS}`` of a body (None when absent)."""
    if "batch" not in body:
        return None
    batch = body["batch"]
    if not isinstance(batch, dict) or set(batch) != {"maxEvents", "maxDelay"}:
        raise InvalidWebhook(
            'batch: {"maxEvents": N, "maxDelay": SECONDS}, e.g. {"maxEvents": 100, "maxDelay": 1}'
        )
    return batch["maxEvents"], batch["maxDelay"]


async def create(request: Request) -> Response:
    """``POST /api/webhooks`` {url, events, secret?, batch?}: 201 with the hook and its secret."""
    body = await json_body(request)
    unknown = sorted(set(body) - {"url", "events", "secret", "batch"})
    if unknown:
        raise InvalidWebhook(f"unknown fields: {', '.join(unknown)}")
    events = body.get("events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise InvalidWebhook('events: a list of event types, e.g. ["NOTIFICATION"]')
    url, secret = body.get("url"), body.get("secret")
    if not isinstance(url, str):
        raise InvalidWebhook(
            'url: the http:// or https:// URL events are posted to, e.g. "https://example.com/hook"'
        )
    if "secret" in body and not isinstance(secret, str):  # null is not a secret
        raise InvalidWebhook("secret: a string")
    hook = await webhooks_of(request).add(url, events, secret, batch_of(body))
    view = {**hook_view(hook), "secret": hook.secret}
    return JSONResponse(view, status_code=201, headers={"Location": f"/api/webhooks/{hook.hook_id}"})


async def listing(request: Request) -> Response:
    return JSONResponse([hook_view(h) for h in await webhooks_of(request).all()])


async def one(request: Request) -> Response:
    return JSONResponse(hook_view(await webhooks_of(request).get(request.path_params["id"])))


async def remove(request: Request) -> Response:
    hook_id = request.path_params["id"]
    await webhooks_of(request).remove(hook_id)
    return JSONResponse({"removed": hook_id})
