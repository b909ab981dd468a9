"""``/api/clients/{ep}/trace``: the device's CoAP message trace (:mod:`lwm2m.server.trace`):
switched on for a while (``PUT ?ttl=``), off (``DELETE``), read (``GET``) and followed as
Server-Sent Events (``GET …/trace/events``: ``TRACE`` per message, ``TRACE_END`` when the trace
is switched off or its time is up).

The device must be registered (404 otherwise, as everywhere under ``/api/clients/{ep}/``). The
trace is this node's: of a cluster, the node the device's datagrams reach.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lwm2m.errors import InvalidRequest, ResourceNotFound
from lwm2m.protocol.registration import Registration
from lwm2m.server.trace import MessageTrace, as_summary
from lwm2m.web.context import api_context
from lwm2m.web.params import number
from lwm2m.web.sse import KEEPALIVE_INTERVAL, format_event
from lwm2m.web.views.events import streaming

__all__ = ["TRACE", "TRACE_END", "events", "get", "start", "stop"]

TRACE = "TRACE"
TRACE_END = "TRACE_END"


def trace_of(request: Request) -> MessageTrace:
    return api_context(request).server.trace


async def get(request: Request, registration: Registration) -> Response:
    """The trace's state and the messages it keeps, oldest first (off: none)."""
    trace = trace_of(request)
    ep = registration.endpoint
    return JSONResponse({**trace.state(ep).to_dict(), "entries": trace.entries(ep)})


async def start(request: Request, registration: Registration) -> Response:
    """Switch the trace on for ``ttl`` seconds (again on a traced device: the time starts anew)."""
    trace = trace_of(request)
    ttl = number(request, "ttl", float)
    try:
        state = trace.start(registration.endpoint, ttl)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return JSONResponse(state.to_dict())


async def stop(request: Request, registration: Registration) -> Response:
    """Switch the trace off; its messages are dropped."""
    ep = registration.endpoint
    if not trace_of(request).stop(ep):
        raise ResourceNotFound(f"{ep!r} is not traced")
    return JSONResponse({"removed": ep})


async def events(request: Request, registration: Registration) -> Response:
    """The trace's messages from now on as SSE; 404 when the device is not traced."""
    trace = trace_of(request)
    ep = registration.endpoint
    if not trace.state(ep).on:
        raise ResourceNotFound(f"{ep!r} is not traced: PUT /api/clients/{ep}/trace first")
    return streaming(_stream(trace, ep))


async def _stream(trace: MessageTrace, ep: str) -> AsyncIterator[bytes]:
    backlog = trace.follow(ep)
    if backlog is None:  # switched off between the check and the first read
        yield format_event(TRACE_END, {"endpoint": ep, "reason": "stopped"})
        return
    try:
        yield b": subscribed\n\n"
        while True:
            try:
                await asyncio.wait_for(backlog.wait(), KEEPALIVE_INTERVAL)
            except TimeoutError:
                yield b": keep-alive\n\n"  # keeps proxies and idle timers from closing it
                continue
            entry = as_summary(backlog.pop())
            if "end" in entry:
                yield format_event(TRACE_END, {"endpoint": ep, "reason": entry["end"]})
                return
            yield format_event(TRACE, entry)
    finally:
        trace.unfollow(ep, backlog)
