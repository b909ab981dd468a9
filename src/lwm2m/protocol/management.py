"""Device management and information reporting requests, mapped to CoAP.

LwM2M-TS-Transport 1.2 §6.4 (Table 6.4.-1) gives the CoAP method of each
operation: Read GET, Discover GET with Accept link-format, Write PUT
(replace) or POST (partial update), Write-Attributes PUT with queries only,
Execute POST on a resource, Create POST on an object, Delete DELETE,
Read-Composite FETCH, Write-Composite iPATCH, Observe GET/FETCH with
Observe 0, Cancel Observation GET/FETCH with Observe 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, as_code
from lwm2m.codec.base import ContentFormat, decoder_for
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import Link, parse_links
from lwm2m.errors import CodecError, LinkFormatError, OperationError, ResponseError
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.attributes import AttributeChange


def _records_payload(
    records: Sequence[Record], base: Path, fmt: ContentFormat, models: ObjectRegistry | None
) -> bytes:
    try:
        return get_codec(fmt).encode(records, base, models)
    except CodecError as exc:
        raise OperationError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ReadRequest:
    path: Path
    format: ContentFormat | None = None  # Accept; None lets the client choose

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        return Message.build(Type.CON, Code.GET, uri_path=_segments(self.path), accept=self.format)


@dataclass(frozen=True, slots=True)
class DiscoverRequest:
    path: Path

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if self.path.is_root or self.path.is_resource_instance:
            raise OperationError(f"Discover: {self.path} must be an object, instance or resource")
        return Message.build(Type.CON, Code.GET, uri_path=_segments(self.path), accept=ContentFormat.LINK)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    path: Path
    records: tuple[Record, ...]
    format: ContentFormat
    replace: bool = True  # PUT replaces; POST is a partial update (LwM2M-TS-Core 1.2 §6.3.3)

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if self.path.is_root or self.path.is_object:
            raise OperationError(f"Write: {self.path} must be an instance, resource or resource instance")
        if not self.replace and self.path.level > 2 and not self.path.is_resource:
            raise OperationError("Write: a partial update targets an instance or a multiple resource")
        payload = _records_payload(self.records, self.path, self.format, models)
        code = Code.PUT if self.replace else Code.POST
        return Message.build(
            Type.CON, code, uri_path=_segments(self.path), content_format=self.format, payload=payload
        )


@dataclass(frozen=True, slots=True)
class WriteAttributesRequest:
    path: Path
    change: AttributeChange

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if self.path.is_root:
            raise OperationError("Write-Attributes: the root has no attributes")
        self.change.check_level(self.path.level)
        return Message.build(
            Type.CON, Code.PUT, uri_path=_segments(self.path), uri_query=self.change.to_query()
        )


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    path: Path
    arguments: str = ""  # LwM2M-TS-Core 1.2 §5.4.5: e.g. "0='x',1"

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if not self.path.is_resource:
            raise OperationError(f"Execute: {self.path} must be a resource")
        payload = self.arguments.encode()
        fmt = ContentFormat.TEXT if payload else None
        return Message.build(
            Type.CON, Code.POST, uri_path=_segments(self.path), content_format=fmt, payload=payload
        )


@dataclass(frozen=True, slots=True)
class CreateRequest:
    path: Path  # the object
    records: tuple[Record, ...]
    format: ContentFormat

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if not self.path.is_object:
            raise OperationError(f"Create: {self.path} must be an object")
        payload = _records_payload(self.records, self.path, self.format, models)
        return Message.build(
            Type.CON, Code.POST, uri_path=_segments(self.path), content_format=self.format, payload=payload
        )


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    path: Path

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if not (self.path.is_instance or self.path.is_root):
            raise OperationError(f"Delete: {self.path} must be an object instance")
        return Message.build(Type.CON, Code.DELETE, uri_path=_segments(self.path))


@dataclass(frozen=True, slots=True)
class ObserveRequest:
    path: Path
    format: ContentFormat | None = None
    cancel: bool = False  # Observe=1 (active cancel, RFC 7641 §3.6)

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        return Message.build(
            Type.CON,
            Code.GET,
            uri_path=_segments(self.path),
            observe=1 if self.cancel else 0,
            accept=self.format,
        )


# The formats a composite request's path list goes in: a SenML pack of names (LwM2M-TS-Core 1.2
# §6.3.2 Read-Composite, §6.4.4 Observe-Composite). The answer's format (Accept) is another matter:
# it may be LwM2M-CBOR too, which clients refuse (4.15) as the format of the path list.
PATH_LIST_FORMATS = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON)


def path_list_format(accept: int | None, advertised: Sequence[int] = ()) -> ContentFormat:
    """The Content-Format of a composite request's path list, the answer being asked in ``accept``:
    that SenML format when it is one, else SenML-CBOR, or SenML-JSON for a client whose
    registration (``ct``, §6.2.1) lists SenML-JSON and not SenML-CBOR."""
    for fmt in PATH_LIST_FORMATS:
        if accept == fmt:
            return fmt
    if ContentFormat.SENML_JSON in advertised and ContentFormat.SENML_CBOR not in advertised:
        return ContentFormat.SENML_JSON
    return ContentFormat.SENML_CBOR


@dataclass(frozen=True, slots=True)
class ReadCompositeRequest:
    """FETCH on the root with the paths as SenML names (LwM2M-TS-Core 1.2 §6.3.2).

    ``request_format`` is the Content-Format of the path list (see :func:`path_list_format`),
    ``format`` the Accept: the format of the answer and of its notifications.
    """

    paths: tuple[Path, ...]
    request_format: ContentFormat = ContentFormat.SENML_CBOR
    format: ContentFormat | None = ContentFormat.SENML_CBOR
    observe: int | None = None  # 0: Observe-Composite, 1: cancel it

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if not self.paths:
            raise OperationError("Read-Composite needs at least one path")
        payload = _records_payload([Record(p) for p in self.paths], ROOT, self.request_format, models)
        return Message.build(
            Type.CON,
            Code.FETCH,
            observe=self.observe,
            content_format=self.request_format,
            accept=self.format,
            payload=payload,
        )


@dataclass(frozen=True, slots=True)
class WriteCompositeRequest:
    """iPATCH on the root with the values to write (LwM2M-TS-Core 1.2 §6.3.8)."""

    records: tuple[Record, ...]
    format: ContentFormat = ContentFormat.SENML_CBOR

    def to_message(self, models: ObjectRegistry | None = None) -> Message:
        if not self.records:
            raise OperationError("Write-Composite needs at least one record")
        payload = _records_payload(self.records, ROOT, self.format, models)
        return Message.build(Type.CON, Code.IPATCH, content_format=self.format, payload=payload)


@dataclass(frozen=True, slots=True)
class Response:
    """What a client answered: the CoAP code, decoded records, or a diagnostic."""

    code: int  # a Code where registered: int(code) == 69, print(code) shows "2.05 Content"
    records: tuple[Record, ...] = ()
    content_format: int | None = None
    diagnostic: str = ""
    location: Path | None = None  # Create: the new instance
    links: tuple[Link, ...] = ()  # Discover
    payload: bytes = field(default=b"", repr=False)

    @property
    def success(self) -> bool:
        return self.code >> 5 == 2


Request = (
    ReadRequest
    | DiscoverRequest
    | WriteRequest
    | WriteAttributesRequest
    | ExecuteRequest
    | CreateRequest
    | DeleteRequest
    | ObserveRequest
    | ReadCompositeRequest
    | WriteCompositeRequest
)


def decode_response(request: Request, message: Message, models: ObjectRegistry | None = None) -> Response:
    """What ``message`` answers to ``request``: records for reads and notifications,
    links for Discover, the new instance for Create, the diagnostic text of an error.

    Raises ResponseError when a success carries a payload that cannot be decoded.
    """
    code = as_code(message.code)  # prints as "2.05 Content"
    payload = message.payload
    fmt = message.content_format
    if code >> 5 != 2:
        return Response(
            code, content_format=fmt, diagnostic=payload.decode("utf-8", "replace"), payload=payload
        )
    if isinstance(request, DiscoverRequest):
        try:
            links = tuple(parse_links(payload))
        except LinkFormatError as exc:
            raise ResponseError(f"Discover answer is not link format: {exc}") from None
        return Response(code, content_format=fmt, links=links, payload=payload)
    if isinstance(request, CreateRequest):
        location = _location(message, request.path)
        return Response(code, content_format=fmt, location=location, payload=payload)
    if not isinstance(request, ReadRequest | ObserveRequest | ReadCompositeRequest) or not payload:
        return Response(code, content_format=fmt, payload=payload)
    if fmt is None:
        # LwM2M-TS-Transport 1.2 §6.4: a payload without Content-Format is text/plain.
        fmt = ContentFormat.TEXT
    base = ROOT if isinstance(request, ReadCompositeRequest) else request.path
    try:
        records = get_codec(fmt).decode(payload, base, models)
    except CodecError as exc:
        raise ResponseError(f"cannot decode the answer ({fmt}): {exc}") from None
    return Response(code, tuple(records), fmt, payload=payload)


class ResponseDecoder:
    """``decode_response`` for the many answers to one request: the notifications of an
    Observe (RFC 7641 §4.2). Each content format's decoder is made once and kept, so
    a codec that learns the names of the first notification (SenML) decodes the next
    ones faster. Answers and errors are those of :func:`decode_response`.
    """

    __slots__ = ("_base", "_decoders", "_models", "_request")

    def __init__(self, request: Request, models: ObjectRegistry | None = None) -> None:
        self._request = request
        self._models = models
        self._base: Path | None = None
        if isinstance(request, ReadCompositeRequest):
            self._base = ROOT
        elif isinstance(request, ReadRequest | ObserveRequest):
            self._base = request.path
        self._decoders: dict[int, Callable[[bytes], list[Record]]] = {}

    @property
    def request(self) -> Request:
        """The request whose answers it decodes."""
        return self._request

    def __call__(self, message: Message) -> Response:
        code = as_code(message.code)
        if code >> 5 != 2 or self._base is None:
            return decode_response(self._request, message, self._models)
        fmt, records = self.content(message)
        return Response(code, records, fmt, payload=message.payload)

    def content(self, message: Message) -> tuple[int | None, tuple[Record, ...]]:
        """The content format and records of a successful answer: those of its Response,
        without making one."""
        payload = message.payload
        fmt = message.content_format
        if not payload:
            return fmt, ()
        if fmt is None:
            # LwM2M-TS-Transport 1.2 §6.4: a payload without Content-Format is text/plain.
            fmt = ContentFormat.TEXT
        return fmt, self.records(fmt, payload)

    def records(self, fmt: int, payload: bytes) -> tuple[Record, ...]:
        """The records of a successful answer's ``payload`` in content format ``fmt``."""
        if not payload or self._base is None:
            return ()
        try:
            decode = self._decoders.get(fmt)
            if decode is None:
                if len(self._decoders) >= 16:  # a client that keeps changing formats: start over
                    self._decoders.clear()
                decode = self._decoders[fmt] = decoder_for(get_codec(fmt), self._base, self._models)
            return tuple(decode(payload))
        except CodecError as exc:
            raise ResponseError(f"cannot decode the answer ({fmt}): {exc}") from None


def _location(message: Message, object_path: Path) -> Path | None:
    """The instance a 2.01 Created names in its Location-Path (``/3303/1`` or ``1``); on an end
    device behind a gateway, with its prefix first (``/dev1/3303/1``, LwM2M-TS-Gateway 1.1)."""
    segments = [s for s in message.location_path if s]
    if not segments:
        return None
    text = "/" + "/".join(segments)
    if len(segments) == 1:
        text = f"{object_path}/{segments[0]}"
    try:
        path = Path.parse(text, prefixed=bool(object_path.prefix))
    except ValueError:
        raise ResponseError(f"Create answered with a bad Location-Path {text!r}") from None
    if not (path.is_instance and path.startswith(object_path)):
        raise ResponseError(f"Create answered with a Location-Path {text!r} outside {object_path}")
    return path


def _segments(path: Path) -> list[str]:
    # An end device's prefix is the first Uri-Path segment (LwM2M-TS-Gateway 1.1).
    return list(path.segments)
