"""The Bootstrap Interface: the operations between a client and its bootstrap server, mapped to CoAP.

LwM2M-TS-Core 1.2 §6.1 defines the interface and §6.1.7 its operations;
LwM2M-TS-Transport 1.2 §6.1 maps them to CoAP:

- Bootstrap-Request (§6.1.7.1), client to server: ``POST /bs?ep={name}&pct={format}``,
  answered 2.04 Changed; the server then starts writing.
- Bootstrap-Finish (§6.1.7.2), server to client: ``POST /bs``, answered 2.04, or 4.06
  Not Acceptable when the client finds its configuration inconsistent.
- Bootstrap-Discover (§6.1.7.3): ``GET /`` or ``GET /{oid}`` with Accept link format.
- Bootstrap-Read (§6.1.7.4, LwM2M 1.1+): ``GET /1[/{iid}]`` or ``GET /2[/{iid}]``: only the
  Server and Access Control objects may be read.
- Bootstrap-Write (§6.1.7.5): ``PUT /{oid}[/{iid}[/{rid}]]`` in any format the client takes.
- Bootstrap-Delete (§6.1.7.6): ``DELETE /``, ``DELETE /{oid}`` or ``DELETE /{oid}/{iid}``.
- Bootstrap-Pack-Request (§6.1.7.7, LwM2M 1.2), client to server: ``GET /bspack?ep={name}``
  with Accept SenML-CBOR (or another SenML format), answered 2.05 with every value to write.

A request that breaks these rules raises :class:`BootstrapError`, whose text
is the diagnostic payload and whose ``code`` the CoAP code to answer with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, as_code
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import Link, parse_links
from lwm2m.errors import BootstrapError, CodecError, InvalidPath, LinkFormatError, ResponseError
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.bootstrap_config import DeviceLayout
from lwm2m.protocol.management import Response

BS = "bs"  # Bootstrap-Request and Bootstrap-Finish: /bs
BSPACK = "bspack"  # Bootstrap-Pack-Request: /bspack
SECURITY_OBJECT = 0
SERVER_OBJECT = 1
ACCESS_CONTROL_OBJECT = 2
OSCORE_OBJECT = 21
# §6.1.7.4: "the only acceptable targets for the Bootstrap-Read operation are the LwM2M Server
# Object and the Access Control Object": Security holds keys and is never read back.
READABLE_OBJECTS = frozenset({SERVER_OBJECT, ACCESS_CONTROL_OBJECT})
# Formats that can carry the values of whole instances; a Bootstrap-Write may use any of them.
WRITE_FORMATS = frozenset(
    {
        ContentFormat.TLV,
        ContentFormat.SENML_CBOR,
        ContentFormat.SENML_JSON,
        ContentFormat.LWM2M_CBOR,
        ContentFormat.OMA_JSON,
    }
)
# A Bootstrap-Pack names every path it carries: a SenML or LwM2M-CBOR document (§6.1.7.7).
PACK_FORMATS = frozenset({ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.LWM2M_CBOR})
_REQUEST_PARAMS = ("ep", "pct")


def _query(msg: Message) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in msg.uri_query:
        name, sep, value = item.partition("=")
        if not name:
            raise BootstrapError(f"query parameter {item!r} has no name")
        if name in out:
            raise BootstrapError(f"query parameter {name!r} given twice")
        out[name] = value if sep else None
    return out


def _endpoint(params: dict[str, str | None], endpoint: str | None) -> str:
    if "ep" in params:
        ep = params["ep"]
        if not ep:
            raise BootstrapError("Endpoint Client Name (ep) is empty")
        return ep
    if endpoint:
        return endpoint  # named by the client's credentials (§6.1.7.1: ep may be left out then)
    raise BootstrapError("Endpoint Client Name (ep) is missing")


def _format_number(text: str | None, what: str) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 0xFFFF:
        raise BootstrapError(f"{what} {text!r:.40} is not a content format number")
    return int(text)


def _path(msg: Message) -> Path:
    segments = msg.uri_path
    try:
        return Path.parse("/" + "/".join(segments)) if segments else ROOT
    except InvalidPath:
        raise BootstrapError(f"{msg.uri_path_str} is not an LwM2M path", Code.NOT_FOUND) from None


def _segments(path: Path) -> list[str]:
    return [str(i) for i in path.ids]


def _records_payload(
    records: Sequence[Record], base: Path, fmt: ContentFormat, models: ObjectRegistry | None
) -> bytes:
    try:
        return get_codec(fmt).encode(records, base, models)
    except CodecError as exc:
        raise BootstrapError(f"cannot encode {base} in content format {int(fmt)}: {exc}") from None


# --- client to bootstrap server --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapRequest:
    """Bootstrap-Request (LwM2M-TS-Core 1.2 §6.1.7.1): ``POST /bs?ep=..&pct=..``.

    ``pct``, the Preferred Content Format (LwM2M 1.1+), is the format the client
    wants the Bootstrap-Writes in; None lets the server choose.
    """

    ep: str
    pct: int | None = None
    extra: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def from_message(cls, msg: Message, *, endpoint: str | None = None) -> Self:
        if msg.code != Code.POST:
            raise BootstrapError("Bootstrap-Request is a POST to /bs", Code.METHOD_NOT_ALLOWED)
        if msg.uri_path != (BS,):
            raise BootstrapError(f"Bootstrap-Request goes to /{BS}, not {msg.uri_path_str}", Code.NOT_FOUND)
        params = _query(msg)
        pct = _format_number(params["pct"], "Preferred Content Format pct") if "pct" in params else None
        extra = tuple((k, v) for k, v in params.items() if k not in _REQUEST_PARAMS)
        return cls(_endpoint(params, endpoint), pct, extra)

    def to_message(self, mid: int = 0, token: bytes = b"") -> Message:
        query = [f"ep={self.ep}"]
        if self.pct is not None:
            query.append(f"pct={int(self.pct)}")
        query += [k if v is None else f"{k}={v}" for k, v in self.extra]
        return Message.build(Type.CON, Code.POST, mid, token, uri_path=[BS], uri_query=query)


@dataclass(frozen=True, slots=True)
class BootstrapPackRequest:
    """Bootstrap-Pack-Request (LwM2M-TS-Core 1.2 §6.1.7.7): ``GET /bspack?ep=..`` with Accept."""

    ep: str
    format: ContentFormat = ContentFormat.SENML_CBOR

    @classmethod
    def from_message(cls, msg: Message, *, endpoint: str | None = None) -> Self:
        if msg.code != Code.GET:
            raise BootstrapError("Bootstrap-Pack-Request is a GET on /bspack", Code.METHOD_NOT_ALLOWED)
        if msg.uri_path != (BSPACK,):
            raise BootstrapError(f"Bootstrap-Pack-Request goes to /{BSPACK}", Code.NOT_FOUND)
        params = _query(msg)
        accept = msg.accept
        fmt = ContentFormat.SENML_CBOR if accept is None else _pack_format(accept)
        return cls(_endpoint(params, endpoint), fmt)

    def to_message(self, mid: int = 0, token: bytes = b"") -> Message:
        return Message.build(
            Type.CON, Code.GET, mid, token, uri_path=[BSPACK], uri_query=[f"ep={self.ep}"], accept=self.format
        )


def _pack_format(number: int) -> ContentFormat:
    try:
        fmt = ContentFormat(number)
    except ValueError:
        fmt = None
    if fmt not in PACK_FORMATS:
        raise BootstrapError(
            f"a Bootstrap-Pack is SenML-CBOR (112), SenML-JSON (110) or LwM2M-CBOR (11544), not {number}",
            Code.NOT_ACCEPTABLE,
        )
    return fmt


# --- bootstrap server to client --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapFinishRequest:
    """Bootstrap-Finish (LwM2M-TS-Core 1.2 §6.1.7.2): ``POST /bs``, no payload."""

    @classmethod
    def from_message(cls, msg: Message) -> Self:
        if msg.code != Code.POST or msg.uri_path != (BS,):
            raise BootstrapError("Bootstrap-Finish is a POST to /bs")
        return cls()

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        return Message.build(Type.CON, Code.POST, uri_path=[BS])

    def describe(self) -> str:
        return "Bootstrap-Finish"


@dataclass(frozen=True, slots=True)
class BootstrapDiscoverRequest:
    """Bootstrap-Discover (LwM2M-TS-Core 1.2 §6.1.7.3): the root or one object."""

    path: Path = ROOT

    def __post_init__(self) -> None:
        if self.path.level > 1:
            raise BootstrapError(f"Bootstrap-Discover targets / or an object, not {self.path}")

    @classmethod
    def from_message(cls, msg: Message) -> Self:
        if msg.code != Code.GET or msg.accept != ContentFormat.LINK:
            raise BootstrapError("Bootstrap-Discover is a GET with Accept: 40 (link format)")
        return cls(_path(msg))

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        return Message.build(Type.CON, Code.GET, uri_path=_segments(self.path), accept=ContentFormat.LINK)

    def describe(self) -> str:
        return f"Bootstrap-Discover {self.path}"


@dataclass(frozen=True, slots=True)
class BootstrapReadRequest:
    """Bootstrap-Read (LwM2M-TS-Core 1.2 §6.1.7.4): an object or instance of Server (1) or
    Access Control (2)."""

    path: Path
    format: ContentFormat | None = None  # Accept; None lets the client choose

    def __post_init__(self) -> None:
        if not (1 <= self.path.level <= 2) or self.path.ids[0] not in READABLE_OBJECTS:
            raise BootstrapError(
                f"Bootstrap-Read targets an object or instance of /1 (Server) or /2 (Access Control), "
                f"not {self.path}"
            )

    @classmethod
    def from_message(cls, msg: Message) -> Self:
        if msg.code != Code.GET or msg.accept == ContentFormat.LINK or msg.observe is not None:
            raise BootstrapError("Bootstrap-Read is a GET without Observe, not asking for link format")
        accept = msg.accept
        fmt: ContentFormat | None = None
        if accept is not None:
            try:
                fmt = ContentFormat(accept)
            except ValueError:
                unknown = f"content format {accept} is not supported"
                raise BootstrapError(unknown, Code.NOT_ACCEPTABLE) from None
        return cls(_path(msg), fmt)

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        return Message.build(Type.CON, Code.GET, uri_path=_segments(self.path), accept=self.format)

    def describe(self) -> str:
        return f"Bootstrap-Read {self.path}"


@dataclass(frozen=True, slots=True)
class BootstrapWriteRequest:
    """Bootstrap-Write (LwM2M-TS-Core 1.2 §6.1.7.5): values for an object, instance or resource,
    written whether or not the target exists yet."""

    path: Path
    records: tuple[Record, ...]
    format: ContentFormat = ContentFormat.SENML_CBOR

    def __post_init__(self) -> None:
        if self.path.is_root or self.path.is_resource_instance:
            raise BootstrapError(f"Bootstrap-Write targets an object, instance or resource, not {self.path}")
        if not self.records:
            raise BootstrapError(f"Bootstrap-Write {self.path}: nothing to write")
        for r in self.records:
            if not r.path.startswith(self.path):
                raise BootstrapError(f"Bootstrap-Write {self.path}: record {r.path} is not under it")

    @classmethod
    def from_message(cls, msg: Message, models: ObjectRegistry | None = None) -> Self:
        if msg.code != Code.PUT:
            raise BootstrapError("Bootstrap-Write is a PUT", Code.METHOD_NOT_ALLOWED)
        path = _path(msg)
        fmt = msg.content_format
        if fmt is None:
            fmt = ContentFormat.TEXT  # LwM2M-TS-Transport 1.2 §6.4: no Content-Format is text/plain
        try:
            codec = get_codec(fmt)
        except CodecError:
            unknown = f"content format {fmt} is not supported"
            raise BootstrapError(unknown, Code.UNSUPPORTED_CONTENT_FORMAT) from None
        if codec.content_format == ContentFormat.LINK:
            raise BootstrapError("link format is not a Write format", Code.UNSUPPORTED_CONTENT_FORMAT)
        try:
            records = codec.decode(msg.payload, path, models)
        except CodecError as exc:
            raise BootstrapError(f"cannot decode the payload: {exc}") from None
        return cls(path, tuple(records), codec.content_format)

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        payload = _records_payload(self.records, self.path, self.format, models)
        return Message.build(
            Type.CON, Code.PUT, uri_path=_segments(self.path), content_format=self.format, payload=payload
        )

    def describe(self) -> str:
        return f"Bootstrap-Write {self.path}"


@dataclass(frozen=True, slots=True)
class BootstrapDeleteRequest:
    """Bootstrap-Delete (LwM2M-TS-Core 1.2 §6.1.7.6): ``/``, an object or an instance."""

    path: Path = ROOT

    def __post_init__(self) -> None:
        if self.path.level > 2:
            raise BootstrapError(f"Bootstrap-Delete targets /, an object or an instance, not {self.path}")

    @classmethod
    def from_message(cls, msg: Message) -> Self:
        if msg.code != Code.DELETE:
            raise BootstrapError("Bootstrap-Delete is a DELETE", Code.METHOD_NOT_ALLOWED)
        return cls(_path(msg))

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        return Message.build(Type.CON, Code.DELETE, uri_path=_segments(self.path))

    def describe(self) -> str:
        return f"Bootstrap-Delete {self.path}"


DownlinkRequest = (
    BootstrapFinishRequest
    | BootstrapDiscoverRequest
    | BootstrapReadRequest
    | BootstrapWriteRequest
    | BootstrapDeleteRequest
)


def parse_downlink(msg: Message, models: ObjectRegistry | None = None) -> DownlinkRequest:
    """The bootstrap operation a request from the bootstrap server stands for (client side).

    Raises BootstrapError for anything else: Execute, Create, Observe, Write-Attributes
    and the composite operations are not part of the Bootstrap Interface (4.05).
    """
    code = msg.code
    if msg.uri_path == (BS,):
        return BootstrapFinishRequest.from_message(msg)
    if code == Code.GET:
        if msg.accept == ContentFormat.LINK:
            return BootstrapDiscoverRequest.from_message(msg)
        if msg.observe is not None:
            raise BootstrapError("Observe is not a bootstrap operation", Code.METHOD_NOT_ALLOWED)
        return BootstrapReadRequest.from_message(msg)
    if code == Code.PUT:
        return BootstrapWriteRequest.from_message(msg, models)
    if code == Code.DELETE:
        return BootstrapDeleteRequest.from_message(msg)
    raise BootstrapError(f"{msg.uri_path_str}: not a bootstrap operation", Code.METHOD_NOT_ALLOWED)


def downlink_name(msg: Message) -> str:
    """The name of the Bootstrap Interface operation a request from the bootstrap server stands
    for (§6.1.7), for logs: ``POST /bs`` is Bootstrap-Finish, not a Create."""
    code = msg.code
    if msg.uri_path == (BS,):
        return "Bootstrap-Finish" if code == Code.POST else "not a bootstrap operation"
    if code == Code.GET:
        return "Bootstrap-Discover" if msg.accept == ContentFormat.LINK else "Bootstrap-Read"
    if code == Code.PUT:
        return "Bootstrap-Write"
    if code == Code.DELETE:
        return "Bootstrap-Delete"
    return "not a bootstrap operation"


def decode_bootstrap_response(
    request: DownlinkRequest, message: Message, models: ObjectRegistry | None = None
) -> Response:
    """What ``message`` answers to ``request``: links for a Discover, records for a Read, the
    diagnostic text of an error. Raises ResponseError for a success that cannot be decoded."""
    code = as_code(message.code)
    payload = message.payload
    fmt = message.content_format
    if code >> 5 != 2:
        diagnostic = payload.decode("utf-8", "replace")
        return Response(code, content_format=fmt, diagnostic=diagnostic, payload=payload)
    if isinstance(request, BootstrapDiscoverRequest):
        try:
            links = tuple(parse_links(payload))
        except LinkFormatError as exc:
            raise ResponseError(f"Bootstrap-Discover answer is not link format: {exc}") from None
        return Response(code, content_format=fmt, links=links, payload=payload)
    if isinstance(request, BootstrapReadRequest) and payload:
        try:
            codec = get_codec(ContentFormat.TEXT if fmt is None else fmt)
            records = codec.decode(payload, request.path, models)
        except CodecError as exc:
            raise ResponseError(f"cannot decode the Bootstrap-Read answer ({fmt}): {exc}") from None
        return Response(code, tuple(records), fmt, payload=payload)
    return Response(code, content_format=fmt, payload=payload)


# --- what a Bootstrap-Discover tells -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoveredInstance:
    """One object instance a Bootstrap-Discover listed, with its ``ssid`` and ``uri`` attributes."""

    path: Path
    ssid: int | None = None
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class Discovery:
    """A Bootstrap-Discover answer: the client's enabler version and its object instances.

    §6.1.7.3: instances of Security (0) carry ``ssid`` and ``uri`` except the one of the
    bootstrap server; instances of Server (1) carry ``ssid``.
    """

    version: str | None = None  # the root link's lwm2m attribute
    objects: tuple[tuple[int, str | None], ...] = ()  # (object ID, ver) of each object link
    instances: tuple[DiscoveredInstance, ...] = field(default=())

    @classmethod
    def from_links(cls, links: Iterable[Link]) -> Discovery:
        version: str | None = None
        objects: list[tuple[int, str | None]] = []
        instances: list[DiscoveredInstance] = []
        for link in links:
            target = link.target.rstrip("/") or "/"
            if target == "/":
                version = link.get("lwm2m") or version
                continue
            try:
                path = Path.parse(target)
            except InvalidPath:
                continue  # an alternate path or something this version does not define
            if path.is_object:
                objects.append((path.ids[0], link.get("ver")))
            elif path.is_instance:
                try:
                    ssid = link.get_int("ssid")
                except LinkFormatError:
                    ssid = None
                instances.append(DiscoveredInstance(path, ssid, link.get("uri")))
        return cls(version.strip('"') if version else None, tuple(objects), tuple(instances))

    def instance_ids(self, object_id: int) -> tuple[int, ...]:
        return tuple(i.path.ids[1] for i in self.instances if i.path.ids[0] == object_id)

    @property
    def bootstrap_security_id(self) -> int | None:
        """The Security instance of the bootstrap server: the one without ``ssid``."""
        for i in self.instances:
            if i.path.ids[0] == SECURITY_OBJECT and i.ssid is None:
                return i.path.ids[1]
        return None

    def layout(self) -> DeviceLayout:
        """What the device holds, for placing a configuration on it.

        Every Security instance listed without ``ssid`` counts as a bootstrap server account
        (§6.1.7.3 lists ``ssid`` for every other one): never written over, never deleted.
        """
        bootstrap: set[int] = set()
        security: dict[int, int] = {}
        servers: dict[int, int | None] = {}
        others: dict[int, set[int]] = {}
        for i in self.instances:
            oid, iid = i.path.ids[0], i.path.ids[1]
            if oid == SECURITY_OBJECT:
                if i.ssid is None:
                    bootstrap.add(iid)
                else:
                    security[iid] = i.ssid
            elif oid == SERVER_OBJECT:
                servers[iid] = i.ssid
            else:
                others.setdefault(oid, set()).add(iid)
        return DeviceLayout(
            frozenset(bootstrap),
            security,
            servers,
            {oid: frozenset(ids) for oid, ids in others.items()},
            known=True,
        )
