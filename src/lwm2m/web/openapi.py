"""A hand-written OpenAPI 3.1 description of the REST API (shown at ``/api/docs``).

Written by hand rather than generated: the API is small, and one dispatcher
serves several paths, which a generator could not see.
"""

from __future__ import annotations

from typing import Any

from lwm2m import __version__
from lwm2m.codec.formats import format_names
from lwm2m.model.jsonform import TYPE_NAMES
from lwm2m.protocol.attributes import ATTRIBUTE_NAMES, FLAG_ATTRIBUTES, FLOAT_ATTRIBUTES
from lwm2m.protocol.bootstrap_config import (
    ACL_KEY_PATTERN,
    BINDING_LETTERS,
    HEX_BYTE,
    MAX_IDENTITY_BYTES,
    MAX_KEY_BYTES,
    MAX_PSK_BYTES,
    URI_PATTERN,
)

_EP = {
    "name": "ep",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "endpoint name",
}
# An ID is 0-65534 without leading zeros (65535 is reserved, LwM2M-TS-Core 1.2 §7.1).
_ID = r"(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-4])"
# A resource value as JSON, typed by the object model: Opaque as base64, Objlnk as "3:0".
_SCALAR = {"type": ["string", "number", "boolean"], "description": "typed by the object model"}
# Write-Attributes takes each attribute as a query parameter; an empty value removes it.
_ATTRIBUTES = [
    {
        "name": name,
        "in": "query",
        "schema": {
            "anyOf": [
                # thresholds may be negative (a temperature); a step may not
                {"type": "number", **({"minimum": 0} if name == "st" else {})}
                if name in FLOAT_ATTRIBUTES
                else {"type": "integer", "minimum": 0, **({"maximum": 1} if name in FLAG_ATTRIBUTES else {})},
                {"type": "string", "maxLength": 0},
            ]
        },
    }
    for name in ATTRIBUTE_NAMES
]
# gt, lt, st and edge belong on a resource (LwM2M-TS-Core 1.2 §5.1.2).
_RESOURCE_ATTRIBUTES = ("gt", "lt", "st", "edge")
_RESOURCE_PATH = f"^/{_ID}/{_ID}/{_ID}(/{_ID})?$"
_ONE_PATH = f"^/{_ID}(/{_ID}){{0,3}}$"
_PATH_PAIRS = f"^/{_ID}(/{_ID}){{0,3}}(,/{_ID}(/{_ID}){{0,3}})*$"


_FORMAT = {
    "name": "format",
    "in": "query",
    "schema": {"type": "string", "enum": ["", *format_names(), *map(str, format_names().values())]},
    "description": "content format, by name (tlv, senml-json, senml-cbor, …) or number",
}
_TIMEOUT = {
    "name": "timeout",
    "in": "query",
    "schema": {"type": "number", "exclusiveMinimum": 0},
    "description": "seconds to wait for the device",
}
_WAIT = {
    "name": "wait",
    "in": "query",
    "schema": {"type": "boolean", "default": False},
    "description": "for a sleeping queue-mode client: hold the HTTP call until it wakes up and "
    "answers, instead of answering 202 with a request ID",
}

# A written value may say its LwM2M type: for a resource of an object without a model.
_VALUE_TYPE = {
    "type": "string",
    "enum": list(TYPE_NAMES),
    "description": "the value's LwM2M type (opaque: base64; time: Unix seconds or an ISO 8601 date-time)",
}

_RECORD = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "example": "/3/0/9"},
        "value": {"description": "typed by the object model; Opaque as base64, Objlnk as '3:0'"},
        "time": {"type": "number", "description": "Unix seconds"},
        "type": {
            "type": "string",
            "enum": list(TYPE_NAMES),
            "description": "writes: the value's LwM2M type, for a resource without a model "
            "(opaque: base64; time: Unix seconds or an ISO 8601 date-time)",
        },
        "raw": {
            "type": "string",
            "description": "reads: the bytes of a value of unknown type (TLV without a model), hex",
        },
        "readings": {
            "type": "object",
            "description": "reads: what those bytes read as under each type they fit",
            "properties": {
                "integer": {"type": "integer"},
                "unsigned": {"type": "integer"},
                "float": {},
                "boolean": {"type": "boolean"},
                "string": {"type": "string"},
            },
        },
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _device(
    summary: str,
    params: list[dict[str, Any]],
    body: str | None = None,
    answer: str = "DeviceAnswer",
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
        op["requestBody"] = {
            "required": body not in ("CreateBody", "ExecuteBody"),
            "content": {"application/json": {"schema": _ref(body)}},
        }
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
            "400": _json(_ref("Error"), "bad path or parameter"),
            "202": _json(_ref("QueuedRequest"), "active cancel of a sleeping client: queued"),
            "404": _json(_ref("Error"), "no such observation"),
        },
    }


_ID_RANGE = {"minimum": 0, "maximum": 65534}
_LEVELS = ("objectId", "instanceId", "resourceId", "resourceInstanceId")


def _ids(level: int) -> list[dict[str, Any]]:
    """The path parameters of a LwM2M path of ``level`` IDs (0-65534: 65535 is reserved)."""
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": 65534},
        }
        for name in _LEVELS[:level]
    ]


def _device_paths() -> dict[str, Any]:
    """The device routes, one template per path level, each with the operations that level
    takes (LwM2M-TS-Core 1.2 §6.3): the server answers other methods 405 with this Allow."""
    paths: dict[str, Any] = {}
    for level in range(1, 5):
        ids = "/".join("{" + name + "}" for name in _LEVELS[:level])
        base = f"/api/clients/{{ep}}/{ids}"
        params = [_EP, *_ids(level), _TIMEOUT]
        ops: dict[str, Any] = {"get": _device("Read", [*params, _FORMAT])}
        if level >= 2:
            replace = [_query("replace", "boolean", "false: a partial update")] if level in (2, 3) else []
            ops["put"] = _device(
                "Write (replace, or a partial update with replace=false)",
                [*params, _FORMAT, *replace],
                "WriteRecords" if level == 2 else "WriteBody",
            )
        if level == 1:
            ops["post"] = _device(
                "Create an instance (records: its resources)", [*params, _FORMAT], "CreateBody"
            )
        if level == 3:
            ops["post"] = _device("Execute", params, "ExecuteBody")
        if level == 2:
            ops["delete"] = _device("Delete the instance", params)
        paths[base] = ops
        if level <= 3:
            paths[f"{base}/discover"] = {"get": _device("Discover attributes and resources", params)}
        attributes = [a for a in _ATTRIBUTES if level >= 3 or a["name"] not in _RESOURCE_ATTRIBUTES]
        paths[f"{base}/attributes"] = {
            "put": _device(
                "Write-Attributes: at least one of the attributes; an empty value removes one. "
                "pmax >= pmin, epmax > epmin, lt + 2*st < gt (LwM2M-TS-Core 1.2 §5.1.2)",
                [*params, *attributes],
            )
        }
        paths[f"{base}/observe"] = {
            "post": _device(
                "Observe: the current value; notifications arrive as SSE events",
                [*params, _FORMAT],
                answer="ObserveAnswer",
            ),
            "delete": _cancel(
                "Cancel an observation started here (or resumed after a restart)", [_EP, *_ids(level)]
            ),
        }
        paths[f"/api/clients/{{ep}}/history/{ids}"] = {
            "get": {
                "summary": "Stored values from notifications, newest first",
                "parameters": [
                    _EP,
                    *_ids(level),
                    _query("since", "number", "Unix seconds"),
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0},
                        "description": "at most this many records",
                    },
                ],
                "responses": {
                    "200": _json(_ref("Records")),
                    "400": _json(_ref("Error"), "bad since or limit"),
                    "404": _json(_ref("Error")),
                },
            }
        }
    return paths


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field of the bootstrap configuration: null is taken as not given."""
    return {**schema, "type": [schema["type"], "null"]}


def _hex(least: int, most: int, description: str) -> dict[str, Any]:
    """Bytes as hex digits in pairs, colons allowed anywhere, ``least`` to ``most`` bytes."""
    return {
        "type": "string",
        "pattern": f"^:*({HEX_BYTE}){{{least},{most}}}$",
        "description": description,
    }


_MODE_KEYS: dict[str, dict[str, Any]] = {
    "psk": {
        "identity": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDENTITY_BYTES,
            "description": f"PSK identity, at most {MAX_IDENTITY_BYTES} bytes in UTF-8",
        },
        "key": _hex(1, MAX_PSK_BYTES, "the pre-shared key"),
    },
    "rpk": {
        "publicKey": _hex(1, MAX_KEY_BYTES, "the device's public key"),
        "privateKey": _hex(1, MAX_KEY_BYTES, "the device's private key"),
        "serverPublicKey": _or_null(_hex(0, MAX_KEY_BYTES, "the server's public key")),
    },
    "x509": {
        "certificate": _hex(1, MAX_KEY_BYTES, "the device's certificate, DER"),
        "privateKey": _hex(1, MAX_KEY_BYTES, "the device's private key, DER"),
        "serverCertificate": _or_null(_hex(0, MAX_KEY_BYTES, "the server's certificate, DER")),
    },
}
# Object IDs 3 and up: Security (0), Server (1) and Access Control (2) come from servers[]
# and accessControl[].
_OTHER_OBJECT = (
    r"([3-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-4])"
)
_INT32 = {"minimum": 0, "maximum": 0x7FFFFFFF}


def _bootstrap_schemas() -> dict[str, Any]:
    """The body of ``PUT /api/bootstrap/{ep}`` (:meth:`BootstrapConfig.from_json`, which refuses
    unknown fields at every level) and the answers of the bootstrap routes."""
    nosec = {"type": "object", "additionalProperties": False, "properties": {"mode": {"const": "nosec"}}}
    secure = [
        {
            "type": "object",
            "required": ["mode", *[k for k, v in keys.items() if v["type"] == "string"]],
            "additionalProperties": False,
            "properties": {"mode": {"const": mode}, **keys},
        }
        for mode, keys in _MODE_KEYS.items()
    ]
    security = {
        "description": "the Security (0) instance's mode and keys (LwM2M-TS-Core 1.2 §E.1); "
        "keys are never shown back. coap:// URIs take nosec (the default), coaps:// the others",
        "oneOf": [nosec, *secure],
    }
    server = {
        "type": "object",
        "description": "one LwM2M server account: a Security (0) and a Server (1) instance (§E.1, §E.2)",
        "required": ["uri", "shortServerId"],
        "additionalProperties": False,
        "properties": {
            "uri": {"type": "string", "pattern": URI_PATTERN, "example": "coaps://lwm2m.example:5684"},
            "shortServerId": {"type": "integer", "minimum": 1, "maximum": 65534},
            "lifetime": _or_null({"type": "integer", "minimum": 1, "maximum": 0x7FFFFFFF, "default": 86400}),
            "binding": _or_null(
                {
                    "type": "string",
                    "pattern": f"^[{BINDING_LETTERS}]{{1,{len(BINDING_LETTERS)}}}$",
                    "default": "U",
                    "description": f"letters of {BINDING_LETTERS}, each at most once",
                }
            ),
            "security": security,
            "defaultMinPeriod": _or_null(
                {"type": "integer", **_INT32, "description": "at most defaultMaxPeriod"}
            ),
            "defaultMaxPeriod": _or_null({"type": "integer", **_INT32}),
            "notificationStoring": {"type": "boolean", "default": True},
            "securityInstanceId": _or_null({"type": "integer", **_ID_RANGE}),
            "serverInstanceId": _or_null({"type": "integer", **_ID_RANGE}),
        },
        # The scheme decides the security: plain CoAP with nosec, DTLS (coaps) with a key.
        "oneOf": [
            {"properties": {"uri": {"pattern": "^coap(\\+tcp)?:"}, "security": nosec}},
            {
                "required": ["security"],
                "properties": {"uri": {"pattern": "^coaps(\\+tcp)?:"}, "security": {"oneOf": secure}},
            },
        ],
    }
    access = {
        "type": "object",
        "description": "one Access Control (2) instance (§E.3)",
        "required": ["objectId", "objectInstanceId"],
        "additionalProperties": False,
        "properties": {
            "objectId": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65534,
                "not": {"const": 21},
                "description": "not Security (0) nor OSCORE (21), which have no ACL",
            },
            "objectInstanceId": {"type": "integer", "minimum": 0, "maximum": 65535},
            "acl": _or_null(
                {
                    "type": "object",
                    "description": "rights (R1 W2 E4 D8 C16) by shortServerId of servers[], 0: default",
                    "propertyNames": {"pattern": ACL_KEY_PATTERN},
                    "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 31},
                }
            ),
            "owner": _or_null(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 65535,
                    "default": 65535,
                    "description": "a shortServerId of servers[], or 65535: the bootstrap server",
                }
            ),
            "instanceId": _or_null({"type": "integer", **_ID_RANGE}),
        },
    }
    record = {
        "type": "object",
        "required": ["path", "value"],
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "pattern": f"^/{_OTHER_OBJECT}/{_ID}/{_ID}(/{_ID})?$"},
            "value": _SCALAR,
            "time": {"type": ["number", "null"], "description": "Unix seconds"},
            "type": {**_VALUE_TYPE, "type": ["string", "null"], "enum": [*TYPE_NAMES, None]},
        },
    }
    config = {
        "type": "object",
        "description": "what the bootstrap server writes into the device (LwM2M-TS-Core 1.2 §6.1.2). "
        "Fields not given (or null) take their default; shortServerIds and explicit instance IDs are "
        "unique, ACL keys and owners name servers[] shortServerIds",
        "required": ["servers"],
        "additionalProperties": False,
        "properties": {
            "servers": {"type": "array", "minItems": 1, "items": server},
            "deletePaths": _or_null(
                {
                    "type": "array",
                    "description": "deleted first: /, an object or an instance (never the device's "
                    "bootstrap server account)",
                    "items": {"type": "string", "pattern": f"^/({_ID}(/{_ID})?)?$"},
                }
            ),
            "bootstrapDiscover": {"type": "boolean", "default": True},
            "bootstrapAccountId": _or_null(
                {
                    "type": "integer",
                    **_ID_RANGE,
                    "description": "the Security instance of the device's bootstrap server account",
                }
            ),
            "accessControl": _or_null({"type": "array", "items": access}),
            "objects": _or_null(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "records": _or_null(
                            {
                                "type": "array",
                                "items": record,
                                "description": "resource values of other objects, typed by the object model",
                            }
                        )
                    },
                }
            ),
        },
    }
    session = {
        "type": "object",
        "required": ["id", "endpoint", "address", "kind", "status", "startedAt", "endedAt", "steps"],
        "properties": {
            "id": {"type": "string"},
            "endpoint": {"type": "string"},
            "address": {"type": "string"},
            "kind": {"type": "string", "enum": ["session", "pack"]},
            "status": {"type": "string", "enum": ["running", "finished", "failed"]},
            "startedAt": {"type": "number"},
            "endedAt": {"type": ["number", "null"]},
            "steps": {"type": "array", "items": {"type": "string"}},
            "reason": {"type": "string"},
        },
    }
    view = {
        "type": "object",
        "required": ["endpoint", "default", "config"],
        "properties": {
            "endpoint": {"type": "string"},
            "default": {"type": "boolean", "description": "'*': for endpoints without their own"},
            "config": {
                "type": "object",
                "required": ["servers"],
                "description": "the configuration as given, without PSKs and private keys",
            },
        },
    }
    return {
        "BootstrapConfig": config,
        "BootstrapSession": session,
        "BootstrapConfigView": view,
        "BootstrapConfigStored": {
            "allOf": [
                _ref("BootstrapConfigView"),
                {
                    "type": "object",
                    "required": ["provisioned"],
                    "properties": {
                        "provisioned": {
                            "type": "boolean",
                            "description": "the LwM2M server's security store got its credentials",
                        }
                    },
                },
            ]
        },
        "BootstrapConfigSessions": {
            "allOf": [
                _ref("BootstrapConfigView"),
                {
                    "type": "object",
                    "required": ["sessions"],
                    "properties": {"sessions": {"type": "array", "items": _ref("BootstrapSession")}},
                },
            ]
        },
        "BootstrapListing": {
            "type": "object",
            "required": ["server", "configs", "sessions"],
            "properties": {
                "server": {"type": "object", "properties": {"uri": {"type": "string"}}},
                "configs": {"type": "array", "items": _ref("BootstrapConfigView")},
                "sessions": {"type": "array", "items": _ref("BootstrapSession")},
            },
        },
    }


def openapi_document(*, bootstrap: bool = False) -> dict[str, Any]:
    """The document of the routes an app serves: ``/api/bootstrap`` only with a bootstrap server."""
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Record": _RECORD,
        "Records": {"type": "object", "properties": {"records": {"type": "array", "items": _ref("Record")}}},
        "WriteRecord": {
            "type": "object",
            "required": ["path", "value"],
            "additionalProperties": False,
            "properties": {
                "path": {"type": "string", "pattern": _RESOURCE_PATH, "example": "/3/0/14"},
                "value": _SCALAR,
                "time": {"type": "number", "description": "Unix seconds"},
                "type": _VALUE_TYPE,
            },
        },
        "WriteRecords": {
            "type": "object",
            "required": ["records"],
            "additionalProperties": False,
            "properties": {"records": {"type": "array", "minItems": 1, "items": _ref("WriteRecord")}},
        },
        "WriteBody": {
            "description": '"records", or "value" for the one resource (or resource instance) of the path',
            "oneOf": [
                _ref("WriteRecords"),
                {
                    "type": "object",
                    "required": ["value"],
                    "additionalProperties": False,
                    "properties": {"value": _SCALAR, "type": _VALUE_TYPE},
                },
            ],
        },
        "CreateBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"records": {"type": "array", "items": _ref("WriteRecord")}},
            "description": "the new instance's resources (none: the client's defaults)",
        },
        "ExecuteBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"args": {"type": "string", "example": "0='x',1"}},
        },
        "Paths": {
            "type": "object",
            "required": ["paths"],
            "properties": {
                "paths": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": _ONE_PATH},
                    "example": ["/3/0/9", "/3303/0/5700"],
                }
            },
        },
        "ClientPage": {
            "type": "object",
            "required": ["clients", "next"],
            "properties": {
                "clients": {"type": "array", "items": _ref("Registration")},
                "next": {"type": ["string", "null"], "description": "cursor of the next page, or null"},
            },
        },
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
                "hint": {"type": "string", "description": "reads of objects without a model: how to add one"},
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
            "description": "how an endpoint authenticates (over DTLS, or nosec: plain CoAP); "
            "the key itself is never shown",
            "properties": {
                "endpoint": {"type": "string"},
                "mode": {"type": "string", "enum": ["psk", "x509", "nosec"]},
                "pskIdentity": {"type": "string"},
                "pskKeyHint": {"type": "string", "example": "a1… (16 bytes)"},
                "x509": {"type": "boolean"},
            },
        },
        "SecurityBody": {
            "description": 'a PSK ("pskIdentity" and "pskKey" as hex, at most 32 bytes, as Mbed TLS '
            '2.28 takes), "x509": true (a certificate with the endpoint as subject CN, from an authority '
            'the server trusts), or "mode": "nosec" (plain CoAP, taken under --nosec-endpoints deny)',
            "oneOf": [
                {
                    "type": "object",
                    "required": ["pskIdentity", "pskKey"],
                    "additionalProperties": False,
                    "properties": {
                        "mode": {"const": "psk"},
                        "x509": {"const": False},
                        "pskIdentity": {"type": "string", "minLength": 1},
                        "pskKey": {
                            "type": "string",
                            "pattern": "^([0-9a-fA-F]{2}){1,32}$",
                            "example": "000102030405060708090a0b0c0d0e0f",
                        },
                    },
                },
                {
                    "type": "object",
                    "required": ["x509"],
                    "additionalProperties": False,
                    "properties": {"x509": {"const": True}, "mode": {"const": "x509"}},
                },
                {
                    "type": "object",
                    "required": ["mode"],
                    "additionalProperties": False,
                    "properties": {"mode": {"const": "x509"}},
                },
                {
                    "type": "object",
                    "required": ["mode"],
                    "additionalProperties": False,
                    "properties": {"mode": {"const": "nosec"}, "x509": {"const": False}},
                },
            ],
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
    paths: dict[str, Any] = {
        "/api/clients": {
            "get": {
                "summary": "A page of the registered clients, in endpoint order",
                "description": "Pass the answer's next as cursor for the following page. A page with "
                "filters may hold fewer than limit clients (even none) and still have a next: the "
                "server stops after examining a bounded number of registrations.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "description": "clients per page",
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "format": "cursor", "maxLength": 2048},
                        "description": "the next of the previous page (opaque)",
                    },
                    {
                        "name": "endpoint",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 1024},
                        "description": "endpoint name prefix, or a glob when it has * ? or [",
                    },
                    {
                        "name": "object",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 65535},
                        "description": "only clients whose links include this object ID",
                    },
                    _query("online", "boolean", "true: awake clients; false: sleeping (queue mode) ones"),
                ],
                "responses": {
                    "200": _json(_ref("ClientPage")),
                    "400": _json(_ref("Error"), "bad limit, cursor or filter"),
                },
            }
        },
        "/api/clients/{ep}": {
            "get": {
                "summary": "One client's registration",
                "parameters": [_EP],
                "responses": {"200": _json(_ref("Registration")), "404": _json(_ref("Error"))},
            }
        },
        **_device_paths(),
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
                        "schema": {"type": "string", "pattern": _PATH_PAIRS},
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
            "post": _device("Write-Composite", [_EP, _TIMEOUT, _FORMAT], "WriteRecords")
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
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SecurityBody")}},
                },
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
    }
    bootstrap_paths: dict[str, Any] = {
        "/api/bootstrap": {
            "get": {
                "summary": "With a bootstrap server (--bootstrap-port): its configurations, keys never "
                "shown ('*' is the default), and its running and recent sessions with status and times",
                "parameters": [
                    _query("ep", "string", "only this endpoint's sessions"),
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
                        "description": "at most this many sessions (50)",
                    },
                ],
                "responses": {
                    "200": _json(_ref("BootstrapListing")),
                    "400": _json(_ref("Error"), "bad limit"),
                },
            }
        },
        "/api/bootstrap/{ep}": {
            "get": {
                "summary": "One endpoint's bootstrap configuration and its recent sessions",
                "parameters": [_EP],
                "responses": {
                    "200": _json(_ref("BootstrapConfigSessions")),
                    "404": _json(_ref("Error"), "no configuration for this endpoint"),
                },
            },
            "put": {
                "summary": "Set the bootstrap configuration of an endpoint ('*': the default): servers[] "
                "with uri, shortServerId, lifetime, binding, security {mode psk|rpk|x509|nosec, ...}; "
                "deletePaths, bootstrapDiscover (default true), bootstrapAccountId, accessControl, "
                "objects.records. Also provisions the LwM2M server's security store unless ?provision=false",
                "parameters": [_EP, _query("provision", "boolean", "false: leave the security store alone")],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BootstrapConfig")}},
                },
                "responses": {
                    "200": _json(_ref("BootstrapConfigStored"), "replaced"),
                    "201": _json(_ref("BootstrapConfigStored"), "created"),
                    "400": _json(_ref("Error"), "not usable, e.g. no server account; the message says why"),
                    "409": _json(_ref("Error"), "stored, but its PSK identity belongs to another endpoint"),
                },
            },
            "delete": {
                "summary": "Remove an endpoint's bootstrap configuration",
                "parameters": [_EP],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["removed"],
                            "properties": {"removed": {"type": "string"}},
                        }
                    ),
                    "404": _json(_ref("Error"), "no configuration for this endpoint"),
                },
            },
        },
    }
    if bootstrap:
        paths.update(bootstrap_paths)
        schemas.update(_bootstrap_schemas())
    paths |= {
        "/api/events": {
            "get": {
                "summary": "Server-Sent Events: REGISTRATION, UPDATE, DEREGISTRATION, EXPIRED, "
                "SLEEPING, AWAKE, NOTIFICATION, SEND, OBSERVATION_ENDED, and REQUEST_DONE (a "
                "QueuedRequest) when a request for a sleeping client finished; with a bootstrap "
                "server also BOOTSTRAP_STARTED, BOOTSTRAP_FINISHED and BOOTSTRAP_FAILED; "
                "EVENTS_DROPPED ({count}) when the client read too slowly and that many were lost",
                "parameters": [
                    _query("ep", "string", "only this endpoint's events"),
                    {
                        **_query(
                            "backlog",
                            "integer",
                            "first send up to this many of the last events the server kept (it keeps "
                            "200), oldest first, each with receivedAt (Unix seconds); then live events",
                        ),
                        "schema": {"type": "integer", "minimum": 0, "maximum": 200, "default": 0},
                    },
                ],
                "responses": {
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    "400": _json(_ref("Error"), "backlog is not an integer from 0 to 200"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },
        "/api/docs": {
            "get": {
                "summary": "This document as an interactive web page (Swagger UI, served from here)",
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
