"""The JSON bodies of the REST API as msgspec structs: what a request sends and what an answer
carries. The OpenAPI document's schemas are generated from them
(``msgspec.json.schema_components``, :mod:`lwm2m.web.openapi`).

A field that may be left out is ``UNSET``; a rule a struct cannot say (a pattern across
fields, exactly one of several shapes) is given with ``Meta(extra_json_schema=...)`` or as a
:class:`OneOf`, and the parsers of the views enforce it with a message naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from lwm2m.export.webhooks import MAX_BATCH_DELAY, MAX_BATCH_EVENTS, MAX_URL, URL_PATTERN
from lwm2m.model.jsonform import TYPE_NAMES
from lwm2m.model.path import PREFIX_SEGMENT
from lwm2m.protocol.bootstrap_config import (
    ACL_KEY_PATTERN,
    BINDING_LETTERS,
    HEX_BYTE,
    MAX_IDENTITY_BYTES,
    MAX_KEY_BYTES,
    MAX_PSK_BYTES,
    URI_PATTERN,
)

REF = "#/components/schemas/{name}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


class OneOf:
    """A body that is exactly one of several structs (JSON Schema ``oneOf``), as a component of
    the document named after the subclass; ``description`` says when each applies."""

    members: ClassVar[tuple[type[Struct], ...]] = ()
    description: ClassVar[str] = ""

    @classmethod
    def schema(cls) -> dict[str, Any]:
        out: dict[str, Any] = {"oneOf": [ref(m.__name__) for m in cls.members]}
        if cls.description:
            out["description"] = cls.description
        return out


class Body(Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A JSON object of the API, keys in camelCase."""


class Closed(Body, forbid_unknown_fields=True):
    """A JSON object with these fields and no other: a request body whose parser refuses other
    fields, or an answer the API never adds a field to (the document says
    ``additionalProperties: false``, so a test sees an undocumented field)."""


# --- shared pieces ----------------------------------------------------------------------------

# An ID is 0-65534 without leading zeros (65535 is reserved, LwM2M-TS-Core 1.2 §7.1).
ID = r"(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-4])"
RESOURCE_PATH = f"^/{ID}/{ID}/{ID}(/{ID})?$"
# A path of a composite operation may start with an end device's prefix (LwM2M-TS-Gateway 1.1),
# a segment that is not all digits (lwm2m.model.path.PREFIX_SEGMENT, what check_prefix takes).
PREFIX = f"(/{PREFIX_SEGMENT})?"
ONE_PATH = f"^{PREFIX}/{ID}(/{ID}){{0,3}}$"
PATH_LIST = f"^{PREFIX}/{ID}(/{ID}){{0,3}}(,{PREFIX}/{ID}(/{ID}){{0,3}})*$"
# Object IDs 3 and up: Security (0), Server (1) and Access Control (2) come from servers[]
# and accessControl[] of a bootstrap configuration.
OTHER_OBJECT = r"([3-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-4])"
INT32 = 0x7FFFFFFF

ObjectId = Annotated[int, Meta(ge=0, le=65534)]
# A resource value as JSON, typed by the object model: Opaque as base64, Objlnk as "3:0".
Scalar = Annotated[Any, Meta(extra_json_schema={"type": ["string", "number", "boolean"]})]
SCALAR_NOTE = "typed by the object model"
# A written value may say its LwM2M type: for a resource of an object without a model.
ValueType = Annotated[
    str,
    Meta(
        description="the value's LwM2M type (opaque: base64; time: Unix seconds or an ISO 8601 date-time)",
        extra_json_schema={"enum": list(TYPE_NAMES)},
    ),
]
UnixTime = Annotated[float, Meta(description="Unix seconds")]


def _hex(least: int, most: int, description: str) -> Any:
    """Bytes as hex digits in pairs, colons allowed anywhere, ``least`` to ``most`` bytes."""
    return Annotated[str, Meta(pattern=f"^:*({HEX_BYTE}){{{least},{most}}}$", description=description)]


# --- answers -----------------------------------------------------------------------------------


class Error(Closed):
    """What failed around the device (the device's own result travels in ``code``)."""

    error: str


class Readings(Closed):
    """Reads: what the bytes of a value of unknown type read as under each type they fit."""

    integer: int | UnsetType = UNSET
    unsigned: int | UnsetType = UNSET
    float_: Any = msgspec.field(default=UNSET, name="float")
    boolean: bool | UnsetType = UNSET
    string: str | UnsetType = UNSET


class Record(Closed):
    """One value of a LwM2M path, in the one JSON form of records."""

    path: Annotated[str, Meta(examples=["/3/0/9"])]
    value: Annotated[
        Any, Meta(description="typed by the object model; Opaque as base64, Objlnk as '3:0'")
    ] = UNSET
    time: UnixTime | UnsetType = UNSET
    type_: (
        Annotated[
            str,
            Meta(
                description="writes: the value's LwM2M type, for a resource without a model "
                "(opaque: base64; time: Unix seconds or an ISO 8601 date-time)",
                extra_json_schema={"enum": list(TYPE_NAMES)},
            ),
        ]
        | UnsetType
    ) = msgspec.field(default=UNSET, name="type")
    raw: (
        Annotated[
            str, Meta(description="reads: the bytes of a value of unknown type (TLV without a model), hex")
        ]
        | UnsetType
    ) = UNSET
    readings: Readings | UnsetType = UNSET


class Records(Closed):
    """Stored values, newest first."""

    records: list[Record]


class DeviceAnswer(Closed):
    """A device's answer: its CoAP result in ``code`` (RFC 7252 §3) and what it carried."""

    code: Annotated[str, Meta(examples=["2.05"])]
    content_format: int | UnsetType = UNSET
    records: list[Record] | UnsetType = UNSET
    location: Annotated[str, Meta(description="Create: the new instance")] | UnsetType = UNSET
    links: Annotated[list[str], Meta(examples=[["</3/0>;pmin=10"]])] | UnsetType = UNSET
    diagnostic: str | UnsetType = UNSET
    hint: Annotated[str, Meta(description="reads of objects without a model: how to add one")] | UnsetType = (
        UNSET
    )


class ObserveAnswer(DeviceAnswer):
    """The current value (and the observation's token when the device took it); notifications
    follow as NOTIFICATION events."""

    token: Annotated[str, Meta(description="the observation's CoAP token, hex")] | UnsetType = UNSET


class Cancelled(Closed):
    """A cancelled observation: its path, or the paths of an Observe-Composite."""

    cancelled: str | list[str]
    active: Annotated[bool, Meta(description="the client was told (Observe 1)")]


class RequestFailure(Closed):
    """A queued request that failed: the error and the HTTP status the call would have had."""

    error: str
    http_status: int


class QueuedRequest(Closed):
    """A request for a sleeping queue-mode client (LwM2M-TS-Core 1.2 §6.5): it goes out when the
    client wakes up; its outcome follows as a REQUEST_DONE event."""

    request_id: str
    endpoint: str
    status: Literal["queued", "done", "failed"]
    created_at: UnixTime
    finished_at: UnixTime | UnsetType = UNSET
    result: (
        Annotated[
            dict[str, Any],
            Meta(
                description="done: the answer the call would have given at once (e.g. DeviceAnswer); "
                "failed: the error and the HTTP status it would have had",
                extra_json_schema={
                    "anyOf": [
                        ref("DeviceAnswer"),
                        ref("ObserveAnswer"),
                        ref("Cancelled"),
                        ref("RequestFailure"),
                    ]
                },
            ),
        ]
        | UnsetType
    ) = UNSET


class EndDevice(Closed):
    """An end device behind a gateway (LwM2M-TS-Gateway 1.1, object 25): its prefix, Device ID, the
    /25 instance that stands for it and its objects as CoRE links."""

    prefix: Annotated[str, Meta(examples=["dev1"])]
    deviceId: Annotated[str, Meta(examples=["urn:dev:001234"])]
    instanceId: int
    objects: Annotated[str, Meta(examples=["</3/0>,</3303>;ver=1.1,</3303/0>"])]


class Registration(Closed):
    """A client's registration (LwM2M-TS-Core 1.2 §6.2.1)."""

    endpoint: str
    registration_id: str
    address: Annotated[str, Meta(examples=["192.0.2.1:56830"])]
    lifetime: int
    lwm2m_version: str
    binding: str
    queue_mode: bool
    objects: list[dict[str, Any]]
    registered_at: float
    last_update: float
    sleeping: bool
    transport: (
        Annotated[
            Literal["udp", "dtls", "tcp", "tls"],
            Meta(description="how the client reaches the server: CoAP over UDP, DTLS, TCP or TLS (RFC 8323)"),
        ]
        | UnsetType
    ) = UNSET
    endDevices: (
        Annotated[list[EndDevice], Meta(description="a gateway's end devices (object 25)")] | UnsetType
    ) = UNSET


class EndDevices(Closed):
    """The end devices behind a gateway, by prefix."""

    endpoint: str
    devices: list[EndDevice]


class ClientPage(Closed):
    """A page of clients in endpoint order."""

    clients: list[Registration]
    next: Annotated[str | None, Meta(description="cursor of the next page, or null")]


class ModelSummary(Closed):
    """An object definition the server knows, by ID and version."""

    id: int
    name: str
    version: str | None


class Removed(Closed):
    """The endpoint whose entry was removed."""

    removed: str


class SecurityInfo(Closed):
    """How an endpoint authenticates (over DTLS, or nosec: plain CoAP); the key itself is never
    shown."""

    endpoint: str
    mode: Literal["psk", "rpk", "x509", "nosec", "oscore"]
    x509: bool
    psk_identity: Annotated[str, Meta(description="PSK mode")] | UnsetType = UNSET
    psk_key_hint: Annotated[str, Meta(examples=["a1… (16 bytes)"])] | UnsetType = UNSET
    rpk: Annotated[str, Meta(description="RPK mode: hex of the DER SubjectPublicKeyInfo")] | UnsetType = UNSET
    oscore: OscoreShown | UnsetType = UNSET


class OscoreShown(Closed):
    """OSCORE mode: the device's Sender and Recipient IDs and ID Context (hex); never the secret."""

    sender_id: str
    recipient_id: str
    id_context: str | UnsetType = UNSET


# --- device requests ---------------------------------------------------------------------------


class WriteRecord(Closed):
    """One resource value to write."""

    path: Annotated[str, Meta(pattern=RESOURCE_PATH, examples=["/3/0/14"])]
    value: Annotated[Scalar, Meta(description=SCALAR_NOTE)]
    time: UnixTime | UnsetType = UNSET
    type_: ValueType | UnsetType = msgspec.field(default=UNSET, name="type")


class WriteRecords(Closed):
    """Values to write, each with its path."""

    records: Annotated[list[WriteRecord], Meta(min_length=1)]


class WriteValue(Closed):
    """The value of the one resource (or resource instance) of the path."""

    value: Annotated[Scalar, Meta(description=SCALAR_NOTE)]
    type_: ValueType | UnsetType = msgspec.field(default=UNSET, name="type")


class WriteBody(OneOf):
    members = (WriteRecords, WriteValue)
    description = '"records", or "value" for the one resource (or resource instance) of the path'


class CreateBody(Closed):
    """The new instance's resources (none: the client's defaults)."""

    records: list[WriteRecord] | UnsetType = UNSET


class ExecuteBody(Closed):
    """Execute's arguments (LwM2M-TS-Core 1.2 §5.4.5)."""

    args: Annotated[str, Meta(examples=["0='x',1"])] | UnsetType = UNSET


class Paths(Body):
    """The paths of a composite operation."""

    paths: Annotated[
        list[Annotated[str, Meta(pattern=ONE_PATH)]],
        Meta(min_length=1, examples=[["/3/0/9", "/3303/0/5700"]]),
    ]


# --- security requests ---------------------------------------------------------------------------

PskKey = Annotated[
    str, Meta(pattern="^([0-9a-fA-F]{2}){1,64}$", examples=["000102030405060708090a0b0c0d0e0f"])
]
NotX509 = Annotated[bool, Meta(extra_json_schema={"const": False})]


class PskBody(Closed):
    """A pre-shared key: its identity and the key as hex, at most 64 bytes (RFC 4279 §5.3)."""

    psk_identity: Annotated[str, Meta(min_length=1)]
    psk_key: PskKey
    mode: Literal["psk"] | UnsetType = UNSET
    x509: NotX509 | UnsetType = UNSET


class RpkBody(Closed):
    """A raw public key (RFC 7250): the hex of the client's DER SubjectPublicKeyInfo."""

    rpk: Annotated[str, Meta(pattern="^([0-9a-fA-F]{2})+$", max_length=2048)]
    mode: Literal["rpk"] | UnsetType = UNSET
    x509: NotX509 | UnsetType = UNSET


class X509Body(Closed):
    """A certificate with the endpoint as subject CN, from an authority the server trusts."""

    x509: Annotated[bool, Meta(extra_json_schema={"const": True})]
    mode: Literal["x509"] | UnsetType = UNSET


class X509ModeBody(Closed):
    """The same as ``"x509": true``."""

    mode: Literal["x509"]


class NosecBody(Closed):
    """Plain CoAP, taken under ``--nosec-endpoints deny``."""

    mode: Literal["nosec"]
    x509: NotX509 | UnsetType = UNSET


OscoreId = Annotated[str, Meta(pattern="^([0-9a-fA-F]{2}){0,7}$", examples=["01"])]
OscoreSecret = Annotated[
    str, Meta(pattern="^([0-9a-fA-F]{2}){1,64}$", examples=["0102030405060708090a0b0c0d0e0f10"])
]


class OscoreParameters(Closed):
    """OSCORE input parameters (RFC 8613 §3.2) as the device holds them (object 21): its Sender ID
    and Recipient ID (hex, at most 7 bytes each, different), the Master Secret and Salt (hex)."""

    master_secret: OscoreSecret
    sender_id: OscoreId
    recipient_id: OscoreId
    master_salt: Annotated[str, Meta(pattern="^([0-9a-fA-F]{2}){0,64}$")] | UnsetType = UNSET
    id_context: Annotated[str, Meta(pattern="^([0-9a-fA-F]{2}){0,255}$")] | UnsetType = UNSET


class OscoreBody(Closed):
    """OSCORE (RFC 8613) instead of DTLS."""

    oscore: OscoreParameters
    mode: Literal["oscore"] | UnsetType = UNSET
    x509: NotX509 | UnsetType = UNSET


class SecurityBody(OneOf):
    members = (PskBody, RpkBody, X509Body, X509ModeBody, NosecBody, OscoreBody)
    description = (
        'a PSK ("pskIdentity" and "pskKey" as hex, at most 64 bytes), a raw public key ("rpk": hex of '
        'its DER SubjectPublicKeyInfo), "x509": true '
        "(a certificate with the endpoint as subject CN, from an authority the server trusts), "
        '"mode": "nosec" (plain CoAP, taken under --nosec-endpoints deny), or "oscore" '
        '({"masterSecret", "masterSalt", "senderId", "recipientId"} as hex, as the device holds them)'
    )


# --- bootstrap (LwM2M-TS-Core 1.2 §6.1, Appendix E) ----------------------------------------------


class NosecSecurity(Closed):
    """No security: a coap:// server."""

    mode: Literal["nosec"] | UnsetType = UNSET


class PskSecurity(Closed):
    """A pre-shared key (RFC 4279)."""

    mode: Literal["psk"]
    identity: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_IDENTITY_BYTES,
            description=f"PSK identity, at most {MAX_IDENTITY_BYTES} bytes in UTF-8",
        ),
    ]
    key: _hex(1, MAX_PSK_BYTES, "the pre-shared key")  # type: ignore[valid-type]


class RpkSecurity(Closed):
    """Raw public keys (RFC 7250)."""

    mode: Literal["rpk"]
    public_key: _hex(1, MAX_KEY_BYTES, "the device's public key")  # type: ignore[valid-type]
    private_key: _hex(1, MAX_KEY_BYTES, "the device's private key")  # type: ignore[valid-type]
    server_public_key: _hex(0, MAX_KEY_BYTES, "the server's public key") | UnsetType | None = UNSET  # type: ignore[valid-type]


class X509Security(Closed):
    """Certificates (RFC 5280), DER."""

    mode: Literal["x509"]
    certificate: _hex(1, MAX_KEY_BYTES, "the device's certificate, DER")  # type: ignore[valid-type]
    private_key: _hex(1, MAX_KEY_BYTES, "the device's private key, DER")  # type: ignore[valid-type]
    server_certificate: _hex(0, MAX_KEY_BYTES, "the server's certificate, DER") | UnsetType | None = UNSET  # type: ignore[valid-type]


class OscoreSecurity(Closed):
    """OSCORE (RFC 8613) over coap://: an OSCORE (21) instance the Security instance links to
    (/0/x/17, LwM2M-TS-Core 1.2 §E.5); the IDs as the device holds them, different."""

    mode: Literal["oscore"]
    master_secret: _hex(1, MAX_PSK_BYTES, "the OSCORE Master Secret")  # type: ignore[valid-type]
    sender_id: _hex(0, 7, "the device's Sender ID")  # type: ignore[valid-type]
    recipient_id: _hex(0, 7, "the device's Recipient ID (the server's Sender ID)")  # type: ignore[valid-type]
    master_salt: _hex(0, MAX_PSK_BYTES, "the OSCORE Master Salt") | UnsetType = UNSET  # type: ignore[valid-type]
    id_context: _hex(0, 255, "the OSCORE ID Context") | UnsetType = UNSET  # type: ignore[valid-type]


class ServerSecurity(OneOf):
    members = (NosecSecurity, PskSecurity, RpkSecurity, X509Security, OscoreSecurity)
    description = (
        "the Security (0) instance's mode and keys (LwM2M-TS-Core 1.2 §E.1); keys are never shown back. "
        "coap:// URIs take nosec (the default) or oscore, coaps:// psk, rpk or x509"
    )


SECURE = [ref(m.__name__) for m in (PskSecurity, RpkSecurity, X509Security)]
PLAIN = [ref(m.__name__) for m in (NosecSecurity, OscoreSecurity)]


class ServerAccount(Closed):
    """One LwM2M server account: a Security (0) and a Server (1) instance (§E.1, §E.2)."""

    uri: Annotated[str, Meta(pattern=URI_PATTERN, examples=["coaps://lwm2m.example:5684"])]
    short_server_id: Annotated[int, Meta(ge=1, le=65534)]
    lifetime: (
        Annotated[int, Meta(ge=1, le=INT32, extra_json_schema={"default": 86400})] | UnsetType | None
    ) = UNSET
    binding: (
        Annotated[
            str,
            Meta(
                pattern=f"^[{BINDING_LETTERS}]{{1,{len(BINDING_LETTERS)}}}$",
                description=f"letters of {BINDING_LETTERS}, each at most once",
                extra_json_schema={"default": "U"},
            ),
        ]
        | UnsetType
        | None
    ) = UNSET
    security: Annotated[Any, Meta(extra_json_schema=ref("ServerSecurity"))] = UNSET
    default_min_period: (
        Annotated[int, Meta(ge=0, le=INT32, description="at most defaultMaxPeriod")] | UnsetType | None
    ) = UNSET
    default_max_period: Annotated[int, Meta(ge=0, le=INT32)] | UnsetType | None = UNSET
    notification_storing: Annotated[bool, Meta(extra_json_schema={"default": True})] | UnsetType = UNSET
    security_instance_id: ObjectId | UnsetType | None = UNSET
    server_instance_id: ObjectId | UnsetType | None = UNSET


# The scheme decides the security: plain CoAP with nosec or OSCORE, DTLS (coaps) with a key.
Account = Annotated[
    ServerAccount,
    Meta(
        extra_json_schema={
            "oneOf": [
                {"properties": {"uri": {"pattern": "^coap(\\+tcp)?:"}, "security": {"oneOf": PLAIN}}},
                {
                    "required": ["security"],
                    "properties": {"uri": {"pattern": "^coaps(\\+tcp)?:"}, "security": {"oneOf": SECURE}},
                },
            ]
        }
    ),
]


class AccessControl(Closed):
    """One Access Control (2) instance (§E.3)."""

    object_id: Annotated[
        int,
        Meta(
            ge=1,
            le=65534,
            description="not Security (0) nor OSCORE (21), which have no ACL",
            extra_json_schema={"not": {"const": 21}},
        ),
    ]
    object_instance_id: Annotated[int, Meta(ge=0, le=65535)]
    acl: (
        Annotated[
            dict[Annotated[str, Meta(pattern=ACL_KEY_PATTERN)], Annotated[int, Meta(ge=0, le=31)]],
            Meta(description="rights (R1 W2 E4 D8 C16) by shortServerId of servers[], 0: default"),
        ]
        | UnsetType
        | None
    ) = UNSET
    owner: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=65535,
                description="a shortServerId of servers[], or 65535: the bootstrap server",
                extra_json_schema={"default": 65535},
            ),
        ]
        | UnsetType
        | None
    ) = UNSET
    instance_id: ObjectId | UnsetType | None = UNSET


class BootstrapRecord(Closed):
    """A resource value of another object, typed by the object model."""

    path: Annotated[str, Meta(pattern=f"^/{OTHER_OBJECT}/{ID}/{ID}(/{ID})?$")]
    value: Annotated[Scalar, Meta(description=SCALAR_NOTE)]
    time: Annotated[float | None, Meta(description="Unix seconds")] | UnsetType = UNSET
    type_: ValueType | UnsetType | None = msgspec.field(default=UNSET, name="type")


class BootstrapObjects(Closed):
    """Other objects' values."""

    records: (
        Annotated[
            list[BootstrapRecord],
            Meta(description="resource values of other objects, typed by the object model"),
        ]
        | UnsetType
        | None
    ) = UNSET


class BootstrapConfig(Closed):
    """What the bootstrap server writes into the device (LwM2M-TS-Core 1.2 §6.1.2). Fields not given
    (or null) take their default; shortServerIds and explicit instance IDs are unique, ACL keys and
    owners name servers[] shortServerIds."""

    servers: Annotated[list[Account], Meta(min_length=1)]
    delete_paths: (
        Annotated[
            list[Annotated[str, Meta(pattern=f"^/({ID}(/{ID})?)?$")]],
            Meta(
                description="deleted first: /, an object or an instance "
                "(never the device's bootstrap server account)"
            ),
        ]
        | UnsetType
        | None
    ) = UNSET
    bootstrap_discover: Annotated[bool, Meta(extra_json_schema={"default": True})] | UnsetType = UNSET
    bootstrap_account_id: (
        Annotated[
            int,
            Meta(
                ge=0, le=65534, description="the Security instance of the device's bootstrap server account"
            ),
        ]
        | UnsetType
        | None
    ) = UNSET
    access_control: list[AccessControl] | UnsetType | None = UNSET
    objects: BootstrapObjects | UnsetType | None = UNSET


class BootstrapSession(Closed):
    """A bootstrap session, running or recently ended."""

    id: str
    endpoint: str
    address: str
    kind: Literal["session", "pack"]
    status: Literal["running", "finished", "failed"]
    started_at: float
    ended_at: float | None
    steps: list[str]
    reason: str | UnsetType = UNSET


class BootstrapConfigView(Closed):
    """A stored configuration, without its keys."""

    endpoint: str
    default: Annotated[bool, Meta(description="'*': for endpoints without their own")]
    config: Annotated[
        dict[str, Any],
        Meta(
            description="the configuration as given, without PSKs and private keys",
            extra_json_schema={"required": ["servers"]},
        ),
    ]


class BootstrapConfigStored(BootstrapConfigView):
    """The configuration stored, and whether the LwM2M server's security store got its credentials."""

    provisioned: Annotated[bool, Meta(description="the LwM2M server's security store got its credentials")]


class BootstrapConfigSessions(BootstrapConfigView):
    """A configuration and its endpoint's recent sessions."""

    sessions: list[BootstrapSession]


class BootstrapServerInfo(Closed):
    """The bootstrap server."""

    uri: str | UnsetType = UNSET


class BootstrapListing(Closed):
    """Every configuration and the recent sessions."""

    server: BootstrapServerInfo
    configs: list[BootstrapConfigView]
    sessions: list[BootstrapSession]


# --- firmware packages (lwm2m.web.views.firmware) ------------------------------------------------


class PackageUris(Closed):
    """Where a device pulls the package from (its Package URI, /5/0/1), by scheme."""

    coap: str | UnsetType = UNSET
    coaps: Annotated[str, Meta(description="when the server serves DTLS")] | UnsetType = UNSET
    http: str | UnsetType = UNSET


class FirmwarePackage(Closed):
    """A stored firmware package."""

    id: Annotated[str, Meta(description="128 random bits, URL-safe: the key of its /fw/ URIs")]
    name: str
    version: str
    size: Annotated[int, Meta(ge=1)]
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
    created_at: UnixTime
    uris: PackageUris


class PackageRemoved(Closed):
    """The id of the package removed."""

    removed: str


# --- device labels and the message trace (lwm2m.web.views.labels, lwm2m.web.views.trace) ----------

LABEL_VALUE = r"^[^\u0000-\u001f\u007f]*$"
# Kept in step with lwm2m.fleet.labels (KEY_PATTERN, MAX_VALUE, LabelConfig.max_labels).
Labels = Annotated[
    dict[
        Annotated[str, Meta(pattern=r"^[0-9A-Za-z][0-9A-Za-z._/-]{0,62}$")],
        Annotated[str, Meta(max_length=255, pattern=LABEL_VALUE)],
    ],
    Meta(
        max_length=32,
        description="a device's labels: key -> value",
        examples=[{"site": "north", "hw": "rev2"}],
    ),
]


class TraceEntry(Closed):
    """One CoAP message to or from the device, decoded (RFC 7252 §3)."""

    at: UnixTime
    direction: Literal["in", "out"]
    size: Annotated[int, Meta(ge=0, description="bytes of the datagram")]
    type: Literal["CON", "NON", "ACK", "RST"] | UnsetType = UNSET
    code: Annotated[str, Meta(examples=["GET", "2.05 Content", "empty"])] | UnsetType = UNSET
    mid: Annotated[int, Meta(ge=0, le=65535)] | UnsetType = UNSET
    token: Annotated[str, Meta(pattern="^([0-9a-f]{2}){0,8}$")] | UnsetType = UNSET
    options: Annotated[list[str], Meta(examples=[["Uri-Path: 3", "Observe: 0"]])] | UnsetType = UNSET
    payload_size: int | UnsetType = UNSET
    preview: Annotated[str, Meta(description="the first 64 bytes of the payload")] | UnsetType = UNSET
    preview_format: Literal["text", "hex"] | UnsetType = UNSET
    error: Annotated[str, Meta(description="a datagram that is not a CoAP message")] | UnsetType = UNSET


class TraceState(Closed):
    """A device's message trace: on until when, and how many messages it keeps."""

    endpoint: str
    on: bool
    until: UnixTime | None
    kept: Annotated[int, Meta(ge=0)]


class Trace(TraceState):
    """A device's message trace with the messages it keeps, oldest first."""

    entries: list[TraceEntry]


# --- webhooks (lwm2m.export.webhooks) ---------------------------------------------------------

EventType = Literal[
    "REGISTRATION",
    "UPDATE",
    "DEREGISTRATION",
    "EXPIRED",
    "NOTIFICATION",
    "OBSERVATION_ENDED",
    "SEND",
    "SLEEPING",
    "AWAKE",
]


class WebhookBatch(Closed):
    """Events per post at most (a JSON array) and seconds an incomplete batch waits for more."""

    max_events: Annotated[int, Meta(ge=2, le=MAX_BATCH_EVENTS)]
    max_delay: Annotated[float, Meta(ge=0, le=MAX_BATCH_DELAY)]


class WebhookBody(Closed):
    """A webhook to register: the URL events are POSTed to, the event types it wants, the
    secret of their HMAC-SHA256 signature (made by the server when not given), and batches
    (without: one event per post)."""

    url: Annotated[str, Meta(pattern=URL_PATTERN, max_length=MAX_URL)]
    events: Annotated[list[EventType], Meta(min_length=1)]
    secret: Annotated[str, Meta(min_length=1, max_length=256)] | UnsetType = UNSET
    batch: WebhookBatch | UnsetType = UNSET


class Webhook(Closed):
    """A registered webhook (its secret is shown only when it is registered)."""

    id: str
    url: str
    events: list[EventType]
    created_at: UnixTime
    batch: WebhookBatch | UnsetType = UNSET


class WebhookCreated(Closed):
    """The webhook registered, with the secret its events are signed with."""

    id: str
    url: str
    events: list[EventType]
    created_at: UnixTime
    secret: str
    batch: WebhookBatch | UnsetType = UNSET


class WebhookRemoved(Closed):
    """The id of the webhook removed."""

    removed: str


# --- firmware update campaigns (lwm2m.fleet.campaigns) -------------------------------------------

Share = Annotated[
    Annotated[int, Meta(ge=0)] | Annotated[str, Meta(pattern=r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%$")],
    Meta(description='a count, or a percentage of the targets (0 to 100) such as "5%"'),
]


class CampaignTarget(Closed):
    """Which registered devices: an endpoint glob, an object they have, their current firmware
    version (/3/0/3 or /5/0/7) equal or not equal to a value, the labels they carry."""

    endpoints: Annotated[str, Meta(min_length=1)] = "*"
    object_id: Annotated[int, Meta(ge=0, le=65534)] | None = 5
    version_path: Literal["/3/0/3", "/5/0/7"] = "/3/0/3"
    version_equal: str | None = None
    version_not_equal: str | None = None
    labels: dict[str, str] | None = None  # device labels it must all have (PUT /api/clients/{ep}/labels)


class CampaignWaves(Closed):
    """A canary first and alone, then batches of ``batch``, ``inFlight`` at most at a time."""

    canary: Share = 1
    batch: Annotated[int, Meta(ge=1)] = 100
    in_flight: Annotated[int, Meta(ge=1)] = 10


class CampaignRetries(Closed):
    """Tries after a failed one; the wait before try n+1 is ``backoff * factor ** (n - 1)`` s."""

    attempts: Annotated[int, Meta(ge=0, le=100)] = 2
    backoff: Annotated[float, Meta(ge=0, le=86400)] = 30.0
    factor: Annotated[float, Meta(ge=1, le=10)] = 2.0


class CampaignWindow(Closed):
    """Devices are started between ``start`` and ``end`` (UTC, HH:MM; end before start: past midnight)."""

    start: Annotated[str, Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    end: Annotated[str, Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class CampaignBody(Closed):
    """A firmware update campaign to start."""

    package_id: Annotated[str, Meta(min_length=1)]
    target: CampaignTarget | UnsetType = UNSET
    delivery: Literal["auto", "pull", "push"] = "auto"
    waves: CampaignWaves | UnsetType = UNSET
    retries: CampaignRetries | UnsetType = UNSET
    window: CampaignWindow | None = None
    halt_after: Share | None = None
    step_timeout: Annotated[float, Meta(gt=0, le=86400)] = 600.0


class CampaignDevice(Closed):
    """One device of a campaign: its state, tries, last Update Result (/5/0/5) and its meaning,
    and every step with its time."""

    endpoint: str
    wave: int
    state: Literal[
        "pending", "downloading", "downloaded", "updating", "waiting", "succeeded", "failed", "cancelled"
    ]
    attempts: int
    result: int | None
    result_text: str | None
    delivery: str | None
    steps: list[tuple[UnixTime, str]]


class CampaignWave(Closed):
    """A wave's devices by outcome."""

    devices: int
    succeeded: int
    failed: int
    cancelled: int
    skipped: int
    pending: int


class CampaignSummary(Closed):
    """A campaign and its devices counted by state."""

    id: str
    status: Literal["running", "paused", "halted", "cancelled", "done"]
    reason: str
    created_at: UnixTime
    finished_at: UnixTime | None
    package_id: str
    wave: Annotated[int, Meta(description="the wave running (0: the canary)")]
    devices: int
    counts: dict[str, int]


class CampaignDetail(Closed):
    """A campaign with its settings, its waves' progress and each device."""

    id: str
    status: Literal["running", "paused", "halted", "cancelled", "done"]
    reason: str
    created_at: UnixTime
    finished_at: UnixTime | None
    package_id: str
    wave: int
    devices: int
    counts: dict[str, int]
    spec: dict[str, Any]
    waves: list[CampaignWave]
    device_detail: list[CampaignDevice]
