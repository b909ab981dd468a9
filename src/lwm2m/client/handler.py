"""The client's answer to each server request: CoAP request in, CoAP response out.

LwM2M-TS-Transport 1.2 §6.4 (Table 6.4.-1) maps the operations to CoAP:
Read GET, Discover GET with Accept link-format, Write PUT (replace) or POST
(partial update), Write-Attributes PUT with queries only, Execute POST on a
resource, Create POST on an object, Delete DELETE, Read-Composite and
Observe-Composite FETCH on the root, Write-Composite iPATCH on the root.
The response codes follow LwM2M-TS-Core 1.2 §6.3: 2.05, 2.04, 2.01, 2.02,
4.00, 4.01, 4.04, 4.05, 4.06 and 4.15.

With more than one server account, Access Control (LwM2M-TS-Core 1.2 §7.3)
decides every operation of a server, named by its Short Server ID: 4.01
without the right; Read and Observe of a whole object leave out the
instances the server may not read (§7.3.2); a Create makes an Access Control
instance owned by its server. Write-Attributes are kept per server (§5.1.1).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from lwm2m.client.core import access_control as acl
from lwm2m.client.core.access_control import Operation
from lwm2m.client.instance import parse_arguments
from lwm2m.client.objects import BOOTSTRAP_ONLY_OBJECTS, ObjectTree
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type, as_code
from lwm2m.codec.base import Codec, ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import Link, serialize_links
from lwm2m.errors import (
    BadRequest,
    CodecError,
    DeviceError,
    InvalidAttributes,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    Unauthorized,
    UnsupportedContentFormat,
)
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.model.value import ResourceType
from lwm2m.protocol.attributes import AttributeChange, Attributes

log = logging.getLogger(__name__)


class ObserveRelations(Protocol):
    """What the handler tells the observe relations (``lwm2m.client.observer.Observer``): it
    names only this, so the observer may depend on the handler and not the reverse."""

    def add(
        self, key: tuple[Any, bytes], paths: tuple[Path, ...], fmt: ContentFormat, composite: bool
    ) -> None: ...

    def remove(self, key: tuple[Any, bytes]) -> None: ...

    def removed(self, path: Path) -> None: ...

    def attributes_changed(self, path: Path) -> None: ...

    def __len__(self) -> int: ...


_NUMERIC = frozenset({ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT})
# Formats that carry many records with their paths; composite operations need one of these.
COMPOSITE_FORMATS = frozenset({ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.LWM2M_CBOR})
_READ_FORMATS = frozenset(ContentFormat) - {ContentFormat.LINK}


def default_format(lwm2m_version: str) -> ContentFormat:
    """The format of a Read without Accept: SenML-CBOR from LwM2M 1.1 on, TLV for 1.0."""
    return ContentFormat.TLV if lwm2m_version == "1.0" else ContentFormat.SENML_CBOR


def _reply(code: int, diagnostic: str = "") -> Message:
    return Message(Type.ACK, as_code(code), payload=diagnostic.encode())


_CHANGED = Message(Type.ACK, Code.CHANGED)
_NO_ATTRIBUTES = Attributes()
_DELETED = Message(Type.ACK, Code.DELETED)


class RequestHandler:
    """Answers LwM2M server requests from an :class:`ObjectTree`.

    Called with each ``RequestReceived``; returns the response ``Message``, or
    an awaitable of it when an Execute handler is a coroutine.
    ``attributes`` holds what Write-Attributes of the server being served set, by path.
    """

    def __init__(
        self,
        tree: ObjectTree,
        *,
        lwm2m_version: str = "1.2",
        observer: ObserveRelations | None = None,
        on_request: Callable[[RequestReceived, Message], None] | None = None,
        prefix: str = "",
    ) -> None:
        self.tree = tree
        # The prefix of an end device behind a gateway whose objects ``tree`` holds
        # (LwM2M-TS-Gateway 1.1): the first Uri-Path segment of every request to it, and the
        # first segment of the paths its answers name; "" for a device of its own.
        self.prefix = prefix
        self.models = tree.models
        self.lwm2m_version = lwm2m_version
        self.default_format = default_format(lwm2m_version)
        self.observer = observer
        # What Write-Attributes set, by the Short Server ID of the server that set them (§5.1.1:
        # attributes belong to a server); None is the server of a client with one account.
        # (Made by the first Write-Attributes: most devices of a fleet never see one.)
        self._attributes: dict[int | None, dict[Path, Attributes]] | None = None
        self.server_id: int | None = None  # the server whose request is being answered
        self.on_request = on_request  # hears every request and its answer (for a console or a log)
        self.bootstrap = False  # True while the bootstrap server is talking: objects 0 and 21 visible
        self.served = 0

    # --- attributes, per server ------------------------------------------------------------

    @property
    def attributes(self) -> dict[Path, Attributes]:
        """The attributes the server being served set, by path."""
        return self.attributes_of(self.server_id)

    def attributes_of(self, server_id: int | None) -> dict[Path, Attributes]:
        table = self._attributes
        if table is None:
            table = self._attributes = {}
        found = table.get(server_id)
        if found is None:
            found = table[server_id] = {}
        return found

    def forget_attributes(self, path: Path) -> None:
        """Drop every server's attributes at ``path`` and below (the instance is gone)."""
        for attrs in (self._attributes or {}).values():
            for p in [p for p in attrs if p.startswith(path)]:
                del attrs[p]

    # --- access control (LwM2M-TS-Core 1.2 §7.3) ----------------------------------------------

    def check(self, path: Path, operation: Operation) -> None:
        """4.01 when the server being served may not do ``operation`` on ``path``."""
        if self.bootstrap or self.server_id is None or not acl.enforced(self.tree):
            return  # the bootstrap server, or a single server account: no access control
        if not acl.allowed(self.tree, self.server_id, path, operation):
            raise Unauthorized(f"{operation.value} on {path}: no access right for server {self.server_id}")

    def _readable(self, records: list[Record], path: Path) -> list[Record]:
        """A Read of a whole object shows only the instances the server may read (§7.3.2)."""
        if len(path.ids) != 1 or self.server_id is None or self.bootstrap or not acl.enforced(self.tree):
            return records
        shown = set(acl.readable_instances(self.tree, self.server_id, path.ids[0]))
        return [r for r in records if r.path.ids[1] in shown]

    # --- entry ------------------------------------------------------------------------------

    def __call__(self, event: RequestReceived, server_id: int | None = None) -> Message | Awaitable[Message]:
        """Answer ``event``; ``server_id`` is the Short Server ID of the server that sent it
        (None: the client's only server, or the server is unknown and access control is off)."""
        self.served += 1
        self.server_id = server_id
        try:
            if server_id is None and not self.bootstrap and acl.enforced(self.tree):
                # §7.3: with several accounts every request is decided by its server; one from
                # an address of none of them has no rights.
                raise Unauthorized("the request comes from none of the client's servers")
            answer = self._dispatch(event)
        except DeviceError as exc:
            answer = _reply(exc.code, str(exc))
        except Exception as exc:  # a handler bug must not take the client down
            log.exception("request %s failed", event.message)
            answer = _reply(Code.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")
        if self.on_request is not None:
            if isinstance(answer, Message):
                self.on_request(event, answer)
            else:
                answer = self._heard_later(event, answer)
        return answer

    async def _heard_later(self, event: RequestReceived, answer: Awaitable[Message]) -> Message:
        message = await answer
        if self.on_request is not None:
            self.on_request(event, message)
        return message

    def _dispatch(self, event: RequestReceived) -> Message | Awaitable[Message]:
        msg = event.message
        path = self._path(msg)
        code = msg.code
        if code == Code.GET:
            if msg.accept == ContentFormat.LINK:
                # Object 2's R bit covers Discover in LwM2M 1.0 ("Read, Observe, Discover,
                # Write-Attributes"); from 1.1 on it names Read, Observe, Write-Attributes only.
                self.check(path, Operation.READ if self.lwm2m_version == "1.0" else Operation.DISCOVER)
                return self.discover(path)
            if event.observe == 0:
                self.check(path, Operation.OBSERVE)
                return self.observe(event, (path,), msg.accept, composite=False)
            if event.observe == 1 and self.observer is not None:
                self.observer.remove(event.relation)
            self.check(path, Operation.READ)
            return self.read(path, msg.accept)
        if code == Code.PUT:
            if msg.uri_query and not msg.payload:
                self.check(path, Operation.WRITE_ATTRIBUTES)
                return self.write_attributes(path, msg.uri_query)
            self.check(path, Operation.WRITE)
            return self.write(path, msg, replace=True)
        if code == Code.POST:
            return self._post(path, msg)
        if code == Code.DELETE:
            self.check(path, Operation.DELETE)
            return self.delete(path)
        if code == Code.FETCH and path.is_root:
            return self.read_composite(event)
        if code == Code.IPATCH and path.is_root:
            return self.write_composite(msg)
        raise MethodNotAllowed(f"method {_code_name(code)} on {path} is not an LwM2M operation")

    def _path(self, msg: Message) -> Path:
        segments = msg.uri_path
        if self.prefix and segments:  # none: a composite operation's part for this end device
            if segments[0] != self.prefix:
                raise NotFound(f"no such path {msg.uri_path_str}")
            segments = segments[1:]
        if len(segments) > 4:
            raise NotFound(f"no such path {msg.uri_path_str}")
        try:
            path = Path.of(*(int(s) for s in segments))
        except ValueError:
            raise NotFound(f"no such path {msg.uri_path_str}") from None
        if path.ids and path.ids[0] in BOOTSTRAP_ONLY_OBJECTS and not self.bootstrap:
            # LwM2M-TS-Core 1.2 §6.2.1, §E.1: Security and OSCORE are for the bootstrap server only.
            raise NotFound(f"{path}: no such object")
        return path

    # --- read, observe ------------------------------------------------------------------

    def response_format(self, accept: int | None, composite: bool = False) -> ContentFormat:
        if accept is None:
            return ContentFormat.SENML_CBOR if composite else self.default_format
        try:
            fmt = ContentFormat(accept)
        except ValueError:
            raise NotAcceptable(f"content format {accept} is not supported") from None
        if fmt not in _READ_FORMATS or (composite and fmt not in COMPOSITE_FORMATS):
            raise NotAcceptable(f"cannot answer in content format {int(fmt)}")
        return fmt

    def encode(self, records: list[Record], base: Path, fmt: ContentFormat) -> bytes:
        if self.prefix:
            records = _prefixed(records, self.prefix)
            base = base.with_prefix(self.prefix)
        try:
            return get_codec(fmt).encode(records, base, self.models)
        except CodecError as exc:
            raise NotAcceptable(f"cannot answer {base} in content format {int(fmt)}: {exc}") from None

    def content(self, paths: tuple[Path, ...], fmt: ContentFormat, composite: bool) -> Message:
        """A 2.05 with the current value of ``paths`` (for a Read or a notification)."""
        if composite:
            records: list[Record] = []
            for p in paths:
                try:
                    records += self.tree.read(p)
                except NotFound:
                    continue  # a composite read leaves out what does not exist
            payload = self.encode(records, ROOT, fmt)
        else:
            payload = self.encode(self._readable(self.tree.read(paths[0]), paths[0]), paths[0], fmt)
        return Message.build(Type.ACK, Code.CONTENT, content_format=fmt, payload=payload)

    def read(self, path: Path, accept: int | None) -> Message:
        if accept is None and self.lwm2m_version == "1.0" and self._single_value(path):
            # LwM2M 1.0 servers commonly read one value without Accept and expect plain text
            # (opaque for Opaque), as Wakaama's client answers; TLV for everything else.
            r = self.models.resource(path.ids[0], path.ids[2])
            accept = (
                ContentFormat.OPAQUE
                if r is not None and r.type is ResourceType.OPAQUE
                else ContentFormat.TEXT
            )
        return self.content((path,), self.response_format(accept), False)

    def _single_value(self, path: Path) -> bool:
        if len(path.ids) == 4:
            return True
        if len(path.ids) != 3:
            return False
        r = self.models.resource(path.ids[0], path.ids[2])
        return r is not None and not r.multiple

    def observe(
        self, event: RequestReceived, paths: tuple[Path, ...], accept: int | None, *, composite: bool
    ) -> Message:
        if not composite and paths[0].is_root:
            raise MethodNotAllowed("Observe of the root is not an LwM2M operation")
        fmt = self.response_format(accept, composite)
        answer = self.content(paths, fmt, composite)
        if self.observer is None:
            return answer
        self.observer.add(event.relation, paths, fmt, composite)
        # The Observe option tells the endpoint to keep the relation (RFC 7641 §4.1).
        return answer.with_option(OptionNumber.OBSERVE, 0)

    def read_composite(self, event: RequestReceived) -> Message:
        msg = event.message
        paths = tuple(r.path for r in self._decode_composite(msg))
        if not paths:
            raise BadRequest("Read-Composite: no path given")
        for p in paths:  # §7.3: each path of a composite operation is decided alone
            if self.tree.exists(p):  # what does not exist is left out of the answer anyway
                self.check(p, Operation.OBSERVE if event.observe == 0 else Operation.READ)
        if event.observe == 0:
            return self.observe(event, paths, msg.accept, composite=True)
        if event.observe == 1 and self.observer is not None:
            self.observer.remove(event.relation)
        return self.content(paths, self.response_format(msg.accept, True), True)

    def _decode_composite(self, msg: Message) -> list[Record]:
        fmt = msg.content_format
        if fmt not in COMPOSITE_FORMATS:
            raise UnsupportedContentFormat(f"composite operations take SenML or LwM2M-CBOR, not {fmt}")
        try:
            records = get_codec(fmt).decode(msg.payload, ROOT, self.models)
        except CodecError as exc:
            raise BadRequest(f"cannot decode the payload: {exc}") from None
        for r in records:
            if r.path.ids and r.path.ids[0] in BOOTSTRAP_ONLY_OBJECTS and not self.bootstrap:
                raise NotFound(f"{r.path}: no such object")
        return records

    # --- write -----------------------------------------------------------------------------

    def _codec(self, fmt: int | None) -> Codec:
        if fmt is None:
            fmt = ContentFormat.TEXT  # LwM2M-TS-Transport 1.2 §6.4: no Content-Format is text/plain
        if fmt == ContentFormat.LINK:
            raise UnsupportedContentFormat("link format is not a Write format")
        try:
            return get_codec(fmt)
        except CodecError:
            raise UnsupportedContentFormat(f"content format {fmt} is not supported") from None

    def _decode(self, msg: Message, base: Path) -> list[Record]:
        try:
            records = self._codec(msg.content_format).decode(
                msg.payload, base.with_prefix(self.prefix), self.models
            )
        except CodecError as exc:
            raise BadRequest(f"cannot decode the payload: {exc}") from None
        return _prefixed(records, "") if self.prefix else records

    def write(self, path: Path, msg: Message, *, replace: bool) -> Message:
        if len(path.ids) < 2:
            raise MethodNotAllowed(f"Write: {path} must be an instance, resource or resource instance")
        self.tree.resolve(path)  # 4.04 before 4.00 for a missing target
        self.tree.write(path, self._decode(msg, path), replace=replace)
        return _CHANGED

    def write_composite(self, msg: Message) -> Message:
        return self._checked_writes(msg)()

    def write_composite_part(self, msg: Message, server_id: int | None) -> Callable[[], Message]:
        """A Write-Composite for ``server_id`` checked whole, without writing: what writes it. A
        gateway checks the part of each end device so before it writes any (LwM2M-TS-Core 1.2
        §6.3.8: all or nothing). DeviceError for what the request may not write."""
        self.server_id = server_id
        if server_id is None and not self.bootstrap and acl.enforced(self.tree):
            raise Unauthorized("the request comes from none of the client's servers")
        return self._checked_writes(msg)

    def _checked_writes(self, msg: Message) -> Callable[[], Message]:
        records = self._decode_composite(msg)
        if not records:
            raise BadRequest("Write-Composite: nothing to write")
        by_instance: dict[Path, list[Record]] = {}
        for r in records:
            if len(r.path.ids) < 3:
                raise BadRequest(f"Write-Composite: {r.path} is not a resource")
            target = r.path if len(r.path.ids) == 3 else r.path.parent
            self.check(r.path, Operation.WRITE)
            by_instance.setdefault(target, []).append(r)
        # LwM2M-TS-Core 1.2 §6.3.8: all or nothing; check each target first.
        for target, recs in by_instance.items():
            _, inst = self.tree.resolve(target)
            assert inst is not None
            self.tree._group(inst, target, recs, check_access=True)

        def write() -> Message:
            for target, recs in by_instance.items():
                self.tree.write(target, recs, replace=True)
            return _CHANGED

        return write

    # --- post: execute, create, partial update -------------------------------------------

    def _post(self, path: Path, msg: Message) -> Message | Awaitable[Message]:
        level = len(path.ids)
        if level == 1:
            self.check(path, Operation.CREATE)
            return self.create(path, msg)
        if level == 2:
            self.check(path, Operation.WRITE)
            return self.write(path, msg, replace=False)
        if level == 3:
            _, inst = self.tree.resolve(path)
            assert inst is not None
            r = inst.resource_definition(path.ids[2])
            if r.operations.executable:
                self.check(path, Operation.EXECUTE)
                return self.execute(path, msg.payload)
            if r.multiple and msg.payload:
                self.check(path, Operation.WRITE)
                return self.write(path, msg, replace=False)
            raise MethodNotAllowed(f"{path} is not executable")
        raise MethodNotAllowed(f"POST on {path}")

    def execute(self, path: Path, payload: bytes) -> Message | Awaitable[Message]:
        _, inst = self.tree.resolve(path)
        assert inst is not None
        rid = path.ids[2]
        r = inst.resource_definition(rid)
        if not r.operations.executable or not inst.has_resource(rid):
            raise MethodNotAllowed(f"{path} is not executable")
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            raise BadRequest("execute arguments must be UTF-8 text") from None
        parse_arguments(text)  # 4.00 on bad syntax
        result = inst.execute(rid, text)
        if result is None:
            return _CHANGED
        return self._finish(result)

    async def _finish(self, result: Awaitable[None]) -> Message:
        try:
            await result
        except DeviceError as exc:
            return _reply(exc.code, str(exc))
        return _CHANGED

    def create(self, path: Path, msg: Message) -> Message:
        object_id = path.ids[0]
        obj = self.tree.objects.get(object_id)
        if obj is None:
            raise NotFound(f"{path}: no such object")
        codec = self._codec(msg.content_format)
        prefix = self.prefix  # an end device's payload names its paths with the prefix
        try:
            records = codec.decode(msg.payload, path.with_prefix(prefix), self.models) if msg.payload else []
            instance_id = _instance_of(records)
        except CodecError:
            # LwM2M 1.0 TLV Create without an instance ID: the resources come bare.
            instance_id = obj.free_id()
            try:
                base = Path((object_id, instance_id), prefix)
                records = codec.decode(msg.payload, base, self.models)
            except CodecError as exc:
                raise BadRequest(f"cannot decode the payload: {exc}") from None
        if prefix:
            records = _prefixed(records, "")
        inst = self.tree.create(object_id, records, instance_id)
        if self.server_id is not None and not self.bootstrap:
            # §7.3: the creating server owns the new instance (full rights, manages its ACL).
            acl.created(self.tree, self.server_id, object_id, inst.id)
        # An end device's new instance is named as the server reaches it: ``dev1/3303/1``
        # (the prefix first, as in the Uri-Path of its requests).
        location = (
            [self.prefix, str(object_id), str(inst.id)] if self.prefix else [str(object_id), str(inst.id)]
        )
        return Message.build(Type.ACK, Code.CREATED, location_path=location)

    # --- delete ----------------------------------------------------------------------------

    def delete(self, path: Path) -> Message:
        if len(path.ids) != 2:
            raise MethodNotAllowed(f"Delete: {path} must be an object instance")
        obj, inst = self.tree.resolve(path)
        assert inst is not None
        if obj.definition.mandatory and not obj.definition.multiple:
            raise MethodNotAllowed(f"{path}: the only instance of a mandatory object cannot be deleted")
        inst.delete()
        self.tree.remove(obj.id, inst.id)
        acl.removed(self.tree, obj.id, inst.id)  # its Access Control instance governs nothing now
        self.forget_attributes(path)
        if self.observer is not None:
            self.observer.removed(path)
        return _DELETED

    # --- discover, attributes ------------------------------------------------------------------

    def discover(self, path: Path) -> Message:
        """Link format of ``path`` and what lies below, with their attributes (LwM2M-TS-Core 1.2 §6.3.5)."""
        level = len(path.ids)
        if level == 0 or level == 4:
            raise MethodNotAllowed(f"Discover of {path}")
        obj, inst = self.tree.resolve(path)
        links: list[Link] = []
        if inst is None:
            ver = obj.definition.version
            head: list[tuple[str, str | None]] = [("ver", ver)] if ver not in ("", "1.0") else []
            links.append(Link(str(path), tuple(head) + self._attrs(path)))
            for i in obj.each():
                links += self._instance_links(Path.of(obj.id, i.id), resources=True)
        elif level == 2:
            links += self._instance_links(path, resources=True)
        else:
            rid = path.ids[2]
            if not inst.has_resource(rid):
                raise NotFound(f"{path} is not present")
            links.append(self._resource_link(path))
        if self.prefix:  # an end device's links name its paths as the server reaches them
            links = [Link(f"/{self.prefix}{link.target}", link.attributes) for link in links]
        payload = serialize_links(links).encode()
        return Message.build(Type.ACK, Code.CONTENT, content_format=ContentFormat.LINK, payload=payload)

    def _instance_links(self, path: Path, *, resources: bool) -> list[Link]:
        links = [Link(str(path), self._attrs(path))]
        inst = self.tree.instance(path.ids[0], path.ids[1])
        if resources and inst is not None:
            links += [self._resource_link(path.child(rid)) for rid in inst.resource_ids()]
        return links

    def _resource_link(self, path: Path) -> Link:
        inst = self.tree.instance(path.ids[0], path.ids[1])
        attrs: tuple[tuple[str, str | None], ...] = ()
        if inst is not None:
            value = inst.get(path.ids[2])
            if isinstance(value, dict):
                attrs = (("dim", str(len(value))),)
        return Link(str(path), attrs + self._attrs(path))

    def _attrs(self, path: Path) -> tuple[tuple[str, str | None], ...]:
        a = self.attributes.get(path)
        if not a:
            return ()
        return tuple((name, value) for name, _, value in (q.partition("=") for q in a.to_query()))

    def write_attributes(self, path: Path, query: tuple[str, ...] | list[str]) -> Message:
        if path.is_root:
            raise MethodNotAllowed("Write-Attributes: the root has no attributes")
        if not self.tree.exists(path):
            raise NotFound(f"{path} does not exist")
        try:
            change = AttributeChange.parse_query(query).check_level(len(path.ids))
            if len(path.ids) >= 3 and change.names & {"gt", "lt", "st"}:
                r = self.models.resource(path.ids[0], path.ids[2])
                if r is not None and r.type not in _NUMERIC:
                    raise InvalidAttributes(
                        f"gt, lt and st need a numeric resource; {path} is {r.type.value}"
                    )
            new = self.attributes.get(path, Attributes()).apply(change).check()
        except InvalidAttributes as exc:
            raise BadRequest(str(exc)) from None
        if new:
            self.attributes[path] = new
        else:
            self.attributes.pop(path, None)
        if self.observer is not None:
            self.observer.attributes_changed(path)
        return _CHANGED

    def effective_attributes(
        self, path: Path, defaults: Attributes = _NO_ATTRIBUTES, server_id: int | None = None
    ) -> Attributes:
        """The attributes ``server_id`` set in force at ``path``: its own over its instance's over
        its object's (§5.1.1)."""
        out = defaults
        ids = path.ids
        table = self._attributes
        attributes = (table.get(server_id) if table is not None else None) or {}
        for n in range(1, len(ids) + 1):
            a = attributes.get(Path.of(*ids[:n]))
            if a:
                out = a.merged_over(out)
        return out


def _prefixed(records: list[Record], prefix: str) -> list[Record]:
    """``records`` with their paths on the end device ``prefix`` ("" strips the prefix)."""
    return [replace(r, path=r.path.with_prefix(prefix)) for r in records]


def _instance_of(records: list[Record]) -> int | None:
    ids = {r.path.ids[1] for r in records if len(r.path.ids) >= 2}
    if len(ids) > 1:
        raise BadRequest(f"Create: one instance at a time, got {sorted(ids)}")
    return ids.pop() if ids else None


def _code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"{code >> 5}.{code & 31:02d}"
