"""The REST API over an :class:`~lwm2m.server.server.LwM2MServer`, as a Starlette ASGI app.

Every device operation answers HTTP 200 with the device's CoAP result in
``code``; HTTP errors are kept for what failed around the device (see
:mod:`lwm2m.web.errors`). Routes under ``/api/clients/{ep}/`` share one
dispatcher, because LwM2M paths are numeric and the words ``discover``,
``attributes``, ``observe``, ``composite`` and ``history`` cannot clash with them.

An operation for a sleeping queue-mode client answers 202 with a request ID
instead, and its outcome follows as a ``REQUEST_DONE`` event and at
``GET /api/requests/{id}`` (:mod:`lwm2m.web.requests`); ``?wait=true`` holds
the HTTP call until the client wakes up, as the Python API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path as PathLib
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.codec.formats import get_codec
from lwm2m.errors import (
    InvalidPath,
    InvalidRequest,
    ObserveRefused,
    ResourceNotFound,
    TableFull,
    UnsupportedMethod,
)
from lwm2m.model.catalogue import object_to_dict
from lwm2m.model.jsonform import records_from_json, typed_from_json
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.attributes import AttributeChange
from lwm2m.protocol.management import Response as DeviceAnswer
from lwm2m.protocol.registration import Registration
from lwm2m.server.observation import ServerObservation
from lwm2m.server.server import DEFAULT_TIMEOUT, LwM2MServer
from lwm2m.web.bootstrap_api import bootstrap_event_view, bootstrap_routes, with_bootstrap_events
from lwm2m.web.docs import INIT_JS, STATIC_PREFIX, interactive_html, plain_html, swagger_ui_dir
from lwm2m.web.errors import EXCEPTION_HANDLERS, error
from lwm2m.web.guard import LocalApiGuard
from lwm2m.web.listing import VIEW_CHUNK, client_query, encode_cursor
from lwm2m.web.observations import ObservationKeeper, ObservationKey, composite_key, observation_key
from lwm2m.web.openapi import openapi_document
from lwm2m.web.requests import RequestTable, Work
from lwm2m.web.security import security_routes
from lwm2m.web.sse import RECENT_EVENTS, RecentEvents, event_stream
from lwm2m.web.views import ADD_MODEL, history_view, model_hint, registration_view, response_view

# RFC 9110 §9.3's methods and PATCH (RFC 5789), for a route whose view answers 405 itself.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


def path_methods(path: Path) -> tuple[str, ...]:
    """The methods a LwM2M path takes (LwM2M-TS-Core 1.2 §6.3): Read anywhere; Write on an
    instance, resource or resource instance; Create (POST) in an object; Execute (POST) on a
    resource; Delete an object instance (or, for bootstrap clean-up, the root)."""
    if path.is_root:
        return ("GET", "DELETE")
    if path.is_object:
        return ("GET", "POST")
    if path.is_instance:
        return ("GET", "PUT", "DELETE")
    if path.is_resource:
        return ("GET", "PUT", "POST")
    return ("GET", "PUT")


# The words after a LwM2M path, with the methods each takes.
ACTIONS: dict[str, tuple[str, ...]] = {
    "discover": ("GET",),
    "attributes": ("PUT",),
    "observe": ("POST", "DELETE"),
}
COMPOSITE: dict[str, tuple[str, ...]] = {"read": ("POST",), "write": ("POST",), "observe": ("POST", "DELETE")}
# The web console: static files shipped in the package, nothing loaded from elsewhere.
CONSOLE_DIR = PathLib(__file__).parent / "console"


class BearerAuth:
    """Every ``/api`` request but the OpenAPI document and its page must carry
    ``Authorization: Bearer TOKEN`` (RFC 6750 §2.1)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # The document and its page describe the API and hold nothing secret; a browser opening
        # the page cannot send a bearer token, but the page's "Authorize" can for the calls.
        public = path == "/api/openapi.json" or path == "/api/docs" or path.startswith("/api/docs/")
        if scope["type"] == "http" and path.startswith("/api") and not public:
            given = dict(scope["headers"]).get(b"authorization", b"")
            # compare_digest: the time taken must not tell how much of the token matched.
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="lwm2m"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- request parsing -------------------------------------------------------------------------


def _timeout(request: Request) -> float:
    raw = request.query_params.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"timeout: {raw!r} is not a number of seconds") from None
    if not value > 0:
        raise InvalidRequest(f"timeout: {raw!r} must be positive")
    return value


def _format(request: Request) -> int | str | None:
    raw = request.query_params.get("format")
    if raw is None or raw == "":
        return None
    fmt = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else raw  # else get_codec names it
    get_codec(fmt)  # an unknown format is a 400 now, not a failure once a sleeping client wakes
    return fmt


def _bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"{name}: {raw!r} is not true or false")


def _number(request: Request, name: str, kind: type[int] | type[float]) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: {raw!r} is not a number") from None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # syntax, UTF-8, an over-long number, deep nesting
        raise InvalidRequest(f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def _paths(body: dict[str, Any]) -> list[Path]:
    paths = body.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise InvalidRequest('the body needs "paths": ["/3/0/0", ...]')
    return [Path.parse(p) for p in paths]


def _query_paths(request: Request) -> list[Path]:
    """``?paths=/3/0/9,/3303/0/5700`` (or the parameter repeated)."""
    given = [p for raw in request.query_params.getlist("paths") for p in raw.split(",") if p.strip()]
    if not given:
        raise InvalidRequest("give the observed paths: ?paths=/3/0/9,/3303/0/5700")
    return [Path.parse(p.strip()) for p in given]


def _path(segments: list[str]) -> Path:
    """The LwM2M path of URL segments, each a bare ID (Path.parse alone would forgive spaces)."""
    text = "/" + "/".join(segments)
    path = Path.parse(text)
    if str(path) != text:
        raise InvalidPath(f"invalid path {text[:40]!r}: IDs are decimal numbers, e.g. /3/0/1")
    return path


def _allow(request: Request, methods: tuple[str, ...], what: str) -> None:
    """405 with ``Allow`` unless the request's method is one of ``methods`` (RFC 9110 §15.5.6)."""
    if request.method not in methods:
        raise UnsupportedMethod(request.method, methods, what)


def _answer(
    call: Callable[[], Awaitable[DeviceAnswer]], hint: Callable[[DeviceAnswer], str | None] | None = None
) -> Work:
    """Work that answers the device's answer in its JSON form (with ``hint``'s note, if any)."""

    async def work() -> dict[str, Any]:
        answer = await call()
        out = response_view(answer)
        note = hint(answer) if hint is not None else None
        if note:
            out["hint"] = note
        return out

    return work


def _observed(observation: ServerObservation) -> dict[str, Any]:
    assert observation.response is not None  # a new observation has its first answer
    return {**response_view(observation.response), "token": observation.token.hex()}


def _records(body: dict[str, Any], server: LwM2MServer) -> list[Record]:
    if "records" not in body:
        raise InvalidRequest('the body needs "records": [{"path": ..., "value": ...}, ...]')
    return records_from_json(body["records"], server.models)


def _write_records(body: dict[str, Any], path: Path, server: LwM2MServer) -> list[Record]:
    """``{"records": [...]}``, or ``{"value": v}`` for the one resource at ``path`` (with
    ``"type"``, its LwM2M type, for a resource without a model)."""
    if "value" in body:
        if "records" in body:
            raise InvalidRequest('give either "value" or "records", not both')
        if not (path.is_resource or path.is_resource_instance):
            raise InvalidRequest(f'"value" writes one resource; {path} is not a resource')
        assert path.object_id is not None and path.resource_id is not None
        definition = server.models.resource(path.object_id, path.resource_id)
        model = definition.type if definition else None
        value = typed_from_json(body["value"], body.get("type"), model, str(path))
        return [Record(path, value)]
    return _records(body, server)


# --- endpoints ----------------------------------------------------------------------------------


def create_app(
    server: LwM2MServer,
    *,
    api_token: str | None = None,
    requests: RequestTable | None = None,
    bootstrap: BootstrapServer | None = None,
    bind_host: str | None = None,
    allowed_hosts: Iterable[str] = (),
    cors_origins: Iterable[str] = (),
) -> Starlette:
    """The REST API, SSE stream and OpenAPI document of ``server`` (already started by the caller).

    ``requests`` holds the requests queued for sleeping clients (a default table if None);
    ``bootstrap``, a bootstrap server beside it, adds ``/api/bootstrap`` and its events.
    ``bind_host``, ``allowed_hosts`` and ``cors_origins`` configure the
    :class:`~lwm2m.web.guard.LocalApiGuard` every request passes, token or not.
    """
    keeper = ObservationKeeper()
    swagger_dir = swagger_ui_dir()
    table = requests if requests is not None else RequestTable()
    recent = RecentEvents()  # followed from the app's start (lifespan) to its stop

    def _sleeping(registration: Registration) -> bool:
        return registration.queue_mode and not server.presence.is_awake(registration.endpoint)

    def _view(registration: Registration) -> dict[str, Any]:
        return registration_view(registration, sleeping=_sleeping(registration))

    async def clients(request: Request) -> Response:
        """A page of the clients in endpoint order, from the store's index (never the whole
        fleet at once: listing must not hold up CoAP traffic)."""
        query = client_query(request.query_params)
        online = query.online
        match = query.matcher(None if online is None else (lambda r: _sleeping(r) is not online))
        page = await server.store.registrations.page(
            query.after, query.limit, prefix=query.prefix, glob=query.glob, match=match
        )
        views = []
        for start in range(0, len(page.registrations), VIEW_CHUNK):
            if start:
                await asyncio.sleep(0)  # a long page is turned into JSON a slice at a time
            views += [_view(r) for r in page.registrations[start : start + VIEW_CHUNK]]
        body = {"clients": views, "next": None if page.next is None else encode_cursor(page.next)}
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def client(request: Request) -> Response:
        return JSONResponse(_view(await server.registration(request.path_params["ep"])))

    async def device(request: Request, registration: Registration, work: Work) -> Response:
        """Run ``work`` now; for a sleeping client, queue it and answer 202 (LwM2M-TS-Core 1.2 §6.5:
        the request goes out when the client wakes up), unless ``?wait=true``."""
        if _bool(request, "wait", False) or not _sleeping(registration):
            return JSONResponse(await work())
        try:
            queued = table.submit(registration.endpoint, work)
        except TableFull as exc:
            return error(503, str(exc))
        location = f"/api/requests/{queued.request_id}"
        return JSONResponse(queued.to_json(), status_code=202, headers={"Location": location})

    async def client_path(request: Request) -> Response:
        ep = request.path_params["ep"]
        segments = [s for s in request.path_params["rest"].split("/") if s]
        registration = await server.registration(ep)  # 404 before looking at the rest
        if segments[:1] == ["composite"]:
            return await composite(request, registration, segments[1:])
        if segments[:1] == ["history"]:
            _allow(request, ("GET",), "history, which is read-only")
            return await history(request, ep, _path(segments[1:]))
        action = segments.pop() if segments and segments[-1] in ACTIONS else None
        path = _path(segments)
        if action is None:
            _allow(request, path_methods(path), str(path))
            return await operation(request, registration, path)
        _allow(request, ACTIONS[action], f"{path}/{action}")
        if action == "discover":
            timeout = _timeout(request)
            work = _answer(partial(server.discover, ep, path, timeout=timeout))
            return await device(request, registration, work)
        if action == "attributes":
            return await attributes(request, registration, path)
        if request.method == "POST":
            return await observe(request, registration, path)
        return await cancel(request, registration, path, str(path))

    async def operation(request: Request, registration: Registration, path: Path) -> Response:
        ep = registration.endpoint
        timeout = _timeout(request)
        fmt = _format(request)
        call: Callable[[], Awaitable[DeviceAnswer]]
        if request.method == "GET":
            call = partial(server.read, ep, path, format=fmt, timeout=timeout)
            # Values of an object without a model: say what they are and how to add the model.
            work = _answer(call, lambda answer: model_hint(server.models, path, answer.records))
            return await device(request, registration, work)
        elif request.method == "PUT":
            records = _write_records(await _body(request), path, server)
            # replace=false is a partial update: a CoAP POST (LwM2M-TS-Core 1.2 §6.3.3).
            replace = _bool(request, "replace", True)
            call = partial(server.write, ep, path, records, replace=replace, format=fmt, timeout=timeout)
        elif request.method == "POST":
            body = await _body(request)
            if path.is_object:
                records = _records(body, server) if body else []
                call = partial(server.create, ep, path, records, format=fmt, timeout=timeout)
            else:  # a resource: path_methods lets POST through only for an object or a resource
                args = body.get("args", "")
                if not isinstance(args, str):
                    raise InvalidRequest(f"args: {args!r} is not a string like \"0='x',1\"")
                call = partial(server.execute, ep, path, args, timeout=timeout)
        else:  # DELETE
            call = partial(server.delete, ep, path, timeout=timeout)
        return await device(request, registration, _answer(call))

    async def attributes(request: Request, registration: Registration, path: Path) -> Response:
        # An attribute given without a value (``?gt``) is removed (LwM2M-TS-Core 1.2 §5.1.2).
        given = {
            k: (v if v != "" else None)
            for k, v in request.query_params.multi_items()
            if k not in ("timeout", "wait")
        }
        if not given:
            raise InvalidRequest("give attributes as query parameters, e.g. ?pmin=10&pmax=60")
        AttributeChange.from_mapping(given)  # bad values are a 400 now, even for a sleeping client
        timeout = _timeout(request)
        ep = registration.endpoint
        work = _answer(partial(server.write_attributes, ep, path, given, timeout=timeout))
        return await device(request, registration, work)

    async def observe(request: Request, registration: Registration, path: Path) -> Response:
        ep = registration.endpoint
        fmt, timeout = _format(request), _timeout(request)

        async def work() -> dict[str, Any]:
            try:
                observation = await server.observe(ep, path, format=fmt, timeout=timeout)
            except ObserveRefused as exc:
                return response_view(exc.response)
            await keeper.keep(ep, path, observation)
            return _observed(observation)

        return await device(request, registration, work)

    async def cancel(
        request: Request, registration: Registration, key: ObservationKey, named: str | list[str]
    ) -> Response:
        """Cancel a kept observation: passive at once; active (``?active=true``) also tells the
        client, which waits for a sleeping one like any request."""
        ep = registration.endpoint
        active = _bool(request, "active", False)
        missing = f"no observation of {', '.join(named) if isinstance(named, list) else named} on {ep!r}"
        if (ep, key) not in keeper:
            raise ResourceNotFound(missing)

        async def work() -> dict[str, Any]:
            if not await keeper.cancel(ep, key, active=active):
                raise ResourceNotFound(missing)
            return {"cancelled": named, "active": active}

        if not active:
            return JSONResponse(await work())
        return await device(request, registration, work)

    async def composite(request: Request, registration: Registration, rest: list[str]) -> Response:
        ep = registration.endpoint
        if len(rest) != 1 or rest[0] not in COMPOSITE:
            raise ResourceNotFound(
                f"no such resource: {request.url.path} (composite/read, /write or /observe)"
            )
        _allow(request, COMPOSITE[rest[0]], f"composite/{rest[0]}")
        if rest == ["observe"]:
            return await composite_observe(request, registration)
        body = await _body(request)
        fmt, timeout = _format(request), _timeout(request)
        if rest == ["read"]:
            paths = _paths(body)
            work = _answer(partial(server.read_composite, ep, paths, format=fmt, timeout=timeout))
        else:
            records = _records(body, server)
            work = _answer(partial(server.write_composite, ep, records, format=fmt, timeout=timeout))
        return await device(request, registration, work)

    async def composite_observe(request: Request, registration: Registration) -> Response:
        """Observe-Composite (LwM2M-TS-Core 1.2 §6.4.4), kept under its set of paths: POST starts it
        (``{"paths": [...]}``), DELETE ``?paths=...`` cancels it like a single-path observation."""
        ep = registration.endpoint
        if request.method == "DELETE":
            paths = _query_paths(request)
            key = composite_key(paths)
            return await cancel(request, registration, key, [str(p) for p in key])
        paths = _paths(await _body(request))
        fmt, timeout = _format(request), _timeout(request)

        async def work() -> dict[str, Any]:
            try:
                observation = await server.observe_composite(ep, paths, format=fmt, timeout=timeout)
            except ObserveRefused as exc:
                return response_view(exc.response)
            await keeper.keep(ep, composite_key(paths), observation)
            return _observed(observation)

        return await device(request, registration, work)

    async def history(request: Request, ep: str, path: Path) -> Response:
        limit = _number(request, "limit", int)
        if limit is not None and limit < 0:
            raise InvalidRequest(f"limit: {limit} must not be negative")
        entries = await server.history(ep, path, since=_number(request, "since", float), limit=limit)
        return JSONResponse({"records": [history_view(e) for e in entries]})

    async def queued_request(request: Request) -> Response:
        request_id = request.path_params["id"]
        entry = table.get(request_id)
        if entry is None:
            raise ResourceNotFound(f"no request {request_id!r}: unknown, or its outcome expired")
        return JSONResponse(entry.to_json())

    async def models(request: Request) -> Response:
        listing = [{"id": d.id, "name": d.name, "version": d.version} for d in server.models]
        return JSONResponse(sorted(listing, key=lambda d: (d["id"], d["version"] or "")))

    async def model(request: Request) -> Response:
        raw = request.path_params["id"]
        definition = server.models.get(int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 6 else None
        if definition is None:
            raise ResourceNotFound(f"no object {raw!r} among the models: to add one, {ADD_MODEL}")
        return JSONResponse(object_to_dict(definition))

    async def events(request: Request) -> Response:
        backlog = _number(request, "backlog", int) or 0
        if not 0 <= backlog <= RECENT_EVENTS:
            raise InvalidRequest(f"backlog: {backlog} is not between 0 and {RECENT_EVENTS}")
        ep = request.query_params.get("ep")
        stream = event_stream(server, ep, requests=table, recent=recent, backlog=backlog)
        if bootstrap is not None:
            stream = with_bootstrap_events(stream, bootstrap, request.query_params.get("ep"))
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            # no-cache and no buffering: events must reach the browser as they happen.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(bootstrap=bootstrap is not None))

    async def docs(request: Request) -> Response:
        doc = openapi_document(bootstrap=bootstrap is not None)
        if swagger_dir is None:
            return HTMLResponse(plain_html(doc))
        return HTMLResponse(interactive_html(doc["info"]["title"]))

    async def docs_init(request: Request) -> Response:
        return Response(INIT_JS, media_type="text/javascript")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Observations the server resumed after a restart: kept like API-started ones, so
        # that DELETE cancels them and their notifications are drained.
        for observation in server.observations():
            await keeper.keep(observation.endpoint, observation_key(observation), observation)
        recent.follow_server(server, table)
        if bootstrap is not None:
            started = bootstrap.events()
            recent.follow(started, bootstrap_event_view, lambda e: e.endpoint, started.close)
        yield
        await recent.close()
        await table.close()
        # The observations go on (their records too) until the server stops: a clean stop
        # followed by a start resumes them, as after a crash.
        await keeper.close()

    async def console(request: Request) -> Response:
        return FileResponse(CONSOLE_DIR / "index.html")

    routes = [
        Route("/", console, methods=["GET"]),
        Mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console"),
        Route("/api/clients", clients, methods=["GET"]),
        Route("/api/clients/{ep}", client, methods=["GET"]),
        # Every method reaches the dispatcher, which knows what each path takes (its 405 says).
        Route("/api/clients/{ep}/{rest:path}", client_path, methods=ANY_METHOD),
        Route("/api/requests/{id}", queued_request, methods=["GET"]),
        Route("/api/models", models, methods=["GET"]),
        Route("/api/models/{id}", model, methods=["GET"]),
        *security_routes(server),
        *(bootstrap_routes(bootstrap, security=server.security) if bootstrap is not None else ()),
        Route("/api/events", events, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/docs", docs, methods=["GET"]),
        *(
            [
                Route("/api/docs/init.js", docs_init, methods=["GET"]),
                Mount(STATIC_PREFIX, StaticFiles(directory=swagger_dir), name="swagger-ui"),
            ]
            if swagger_dir is not None
            else []
        ),
    ]
    # The guard is outermost: a refused request never reaches the token check or a route, and
    # CORS preflights (which carry no token) are answered before the token check.
    middleware = [
        Middleware(
            LocalApiGuard,  # type: ignore[arg-type]
            bind_host=bind_host,
            allowed_hosts=tuple(allowed_hosts),
            cors_origins=tuple(cors_origins),
        )
    ]
    if api_token:
        middleware.append(Middleware(BearerAuth, token=api_token))  # type: ignore[arg-type]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.server = server
    app.state.observations = keeper
    app.state.requests = table
    return app
