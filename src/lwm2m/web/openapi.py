"""A hand-written OpenAPI 3.1 description of the REST API, and a plain HTML page showing it.

Written by hand rather than generated: the API is small, and one dispatcher
serves several paths, which a generator could not see.
"""

from __future__ import annotations

import html
from typing import Any

from lwm2m import __version__

_EP = {
    "name": "ep",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "endpoint name",
}
_PATH = {
    "name": "path",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "LwM2M path without the leading slash, e.g. 3/0/1",
}
_FORMAT = {
    "name": "format",
    "in": "query",
    "schema": {"type": "string"},
    "description": "content format, by name (tlv, senml-json, senml-cbor, …) or number",
}
_TIMEOUT = {
    "name": "timeout",
    "in": "query",
    "schema": {"type": "number"},
    "description": "seconds to wait for the device",
}
_WAIT = {
    "name": "wait",
    "in": "query",
    "schema": {"type": "boolean", "default": False},
    "description": "for a sleeping queue-mode client: hold the HTTP call until it wakes up and "
    "answers, instead of answering 202 with a request ID",
}

_RECORD = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "example": "/3/0/9"},
        "value": {"description": "typed by the object model; Opaque as base64, Objlnk as '3:0'"},
        "time": {"type": "number", "description": "Unix seconds"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _device(
    summary: str, params: list[dict[str, Any]], body: str | None = None, answer: str = "DeviceAnswer"
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [*params, _WAIT],
        "responses": {
            "200": _json(_ref(answer), "the device's answer; its CoAP result is in code"),
            "202": {
                **_json(
                    _ref("QueuedRequest"),
                    "the client sleeps (queue mode): the request goes out when it wakes up; the "
                    "outcome follows as a REQUEST_DONE event and at /api/requests/{id}",
                ),
                "headers": {"Location": {"schema": {"type": "string"}, "description": "/api/requests/{id}"}},
            },
            "400": _json(_ref("Error"), "bad path, format or body"),
            "404": _json(_ref("Error"), "unknown endpoint"),
            "502": _json(_ref("Error"), "the device's answer cannot be decoded"),
            "503": _json(_ref("Error"), "too many requests wait for sleeping clients"),
            "504": _json(_ref("Error"), "the device did not answer, or did not wake up in time"),
        },
    }
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": _ref(body)}}}
    return op


def _query(name: str, kind: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": kind}, "description": description}


def _cancel(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    active = _query("active", "boolean", "also tell the client (Observe 1); queued for a sleeping client")
    return {
        "summary": summary,
        "parameters": [*params, active, _WAIT],
        "responses": {
            "200": _json({"type": "object"}),
            "202": _json(_ref("QueuedRequest"), "active cancel of a sleeping client: queued"),
            "404": _json(_ref("Error"), "no such observation"),
        },
    }


def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Record": _RECORD,
        "Records": {"type": "object", "properties": {"records": {"type": "array", "items": _ref("Record")}}},
        "WriteBody": {
            "type": "object",
            "description": 'either "records", or "value" for the one resource of the path',
            "properties": {"records": {"type": "array", "items": _ref("Record")}, "value": {}},
        },
        "PostBody": {
            "type": "object",
            "description": '"args" to execute a resource, "records" to create in an object',
            "properties": {
                "args": {"type": "string", "example": "0='x',1"},
                "records": {"type": "array", "items": _ref("Record")},
            },
        },
        "Paths": {"type": "object", "properties": {"paths": {"type": "array", "items": {"type": "string"}}}},
        "DeviceAnswer": {
            "type": "object",
            "required": ["code"],
            "properties": {
                "code": {"type": "string", "example": "2.05"},
                "contentFormat": {"type": "integer"},
                "records": {"type": "array", "items": _ref("Record")},
                "location": {"type": "string", "description": "Create: the new instance"},
                "links": {"type": "array", "items": {"type": "string"}, "example": ["</3/0>;pmin=10"]},
                "diagnostic": {"type": "string"},
            },
        },
        "ObserveAnswer": {
            "allOf": [
                _ref("DeviceAnswer"),
                {
                    "type": "object",
                    "properties": {
                        "token": {"type": "string", "description": "the observation's CoAP token, hex"}
                    },
                },
            ],
            "description": "the current value; notifications follow as NOTIFICATION events",
        },
        "QueuedRequest": {
            "type": "object",
            "required": ["requestId", "endpoint", "status"],
            "properties": {
                "requestId": {"type": "string"},
                "endpoint": {"type": "string"},
                "status": {"type": "string", "enum": ["queued", "done", "failed"]},
                "createdAt": {"type": "number", "description": "Unix seconds"},
                "finishedAt": {"type": "number", "description": "Unix seconds"},
                "result": {
                    "description": "done: the answer the call would have given at once (e.g. "
                    "DeviceAnswer); failed: the error and the HTTP status it would have had",
                    "oneOf": [
                        {"type": "object"},
                        {
                            "type": "object",
                            "required": ["error", "httpStatus"],
                            "properties": {"error": {"type": "string"}, "httpStatus": {"type": "integer"}},
                        },
                    ],
                },
            },
        },
        "SecurityInfo": {
            "type": "object",
            "description": "how an endpoint authenticates over DTLS; the key itself is never shown",
            "properties": {
                "endpoint": {"type": "string"},
                "mode": {"type": "string", "enum": ["psk", "x509"]},
                "pskIdentity": {"type": "string"},
                "pskKeyHint": {"type": "string", "example": "a1… (16 bytes)"},
                "x509": {"type": "boolean"},
            },
        },
        "SecurityBody": {
            "type": "object",
            "description": 'a PSK ("pskIdentity" and "pskKey" as hex, at most 32 bytes), or "x509": '
            "true (a certificate with the endpoint as subject CN, from an authority the server trusts)",
            "properties": {
                "pskIdentity": {"type": "string"},
                "pskKey": {"type": "string", "example": "000102030405060708090a0b0c0d0e0f"},
                "x509": {"type": "boolean"},
            },
        },
        "Registration": {
            "type": "object",
            "properties": {
                "endpoint": {"type": "string"},
                "registrationId": {"type": "string"},
                "address": {"type": "string", "example": "192.0.2.1:56830"},
                "lifetime": {"type": "integer"},
                "lwm2mVersion": {"type": "string"},
                "binding": {"type": "string"},
                "queueMode": {"type": "boolean"},
                "objects": {"type": "array", "items": {"type": "object"}},
                "registeredAt": {"type": "number"},
                "lastUpdate": {"type": "number"},
                "sleeping": {"type": "boolean"},
            },
        },
    }
    ep_path = [_EP, _PATH, _TIMEOUT]
    paths: dict[str, Any] = {
        "/api/clients": {
            "get": {
                "summary": "List registered clients",
                "responses": {"200": _json({"type": "array", "items": _ref("Registration")})},
            }
        },
        "/api/clients/{ep}": {
            "get": {
                "summary": "One client's registration",
                "parameters": [_EP],
                "responses": {"200": _json(_ref("Registration")), "404": _json(_ref("Error"))},
            }
        },
        "/api/clients/{ep}/{path}": {
            "get": _device("Read", [*ep_path, _FORMAT]),
            "put": _device(
                "Write (replace, or partial update with replace=false)",
                [*ep_path, _FORMAT, _query("replace", "boolean", "PUT replaces (default), false updates")],
                "WriteBody",
            ),
            "post": _device(
                "Execute a resource, or Create an instance in an object", [*ep_path, _FORMAT], "PostBody"
            ),
            "delete": _device("Delete an object instance", ep_path),
        },
        "/api/clients/{ep}/{path}/discover": {"get": _device("Discover attributes and resources", ep_path)},
        "/api/clients/{ep}/{path}/attributes": {
            "put": _device(
                "Write-Attributes: pmin, pmax, gt, lt, st, epmin, epmax, edge, con, hqmax as query "
                "parameters; a name without a value removes the attribute",
                ep_path,
            )
        },
        "/api/clients/{ep}/{path}/observe": {
            "post": _device(
                "Observe: the current value; notifications arrive as SSE events",
                [*ep_path, _FORMAT],
                answer="ObserveAnswer",
            ),
            "delete": _cancel(
                "Cancel an observation started here (or resumed after a restart)", [_EP, _PATH]
            ),
        },
        "/api/clients/{ep}/composite/observe": {
            "post": _device(
                "Observe-Composite: one observation of several paths (a FETCH with Observe 0); the "
                "current values, and notifications of all of them as SSE events",
                [_EP, _TIMEOUT, _FORMAT],
                "Paths",
                answer="ObserveAnswer",
            ),
            "delete": _cancel(
                "Cancel an Observe-Composite started here, named by its paths in any order",
                [
                    _EP,
                    {
                        "name": "paths",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "the observed paths, comma-separated (or the parameter repeated)",
                        "example": "/3/0/9,/3303/0/5700",
                    },
                ],
            ),
        },
        "/api/requests/{id}": {
            "get": {
                "summary": "A request queued for a sleeping client: still queued, done or failed",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(_ref("QueuedRequest")),
                    "404": _json(_ref("Error"), "unknown request, or its outcome expired"),
                },
            }
        },
        "/api/clients/{ep}/composite/read": {
            "post": _device("Read-Composite", [_EP, _TIMEOUT, _FORMAT], "Paths")
        },
        "/api/clients/{ep}/composite/write": {
            "post": _device("Write-Composite", [_EP, _TIMEOUT, _FORMAT], "Records")
        },
        "/api/clients/{ep}/history/{path}": {
            "get": {
                "summary": "Stored values from notifications, newest first",
                "parameters": [
                    _EP,
                    _PATH,
                    _query("since", "number", "Unix seconds"),
                    _query("limit", "integer", "at most this many records"),
                ],
                "responses": {"200": _json(_ref("Records")), "404": _json(_ref("Error"))},
            }
        },
        "/api/models": {
            "get": {
                "summary": "Object definitions known to the server",
                "responses": {"200": _json({"type": "array"})},
            }
        },
        "/api/models/{id}": {
            "get": {
                "summary": "One object definition with its resources",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json({"type": "object"}), "404": _json(_ref("Error"))},
            }
        },
        "/api/security/clients": {
            "get": {
                "summary": "Security information of every endpoint (keys never shown)",
                "responses": {"200": _json({"type": "array", "items": _ref("SecurityInfo")})},
            }
        },
        "/api/security/clients/{ep}": {
            "get": {
                "summary": "One endpoint's security information",
                "parameters": [_EP],
                "responses": {"200": _json(_ref("SecurityInfo")), "404": _json(_ref("Error"))},
            },
            "put": {
                "summary": "Set an endpoint's PSK or X.509 expectation; ends sessions made with an old one",
                "parameters": [_EP],
                "requestBody": {"content": {"application/json": {"schema": _ref("SecurityBody")}}},
                "responses": {
                    "200": _json(_ref("SecurityInfo"), "replaced"),
                    "201": _json(_ref("SecurityInfo"), "created"),
                    "400": _json(_ref("Error")),
                    "409": _json(_ref("Error"), "the PSK identity belongs to another endpoint"),
                },
            },
            "delete": {
                "summary": "Remove an endpoint's security information and end its DTLS sessions",
                "parameters": [_EP],
                "responses": {"200": _json({"type": "object"}), "404": _json(_ref("Error"))},
            },
        },
        "/api/bootstrap": {
            "get": {
                "summary": "With a bootstrap server (--bootstrap-port): its configurations, keys never "
                "shown ('*' is the default), and its running and recent sessions with status and times",
                "parameters": [
                    _query("ep", "string", "only this endpoint's sessions"),
                    _query("limit", "integer", "at most this many sessions (50)"),
                ],
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/api/bootstrap/{ep}": {
            "get": {
                "summary": "One endpoint's bootstrap configuration and its recent sessions",
                "parameters": [_EP],
                "responses": {"200": _json({"type": "object"}), "404": _json(_ref("Error"))},
            },
            "put": {
                "summary": "Set the bootstrap configuration of an endpoint ('*': the default): servers[] "
                "with uri, shortServerId, lifetime, binding, security {mode psk|rpk|x509|nosec, ...}; "
                "deletePaths, bootstrapDiscover, accessControl, objects.records. Also provisions the "
                "LwM2M server's security store unless ?provision=false",
                "parameters": [_EP, _query("provision", "boolean", "false: leave the security store alone")],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": _json({"type": "object"}, "replaced"),
                    "201": _json({"type": "object"}, "created"),
                    "400": _json(_ref("Error"), "not usable, e.g. no server account; the message says why"),
                    "409": _json(_ref("Error"), "stored, but its PSK identity belongs to another endpoint"),
                },
            },
            "delete": {
                "summary": "Remove an endpoint's bootstrap configuration",
                "parameters": [_EP],
                "responses": {"200": _json({"type": "object"}), "404": _json(_ref("Error"))},
            },
        },
        "/api/events": {
            "get": {
                "summary": "Server-Sent Events: REGISTRATION, UPDATE, DEREGISTRATION, EXPIRED, "
                "SLEEPING, AWAKE, NOTIFICATION, SEND, OBSERVATION_ENDED, and REQUEST_DONE (a "
                "QueuedRequest) when a request for a sleeping client finished; with a bootstrap "
                "server also BOOTSTRAP_STARTED, BOOTSTRAP_FINISHED and BOOTSTRAP_FAILED; "
                "EVENTS_DROPPED ({count}) when the client read too slowly and that many were lost",
                "parameters": [_query("ep", "string", "only this endpoint's events")],
                "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}},
            }
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },
        "/api/docs": {
            "get": {
                "summary": "This document as a web page",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "lwm2m server REST API", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # The bearer token is required only when the server was started with one.
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }


def docs_html() -> str:
    """The paths and operations as a plain page: no scripts, nothing fetched from elsewhere."""
    doc = openapi_document()
    items = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            query = f" <small>?{html.escape(params)}</small>" if params else ""
            summary = html.escape(op["summary"])
            items.append(f"<li><code>{method.upper()} {html.escape(path)}</code>{query} — {summary}</li>")
    title = html.escape(doc["info"]["title"])
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><h1>{title}</h1>\n"
        '<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1).</p>\n'
        f"<ul>\n{chr(10).join(items)}\n</ul></body></html>\n"
    )
