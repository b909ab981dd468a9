"""``GET /api/events``: the server's events (and the bootstrap server's, beside it) as
Server-Sent Events (WHATWG HTML §9.2), after up to ``backlog`` recent ones."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from lwm2m.errors import InvalidRequest
from lwm2m.web.cluster import fleet_event_stream
from lwm2m.web.context import api_context
from lwm2m.web.params import number
from lwm2m.web.sse import RECENT_EVENTS, event_stream
from lwm2m.web.views.bootstrap import with_bootstrap_events
from lwm2m.web.views.campaigns import with_campaign_events

__all__ = ["events", "streaming"]


def streaming(stream: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        # no-cache and no buffering: events must reach the browser as they happen.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def events(request: Request) -> Response:
    api = api_context(request)
    backlog = number(request, "backlog", int) or 0
    if not 0 <= backlog <= RECENT_EVENTS:
        raise InvalidRequest(f"backlog: {backlog} is not between 0 and {RECENT_EVENTS}")
    ep = request.query_params.get("ep")
    if api.cluster is not None:
        # The fleet's events, from every node; a reconnecting browser's Last-Event-ID resumes
        # them here whichever node it had (the recent ring of this node is not used).
        last = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
        # Checked before the stream starts: a bad id is a 400, not a stream that breaks. (Here,
        # not at the top: a single node runs without the cluster extra.)
        from lwm2m.cluster.events import check_event_id

        stream = fleet_event_stream(
            api.cluster.fleet, ep, last_event_id=check_event_id(last) if last else None
        )
    else:
        stream = event_stream(api.server, ep, requests=api.requests, recent=api.recent, backlog=backlog)
    if api.bootstrap is not None:
        stream = with_bootstrap_events(stream, api.bootstrap, ep)
    if api.cluster is None:  # a cluster node's runner puts its campaigns' events on the fleet's stream
        stream = with_campaign_events(stream, request.app.state.campaigns, ep)
    return streaming(stream)
