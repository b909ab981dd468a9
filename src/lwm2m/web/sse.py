"""Server events as Server-Sent Events (text/event-stream, WHATWG HTML §9.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from lwm2m.server.server import LwM2MServer
from lwm2m.web.requests import RequestCompleted, RequestTable
from lwm2m.web.views import event_endpoint, event_view

KEEPALIVE_INTERVAL = 15.0
REQUEST_DONE = "REQUEST_DONE"
EVENTS_DROPPED = "EVENTS_DROPPED"


def format_event(name: str, data: object) -> bytes:
    # json.dumps never emits a newline, so the data fits on one "data:" line.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def event_stream(
    server: LwM2MServer,
    endpoint: str | None = None,
    *,
    requests: RequestTable | None = None,
    keepalive: float = KEEPALIVE_INTERVAL,
) -> AsyncIterator[bytes]:
    """Every server event, and every outcome of a queued request of ``requests`` (as
    ``REQUEST_DONE``), of ``endpoint`` only if given, from now on.

    Subscribes at the first iteration and unsubscribes when the consumer stops
    (Starlette cancels the stream when the HTTP client disconnects). A client that reads
    slower than events come loses the oldest beyond the server's backlog: an
    ``EVENTS_DROPPED`` event says how many, before the next event it gets.
    """
    stream = server.events()
    dropped = 0
    done = requests.subscribe() if requests is not None else None
    next_event: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
    next_done: asyncio.Future[RequestCompleted] | None = (
        asyncio.ensure_future(done.get()) if done is not None else None
    )
    try:
        # An opening comment tells the client the subscription is live.
        yield b": subscribed\n\n"
        while True:
            waiting = {next_event} if next_done is None else {next_event, next_done}
            ready, _ = await asyncio.wait(waiting, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
            if not ready:
                # Comments keep proxies and idle timers from closing a quiet stream.
                yield b": keep-alive\n\n"
                continue
            if next_event in ready:
                event = next_event.result()
                next_event = asyncio.ensure_future(anext(stream))
                if stream.dropped != dropped:
                    yield format_event(EVENTS_DROPPED, {"count": stream.dropped - dropped})
                    dropped = stream.dropped
                if endpoint is None or event_endpoint(event) == endpoint:
                    yield format_event(*event_view(event))
            if next_done is not None and next_done in ready:
                finished = next_done.result()
                assert done is not None
                next_done = asyncio.ensure_future(done.get())
                if endpoint is None or finished.endpoint == endpoint:
                    yield format_event(REQUEST_DONE, finished.request.to_json())
    finally:
        # Cancelled, not awaited: a generator being closed should not wait on anything.
        for future in (next_event, next_done):
            if future is not None:
                future.cancel()
        stream.close()
        if requests is not None and done is not None:
            requests.unsubscribe(done)
