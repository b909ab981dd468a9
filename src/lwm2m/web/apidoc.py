"""How the route table documents an operation: its summary, parameters, body and answers,
each typed (msgspec types and the structs of :mod:`lwm2m.web.bodies`), from which
:mod:`lwm2m.web.openapi` writes the OpenAPI 3.1 document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from msgspec import Meta

from lwm2m.codec.formats import format_names
from lwm2m.protocol.attributes import ATTRIBUTE_NAMES, FLAG_ATTRIBUTES, FLOAT_ATTRIBUTES
from lwm2m.web import bodies

__all__ = [
    "ACTIVE",
    "ATTRIBUTES",
    "CANCEL_ANSWERS",
    "EP",
    "FORMAT",
    "LEVEL_PARAMS",
    "RESOURCE_ATTRIBUTES",
    "TIMEOUT",
    "WAIT",
    "Answer",
    "Doc",
    "Param",
    "device_answers",
]


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter; ``type`` gives its schema (a msgspec type)."""

    name: str
    type: Any
    description: str = ""
    where: Literal["query", "path"] = "query"
    required: bool = False
    example: Any = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented answer: its body's type (None: no JSON body) or another ``media`` type."""

    description: str
    body: Any = None
    media: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # name: description (a string)


@dataclass(frozen=True, slots=True)
class Doc:
    """What the document says of one operation."""

    summary: str
    params: tuple[Param, ...] = ()
    answers: Mapping[int, Answer] = field(default_factory=dict)
    body: Any = None  # a struct or a OneOf of bodies
    body_required: bool = True
    description: str = ""
    raw_body: str = ""  # the media type of a body taken as bytes (a firmware package), not JSON


EP = Param("ep", str, "endpoint name", where="path", required=True)
TIMEOUT = Param("timeout", Annotated[float, Meta(gt=0)], "seconds to wait for the device")
FORMAT = Param(
    "format",
    Annotated[
        str, Meta(extra_json_schema={"enum": ["", *format_names(), *map(str, format_names().values())]})
    ],
    "content format, by name (tlv, senml-json, senml-cbor, …) or number",
)
WAIT = Param(
    "wait",
    Annotated[bool, Meta(extra_json_schema={"default": False})],
    "for a sleeping queue-mode client, or a gateway holding the request for an end device: hold the "
    "HTTP call until the answer comes, instead of answering 202 with a request ID",
)
ACTIVE = Param("active", bool, "also tell the client (Observe 1); queued for a sleeping client")
# The path parameters of a LwM2M path's IDs, by level (0-65534: 65535 is reserved, §7.1).
LEVEL_PARAMS = tuple(
    Param(name, bodies.ObjectId, where="path", required=True)
    for name in ("objectId", "instanceId", "resourceId", "resourceInstanceId")
)
_EMPTY = Annotated[str, Meta(max_length=0)]  # an attribute given without a value is removed


def _attribute(name: str) -> Param:
    # thresholds may be negative (a temperature); a step may not
    if name in FLOAT_ATTRIBUTES:
        number: Any = Annotated[float, Meta(ge=0)] if name == "st" else float
    else:
        number = Annotated[int, Meta(ge=0, le=1)] if name in FLAG_ATTRIBUTES else Annotated[int, Meta(ge=0)]
    return Param(name, number | _EMPTY)


# Write-Attributes takes each attribute as a query parameter (LwM2M-TS-Core 1.2 §5.1.2).
ATTRIBUTES = tuple(_attribute(name) for name in ATTRIBUTE_NAMES)
# gt, lt, st and edge belong on a resource (LwM2M-TS-Core 1.2 §5.1.2).
RESOURCE_ATTRIBUTES = ("gt", "lt", "st", "edge")


def _error(description: str) -> Answer:
    return Answer(description, bodies.Error)


def device_answers(answer: Any = bodies.DeviceAnswer) -> dict[int, Answer]:
    """The answers of a device operation: the device's own result with 200, or 202 for a
    sleeping client or a request a gateway holds for an end device, and the errors around the
    device."""
    return {
        200: Answer("the device's answer; its CoAP result is in code", answer),
        202: Answer(
            "the client sleeps (queue mode): the request goes out when it wakes up; or a gateway "
            "holds the request for an end device that hears only at times of its own (a LoRaWAN "
            "class A device, at its next uplink): it acknowledged it with an empty ACK and answers "
            "later in a separate response (RFC 7252 §5.2.2). The outcome follows as a REQUEST_DONE "
            "event and at /api/requests/{id}",
            bodies.QueuedRequest,
            headers={"Location": "/api/requests/{id}"},
        ),
        400: _error("bad path, format or body"),
        404: _error("unknown endpoint"),
        502: _error("the device's answer cannot be decoded"),
        503: _error("too many requests wait for sleeping clients"),
        504: _error("the device did not answer, or did not wake up in time"),
    }


CANCEL_ANSWERS: dict[int, Answer] = {
    200: Answer("cancelled", bodies.Cancelled),
    202: Answer("active cancel of a sleeping client: queued", bodies.QueuedRequest),
    400: _error("bad path or parameter"),
    404: _error("no such observation"),
    503: _error("active cancel: too many requests wait for sleeping clients"),
    504: _error("active cancel: the device did not answer, or did not wake up in time"),
}
