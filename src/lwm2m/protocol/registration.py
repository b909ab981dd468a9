"""The Client Registration Interface: Register, Update, De-register, and the server's record.

LwM2M-TS-Core 1.2 §6.2 defines the operations and their parameters
(Table 6.2.1.-1); LwM2M-TS-Transport 1.2 §6.2 maps them to CoAP:

- Register: ``POST /rd?ep={name}&lt={s}&lwm2m={ver}&b={binding}&sms={msisdn}&Q``
  with the Objects and Object Instances as a link-format (ct 40) payload;
  the server answers 2.01 Created with the Location-Path ``/rd/{id}``.
- Update: ``POST /rd/{id}?lt=..&b=..&sms=..&Q``, every parameter optional,
  the payload only when the object list changed.
- De-register: ``DELETE /rd/{id}``.

A bad parameter raises :class:`RegistrationError`, whose text is meant for
the diagnostic payload of the error response and whose ``code`` is the CoAP
response code to answer with.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.codec.linkformat import Link, parse_links, serialize_links
from lwm2m.errors import GatewayError, InvalidPath, LinkFormatError, RegistrationError
from lwm2m.model.path import MAX_ID, Path, check_prefix

RD = "rd"  # the resource directory path segment: /rd, /rd/{id}
LINK_FORMAT = 40  # application/link-format (RFC 6690 §7.3)
DEFAULT_LIFETIME = 86400  # LwM2M-TS-Core 1.2 §6.2.1: lt absent means 86400 s
DEFAULT_VERSION = "1.0"  # a client that sends no lwm2m parameter speaks 1.0
DEFAULT_BINDING = "U"
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
ROOT_RT = "oma.lwm2m"  # rt of the root link naming an alternate path (LwM2M-TS-Core 1.2 §6.2.1)

# Binding letters per enabler version. 1.0 (LwM2M-TS 1.0 §5.3.1.1) writes queue
# mode into the binding ("UQ", "SQ", "UQS"); 1.1 made Queue Mode its own
# parameter and added T (TCP) and N (Non-IP); 1.2 added M (MQTT) and H (HTTP).
_BINDING_LETTERS = {"1.0": "USQ", "1.1": "UTSN", "1.2": "UTSNMH"}
_ALL_LETTERS = "UTSNMHQ"
_KNOWN_PARAMS = ("ep", "lt", "lwm2m", "b", "sms", "Q")

# The longest Endpoint Client Name taken, in bytes of UTF-8. LwM2M sets no bound, but CoAP
# caps a Uri-Query option at 255 bytes (RFC 7252 §5.10) and stores key on the name.
MAX_ENDPOINT_LENGTH = 255
# A lifetime beyond this is as good as forever: larger values of lt are read as this one
# (a server clamps far lower; Python's int() of thousands of digits would be an error).
LIFETIME_CEILING = 2**63 - 1


# Random bytes for registration IDs, read from the operating system's CSPRNG this many IDs at
# a time: one system call per 256 IDs, not one per Register (a storm makes thousands a second).
_ID_BYTES = 8  # 64 bits, 11 characters
_IDS_PER_READ = 256
_random_ids: list[bytes] = []
# A forked process draws its own: the parent's unused bytes would give both the same IDs.
os.register_at_fork(after_in_child=_random_ids.clear)


_URI_PATH = int(OptionNumber.URI_PATH)
_RD_SEGMENT = RD.encode()


def rd_segments(message: Message) -> int:
    """The Uri-Path segments of ``message`` when the first is ``rd`` (1: ``/rd``, 2: ``/rd/{id}``),
    else 0: the Registration Interface's routing, read from the raw options (``uri_path`` decodes
    every segment, and a Register is routed and checked several times)."""
    n = 0
    for number, value in message.options:
        if number == _URI_PATH:
            if n == 0 and value != _RD_SEGMENT:
                return 0
            n += 1
    return n


def new_registration_id() -> str:
    """A short random URL-safe ID, unguessable so that one client cannot update another's registration."""
    if not _random_ids:
        pool = os.urandom(_ID_BYTES * _IDS_PER_READ)
        _random_ids.extend(pool[i : i + _ID_BYTES] for i in range(0, len(pool), _ID_BYTES))
    return base64.urlsafe_b64encode(_random_ids.pop()).rstrip(b"=").decode("ascii")


# --- object links ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectLink:
    """One entry of the Objects and Object Instances list: ``</3303/0>`` or ``</3303>;ver=1.1``."""

    object_id: int
    instance_id: int | None = None
    version: str | None = None  # the object version, "ver" (LwM2M-TS-Core 1.2 §6.2.1)

    def __post_init__(self) -> None:
        for v in (self.object_id, self.instance_id):
            if v is not None and (type(v) is not int or not 0 <= v <= MAX_ID):
                raise RegistrationError(f"invalid object link ID {v!r}: IDs are 0..{MAX_ID}")

    @property
    def path(self) -> str:
        if self.instance_id is None:
            return f"/{self.object_id}"
        return f"/{self.object_id}/{self.instance_id}"

    def to_link(self, root: str = "/") -> Link:
        prefix = "" if root == "/" else root
        attrs = (("ver", self.version),) if self.version is not None else ()
        return Link(prefix + self.path, attrs)


@dataclass(frozen=True, slots=True)
class ObjectList:
    """The decoded Register/Update payload: objects, alternate root path, content formats."""

    objects: tuple[ObjectLink, ...] = ()
    root_path: str = "/"
    content_formats: tuple[int, ...] = ()

    @classmethod
    def parse(cls, payload: bytes | str, *, max_links: int | None = None) -> ObjectList:
        """The object list of a payload; more than ``max_links`` links (when given) is an error."""
        plain = _plain_object_list(payload, max_links)
        if plain is not None:
            return plain
        return cls.parse_links(payload, max_links=max_links)

    @classmethod
    def parse_links(cls, payload: bytes | str, *, max_links: int | None = None) -> ObjectList:
        """:meth:`parse` through the link-format parser, whatever the payload (no fast path)."""
        try:
            links = parse_links(payload)
        except LinkFormatError as exc:
            raise RegistrationError(f"payload is not link format: {exc}") from None
        if max_links is not None and len(links) > max_links:
            raise RegistrationError(f"payload has {len(links)} links; this server takes at most {max_links}")
        # LwM2M-TS-Core 1.2 §6.2.1: a link with rt="oma.lwm2m" names the alternate path
        # (and "</>" the default one); it may carry ct, the content formats the client
        # supports. Clients put it first, but nothing forbids another position.
        roots = [link for link in links if ROOT_RT in link.resource_types or link.target in ("/", "")]
        if len(roots) > 1:
            raise RegistrationError(f"payload: {len(roots)} root links; at most one is allowed")
        root = "/"
        formats: tuple[int, ...] = ()
        if roots:
            head = roots[0]
            target = head.target.rstrip("/") or "/"
            if target != "/" and not _is_alternate_path(target):
                raise RegistrationError(f"payload: bad alternate path <{head.target}>")
            root = target
            try:
                formats = head.content_formats
            except LinkFormatError as exc:
                raise RegistrationError(f"payload: root link <{head.target}>: {exc}") from None
        rest = [link for link in links if link is not roots[0]] if roots else links
        objects = tuple(_object_link(link, root) for link in rest)
        return cls(objects, root, formats)

    def links(self) -> list[Link]:
        root = self._root_link()
        out: list[Link] = [] if root is None else [root]
        out += [o.to_link(self.root_path) for o in self.objects]
        return out

    def _root_link(self) -> Link | None:
        """The root link (``</>;rt="oma.lwm2m";ct=...``), when there is one to send."""
        if self.root_path == "/" and not self.content_formats:
            return None
        attrs: list[tuple[str, str | None]] = [("rt", ROOT_RT)]
        if self.content_formats:
            attrs.append(("ct", " ".join(map(str, self.content_formats))))
        return Link(self.root_path, tuple(attrs))

    def to_payload(self) -> bytes:
        if self.root_path == "/":
            plain = _plain_payload(self.objects)
            if plain is not None:
                root = self._root_link()  # (a 1.1 client announces its content formats there)
                if root is None:
                    return plain.encode()
                return f"{root},{plain}".encode() if plain else str(root).encode()
        return serialize_links(self.links()).encode()


_PLAIN_VERSION = re.compile(r"[0-9]+\.[0-9]+")


def _plain_payload(objects: tuple[ObjectLink, ...]) -> str | None:
    """The object links of a plain object list (at the root path ``/``; versions
    ``major.minor``), written as the link-format serializer would, without a Link per entry
    (every Register and Update of a client carries them); None for anything else."""
    parts: list[str] = []
    for o in objects:
        text = f"</{o.object_id}>" if o.instance_id is None else f"</{o.object_id}/{o.instance_id}>"
        version = o.version
        if version is not None:
            if not _PLAIN_VERSION.fullmatch(version):
                return None
            text += ";ver=" + version
        parts.append(text)
    return ",".join(parts)


# The payload most clients send: object and instance links, each with a ``ver`` at most
# (``</1/0>,</3/0>,</3303>;ver=1.1``), no root link, no spaces, no quotes.
_PLAIN_LINK = rb"</(0|[1-9][0-9]{0,4})(?:/(0|[1-9][0-9]{0,4}))?>(?:;ver=([0-9]+\.[0-9]+))?"
_PLAIN_LINKS = re.compile(rb"(?:%s)(?:,(?:%s))*" % (_PLAIN_LINK, _PLAIN_LINK))
_PLAIN_ONE = re.compile(_PLAIN_LINK)


# Plain payloads read, by their bytes: a fleet's devices of one model send the same object
# list, which is then read once and its (immutable) links shared by their registrations.
_PLAIN_READ: dict[bytes, ObjectList] = {}
_PLAIN_READ_ENTRIES = 256  # the oldest goes first beyond
_PLAIN_READ_BYTES = 1024  # a longer payload is read each time, not kept


def _plain_object_list(payload: bytes | str, max_links: int | None) -> ObjectList | None:
    """The object list of a plain payload (above), as the link-format parser and
    :func:`_object_link` would read it; None for anything else (an ID over MAX_ID, more links
    than ``max_links``, a root link, any other attribute), which the full parser then reads or
    refuses with its diagnostic."""
    if type(payload) is not bytes:
        return None
    found = _PLAIN_READ.get(payload)
    if found is None:
        found = _read_plain(payload)
        if found is None:
            return None
        if len(payload) <= _PLAIN_READ_BYTES:
            if len(_PLAIN_READ) >= _PLAIN_READ_ENTRIES:
                del _PLAIN_READ[next(iter(_PLAIN_READ))]
            _PLAIN_READ[payload] = found
    if max_links is not None and len(found.objects) > max_links:
        return None
    return found


def _read_plain(payload: bytes) -> ObjectList | None:
    if _PLAIN_LINKS.fullmatch(payload) is None:
        return None
    objects = []
    for m in _PLAIN_ONE.finditer(payload):
        object_id, instance, version = m.groups()
        o = int(object_id)
        i = None if instance is None else int(instance)
        if o > MAX_ID or (i is not None and i > MAX_ID):
            return None
        objects.append(ObjectLink(o, i, None if version is None else version.decode("ascii")))
    return ObjectList(tuple(objects))


def _is_alternate_path(target: str) -> bool:
    # An alternate path is a plain absolute path with segments that are not IDs (else it
    # could not be told apart from object paths), e.g. "/lwm2m" or "/a/b".
    if not target.startswith("/"):
        return False
    segments = target[1:].split("/")
    return all(s and not s.isdigit() for s in segments)


def _object_link(link: Link, root: str) -> ObjectLink:
    target = link.target
    if root != "/":
        if not target.startswith(root + "/"):
            raise RegistrationError(f"payload: <{target}> is not under the alternate path {root}")
        target = target[len(root) :]
    parts = target.split("/")
    if parts[0] != "" or not 2 <= len(parts) <= 3:
        raise RegistrationError(f"payload: <{link.target}> is not an object or object instance path")
    ids: list[int] = []
    if len(target) > 12:  # longer than /65534/65534; int() refuses thousands of digits on its own
        raise RegistrationError(f"payload: <{link.target[:40]}...> is not an object or object instance path")
    for p in parts[1:]:
        if not p.isascii() or not p.isdigit() or (len(p) > 1 and p[0] == "0") or int(p) > MAX_ID:
            raise RegistrationError(f"payload: <{link.target}> is not an object or object instance path")
        ids.append(int(p))
    version = link.get("ver")
    if "ver" in link and not _is_version(version):
        raise RegistrationError(f"payload: <{link.target}> has ver={version!r}; expected MAJOR.MINOR")
    return ObjectLink(ids[0], ids[1] if len(ids) == 2 else None, version)


def _is_version(text: str | None) -> bool:
    if not text:
        return False
    major, dot, minor = text.partition(".")
    return bool(dot) and all(p.isascii() and p.isdigit() for p in (major, minor))


# --- query parameters ----------------------------------------------------------------------

Params = tuple[tuple[str, str | None], ...]


def _parse_query(query: Sequence[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in query:
        name, sep, value = item.partition("=")
        if not name:
            raise RegistrationError(f"query parameter {item!r} has no name")
        if name in out:
            raise RegistrationError(f"query parameter {name!r} given twice")
        out[name] = value if sep else None
    return out


def _need_value(params: Mapping[str, str | None], name: str, what: str) -> str | None:
    if name not in params:
        return None
    value = params[name]
    if value is None or value == "":
        raise RegistrationError(f"{what} ({name}) has no value")
    return value


def _lifetime(params: Mapping[str, str | None]) -> int | None:
    text = _need_value(params, "lt", "Lifetime")
    if text is None:
        return None
    digits = text.lstrip("0")
    if not text.isascii() or not text.isdigit() or not digits:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise RegistrationError(f"Lifetime lt={shown!r} is not a positive integer of seconds")
    if len(digits) > 19:  # more than LIFETIME_CEILING has
        return LIFETIME_CEILING
    lifetime = min(int(digits), LIFETIME_CEILING)
    # A fleet's devices ask for a few lifetimes: each registration holds the one int of its
    # value rather than an int of its own (28 bytes each above 256).
    shared = _LIFETIMES.get(lifetime)
    if shared is None:
        if len(_LIFETIMES) >= _LIFETIMES_MAX:
            return lifetime  # many distinct lifetimes are not a fleet's common case
        shared = _LIFETIMES[lifetime] = lifetime
    return shared


_LIFETIMES: dict[int, int] = {}
_LIFETIMES_MAX = 1024


def _version(params: Mapping[str, str | None]) -> str:
    text = _need_value(params, "lwm2m", "LwM2M Version")
    if text is None:
        return DEFAULT_VERSION
    version = text.strip('"')  # some 1.0 clients quote it, as the 1.0 examples did
    if version not in SUPPORTED_VERSIONS:
        # The Register response codes of LwM2M 1.1+ (LwM2M-TS-Transport 1.2 §6.2) answer an
        # enabler version the server does not speak with 4.12 Precondition Failed, not 4.00.
        raise RegistrationError(
            f"LwM2M version lwm2m={text!r} is not supported: expected one of {', '.join(SUPPORTED_VERSIONS)}",
            Code.PRECONDITION_FAILED,
        )
    return SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.index(version)]  # shared, not the query's copy


def _binding(text: str, version: str | None) -> tuple[str, bool]:
    """(binding letters without Q, whether Q was in it) for b=...; ``version`` None: any letter."""
    letters = _BINDING_LETTERS.get(version, _ALL_LETTERS) if version else _ALL_LETTERS
    if len(text) == 1 and text != "Q" and text in letters:
        return text, False  # the common case, "U": one transport letter
    bad = sorted(set(text) - set(letters))
    if bad or len(set(text)) != len(text):
        if version and version != "1.0" and "Q" in text:
            hint = f"; in LwM2M {version} queue mode is the separate Q parameter"
        else:
            hint = ""
        allowed = ", ".join(letters)
        raise RegistrationError(
            f"Binding b={text!r} is not valid{f' for LwM2M {version}' if version else ''}: "
            f"letters {allowed}, each at most once{hint}"
        )
    binding = text.replace("Q", "")
    if not binding:
        raise RegistrationError(f"Binding b={text!r} names no transport")
    return binding, "Q" in text


def _queue_flag(params: Mapping[str, str | None]) -> bool:
    if "Q" not in params:
        return False
    if params["Q"] is not None:
        raise RegistrationError(f"Queue Mode Q takes no value, got Q={params['Q']!r}")
    return True


def _extra(params: Mapping[str, str | None], known: Iterable[str]) -> Params:
    names = set(known)
    return tuple((k, v) for k, v in params.items() if k not in names)


def _query_item(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


def _payload(msg: Message, max_links: int | None) -> ObjectList | None:
    if not msg.payload:
        return None
    fmt = msg.content_format
    if fmt is not None and fmt != LINK_FORMAT:
        raise RegistrationError(f"payload content format {fmt}: expected {LINK_FORMAT} (link format)")
    return ObjectList.parse(msg.payload, max_links=max_links)


def _location(msg: Message, operation: str) -> str:
    path = msg.uri_path
    if len(path) != 2 or path[0] != RD or not path[1]:
        raise RegistrationError(f"{operation}: /{'/'.join(path)} is not a registration", Code.NOT_FOUND)
    location: str = path[1]
    return location


def _check_method(msg: Message, code: Code, operation: str) -> None:
    if msg.code != code:
        raise RegistrationError(f"{operation} uses {code.name}, not {msg.code}", Code.METHOD_NOT_ALLOWED)


# --- requests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """Register (LwM2M-TS-Core 1.2 §6.2.1)."""

    ep: str
    lt: int = DEFAULT_LIFETIME
    lwm2m: str = DEFAULT_VERSION
    b: str = DEFAULT_BINDING  # transport letters only; queue mode is Q
    Q: bool = False
    sms: str | None = None
    objects: tuple[ObjectLink, ...] = ()
    root_path: str = "/"
    content_formats: tuple[int, ...] = ()
    extra: Params = ()  # parameters this version does not define, kept for the application

    @classmethod
    def from_message(
        cls,
        msg: Message,
        *,
        endpoint: str | None = None,
        max_links: int | None = None,
        max_endpoint_length: int = MAX_ENDPOINT_LENGTH,
    ) -> Self:
        """Parse a Register request.

        ``endpoint`` is the name the server derived from the client's credentials:
        LwM2M-TS-Core 1.2 §6.2.1 lets a client omit ep when the server can tell
        it from the security session. Without it, a missing ep is an error.
        A name longer than ``max_endpoint_length`` bytes (UTF-8) or a payload of
        more than ``max_links`` links is an error too.
        """
        _check_method(msg, Code.POST, "Register")
        path = msg.uri_path
        if path != (RD,):
            raise RegistrationError(f"Register goes to /{RD}, not /{'/'.join(path)}", Code.NOT_FOUND)
        params = _parse_query(msg.uri_query)
        if "ep" in params:
            ep = params["ep"]
            if not ep:
                raise RegistrationError("Endpoint Client Name (ep) is empty")
        elif endpoint:
            ep = endpoint
        else:
            raise RegistrationError("Endpoint Client Name (ep) is missing")
        size = len(ep.encode("utf-8", "surrogatepass"))
        if size > max_endpoint_length:
            raise RegistrationError(
                f"Endpoint Client Name (ep) has {size} bytes; this server takes at most {max_endpoint_length}"
            )
        lwm2m = _version(params)
        lt = _lifetime(params)
        text = _need_value(params, "b", "Binding")
        binding, legacy_queue = _binding(text, lwm2m) if text is not None else (DEFAULT_BINDING, False)
        queue = _queue_flag(params) or legacy_queue
        objects = _payload(msg, max_links) or ObjectList()
        return cls(
            ep=ep,
            lt=DEFAULT_LIFETIME if lt is None else lt,
            lwm2m=lwm2m,
            b=binding,
            Q=queue,
            sms=_need_value(params, "sms", "SMS Number"),
            objects=objects.objects,
            root_path=objects.root_path,
            content_formats=objects.content_formats,
            extra=_extra(params, _KNOWN_PARAMS),
        )

    def to_message(self, mid: int = 0, token: bytes = b"") -> Message:
        query = [f"ep={self.ep}", f"lt={self.lt}", f"lwm2m={self.lwm2m}"]
        if self.lwm2m == "1.0":
            # 1.0 has no Q parameter: queue mode goes into the binding ("UQ", "UQS").
            query.append(f"b={_legacy_binding(self.b, self.Q)}")
        else:
            query.append(f"b={self.b}")
        if self.sms is not None:
            query.append(f"sms={self.sms}")
        if self.Q and self.lwm2m != "1.0":
            query.append("Q")
        query += [_query_item(k, v) for k, v in self.extra]
        payload = ObjectList(self.objects, self.root_path, self.content_formats).to_payload()
        return Message.build(
            Type.CON,
            Code.POST,
            mid,
            token,
            uri_path=[RD],
            uri_query=query,
            content_format=LINK_FORMAT,
            payload=payload,
        )


def _legacy_binding(binding: str, queue: bool) -> str:
    if not queue:
        return binding
    # LwM2M-TS 1.0 §5.3.1.1: Q follows the transport it applies to: UQ, SQ, UQS.
    if "U" in binding:
        return binding.replace("U", "UQ", 1)
    return binding + "Q"


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """Update (LwM2M-TS-Core 1.2 §6.2.2): every field None means "unchanged"."""

    location: str  # the registration ID, last segment of /rd/{id}
    lt: int | None = None
    b: str | None = None
    Q: bool | None = None  # True when Q (or a 1.0 binding with Q) was sent
    sms: str | None = None
    objects: ObjectList | None = None  # the payload, when the object list changed
    extra: Params = ()

    @classmethod
    def from_message(
        cls, msg: Message, *, lwm2m_version: str | None = None, max_links: int | None = None
    ) -> Self:
        """Parse an Update; ``lwm2m_version`` (the registration's) checks the binding letters for
        it; a payload of more than ``max_links`` links is an error."""
        _check_method(msg, Code.POST, "Update")
        location = _location(msg, "Update")
        params = _parse_query(msg.uri_query)
        text = _need_value(params, "b", "Binding")
        binding, legacy_queue = _binding(text, lwm2m_version) if text is not None else (None, False)
        queue = _queue_flag(params) or legacy_queue
        return cls(
            location=location,
            lt=_lifetime(params),
            b=binding,
            Q=True if queue else None,
            sms=_need_value(params, "sms", "SMS Number"),
            objects=_payload(msg, max_links),
            extra=_extra(params, ("lt", "b", "sms", "Q")),
        )

    def to_message(self, mid: int = 0, token: bytes = b"", *, lwm2m_version: str | None = None) -> Message:
        query: list[str] = []
        if self.lt is not None:
            query.append(f"lt={self.lt}")
        legacy = lwm2m_version == "1.0"
        if self.b is not None:
            query.append(f"b={_legacy_binding(self.b, bool(self.Q)) if legacy else self.b}")
        if self.sms is not None:
            query.append(f"sms={self.sms}")
        if self.Q and not (legacy and self.b is not None):
            query.append("Q")
        query += [_query_item(k, v) for k, v in self.extra]
        payload = self.objects.to_payload() if self.objects is not None else b""
        return Message.build(
            Type.CON,
            Code.POST,
            mid,
            token,
            uri_path=[RD, self.location],
            uri_query=query,
            content_format=LINK_FORMAT if self.objects is not None else None,
            payload=payload,
        )


@dataclass(frozen=True, slots=True)
class DeregisterRequest:
    """De-register (LwM2M-TS-Core 1.2 §6.2.3)."""

    location: str

    @classmethod
    def from_message(cls, msg: Message) -> Self:
        _check_method(msg, Code.DELETE, "De-register")
        return cls(_location(msg, "De-register"))

    def to_message(self, mid: int = 0, token: bytes = b"") -> Message:
        return Message.build(Type.CON, Code.DELETE, mid, token, uri_path=[RD, self.location])


# --- end devices behind a gateway ------------------------------------------------------

MAX_DEVICE_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class EndDevice:
    """One end device behind a gateway: the /25 instance that stands for it, its Device ID,
    its Prefix and its objects (LwM2M-TS-Gateway 1.1, object 25)."""

    prefix: str
    device_id: str
    instance_id: int
    objects: tuple[ObjectLink, ...] = ()

    def __post_init__(self) -> None:
        try:
            check_prefix(self.prefix)
        except InvalidPath as exc:
            raise GatewayError(f"/25/{self.instance_id}/1: {exc}") from None
        if type(self.device_id) is not str or len(self.device_id) > MAX_DEVICE_ID_LENGTH:
            most = MAX_DEVICE_ID_LENGTH
            raise GatewayError(
                f"/25/{self.instance_id}/0: a Device ID is a string of at most {most} characters"
            )

    @property
    def root(self) -> Path:
        """``/dev1``: the root of this device's paths."""
        return Path((), self.prefix)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(sorted({o.object_id for o in self.objects}))

    def instances(self, object_id: int) -> tuple[int, ...]:
        ids = {o.instance_id for o in self.objects if o.object_id == object_id}
        return tuple(sorted(i for i in ids if i is not None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "device_id": self.device_id,
            "instance_id": self.instance_id,
            "objects": ObjectList(self.objects).to_payload().decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndDevice:
        links = data.get("objects", "")
        objects = ObjectList.parse(links).objects if links else ()
        return cls(data["prefix"], data["device_id"], int(data["instance_id"]), objects)


# --- the server's record -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """What a server knows of a registered client; the unit a RegistrationStore keeps."""

    endpoint: str
    registration_id: str
    address: tuple[str, int]
    lifetime: int = DEFAULT_LIFETIME
    lwm2m_version: str = DEFAULT_VERSION
    binding: str = DEFAULT_BINDING
    queue_mode: bool = False
    sms: str | None = None
    objects: tuple[ObjectLink, ...] = ()
    root_path: str = "/"
    content_formats: tuple[int, ...] = ()
    registered_at: float = 0.0  # Unix seconds
    last_update: float = 0.0  # Unix seconds: the Register or the last Update
    extra: Params = field(default=())
    # How the client reaches the server: "udp", "dtls", "tcp" or "tls" (RFC 8323), as its last
    # Register or Update came; over TCP and TLS the server's requests go over the client's
    # connection (LwM2M-TS-Transport 1.2 §6), which a restarted server or another node lacks.
    transport: str = "udp"
    # A gateway's end devices, as its object 25 last told them (LwM2M-TS-Gateway 1.1, object 25).
    end_devices: tuple[EndDevice, ...] = ()

    @classmethod
    def from_request(
        cls,
        request: RegisterRequest,
        address: tuple[str, int],
        now: float,
        registration_id: str | None = None,
        transport: str = "udp",
    ) -> Registration:
        return cls(
            endpoint=request.ep,
            registration_id=registration_id or new_registration_id(),
            address=_address(address),
            lifetime=request.lt,
            lwm2m_version=request.lwm2m,
            binding=request.b,
            queue_mode=request.Q,
            sms=request.sms,
            objects=request.objects,
            root_path=request.root_path,
            content_formats=request.content_formats,
            registered_at=now,
            last_update=now,
            extra=request.extra,
            transport=transport,
        )

    @property
    def location(self) -> str:
        """The Location-Path of the 2.01 Created answer: ``/rd/{id}``."""
        return f"/{RD}/{self.registration_id}"

    @property
    def expires_at(self) -> float:
        return self.last_update + self.lifetime

    def is_expired(self, now: float, grace: float = 0.0) -> bool:
        """Past its lifetime (plus ``grace``, for an Update still on its way) with no Update."""
        return now >= self.expires_at + grace

    def updated(
        self, update: UpdateRequest, address: tuple[str, int], now: float, transport: str | None = None
    ) -> Registration:
        """This registration after ``update`` (come over ``transport``, if given); an Update also
        refreshes the lifetime (§6.2.2)."""
        changes: dict[str, Any] = {"address": _address(address), "last_update": now}
        if transport is not None:
            changes["transport"] = transport
        if update.lt is not None:
            changes["lifetime"] = update.lt
        if update.b is not None:
            changes["binding"] = update.b
            if self.lwm2m_version == "1.0":
                # In 1.0 the binding carries queue mode: b=U after b=UQ leaves it.
                changes["queue_mode"] = bool(update.Q)
        if update.Q:
            changes["queue_mode"] = True
        if update.sms is not None:
            changes["sms"] = update.sms
        if update.objects is not None:
            changes["objects"] = update.objects.objects
            changes["root_path"] = update.objects.root_path
            changes["content_formats"] = update.objects.content_formats
        if update.extra:
            merged = dict(self.extra)
            merged.update(update.extra)
            changes["extra"] = tuple(merged.items())
        return replace(self, **changes)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(sorted({o.object_id for o in self.objects}))

    def supports(self, object_id: int) -> bool:
        return any(o.object_id == object_id for o in self.objects)

    def object_version(self, object_id: int) -> str | None:
        """The ``ver`` the client gave for the object; None means the version of its enabler."""
        for o in self.objects:
            if o.object_id == object_id and o.version is not None:
                return o.version
        return None

    def instances(self, object_id: int) -> tuple[int, ...]:
        ids = {o.instance_id for o in self.objects if o.object_id == object_id}
        return tuple(sorted(i for i in ids if i is not None))

    def end_device(self, prefix: str) -> EndDevice | None:
        """The end device behind this gateway with ``prefix``, if there is one."""
        for d in self.end_devices:
            if d.prefix == prefix:
                return d
        return None

    # --- JSON form for stores -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "registration_id": self.registration_id,
            "address": [self.address[0], self.address[1]],
            "lifetime": self.lifetime,
            "lwm2m_version": self.lwm2m_version,
            "binding": self.binding,
            "queue_mode": self.queue_mode,
            "sms": self.sms,
            "objects": self.objects_json(),
            "root_path": self.root_path,
            "content_formats": list(self.content_formats),
            "registered_at": self.registered_at,
            "last_update": self.last_update,
            "extra": [[k, v] for k, v in self.extra],
            "transport": self.transport,
            "end_devices": [d.to_dict() for d in self.end_devices],
        }

    def objects_json(self) -> list[dict[str, Any]]:
        """The objects list as stored and shown: ``[{"path": "/3/0"}, {"path": "/3303", "ver": "1.1"}]``."""
        return [_object_to_json(o) for o in self.objects]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registration:
        host, port = data["address"]
        return cls(
            endpoint=data["endpoint"],
            registration_id=data["registration_id"],
            address=(host, int(port)),
            lifetime=int(data.get("lifetime", DEFAULT_LIFETIME)),
            lwm2m_version=data.get("lwm2m_version", DEFAULT_VERSION),
            binding=data.get("binding", DEFAULT_BINDING),
            queue_mode=bool(data.get("queue_mode", False)),
            sms=data.get("sms"),
            objects=tuple(map(_object_from_json, data.get("objects", ()))),
            root_path=data.get("root_path", "/"),
            content_formats=tuple(map(int, data.get("content_formats", ()))),
            registered_at=float(data.get("registered_at", 0.0)),
            last_update=float(data.get("last_update", 0.0)),
            extra=tuple((k, v) for k, v in data.get("extra", ())),
            transport=str(data.get("transport", "udp")),
            end_devices=tuple(EndDevice.from_dict(d) for d in data.get("end_devices", ())),
        )


def _address(address: tuple[Any, ...]) -> tuple[str, int]:
    """``(host, port)`` of a socket address: the address itself when it is that already (the
    tuple the server keeps for the client is then shared, not copied), else its first two."""
    if type(address) is tuple and len(address) == 2:
        return address
    return (address[0], address[1])


def _object_to_json(o: ObjectLink) -> dict[str, Any]:
    out: dict[str, Any] = {"path": o.path}
    if o.version is not None:
        out["ver"] = o.version
    return out


# Object links read back from stored registrations, by (path, version): a fleet's devices list
# the same few objects, so a page of registrations parses each link once. Frozen, so shared.
_STORED_LINKS: dict[tuple[str, str | None], ObjectLink] = {}
_STORED_LINKS_MAX = 4096


def _object_from_json(item: Mapping[str, Any]) -> ObjectLink:
    key = (item["path"], item.get("ver"))
    link = _STORED_LINKS.get(key)
    if link is None:
        ids = [int(p) for p in key[0].strip("/").split("/")]
        link = ObjectLink(ids[0], ids[1] if len(ids) > 1 else None, key[1])
        if len(_STORED_LINKS) >= _STORED_LINKS_MAX:
            _STORED_LINKS.clear()  # bounded: many distinct links are not a fleet's common case
        _STORED_LINKS[key] = link
    return link
