"""Server events as Server-Sent Events (text/event-stream, WHATWG HTML §9.2).

:class:`RecentEvents` keeps the last events the stream carried (200 by default), so that a
client opening ``/api/events?backlog=N`` sees what happened just before it came: the stream
starts with those events (oldest first, each with ``receivedAt``, the Unix time the server
had it), then goes on live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from lwm2m.errors import ConfigError
from lwm2m.server.events import EventHook, EventStream, ServerEvent
from lwm2m.server.role import Server
from lwm2m.web.requests import RequestCompleted, RequestTable
from lwm2m.web.shapes import event_endpoint, event_view

KEEPALIVE_INTERVAL = 15.0
REQUEST_DONE = "REQUEST_DONE"
EVENTS_DROPPED = "EVENTS_DROPPED"
RECENT_EVENTS = 200  # kept for ?backlog=, and the most a client may ask for

T = TypeVar("T")
View = Callable[[Any], tuple[str, dict[str, Any]]]


def format_event(name: str, data: object) -> bytes:
    # json.dumps never emits a newline, so the data fits on one "data:" line.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class _Subscription(Protocol):
    """Events of another source (the bootstrap server's, the campaigns'): iterated, then closed."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    def close(self) -> None: ...


async def mixed_in(
    stream: AsyncIterator[bytes],
    subscribe: Callable[[], _Subscription],
    view: Callable[[Any], tuple[str, object]],
    endpoint: str | None = None,
    *,
    maxsize: int = 0,
) -> AsyncIterator[bytes]:
    """``stream`` (SSE bytes) with the events of a subscription mixed in (``subscribe()``, made
    when the stream is first read and closed at its end), each as ``view`` gives it (an event
    name and its data); with ``endpoint``, only the events of that endpoint. ``maxsize`` bounds
    the chunks waiting (0: no bound)."""
    queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=maxsize)
    subscription = subscribe()

    async def stream_side() -> None:
        try:
            async for chunk in stream:
                await queue.put(chunk)
        except Exception as exc:
            await queue.put(exc)

    async def other_side() -> None:
        async for event in subscription:
            if endpoint is None or event.endpoint == endpoint:
                await queue.put(format_event(*view(event)))

    tasks = [asyncio.ensure_future(stream_side()), asyncio.ensure_future(other_side())]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        subscription.close()


def request_view(finished: RequestCompleted) -> tuple[str, dict[str, Any]]:
    return REQUEST_DONE, finished.request.to_json()


EndpointOf = Callable[[Any], "str | None"]
Sink = Callable[[Any, View, EndpointOf], "Awaitable[None] | None"]


class EventFollower:
    """Tasks that hand every event of the sources they follow to one ``sink(event, view,
    endpoint_of)``: the recent ring of this node, or the fleet's stream of a cluster."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._tasks: list[asyncio.Task[None]] = []

    def follow(
        self,
        source: AsyncIterator[T],
        view: Callable[[T], tuple[str, dict[str, Any]]],
        endpoint_of: Callable[[T], str | None],
        close: Callable[[], None] | None = None,
    ) -> None:
        """Every event of ``source`` (already subscribed) to the sink until :meth:`close`."""
        sink = self._sink

        async def pump() -> None:
            try:
                async for event in source:
                    done = sink(event, view, endpoint_of)
                    if done is not None:
                        await done
            finally:
                if close is not None:
                    close()

        self._tasks.append(asyncio.ensure_future(pump()))

    def follow_stream(
        self,
        stream: EventStream,
        view: Callable[[ServerEvent], tuple[str, dict[str, Any]]],
        endpoint_of: Callable[[ServerEvent], str | None],
    ) -> None:
        """:meth:`follow` for the server's own stream (closed at the end): the events waiting at
        each wake-up are taken at once, so a flood of notifications costs the task one step
        per wake-up, not one per event."""
        sink = self._sink

        async def pump() -> None:
            try:
                while True:
                    await stream.wait()
                    for event in stream.take_all():
                        done = sink(event, view, endpoint_of)
                        if done is not None:
                            await done
            finally:
                stream.close()

        self._tasks.append(asyncio.ensure_future(pump()))

    def follow_server(self, server: Server, requests: RequestTable | None = None) -> None:
        """The server's events and the outcomes of ``requests``, as :func:`event_stream` sends them."""
        self.follow_stream(server.events(), event_view, event_endpoint)
        if requests is not None:
            self.follow_requests(requests)

    def follow_requests(self, requests: RequestTable) -> None:
        """The outcomes of ``requests`` (as ``REQUEST_DONE``)."""
        queue = requests.subscribe()

        async def finished() -> AsyncIterator[RequestCompleted]:
            while True:
                yield await queue.get()

        self.follow(finished(), request_view, lambda f: f.endpoint, lambda: requests.unsubscribe(queue))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class RecentEvents:
    """A ring of the last ``size`` events of the API's stream, from the sources it follows.

    Events are kept as they came (the objects, not their JSON): turning them into JSON costs
    only when a client asks for the backlog, not on every notification.
    """

    def __init__(self, size: int = RECENT_EVENTS) -> None:
        if size < 0:
            raise ConfigError(f"size: {size} must not be negative")
        self.size = size
        # (arrival time, event, its view, its endpoint's getter)
        self._ring: deque[tuple[float, Any, View, EndpointOf]] = deque(maxlen=size)
        self._follower = EventFollower(self.add)
        self._hooks: list[EventHook] = []

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, event: Any, view: View, endpoint_of: EndpointOf) -> None:
        self._ring.append((time.time(), event, view, endpoint_of))

    def follow(
        self,
        source: AsyncIterator[T],
        view: Callable[[T], tuple[str, dict[str, Any]]],
        endpoint_of: Callable[[T], str | None],
        close: Callable[[], None] | None = None,
    ) -> None:
        """Keep every event of ``source`` (already subscribed) until :meth:`close`."""
        self._follower.follow(source, view, endpoint_of, close)

    def follow_server(self, server: Server, requests: RequestTable | None = None) -> None:
        """Keep the server's events, each as it is emitted (an ``EventHook``: no queue and no
        task between, the ring's cost on every notification being one call), and the outcomes
        of ``requests`` (``EventFollower``)."""
        append = self._ring.append
        now = time.time

        def keep(event: ServerEvent) -> None:
            append((now(), event, event_view, event_endpoint))

        self._hooks.append(server.hook_events(keep))
        if requests is not None:
            self._follower.follow_requests(requests)

    def backlog(self, count: int, endpoint: str | None = None) -> list[bytes]:
        """The last ``count`` events (of ``endpoint`` only if given), oldest first, as SSE."""
        chosen: list[tuple[float, Any, View]] = []
        for at, event, view, endpoint_of in reversed(self._ring):
            if len(chosen) >= count:
                break
            if endpoint is None or endpoint_of(event) == endpoint:
                chosen.append((at, event, view))
        out = []
        for at, event, view in reversed(chosen):
            name, data = view(event)
            out.append(format_event(name, {**data, "receivedAt": round(at, 3)}))
        return out

    async def close(self) -> None:
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook.close()
        await self._follower.close()


async def event_stream(
    server: Server,
    endpoint: str | None = None,
    *,
    requests: RequestTable | None = None,
    keepalive: float = KEEPALIVE_INTERVAL,
    recent: RecentEvents | None = None,
    backlog: int = 0,
) -> AsyncIterator[bytes]:
    """Every server event, and every outcome of a queued request of ``requests`` (as
    ``REQUEST_DONE``), of ``endpoint`` only if given, from now on; first the last ``backlog``
    events of ``recent``.

    Subscribes at the first iteration and unsubscribes when the consumer stops
    (Starlette cancels the stream when the HTTP client disconnects). A client that reads
    slower than events come loses the oldest beyond the server's backlog: an
    ``EVENTS_DROPPED`` event says how many, before the next event it gets.
    """
    stream = server.events()
    dropped = 0
    done = requests.subscribe() if requests is not None else None
    # Taken in the same step as the subscription: what came before is in the ring (unless its
    # pump has not run yet), what comes after only in the live stream, so nothing twice.
    earlier = recent.backlog(backlog, endpoint) if recent is not None and backlog > 0 else []
    next_event: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
    next_done: asyncio.Future[RequestCompleted] | None = (
        asyncio.ensure_future(done.get()) if done is not None else None
    )
    try:
        # An opening comment tells the client the subscription is live.
        yield b": subscribed\n\n"
        for chunk in earlier:
            yield chunk
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
                    yield format_event(*request_view(finished))
    finally:
        # Cancelled, not awaited: a generator being closed should not wait on anything.
        for future in (next_event, next_done):
            if future is not None:
                future.cancel()
        stream.close()
        if requests is not None and done is not None:
            requests.unsubscribe(done)
