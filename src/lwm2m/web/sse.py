"""Server events as Server-Sent Events (text/event-stream, WHATWG HTML §9.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from lwm2m.server.server import LwM2MServer
from lwm2m.web.views import event_endpoint, event_view

KEEPALIVE_INTERVAL = 15.0


def format_event(name: str, data: object) -> bytes:
    # json.dumps never emits a newline, so the data fits on one "data:" line.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def event_stream(
    server: LwM2MServer, endpoint: str | None = None, *, keepalive: float = KEEPALIVE_INTERVAL
) -> AsyncIterator[bytes]:
    """Every server event (of ``endpoint`` only, if given) from now on.

    Subscribes at the first iteration and unsubscribes when the consumer stops
    (Starlette cancels the stream when the HTTP client disconnects).
    """
    stream = server.events()
    try:
        # An opening comment tells the client the subscription is live.
        yield b": subscribed\n\n"
        while True:
            try:
                event = await asyncio.wait_for(anext(stream), keepalive)
            except TimeoutError:
                # Comments keep proxies and idle timers from closing a quiet stream.
                yield b": keep-alive\n\n"
                continue
            if endpoint is not None and event_endpoint(event) != endpoint:
                continue
            yield format_event(*event_view(event))
    finally:
        stream.close()
