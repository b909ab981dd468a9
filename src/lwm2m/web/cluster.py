"""The REST API of one node of a cluster: any node serves any device, and every node's SSE
stream carries the whole fleet's events (DESIGN.md, "Where its users outgrow one machine").

Device requests. A request under ``/api/clients/{ep}/`` for a device another live node owns
(:meth:`~lwm2m.server.membership.ClusterMember.owner_elsewhere`) goes to that node over the
request bus, as the HTTP request it is (method, path, query, body, content headers);
the owner runs it through its own routes, in process, and the answer comes back as it made it.
The owner is the node that holds the device's address and sessions, so only it can reach the
device. The entry node has checked the guard and the token; the owner runs the request below
its middleware, so a request is never forwarded twice. No answer within the request's own
``?timeout`` and :data:`FORWARD_MARGIN` (:data:`FORWARD_TIMEOUT` for ``?wait=true`` or
without one) is a 504: an owner that has just died is not waited for longer than the device
would have been. A device whose node stopped beating (killed) is waited for as long: its next
datagram reaches a node through the balancer, that node claims it, and the request goes there;
if it stays silent, the request is served here as best it can be. The history
(``/api/clients/{ep}/history…``) is in the shared store, so any node serves it.

Queued requests. ``GET /api/requests/{node}~{…}`` goes to the node named in the ID, which
queued the request, while that node beats; when it does not, or gives no answer within
:data:`REQUEST_FORWARD_TIMEOUT`, it is served here, from the store, which has every queued
request and its outcome (:mod:`lwm2m.web.requests`: the request moves with its device).

Events. :class:`FleetPublisher` puts every event of this node's stream (the server's and the
outcomes of queued requests, as the SSE stream shows them) on the fleet's Redis Stream, with
the node's id; :func:`fleet_event_stream` serves that stream as SSE, each event with its
stream id as the SSE ``id``, so that a browser's ``Last-Event-ID`` resumes it on any node.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lwm2m.errors import BusTimeout, LwM2MError
from lwm2m.server.role import Server
from lwm2m.web.requests import RequestTable
from lwm2m.web.sse import KEEPALIVE_INTERVAL, EndpointOf, EventFollower, View, format_event

if TYPE_CHECKING:  # the cluster extra (redis-py) is not needed by a single node's API
    from lwm2m.cluster.encoding import Payload

log = logging.getLogger(__name__)

PUBLISH_QUEUE = 10_000  # events waiting to go on the fleet's stream, at most
FORWARD_TIMEOUT = 120.0  # seconds a forwarded device request may take, ``?wait=true`` included
FORWARD_MARGIN = 5.0  # seconds beyond a request's ``?timeout`` for the bus and the owner's work
# Seconds a queued request's holder has to answer ``GET /api/requests/{id}`` before the store does.
REQUEST_FORWARD_TIMEOUT = 2.0
_DEVICE_PATH = re.compile(r"^/api/clients/(?P<ep>[^/]+)/(?P<rest>.+)$")
_REQUEST_PATH = re.compile(r"^/api/requests/(?P<node>[^/~]+)~[^/]+$")
_FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"accept"})
_HOP_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"date", b"server"})


class Cluster(Protocol):
    """What the API needs of the node's cluster membership
    (:class:`~lwm2m.server.membership.ClusterMember`)."""

    node_id: str

    @property
    def fleet(self) -> Any: ...

    async def start(self, server: Server, handler: Callable[[Payload], Awaitable[Payload]]) -> None: ...

    async def close(self) -> None: ...

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None: ...

    async def ask(self, node: str, payload: Payload, timeout: float) -> Payload: ...

    async def alive(self, node: str) -> bool: ...


def request_prefix(cluster: Cluster | None) -> str:
    """What the IDs of a node's queued requests begin with: its node id and ``~``, which no
    node id holds (nothing outside a cluster), so that ``/api/requests/{id}`` on any node
    finds the node that has it."""
    return "" if cluster is None else f"{cluster.node_id}~"


def holder_of(path: str) -> str | None:
    """The node named by the ID of a queued request's path (``/api/requests/{node}~{…}``)."""
    match = _REQUEST_PATH.match(path)
    return None if match is None else unquote(match["node"])


def device_of(path: str) -> str | None:
    """The endpoint of a device request the owner must serve, or None for any other path."""
    match = _DEVICE_PATH.match(path)
    if match is None or match["rest"] == "history" or match["rest"].startswith("history/"):
        return None
    return unquote(match["ep"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("a body that is not base64 text")
    return base64.b64decode(text, validate=True)


class ForwardToOwner:
    """ASGI middleware: device requests for a device another node owns go to that node."""

    def __init__(self, app: ASGIApp, cluster: Cluster, timeout: float = FORWARD_TIMEOUT) -> None:
        self.app = app
        self.cluster = cluster
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        endpoint = device_of(path)
        query = scope.get("query_string", b"").decode("latin-1")
        if endpoint is not None:
            # A device whose node is gone is waited for (its next datagram makes a node claim
            # it) as long as the answer itself would be.
            node = await self.cluster.owner_elsewhere(endpoint, wait=self._limit(query))
            what = endpoint
        else:
            # A queued request's outcome is kept by the node that queued it, named in its ID, while
            # that node lives; when it is gone, the store has it (served here).
            holder = holder_of(path)
            node = None
            if holder is not None and holder != self.cluster.node_id and await self.cluster.alive(holder):
                node = holder
            what = f"request {path.rsplit('/', 1)[-1]}"
        if node is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        request = {
            "method": scope["method"],
            "path": scope["path"],
            "query": query,
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")]
                for k, v in scope.get("headers", [])
                if k.lower() in _FORWARDED_REQUEST_HEADERS
            ],
            "body": _b64(body),
        }
        limit = self._limit(request["query"]) if endpoint is not None else REQUEST_FORWARD_TIMEOUT
        try:
            answer = await self.cluster.ask(node, request, limit)
            if not isinstance(answer, dict):
                raise ValueError("an answer that is not an HTTP response")
            status = int(answer["status"])
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer["headers"]]
            content = _unb64(answer["body"])
        except (LwM2MError, ValueError, KeyError, TypeError) as exc:
            if endpoint is None:
                # The node that queued the request is gone (its heartbeat has not lapsed yet) or
                # failed: the store knows the request, served here.
                log.info("cluster: %s sent to %s failed (%s): answered from the store", what, node, exc)
                await self.app(scope, _replayed(body), send)
                return
            await self._failed(scope, send, node, what, exc)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    @staticmethod
    async def _failed(scope: Scope, send: Send, node: str, what: str, exc: Exception) -> None:
        if isinstance(exc, BusTimeout):
            await _json(send, 504, f"the node {node} that serves {what} did not answer in time")
            return
        log.warning("cluster: %s %s sent to %s failed: %s", scope["method"], scope["path"], node, exc)
        await _json(send, 502, f"the node {node} that serves {what} failed: {exc}")

    def _limit(self, query: str) -> float:
        """Seconds to wait for the owner's answer: the request's own ``timeout`` (the owner
        waits that long for the device) and a margin, unless it waits for a sleeping device
        (``wait``); never more than ``self.timeout``."""
        params = parse_qs(query)
        if params.get("wait", [""])[-1].lower() in ("true", "1", "yes"):
            return self.timeout
        try:
            asked = float(params["timeout"][-1])
        except (KeyError, ValueError):
            return self.timeout  # none, or one the owner refuses (400) at once
        if not asked > 0:  # also NaN: the owner refuses it (400) at once
            return self.timeout
        return min(self.timeout, asked + FORWARD_MARGIN)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replayed(body: bytes) -> Receive:
    """An ASGI ``receive`` that gives ``body`` (already read from the client) once."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _json(send: Send, status: int, text: str) -> None:
    body = json.dumps({"error": text}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def forwarded_handler(app: Any, target: ASGIApp) -> Callable[[Payload], Awaitable[Payload]]:
    """The bus handler of the owner side: a forwarded request run through ``target`` (the
    app's routes under their exception handlers, below the guard and the token check) of the
    Starlette ``app``; the response as the entry node sends it on."""

    async def handle(payload: Payload) -> Payload:
        if not isinstance(payload, dict):
            raise ValueError("a forwarded request that is not a dict")
        status, headers, body = await call_in_process(
            app,
            target,
            method=str(payload["method"]),
            path=str(payload["path"]),
            query=str(payload["query"]),
            headers=[(str(k), str(v)) for k, v in payload["headers"]],
            body=_unb64(payload["body"]),
        )
        return {"status": status, "headers": headers, "body": _b64(body)}

    return handle


async def call_in_process(
    app: Any,
    target: ASGIApp,
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> tuple[int, list[list[str]], bytes]:
    """An HTTP request run through ``target`` (the routes of the Starlette ``app``, below its
    middleware), in this process: the response's status, headers (hop-by-hop ones left out) and
    body. For a request forwarded by another node, and for a queued request run again
    (:class:`~lwm2m.web.requests.RequestTable`)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "root_path": "",
        "query_string": query.encode("latin-1"),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "app": app,
        "state": {},
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect comes: the caller waits on us
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    answer_headers: list[list[str]] = []
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status, answer_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            answer_headers = [
                [k.decode("latin-1"), v.decode("latin-1")]
                for k, v in message.get("headers", [])
                if k.lower() not in _HOP_HEADERS
            ]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await target(scope, receive, send)
    return status, answer_headers, b"".join(chunks)


class FleetPublisher:
    """This node's events onto the fleet's stream, each as ``{"event", "data", "endpoint",
    "node", "receivedAt"}``: the SSE event's name and data as the node's own stream has them.

    Events are put in a bounded queue as they come and written by one task, all that waited in
    one round trip (``FleetEvents.publish_many``): a burst of notifications costs Redis a few
    pipelines, not one round trip each. Beyond :data:`PUBLISH_QUEUE` waiting events (Redis away
    or slow) the oldest are dropped and counted (``dropped``)."""

    def __init__(self, member: Cluster) -> None:
        self._member = member
        self._follower = EventFollower(self._queue)
        self._waiting: deque[dict[str, Any]] = deque(maxlen=PUBLISH_QUEUE)
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0

    def follow_server(self, server: Server, requests: RequestTable | None = None) -> None:
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())
        self._follower.follow_server(server, requests)

    def follow(
        self,
        source: AsyncIterator[Any],
        view: View,
        endpoint_of: EndpointOf,
        close: Callable[[], None] | None = None,
    ) -> None:
        """The events of another source (the campaigns') onto the fleet's stream too."""
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())
        self._follower.follow(source, view, endpoint_of, close)

    def _queue(self, event: Any, view: View, endpoint_of: EndpointOf) -> None:
        name, data = view(event)
        if len(self._waiting) == PUBLISH_QUEUE:
            self.dropped += 1  # the deque drops the oldest
        self._waiting.append(
            {
                "event": name,
                "data": data,
                "endpoint": endpoint_of(event),
                "node": self._member.node_id,
                "receivedAt": round(time.time(), 3),
            }
        )
        self._wake.set()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = list(self._waiting)
            self._waiting.clear()
            try:
                await self._member.fleet.publish_many(batch)
            except Exception as exc:  # Redis away: these events are lost to the other nodes
                log.warning("cluster: %d events could not go on the fleet's stream: %s", len(batch), exc)

    async def close(self) -> None:
        await self._follower.close()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None


async def fleet_event_stream(
    fleet: Any,
    endpoint: str | None = None,
    *,
    last_event_id: str | None = None,
    keepalive: float = KEEPALIVE_INTERVAL,
) -> AsyncIterator[bytes]:
    """The fleet's events as SSE, each with its ``id``; after ``last_event_id`` when given
    (a reconnecting browser's ``Last-Event-ID``), else from now on."""
    events = fleet.subscribe(last_event_id)
    pending: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.ensure_future(anext(events))
    try:
        yield b": subscribed\n\n"
        while True:
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield b": keep-alive\n\n"
                continue
            event_id, record = pending.result()
            pending = asyncio.ensure_future(anext(events))
            if endpoint is not None and record.get("endpoint") != endpoint:
                continue
            data = dict(record.get("data") or {})
            data.setdefault("receivedAt", record.get("receivedAt"))
            data.setdefault("node", record.get("node"))
            yield f"id: {event_id}\n".encode() + format_event(str(record.get("event")), data)
    finally:
        pending.cancel()
        with contextlib.suppress(Exception):
            await events.aclose()
