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
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal, Protocol

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from lwm2m.errors import ResourceNotFound
from lwm2m.fleet.packages import NAME_PATTERN, VERSION_PATTERN
from lwm2m.model.path import MAX_PREFIX_LENGTH, PREFIX_PATTERN, Path, check_prefix
from lwm2m.protocol.registration import Registration
from lwm2m.web import bodies
from lwm2m.web.apidoc import (
    ACTIVE,
    ATTRIBUTES,
    CANCEL_ANSWERS,
    EP,
    FORMAT,
    LEVEL_PARAMS,
    RESOURCE_ATTRIBUTES,
    TIMEOUT,
    WAIT,
    Answer,
    Doc,
    Param,
    device_answers,
)
from lwm2m.web.context import api_context
from lwm2m.web.docs import STATIC_PREFIX
from lwm2m.web.params import allow, lwm2m_path
from lwm2m.web.sse import RECENT_EVENTS
from lwm2m.web.views import (
    bootstrap,
    campaigns,
    clients,
    composite,
    console,
    device,
    docs,
    end_devices,
    events,
    firmware,
    history,
    labels,
    models,
    observations,
    prometheus,
    requests,
    security,
    trace,
    webhooks,
)

__all__ = [
    "ACTIONS",
    "ANY_METHOD",
    "BOOTSTRAP_ROUTES",
    "CLIENT_PREFIX",
    "COMPOSITE",
    "DEVICE_WORDS",
    "END_DEVICE_PREFIX",
    "LEVELS",
    "REFUSED",
    "ROUTES",
    "ApiRoute",
    "ClientView",
    "RouteOperation",
    "client_path",
    "path_methods",
    "resolve",
    "starlette_routes",
]

View = Callable[[Request], Awaitable[Response]]
# A view under /api/clients/{ep}/: the request and the client's registration.
ClientView = Callable[[Request, Registration], Awaitable[Response]]


class CompositeView(Protocol):
    """A composite view: on a device, or (``prefix``) on an end device behind a gateway."""

    def __call__(
        self, request: Request, registration: Registration, prefix: str = ""
    ) -> Awaitable[Response]: ...


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
# URLs of a device that are not LwM2M paths (its labels, its message trace), by their segments,
# and the views of the methods each takes.
DEVICE_WORDS: dict[tuple[str, ...], dict[str, ClientView]] = {
    ("labels",): {"GET": labels.get, "PUT": labels.put},
    ("trace",): {"GET": trace.get, "PUT": trace.start, "DELETE": trace.stop},
    ("trace", "events"): {"GET": trace.events},
}
# The words after composite/, and the views of the methods each takes.
COMPOSITE: dict[str, dict[str, CompositeView]] = {
    "read": {"POST": composite.read},
    "write": {"POST": composite.write},
    "observe": {"POST": observations.composite_observe, "DELETE": observations.composite_cancel},
}


def resolve(method: str, url: str, segments: list[str], prefix: str = "") -> ClientView:
    """The view of ``method`` on the URL segments after ``/api/clients/{ep}/`` (``url``: the
    whole path, for messages). ResourceNotFound for no such URL, InvalidPath for a LwM2M path that is
    not one, UnsupportedMethod (405 with ``Allow``) for a method the URL does not take.

    ``devices`` lists a gateway's end devices; ``devices/{prefix}/...`` is resolved as the URL
    after it, on the end device's paths (LwM2M-TS-Gateway 1.1: ``/dev1/3303/0/5700``)."""
    if segments[:1] == ["devices"] and not prefix:
        if len(segments) == 1:
            allow(method, ("GET",), "devices, which is read-only")
            return end_devices.list_devices
        return resolve(method, url, segments[2:], check_prefix(segments[1]))
    if prefix and tuple(segments) in DEVICE_WORDS:
        raise ResourceNotFound(
            f"no such resource: {url} (an end device takes its paths, composites and history)"
        )
    if segments[:1] == ["composite"]:
        rest = segments[1:]
        if len(rest) != 1 or rest[0] not in COMPOSITE:
            raise ResourceNotFound(f"no such resource: {url} (composite/read, /write or /observe)")
        views = COMPOSITE[rest[0]]
        allow(method, tuple(views), f"composite/{rest[0]}")
        return partial(views[method], prefix=prefix) if prefix else views[method]
    words = DEVICE_WORDS.get(tuple(segments))
    if words is not None:
        allow(method, tuple(words), "/".join(segments))
        return words[method]
    if segments[:1] == ["history"]:
        allow(method, ("GET",), "history, which is read-only")
        return partial(history.history, path=lwm2m_path(segments[1:]).with_prefix(prefix))
    action = segments[-1] if segments and segments[-1] in ACTIONS else None
    path = lwm2m_path(segments[:-1] if action is not None else segments).with_prefix(prefix)
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
    if segments[:1] == ["devices"] and len(segments) > 1 and registration.end_device(segments[1]) is None:
        raise ResourceNotFound(f"{registration.endpoint} has no end device {segments[1]!r}")
    return await view(request, registration)


# --- the table ------------------------------------------------------------------------------

AnyView = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class RouteOperation:
    """One method of a URL: its view and what the document says of it."""

    view: AnyView
    doc: Doc


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One URL template and its operations by method.

    ``client``: served through :func:`client_path` (a template under ``/api/clients/{ep}/``,
    its views take the registration). ``needs``: served only with a bootstrap server beside
    the LwM2M server, only when Swagger UI's files are installed, or only with metrics.
    ``documented``: False for the files of the page that shows the document (and for
    ``/metrics``, in Prometheus's format, not the JSON API's).
    """

    path: str
    operations: Mapping[str, RouteOperation]
    client: bool = False
    needs: Literal["", "bootstrap", "swagger", "metrics"] = ""
    documented: bool = True

    @property
    def views(self) -> dict[str, AnyView]:
        return {method: op.view for method, op in self.operations.items()}


def _ids(level: int) -> str:
    return "/".join("{" + name + "}" for name in LEVELS[:level])


_LEVEL_NAMES = ("the root", "an object", "an instance", "a resource", "a resource instance")


def _level_ops(level: int, example: str) -> dict[str, RouteOperation]:
    """The operations of a LwM2M path of ``level`` IDs (LwM2M-TS-Core 1.2 §6.3), with the
    methods :func:`path_methods` lets through."""
    params = (EP, *LEVEL_PARAMS[:level], TIMEOUT, WAIT)
    replace = (Param("replace", bool, "false: a partial update"),) if level in (2, 3) else ()
    docs: dict[str, Doc] = {
        "GET": Doc(f"Read {_LEVEL_NAMES[level]}", (*params, FORMAT), device_answers()),
        "PUT": Doc(
            "Write (replace, or a partial update with replace=false)",
            (*params, FORMAT, *replace),
            device_answers(),
            body=bodies.WriteRecords if level <= 2 else bodies.WriteBody,
        ),
        "POST": (
            Doc(
                "Create an instance (records: its resources)",
                (*params, FORMAT),
                device_answers(),
                body=bodies.CreateBody,
                body_required=False,
            )
            if level == 1
            else Doc("Execute", params, device_answers(), body=bodies.ExecuteBody, body_required=False)
        ),
        "DELETE": Doc(
            "Delete the instance" if level else "Delete every object instance (a bootstrap clean-up)",
            params,
            device_answers(),
        ),
    }
    return {m: RouteOperation(device.operation, docs[m]) for m in path_methods(Path.parse(example))}


def _action_ops(level: int) -> dict[str, dict[str, RouteOperation]]:
    params = (EP, *LEVEL_PARAMS[:level], TIMEOUT, WAIT)
    attributes = tuple(a for a in ATTRIBUTES if level >= 3 or a.name not in RESOURCE_ATTRIBUTES)
    docs: dict[str, dict[str, Doc]] = {
        "discover": {"GET": Doc("Discover attributes and resources", params, device_answers())},
        "attributes": {
            "PUT": Doc(
                "Write-Attributes: at least one of the attributes; an empty value removes one. "
                "pmax >= pmin, epmax > epmin, lt + 2*st < gt (LwM2M-TS-Core 1.2 §5.1.2)",
                (*params, *attributes),
                device_answers(),
            )
        },
        "observe": {
            "POST": Doc(
                "Observe: the current value; notifications arrive as SSE events",
                (*params, FORMAT),
                device_answers(bodies.ObserveAnswer),
            ),
            "DELETE": Doc(
                "Cancel an observation started here (or resumed after a restart)",
                (EP, *LEVEL_PARAMS[:level], ACTIVE, WAIT),
                CANCEL_ANSWERS,
            ),
        },
    }
    return {
        action: {m: RouteOperation(view, docs[action][m]) for m, view in views.items()}
        for action, views in ACTIONS.items()
    }


def _history_doc(level: int) -> Doc:
    return Doc(
        "Stored values from notifications, newest first",
        (
            EP,
            *LEVEL_PARAMS[:level],
            Param("since", float, "Unix seconds"),
            Param("limit", Annotated[int, Meta(ge=0)], "at most this many records"),
        ),
        {
            200: Answer("OK", bodies.Records),
            400: Answer("bad since or limit", bodies.Error),
            404: Answer("unknown endpoint", bodies.Error),
        },
    )


_COMPOSITE_DOCS: dict[str, dict[str, Doc]] = {
    "read": {"POST": Doc("Read-Composite", (EP, TIMEOUT, FORMAT, WAIT), device_answers(), body=bodies.Paths)},
    "write": {
        "POST": Doc(
            "Write-Composite", (EP, TIMEOUT, FORMAT, WAIT), device_answers(), body=bodies.WriteRecords
        )
    },
    "observe": {
        "POST": Doc(
            "Observe-Composite: one observation of several paths (a FETCH with Observe 0); the current "
            "values, and notifications of all of them as SSE events",
            (EP, TIMEOUT, FORMAT, WAIT),
            device_answers(bodies.ObserveAnswer),
            body=bodies.Paths,
        ),
        "DELETE": Doc(
            "Cancel an Observe-Composite started here, named by its paths in any order",
            (
                EP,
                Param(
                    "paths",
                    Annotated[str, Meta(pattern=bodies.PATH_LIST)],
                    "the observed paths, comma-separated (or the parameter repeated)",
                    required=True,
                    example="/3/0/9,/3303/0/5700",
                ),
                ACTIVE,
                WAIT,
            ),
            CANCEL_ANSWERS,
        ),
    },
}


# Words the dispatcher takes at a level where the operation never applies: Discover of the
# root or of a resource instance, Write-Attributes of the root. The operation refuses them
# (400, lwm2m.protocol.management), so the table and the document leave them out.
REFUSED = frozenset({("discover", 0), ("discover", 4), ("attributes", 0)})


def _client_routes() -> list[ApiRoute]:
    """The templates under a client, one per LwM2M path level (0: the root), as :func:`resolve`
    serves them."""
    examples = ("/", "/3", "/3/0", "/3/0/1", "/3/0/1/0")
    table: list[ApiRoute] = []
    for level, example in enumerate(examples):
        ids = _ids(level)
        table.append(ApiRoute(CLIENT_PREFIX + ids, _level_ops(level, example), client=True))
        for action, ops in _action_ops(level).items():
            if (action, level) in REFUSED:
                continue
            table.append(ApiRoute(CLIENT_PREFIX + "/".join(filter(None, (ids, action))), ops, client=True))
        history_path = CLIENT_PREFIX + "/".join(filter(None, ("history", ids)))
        history_op = RouteOperation(history.history, _history_doc(level))
        table.append(ApiRoute(history_path, {"GET": history_op}, client=True))
    for word, views in COMPOSITE.items():
        ops = {m: RouteOperation(view, _COMPOSITE_DOCS[word][m]) for m, view in views.items()}
        table.append(ApiRoute(f"{CLIENT_PREFIX}composite/{word}", ops, client=True))
    for words, ops in _DEVICE_WORD_OPS.items():
        table.append(ApiRoute(CLIENT_PREFIX + "/".join(words), ops, client=True))
    return table


PREFIX_PARAM = Param(
    "prefix",
    Annotated[str, Meta(pattern=PREFIX_PATTERN, min_length=1, max_length=MAX_PREFIX_LENGTH)],
    "an end device's prefix (/25/x/1)",
    where="path",
    required=True,
    example="dev1",
)
END_DEVICE_PREFIX = CLIENT_PREFIX + "devices/{prefix}/"


def _end_device_routes(client_routes: list[ApiRoute]) -> list[ApiRoute]:
    """A gateway's end devices: their list, and under ``devices/{prefix}/`` every LwM2M path,
    action and history template of a client, served by the same views (LwM2M-TS-Gateway 1.1)."""
    listing = Doc(
        "The end devices behind a gateway, as its object 25 tells them (none for another client)",
        (EP,),
        {200: Answer("OK", bodies.EndDevices), 404: Answer("unknown endpoint", bodies.Error)},
    )
    table = [ApiRoute(CLIENT_PREFIX + "devices", _get(end_devices.list_devices, listing), client=True)]
    for route in client_routes:
        rest = route.path.removeprefix(CLIENT_PREFIX)
        if tuple(rest.split("/")) in _DEVICE_WORD_OPS:
            continue
        ops = {
            m: RouteOperation(op.view, replace(op.doc, params=(EP, PREFIX_PARAM, *op.doc.params[1:])))
            for m, op in route.operations.items()
        }
        table.append(ApiRoute(END_DEVICE_PREFIX + rest, ops, client=True))
    return table


def _get(view: AnyView, doc: Doc) -> dict[str, RouteOperation]:
    return {"GET": RouteOperation(view, doc)}


def _not_found(description: str = "not found") -> Answer:
    return Answer(description, bodies.Error)


# A label selector term, key=value (lwm2m.fleet.labels).
_SELECTOR = r"^[0-9A-Za-z][0-9A-Za-z._/-]{0,62}=[^\u0000-\u001f\u007f]{0,255}$"
_UNKNOWN = Answer("unknown endpoint", bodies.Error)
_LABELS = {
    "GET": RouteOperation(
        labels.get,
        Doc(
            "A device's labels ({} when it has none)",
            (EP,),
            {200: Answer("OK", bodies.Labels), 404: _UNKNOWN},
        ),
    ),
    "PUT": RouteOperation(
        labels.put,
        Doc(
            "Replace a device's labels ({} removes them): at most 32, keys of letters, digits and . _ / -, "
            "values of at most 255 characters. They stay when the device leaves and registers again",
            (EP,),
            {
                200: Answer("stored", bodies.Labels),
                400: Answer("not a label set; the message says why", bodies.Error),
                404: _UNKNOWN,
            },
            body=bodies.Labels,
        ),
    ),
}
_TRACE = {
    "GET": RouteOperation(
        trace.get,
        Doc(
            "A device's CoAP message trace and the messages it keeps, oldest first",
            (EP,),
            {200: Answer("OK", bodies.Trace), 404: _UNKNOWN},
        ),
    ),
    "PUT": RouteOperation(
        trace.start,
        Doc(
            "Switch a device's message trace on for ttl seconds (again: the time starts anew)",
            (EP, Param("ttl", Annotated[float, Meta(gt=0, le=86400)], "seconds it stays on (600)")),
            {
                200: Answer("on", bodies.TraceState),
                400: Answer("bad ttl", bodies.Error),
                404: _UNKNOWN,
                409: Answer("as many devices are traced as may be: switch one off", bodies.Error),
            },
        ),
    ),
    "DELETE": RouteOperation(
        trace.stop,
        Doc(
            "Switch a device's message trace off (its messages are dropped)",
            (EP,),
            {
                200: Answer("off", bodies.Removed),
                404: _not_found("unknown endpoint, or the device is not traced"),
            },
        ),
    ),
}
_TRACE_EVENTS = Doc(
    "Server-Sent Events of a device's message trace: TRACE (a TraceEntry) per message, TRACE_END when "
    "the trace is switched off or its time is up",
    (EP,),
    {
        200: Answer("event stream", media="text/event-stream"),
        404: _not_found("unknown endpoint, or the device is not traced"),
    },
)
_DEVICE_WORD_OPS: dict[tuple[str, ...], dict[str, RouteOperation]] = {
    ("labels",): _LABELS,
    ("trace",): _TRACE,
    ("trace", "events"): _get(trace.events, _TRACE_EVENTS),
}
_CLIENTS = Doc(
    "A page of the registered clients, in endpoint order",
    (
        Param(
            "limit",
            Annotated[int, Meta(ge=1, le=1000, extra_json_schema={"default": 100})],
            "clients per page",
        ),
        Param(
            "cursor",
            Annotated[str, Meta(max_length=2048, extra_json_schema={"format": "cursor"})],
            "the next of the previous page (opaque)",
        ),
        Param(
            "endpoint",
            Annotated[str, Meta(max_length=1024)],
            "endpoint name prefix, or a glob when it has * ? or [",
        ),
        Param(
            "object",
            Annotated[int, Meta(ge=0, le=65535)],
            "only clients whose links include this object ID",
        ),
        Param("online", bool, "true: awake clients; false: sleeping (queue mode) ones"),
        Param(
            "label",
            Annotated[str, Meta(pattern=_SELECTOR)],
            "only clients with this label, key=value (site=north); repeat the parameter: every one must hold",
        ),
    ),
    {200: Answer("OK", bodies.ClientPage), 400: Answer("bad limit, cursor or filter", bodies.Error)},
    description="Pass the answer's next as cursor for the following page. A page with filters may hold fewer "
    "than limit clients (even none) and still have a next: the server stops after examining a bounded "
    "number of registrations.",
)
_SECURITY_ONE = {
    "GET": RouteOperation(
        security.one,
        Doc(
            "One endpoint's security information",
            (EP,),
            {200: Answer("OK", bodies.SecurityInfo), 404: _not_found()},
        ),
    ),
    "PUT": RouteOperation(
        security.put,
        Doc(
            "Set an endpoint's PSK or X.509 expectation; ends sessions made with an old one",
            (EP,),
            {
                200: Answer("replaced", bodies.SecurityInfo),
                201: Answer("created", bodies.SecurityInfo),
                400: Answer("bad body", bodies.Error),
                409: Answer("the PSK identity belongs to another endpoint", bodies.Error),
            },
            body=bodies.SecurityBody,
        ),
    ),
    "DELETE": RouteOperation(
        security.remove,
        Doc(
            "Remove an endpoint's security information and end its DTLS sessions",
            (EP,),
            {200: Answer("removed", bodies.Removed), 404: _not_found()},
        ),
    ),
}
_PACKAGE_ID = Param("id", str, "the package's id", where="path", required=True)
_FIRMWARE = {
    "GET": RouteOperation(
        firmware.listing,
        Doc("Firmware packages, oldest first", (), {200: Answer("OK", list[bodies.FirmwarePackage])}),
    ),
    "POST": RouteOperation(
        firmware.upload,
        Doc(
            "Upload a firmware package (the request body, application/octet-stream): its id, size, "
            "SHA-256 and the URIs devices pull it from",
            (
                Param(
                    "name",
                    Annotated[str, Meta(pattern=NAME_PATTERN)],
                    "the package's name: letters, digits and . _ + ~ -",
                    required=True,
                ),
                Param(
                    "version",
                    Annotated[str, Meta(pattern=VERSION_PATTERN)],
                    "its version: letters, digits and . _ + ~ -",
                    required=True,
                ),
            ),
            {
                201: Answer("stored", bodies.FirmwarePackage, headers={"Location": "/api/firmware/{id}"}),
                400: Answer("an empty body, or a bad or missing name or version", bodies.Error),
                413: Answer("larger than the server keeps per package", bodies.Error),
                507: Answer("the server keeps as many packages as it may: delete one", bodies.Error),
            },
            raw_body="application/octet-stream",
        ),
    ),
}
_FIRMWARE_ONE = {
    "GET": RouteOperation(
        firmware.one,
        Doc(
            "One firmware package",
            (_PACKAGE_ID,),
            {200: Answer("OK", bodies.FirmwarePackage), 404: _not_found("no such package")},
        ),
    ),
    "DELETE": RouteOperation(
        firmware.remove,
        Doc(
            "Delete a firmware package: its URIs answer 404 from now on",
            (_PACKAGE_ID,),
            {200: Answer("removed", bodies.PackageRemoved), 404: _not_found("no such package")},
        ),
    ),
}
_WEBHOOK_ID = Param("id", str, "the webhook's id", where="path", required=True)
_WEBHOOKS = {
    "GET": RouteOperation(
        webhooks.listing,
        Doc("Webhooks, oldest first (secrets never shown)", (), {200: Answer("OK", list[bodies.Webhook])}),
    ),
    "POST": RouteOperation(
        webhooks.create,
        Doc(
            "Register a webhook: the server's events of the types named are POSTed to its URL as JSON, "
            "signed (X-Lwm2m-Signature: sha256=HMAC of the body), at least once",
            (),
            {
                201: Answer("registered", bodies.WebhookCreated, headers={"Location": "/api/webhooks/{id}"}),
                400: Answer("a bad URL, event type or secret", bodies.Error),
                507: Answer("the server keeps as many webhooks as it may: delete one", bodies.Error),
            },
            body=bodies.WebhookBody,
        ),
    ),
}
_WEBHOOK_ONE = {
    "GET": RouteOperation(
        webhooks.one,
        Doc(
            "One webhook",
            (_WEBHOOK_ID,),
            {200: Answer("OK", bodies.Webhook), 404: _not_found("no such webhook")},
        ),
    ),
    "DELETE": RouteOperation(
        webhooks.remove,
        Doc(
            "Delete a webhook and the events waiting for it",
            (_WEBHOOK_ID,),
            {200: Answer("removed", bodies.WebhookRemoved), 404: _not_found("no such webhook")},
        ),
    ),
}

_CAMPAIGN_ID = Param("id", str, "the campaign's id", where="path", required=True)
_CAMPAIGNS = {
    "GET": RouteOperation(
        campaigns.listing,
        Doc("Firmware update campaigns, oldest first", (), {200: Answer("OK", list[bodies.CampaignSummary])}),
    ),
    "POST": RouteOperation(
        campaigns.create,
        Doc(
            "Start a firmware update campaign: the package, the target devices, the delivery (pull by "
            "Package URI /5/0/1, push to /5/0/0, or auto by /5/0/9), waves (a canary first and alone), "
            "retries, a daily window and the failures that halt it",
            (),
            {
                201: Answer("started", bodies.CampaignDetail, headers={"Location": "/api/campaigns/{id}"}),
                400: Answer("a setting out of its range", bodies.Error),
                404: _not_found("no such package"),
            },
            body=bodies.CampaignBody,
        ),
    ),
}


def _campaign_action(view: AnyView, summary: str) -> dict[str, RouteOperation]:
    return {
        "POST": RouteOperation(
            view,
            Doc(
                summary,
                (_CAMPAIGN_ID,),
                {
                    200: Answer("done", bodies.CampaignSummary),
                    404: _not_found("no such campaign"),
                    409: Answer("the campaign's status does not allow it", bodies.Error),
                },
            ),
        )
    }


def _campaign_delete() -> dict[str, RouteOperation]:
    return {
        "DELETE": RouteOperation(
            campaigns.delete,
            Doc(
                "Delete a finished (done or cancelled) campaign and its devices' progress",
                (_CAMPAIGN_ID,),
                {
                    200: Answer("deleted: its last summary", bodies.CampaignSummary),
                    404: _not_found("no such campaign"),
                    409: Answer("the campaign is not finished", bodies.Error),
                },
            ),
        )
    }


_RANGE_ANSWERS = {
    200: Answer("the package", media="application/octet-stream", headers={"ETag": "its SHA-256, quoted"}),
    206: Answer(
        "the range asked for (Range: bytes=first-last, one range)",
        media="application/octet-stream",
        headers={"Content-Range": "bytes first-last/size"},
    ),
    304: Answer("If-None-Match names its ETag", media=""),
    404: _not_found("no such package"),
    416: Answer("the range starts past the end", bodies.Error, headers={"Content-Range": "bytes */size"}),
}
_DOWNLOAD = Doc(
    "A firmware package's bytes, for devices (no token: the id is the key); HEAD for its headers",
    (_PACKAGE_ID,),
    _RANGE_ANSWERS,
)
_DOWNLOAD_NAMED = Doc(
    "The same, under the file name NAME@VERSION that a device's URI ends with",
    (_PACKAGE_ID, Param("file", str, "NAME@VERSION (not checked)", where="path", required=True)),
    _RANGE_ANSWERS,
)
_BOOTSTRAP_ONE = {
    "GET": RouteOperation(
        bootstrap.one,
        Doc(
            "One endpoint's bootstrap configuration and its recent sessions",
            (EP,),
            {
                200: Answer("OK", bodies.BootstrapConfigSessions),
                404: _not_found("no configuration for this endpoint"),
            },
        ),
    ),
    "PUT": RouteOperation(
        bootstrap.put,
        Doc(
            "Set the bootstrap configuration of an endpoint ('*': the default): servers[] with uri, "
            "shortServerId, lifetime, binding, security {mode psk|rpk|x509|nosec, ...}; deletePaths, "
            "bootstrapDiscover (default true), bootstrapAccountId, accessControl, objects.records. Also "
            "provisions the LwM2M server's security store unless ?provision=false",
            (EP, Param("provision", bool, "false: leave the security store alone")),
            {
                200: Answer("replaced", bodies.BootstrapConfigStored),
                201: Answer("created", bodies.BootstrapConfigStored),
                400: Answer("not usable, e.g. no server account; the message says why", bodies.Error),
                409: Answer("stored, but its PSK identity belongs to another endpoint", bodies.Error),
            },
            body=bodies.BootstrapConfig,
        ),
    ),
    "DELETE": RouteOperation(
        bootstrap.remove,
        Doc(
            "Remove an endpoint's bootstrap configuration",
            (EP,),
            {200: Answer("removed", bodies.Removed), 404: _not_found("no configuration for this endpoint")},
        ),
    ),
}
_EVENTS = Doc(
    "Server-Sent Events: REGISTRATION, UPDATE, DEREGISTRATION, EXPIRED, SLEEPING, AWAKE, NOTIFICATION, "
    "SEND, OBSERVATION_ENDED, and REQUEST_DONE (a QueuedRequest) when a request for a sleeping client "
    "finished; with a bootstrap server also BOOTSTRAP_STARTED, BOOTSTRAP_FINISHED and BOOTSTRAP_FAILED; "
    "EVENTS_DROPPED ({count}) when the client read too slowly and that many were lost",
    (
        Param("ep", str, "only this endpoint's events"),
        Param(
            "backlog",
            Annotated[int, Meta(ge=0, le=RECENT_EVENTS, extra_json_schema={"default": 0})],
            f"first send up to this many of the last events the server kept (it keeps {RECENT_EVENTS}), "
            "oldest first, each with receivedAt (Unix seconds); then live events",
        ),
    ),
    {
        200: Answer("event stream", media="text/event-stream"),
        400: Answer(f"backlog is not an integer from 0 to {RECENT_EVENTS}", bodies.Error),
    },
)

ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("/api/clients", _get(clients.clients, _CLIENTS)),
    ApiRoute(
        "/api/clients/{ep}",
        _get(
            clients.client,
            Doc(
                "One client's registration",
                (EP,),
                {200: Answer("OK", bodies.Registration), 404: _not_found("unknown endpoint")},
            ),
        ),
    ),
    *_client_routes(),
    *_end_device_routes(_client_routes()),
    ApiRoute(
        "/api/requests/{id}",
        _get(
            requests.queued_request,
            Doc(
                "A request queued for a sleeping client: still queued, done or failed",
                (Param("id", str, where="path", required=True),),
                {
                    200: Answer("OK", bodies.QueuedRequest),
                    404: _not_found("unknown request, or its outcome expired"),
                },
            ),
        ),
    ),
    ApiRoute(
        "/api/models",
        _get(
            models.models,
            Doc("Object definitions known to the server", (), {200: Answer("OK", list[bodies.ModelSummary])}),
        ),
    ),
    ApiRoute(
        "/api/models/{id}",
        _get(
            models.model,
            Doc(
                "One object definition with its resources",
                (Param("id", int, where="path", required=True),),
                {200: Answer("OK", dict[str, Any]), 404: _not_found("no such object among the models")},
            ),
        ),
    ),
    ApiRoute(
        "/api/security/clients",
        _get(
            security.listing,
            Doc(
                "Security information of every endpoint (keys never shown)",
                (),
                {200: Answer("OK", list[bodies.SecurityInfo])},
            ),
        ),
    ),
    ApiRoute("/api/security/clients/{ep}", _SECURITY_ONE),
    ApiRoute("/api/firmware", _FIRMWARE),
    ApiRoute("/api/firmware/{id}", _FIRMWARE_ONE),
    ApiRoute("/api/webhooks", _WEBHOOKS),
    ApiRoute("/api/webhooks/{id}", _WEBHOOK_ONE),
    ApiRoute("/fw/{id}", _get(firmware.download, _DOWNLOAD)),
    ApiRoute("/api/campaigns", _CAMPAIGNS),
    ApiRoute(
        "/api/campaigns/{id}",
        _get(
            campaigns.one,
            Doc(
                "One campaign: counts by state, each wave's progress, each device with its steps and "
                "its last Update Result (/5/0/5) and what it means",
                (_CAMPAIGN_ID,),
                {200: Answer("OK", bodies.CampaignDetail), 404: _not_found("no such campaign")},
            ),
        )
        | _campaign_delete(),
    ),
    ApiRoute(
        "/api/campaigns/{id}/pause",
        _campaign_action(
            campaigns.pause, "Pause a running campaign: devices in flight go on, no new one starts"
        ),
    ),
    ApiRoute(
        "/api/campaigns/{id}/resume",
        _campaign_action(campaigns.resume, "Resume a paused or halted campaign"),
    ),
    ApiRoute(
        "/api/campaigns/{id}/cancel",
        _campaign_action(
            campaigns.cancel,
            "Cancel a campaign: devices downloading or holding the package get Cancel (/5/0/10), "
            "the devices not done are cancelled",
        ),
    ),
    ApiRoute("/fw/{id}/{file}", _get(firmware.download, _DOWNLOAD_NAMED)),
    ApiRoute(
        "/api/bootstrap",
        _get(
            bootstrap.listing,
            Doc(
                "With a bootstrap server (--bootstrap-port): its configurations, keys never shown "
                "('*' is the default), and its running and recent sessions with status and times",
                (
                    Param("ep", str, "only this endpoint's sessions"),
                    Param(
                        "limit",
                        Annotated[int, Meta(ge=0, le=999_999_999)],
                        f"at most this many sessions ({bootstrap.SESSIONS_SHOWN})",
                    ),
                ),
                {200: Answer("OK", bodies.BootstrapListing), 400: Answer("bad limit", bodies.Error)},
            ),
        ),
        needs="bootstrap",
    ),
    ApiRoute("/api/bootstrap/{ep}", _BOOTSTRAP_ONE, needs="bootstrap"),
    ApiRoute("/api/events", _get(events.events, _EVENTS)),
    ApiRoute(
        "/api/openapi.json", _get(docs.openapi, Doc("This document", (), {200: Answer("OK", dict[str, Any])}))
    ),
    ApiRoute(
        "/api/docs",
        _get(
            docs.docs,
            Doc(
                "This document as an interactive web page (Swagger UI, served from here)",
                (),
                {200: Answer("HTML", media="text/html")},
            ),
        ),
    ),
    ApiRoute(
        "/api/docs/init.js",
        _get(
            docs.docs_init, Doc("The page's script", (), {200: Answer("JavaScript", media="text/javascript")})
        ),
        needs="swagger",
        documented=False,
    ),
    # Prometheus metrics (lwm2m.export.metrics): beside the API, in Prometheus's text format.
    ApiRoute(
        "/metrics",
        _get(
            prometheus.metrics,
            Doc(
                "Prometheus metrics of this server (text exposition format)",
                (),
                {
                    200: Answer("metrics", media="text/plain"),
                    401: Answer("missing or wrong token", bodies.Error),
                },
            ),
        ),
        needs="metrics",
        documented=False,
    ),
)
# The routes of a bootstrap server on its own: its configurations and its events.
BOOTSTRAP_ROUTES: tuple[ApiRoute, ...] = (
    *(route for route in ROUTES if route.needs == "bootstrap"),
    ApiRoute(
        "/api/events",
        _get(
            bootstrap.events,
            Doc(
                "Server-Sent Events: BOOTSTRAP_STARTED, BOOTSTRAP_FINISHED and BOOTSTRAP_FAILED",
                (Param("ep", str, "only this endpoint's events"),),
                {200: Answer("event stream", media="text/event-stream")},
            ),
        ),
    ),
)


def _by_method(views: Mapping[str, AnyView]) -> View:
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
    table: tuple[ApiRoute, ...],
    *,
    bootstrap: bool,
    swagger_dir: FilePath | None,
    console_files: bool = True,
    metrics: bool = False,
) -> list[BaseRoute]:
    """The Starlette routes of ``table``: those its app serves (``bootstrap``: with a bootstrap
    server; ``swagger_dir``: Swagger UI's files; ``metrics``: with metrics), the console's page
    and files."""
    served = [r for r in table if r.needs != "bootstrap" or bootstrap]
    served = [r for r in served if r.needs != "swagger" or swagger_dir is not None]
    served = [r for r in served if r.needs != "metrics" or metrics]
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
