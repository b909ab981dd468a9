"""The route table of the REST API: every URL, the methods it takes and the view of each, in
one place (datasette's ``_routes()``). :func:`starlette_routes` serves it;
:mod:`lwm2m.web.openapi` documents it.

LwM2M paths are numeric, so the words after them (``discover``, ``attributes``,
``observe``) and before them (``composite``, ``history``) cannot clash with an ID: one
Starlette route takes every URL under ``/api/clients/{ep}/``, looks the endpoint up (404
before anything else) and :func:`resolve` picks the view of the rest, with a 405 naming the
methods that URL takes. The table lists those URLs one template per LwM2M path level, as the
document shows them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path as FilePath
from typing import Literal, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from lwm2m.model.path import Path
from lwm2m.protocol.registration import Registration
from lwm2m.web.context import api_context
from lwm2m.web.docs import STATIC_PREFIX
from lwm2m.web.errors import NotFound
from lwm2m.web.params import allow, lwm2m_path
from lwm2m.web.views import (
    bootstrap,
    clients,
    composite,
    console,
    device,
    docs,
    events,
    history,
    models,
    observations,
    requests,
    security,
)

__all__ = [
    "ACTIONS",
    "ANY_METHOD",
    "CLIENT_PREFIX",
    "COMPOSITE",
    "LEVELS",
    "ROUTES",
    "ApiRoute",
    "ClientView",
    "client_path",
    "path_methods",
    "resolve",
    "starlette_routes",
]

View = Callable[[Request], Awaitable[Response]]
# A view under /api/clients/{ep}/: the request and the client's registration.
ClientView = Callable[[Request, Registration], Awaitable[Response]]


class PathView(Protocol):
    """A view of a LwM2M path under a client, as the table holds it (resolve binds the path)."""

    def __call__(self, request: Request, registration: Registration, path: Path) -> Awaitable[Response]: ...


# RFC 9110 §9.3's methods and PATCH (RFC 5789), for a route whose view answers 405 itself.
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
CLIENT_PREFIX = "/api/clients/{ep}/"
# The path parameters of a LwM2M path's IDs, by level.
LEVELS = ("objectId", "instanceId", "resourceId", "resourceInstanceId")


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


# The words after a LwM2M path, and the views of the methods each takes.
ACTIONS: dict[str, dict[str, PathView]] = {
    "discover": {"GET": device.discover},
    "attributes": {"PUT": device.attributes},
    "observe": {"POST": observations.observe, "DELETE": observations.cancel_path},
}
# The words after composite/, and the views of the methods each takes.
COMPOSITE: dict[str, dict[str, ClientView]] = {
    "read": {"POST": composite.read},
    "write": {"POST": composite.write},
    "observe": {"POST": observations.composite_observe, "DELETE": observations.composite_cancel},
}


def resolve(method: str, url: str, segments: list[str]) -> ClientView:
    """The view of ``method`` on the URL segments after ``/api/clients/{ep}/`` (``url``: the
    whole path, for messages). NotFound for no such URL, InvalidPath for a LwM2M path that is
    not one, MethodNotAllowed (405 with ``Allow``) for a method the URL does not take."""
    if segments[:1] == ["composite"]:
        rest = segments[1:]
        if len(rest) != 1 or rest[0] not in COMPOSITE:
            raise NotFound(f"no such resource: {url} (composite/read, /write or /observe)")
        views = COMPOSITE[rest[0]]
        allow(method, tuple(views), f"composite/{rest[0]}")
        return views[method]
    if segments[:1] == ["history"]:
        allow(method, ("GET",), "history, which is read-only")
        return partial(history.history, path=lwm2m_path(segments[1:]))
    action = segments[-1] if segments and segments[-1] in ACTIONS else None
    path = lwm2m_path(segments[:-1] if action is not None else segments)
    if action is None:
        allow(method, path_methods(path), str(path))
        return partial(device.operation, path=path)
    actions = ACTIONS[action]
    allow(method, tuple(actions), f"{path}/{action}")
    return partial(actions[method], path=path)


async def client_path(request: Request) -> Response:
    """Every URL under ``/api/clients/{ep}/``: the endpoint must be registered (404 before
    anything else), then :func:`resolve` picks the view."""
    registration = await api_context(request).server.registration(request.path_params["ep"])
    segments = [s for s in request.path_params["rest"].split("/") if s]
    view = resolve(request.method, request.url.path, segments)
    return await view(request, registration)


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One URL template and the view of each method it takes.

    ``client``: served through :func:`client_path` (a template under ``/api/clients/{ep}/``,
    its views take the registration). ``needs``: served only with a bootstrap server beside
    the LwM2M server, or only when Swagger UI's files are installed.
    """

    path: str
    views: Mapping[str, Callable[..., Awaitable[Response]]]
    client: bool = False
    needs: Literal["", "bootstrap", "swagger"] = ""


def _ids(level: int) -> str:
    return "/".join("{" + name + "}" for name in LEVELS[:level])


def _client_routes() -> list[ApiRoute]:
    """The templates under a client, one per LwM2M path level (0: the root), as :func:`resolve`
    serves them."""
    examples = ("/", "/3", "/3/0", "/3/0/1", "/3/0/1/0")
    table: list[ApiRoute] = []
    for level, example in enumerate(examples):
        ids = _ids(level)
        views = dict.fromkeys(path_methods(Path.parse(example)), device.operation)
        table.append(ApiRoute(CLIENT_PREFIX + ids, views, client=True))
        for action, action_views in ACTIONS.items():
            table.append(
                ApiRoute(CLIENT_PREFIX + "/".join(filter(None, (ids, action))), action_views, client=True)
            )
        history_path = CLIENT_PREFIX + "/".join(filter(None, ("history", ids)))
        table.append(ApiRoute(history_path, {"GET": history.history}, client=True))
    for word, composite_views in COMPOSITE.items():
        table.append(ApiRoute(f"{CLIENT_PREFIX}composite/{word}", composite_views, client=True))
    return table


ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("/api/clients", {"GET": clients.clients}),
    ApiRoute("/api/clients/{ep}", {"GET": clients.client}),
    *_client_routes(),
    ApiRoute("/api/requests/{id}", {"GET": requests.queued_request}),
    ApiRoute("/api/models", {"GET": models.models}),
    ApiRoute("/api/models/{id}", {"GET": models.model}),
    ApiRoute("/api/security/clients", {"GET": security.listing}),
    ApiRoute(
        "/api/security/clients/{ep}", {"GET": security.one, "PUT": security.put, "DELETE": security.remove}
    ),
    ApiRoute("/api/bootstrap", {"GET": bootstrap.listing}, needs="bootstrap"),
    ApiRoute(
        "/api/bootstrap/{ep}",
        {"GET": bootstrap.one, "PUT": bootstrap.put, "DELETE": bootstrap.remove},
        needs="bootstrap",
    ),
    ApiRoute("/api/events", {"GET": events.events}),
    ApiRoute("/api/openapi.json", {"GET": docs.openapi}),
    ApiRoute("/api/docs", {"GET": docs.docs}),
    ApiRoute("/api/docs/init.js", {"GET": docs.docs_init}, needs="swagger"),
)
# Bootstrap routes of a bootstrap server on its own: its configurations and its events.
BOOTSTRAP_ROUTES: tuple[ApiRoute, ...] = (
    *(route for route in ROUTES if route.needs == "bootstrap"),
    ApiRoute("/api/events", {"GET": bootstrap.events}),
)


def _by_method(views: Mapping[str, Callable[..., Awaitable[Response]]]) -> View:
    """One endpoint for the methods of a URL, so that a 405 lists them all in ``Allow``."""
    if len(views) == 1:
        (only,) = views.values()
        return only
    table = dict(views)

    async def endpoint(request: Request) -> Response:
        # HEAD is a GET without content (RFC 9110 §9.3.2); Starlette lets it in with GET.
        method = "GET" if request.method == "HEAD" else request.method
        return await table[method](request)

    return endpoint


def starlette_routes(
    table: tuple[ApiRoute, ...], *, bootstrap: bool, swagger_dir: FilePath | None, console_files: bool = True
) -> list[BaseRoute]:
    """The Starlette routes of ``table``: those its app serves (``bootstrap``: with a bootstrap
    server; ``swagger_dir``: Swagger UI's files), the console's page and files."""
    served = [r for r in table if r.needs != "bootstrap" or bootstrap]
    served = [r for r in served if r.needs != "swagger" or swagger_dir is not None]
    out: list[BaseRoute] = []
    if console_files:
        out += [
            Route("/", console.console, methods=["GET"]),
            Mount("/console", StaticFiles(directory=console.CONSOLE_DIR), name="console"),
        ]
    for route in served:
        if route.client:
            continue
        out.append(Route(route.path, _by_method(route.views), methods=list(route.views)))
        if route.path == "/api/clients/{ep}" and any(r.client for r in served):
            # Every method reaches the dispatcher, which knows what each URL takes (its 405 says).
            out.append(Route("/api/clients/{ep}/{rest:path}", client_path, methods=list(ANY_METHOD)))
    if swagger_dir is not None:
        out.append(Mount(STATIC_PREFIX, StaticFiles(directory=swagger_dir), name="swagger-ui"))
    return out
