"""A gateway client: its own objects, and end devices behind it (LwM2M-TS-Gateway 1.1, object 25).

::

    async with Gateway("gw-1", "coap://127.0.0.1:5683") as gateway:
        dev1 = gateway.add("dev1", [Temperature(0)], device_id="urn:dev:001")
        dev1.instance(3303, 0).set(5700, 21.5)  # the server's observation of /dev1/3303/0/5700 hears it

The gateway is a :class:`Client` (its ``client``) with object 25, one instance per end device:
Device ID (/25/x/0), Prefix (/25/x/1) and IoT Device Objects (/25/x/3, the end device's objects
as a CoRE link list in the Registration payload's form). Each end device has objects of its own
(an :class:`ObjectTree` with its own Device object 3), answered by a request handler of its own:
a request whose first Uri-Path segment is an end device's prefix (``/dev1/3303/0/5700``) goes to
that device's objects, and the paths of its answers and notifications carry the prefix (SenML
names, LwM2M-CBOR keys, Discover links). Adding or removing an end device adds or removes its
/25 instance, so the gateway's object list changes and it sends an Update; the server then
reads /25 again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from lwm2m.client.config import ClientConfig
from lwm2m.client.core.device import Device
from lwm2m.client.handler import COMPOSITE_FORMATS, RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.observer import RelationKey
from lwm2m.client.reporting import Reporter
from lwm2m.client.role import Client
from lwm2m.client.timer import LoopTimer
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type, as_code
from lwm2m.codec.base import Codec
from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError, DeviceError, GatewayError, InvalidPath, NotFound
from lwm2m.model.path import ROOT, Path, check_prefix
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.gateway import DEVICE_ID, GATEWAY_OBJECT, IOT_DEVICE_OBJECTS, MAX_END_DEVICES, PREFIX
from lwm2m.protocol.registration import ObjectList

MAX_SPANNING = 256  # Observe-Composite relations across end devices at once


@dataclass(frozen=True, slots=True)
class _Node:
    """One end device: its objects, the handler that answers for them, its observations."""

    tree: ObjectTree
    handler: RequestHandler
    reporter: Reporter
    timer: LoopTimer
    instance: ObjectInstance  # its /25 instance on the gateway
    downlink: Callable[[], Awaitable[None]] | None  # what a request waits for before it is served


@dataclass(frozen=True, slots=True)
class _Spanning:
    """An Observe-Composite across end devices: its paths by prefix, its content format."""

    paths: dict[str, tuple[Path, ...]]
    fmt: int


class Gateway:
    """An LwM2M gateway: a :class:`Client` of its own (``client``) and the end devices behind it.

    ``endpoint``, ``server``, ``objects``, ``models``, ``config`` and ``on_request`` are the
    client's (see :class:`Client`). End devices come and go with :meth:`add` and :meth:`remove`,
    before or after ``start``.
    """

    def __init__(
        self,
        endpoint: str,
        server: str | None = None,
        objects: Iterable[ObjectInstance | LwM2MObject] = (),
        *,
        models: ObjectRegistry | None = None,
        config: ClientConfig | None = None,
        on_request: Callable[[RequestReceived, Message], None] | None = None,
    ) -> None:
        self._attach(Client(endpoint, server, objects, models=models, config=config, on_request=on_request))

    @classmethod
    def for_client(cls, client: Client) -> Gateway:
        """The gateway of a ``client`` made elsewhere (with a bootstrap account, keys, ...)."""
        gateway = cls.__new__(cls)
        gateway._attach(client)
        return gateway

    def _attach(self, client: Client) -> None:
        self.client = client
        self._nodes: dict[str, _Node] = {}
        self._spanning: dict[RelationKey, _Spanning] = {}  # Observe-Composite across end devices
        client.routes = self

    # --- end devices ----------------------------------------------------------------------------

    @property
    def prefixes(self) -> list[str]:
        """The prefixes of the end devices, in the order they were added."""
        return list(self._nodes)

    def device(self, prefix: str) -> ObjectTree:
        """The objects of the end device ``prefix``; GatewayError if there is none."""
        node = self._nodes.get(prefix)
        if node is None:
            raise GatewayError(f"no end device with prefix {prefix!r}")
        return node.tree

    def add(
        self,
        prefix: str,
        objects: Iterable[ObjectInstance | LwM2MObject] = (),
        *,
        device_id: str | None = None,
        downlink: Callable[[], Awaitable[None]] | None = None,
    ) -> ObjectTree:
        """An end device behind the gateway, reached at ``/prefix/...``: its objects (a Device
        object 3 is added when not given), its /25 instance with ``device_id`` (the prefix when
        not given). Its tree is returned. GatewayError for a bad or taken prefix.

        ``downlink``: an end device that hears only at times of its own (a LoRaWAN class A
        device listens right after each of its uplinks): each request to it is served once
        ``await downlink()`` returns, and answered then (a separate response)."""
        try:
            check_prefix(prefix)
        except InvalidPath as exc:
            raise GatewayError(str(exc)) from None
        if prefix in self._nodes:
            raise GatewayError(f"an end device with prefix {prefix!r} is behind the gateway already")
        if len(self._nodes) >= MAX_END_DEVICES:
            raise GatewayError(f"more than {MAX_END_DEVICES} end devices behind one gateway")
        client = self.client
        tree = ObjectTree(client.models)
        for item in objects:
            if isinstance(item, LwM2MObject):
                tree.declare(item.definition, item.factory)
                for inst in item.instances.values():
                    tree.add(inst)
            else:
                tree.add(item)
        if 3 not in tree.objects:
            tree.add(Device(manufacturer="lwm2m", model_number="end device"))
        version = client.config.lwm2m_version
        handler = RequestHandler(
            tree, lwm2m_version=version, on_request=client.handler.on_request, prefix=prefix
        )
        reporter = Reporter(
            handler,
            self._notify,
            # An end device's notifications go out as the gateway's do (``client.notify``): in
            # queue mode the client holds them while it sleeps and wakes by an Update (§6.5).
            asleep=_awake,
            wake_up=client.trigger_update,
            defaults=client.default_attributes,
            server_of=lambda key: client.server_id_of(key[0]),
            on_timer=lambda: timer.update(),
        )
        timer = LoopTimer(reporter)
        handler.observer = reporter.observer
        tree.on_value = reporter.observer.value_changed
        record = ObjectInstance(
            self._free_instance_id(),
            {DEVICE_ID: device_id if device_id is not None else prefix, PREFIX: prefix},
            object_id=GATEWAY_OBJECT,
            models=client.models,
        )
        node = _Node(tree, handler, reporter, timer, record, downlink)
        self._nodes[prefix] = node
        self._describe(node)
        tree.on_structure = lambda: self._objects_changed(node)
        client.tree.add(record)  # the object list changes: an Update (§6.2.2) tells the server
        return tree

    def remove(self, prefix: str) -> None:
        """The end device ``prefix`` is gone: its /25 instance and its observations with it."""
        node = self._nodes.pop(prefix, None)
        if node is None:
            raise GatewayError(f"no end device with prefix {prefix!r}")
        node.reporter.close()
        node.timer.close()
        self.client.tree.remove(GATEWAY_OBJECT, node.instance.id)

    def _free_instance_id(self) -> int:
        used = {n.instance.id for n in self._nodes.values()}
        used.update(i.id for i in self.client.tree.instances(GATEWAY_OBJECT))
        return next(i for i in range(len(used) + 1) if i not in used)

    def _objects_changed(self, node: _Node) -> None:
        """An instance of the end device was created or deleted (by the server or the
        application): its IoT Device Objects (/25/x/3) say so, and an Update carrying the
        gateway's object list tells the server, which reads /25 again."""
        self._describe(node)
        if self._nodes.get(node.instance.get(PREFIX)) is node:  # still behind the gateway
            self.client.objects_changed()

    @staticmethod
    def _describe(node: _Node) -> None:
        # /25/x/3: the end device's objects in the Registration payload's form (object 25 v2.0).
        links = ObjectList(node.tree.object_links()).to_payload().decode()
        node.instance.set(IOT_DEVICE_OBJECTS, links)

    # --- routing (PrefixRoutes) -----------------------------------------------------------------

    def route(self, event: RequestReceived, server_id: int | None) -> Message | Awaitable[Message] | None:
        """The answer of the end device named by the first Uri-Path segment, or of the end devices
        a composite operation names; None for a request to the gateway's own objects (a first
        segment that is a number, or a composite operation on the gateway's paths only)."""
        segments = event.message.uri_path
        if not segments:
            return self._composite(event, server_id) if self._nodes else None
        if segments[0].isdigit() or segments[0] == "":
            return None
        node = self._nodes.get(segments[0])
        if node is None:
            if segments[0] in ("rd", "bs", "dp"):
                return None  # not a path of an object: the client's own answer (4.04 or 4.05)
            return Message(
                Type.ACK, Code.NOT_FOUND, payload=f"no end device with prefix {segments[0]!r:.40}".encode()
            )
        return self._answer(node, event, server_id)

    @staticmethod
    def _answer(node: _Node, event: RequestReceived, server_id: int | None) -> Message | Awaitable[Message]:
        if node.downlink is None:
            return node.handler(event, server_id)
        return _when_heard(node, event, server_id)

    def _composite(
        self, event: RequestReceived, server_id: int | None
    ) -> Message | Awaitable[Message] | None:
        """Read-, Observe- and Write-Composite whose paths name end devices (LwM2M-TS-Core 1.2
        §6.3.4, §6.3.8, with the prefixed paths of LwM2M-TS-Gateway 1.1). The paths of one end
        device go to its handler; a Read-Composite over several answers their records together;
        an Observe-Composite over several is one relation whose notifications carry all their
        records; a Write-Composite over several is checked whole before any part is written."""
        msg = event.message
        if msg.code not in (Code.FETCH, Code.IPATCH) or msg.content_format not in COMPOSITE_FORMATS:
            return None  # not a composite operation: the client's own answer
        codec = get_codec(msg.content_format)
        try:
            records = codec.decode(msg.payload, ROOT, self.client.models)
        except CodecError:
            return None  # the client answers 4.00 with the reason
        groups: dict[str, list[Record]] = {}
        for r in records:
            groups.setdefault(r.path.prefix, []).append(replace(r, path=r.path.without_prefix()))
        if not any(groups):
            return None  # the gateway's own paths only
        for prefix in groups:
            if prefix and prefix not in self._nodes:
                return _reply(Code.NOT_FOUND, f"no end device with prefix {prefix!r}")
        if len(groups) == 1:
            ((prefix, part),) = groups.items()
            self._forget_spanning(event.relation)
            return self._answer(
                self._nodes[prefix], _part(event, codec.encode(part, ROOT, self.client.models)), server_id
            )
        if msg.code == Code.FETCH and event.observe == 0:
            if "" in groups:
                return _reply(
                    Code.BAD_REQUEST,
                    "Observe-Composite: the paths of end devices or the gateway's own, not both",
                )
            return self._observe_across(event, groups, codec, server_id)
        if msg.code == Code.FETCH:
            if event.observe == 1:
                self._forget_spanning(event.relation)
            return self._read_all(groups, msg.accept)
        if all(self._nodes[prefix].downlink is None for prefix in groups if prefix):
            return self._write_across(event, groups, codec, server_id)
        return self._write_when_heard(event, groups, codec, server_id)

    async def _write_when_heard(
        self, event: RequestReceived, groups: dict[str, list[Record]], codec: Codec, server_id: int | None
    ) -> Message:
        """A Write-Composite that names end devices hearing only at times of their own: written
        once each of them heard it."""
        if not await self._heard(groups):
            return _reply(Code.NOT_FOUND, "Write-Composite: an end device went meanwhile")
        return self._write_across(event, groups, codec, server_id)

    async def _heard(self, groups: dict[str, list[Record]]) -> bool:
        """Wait for the downlink of each end device of ``groups`` that has one; False if one of
        them is gone by then."""
        for prefix in groups:
            node = self._nodes.get(prefix) if prefix else None
            if node is not None and node.downlink is not None:
                await node.downlink()
        return all(not prefix or prefix in self._nodes for prefix in groups)

    def _write_across(
        self, event: RequestReceived, groups: dict[str, list[Record]], codec: Codec, server_id: int | None
    ) -> Message:
        """A Write-Composite over several end devices (and the gateway's own objects), all or
        nothing (LwM2M-TS-Core 1.2 §6.3.8): every part is checked by its device first, and only
        when all passed is any written."""
        writes: list[Callable[[], Message]] = []
        for prefix, part in groups.items():
            handler = self._nodes[prefix].handler if prefix else self.client.handler
            message = _part(event, codec.encode(part, ROOT, self.client.models)).message
            try:
                writes.append(handler.write_composite_part(message, server_id))
            except DeviceError as exc:
                where = f" on {prefix}" if prefix else ""
                return _reply(exc.code, f"Write-Composite{where}: {exc} (nothing written)")
        for write in writes:
            try:
                write()
            except DeviceError as exc:  # refused by the device itself (a write hook) after the checks
                return _reply(exc.code, f"Write-Composite: {exc}")
        return _reply(Code.CHANGED)

    def _observe_across(
        self, event: RequestReceived, groups: dict[str, list[Record]], codec: Codec, server_id: int | None
    ) -> Message | Awaitable[Message]:
        """An Observe-Composite over several end devices: one relation, kept by the observer of
        each end device it names, whose every notification carries the records of all of them
        (LwM2M-TS-Core 1.2 §6.4.3 with the prefixed paths of LwM2M-TS-Gateway 1.1). End devices
        that hear only at times of their own are waited for first."""
        nodes = [self._nodes[prefix] for prefix in groups]
        if all(node.downlink is None for node in nodes):
            return self._observe_now(event, groups, codec, server_id)
        return self._observe_when_heard(event, groups, codec, server_id)

    async def _observe_when_heard(
        self, event: RequestReceived, groups: dict[str, list[Record]], codec: Codec, server_id: int | None
    ) -> Message:
        if not await self._heard(groups):
            return _reply(Code.NOT_FOUND, "Observe-Composite: an end device went meanwhile")
        return self._observe_now(event, groups, codec, server_id)

    def _observe_now(
        self, event: RequestReceived, groups: dict[str, list[Record]], codec: Codec, server_id: int | None
    ) -> Message:
        key = event.relation
        self._forget_spanning(key)
        if len(self._spanning) >= MAX_SPANNING:
            return _reply(
                Code.SERVICE_UNAVAILABLE, f"more than {MAX_SPANNING} observations across end devices"
            )
        for prefix, part in groups.items():
            node = self._nodes[prefix]
            answer = node.handler(_part(event, codec.encode(part, ROOT, self.client.models)), server_id)
            if not isinstance(answer, Message) or answer.code != Code.CONTENT:
                self._drop_parts(key)
                return answer if isinstance(answer, Message) else _reply(Code.INTERNAL_SERVER_ERROR)
        answer = self._read_all(groups, event.message.accept)
        if answer.code != Code.CONTENT or answer.content_format is None:
            self._drop_parts(key)
            return answer
        paths = {prefix: tuple(r.path for r in part) for prefix, part in groups.items()}
        self._spanning[key] = _Spanning(paths, answer.content_format)
        # The Observe option tells the endpoint to keep the relation (RFC 7641 §4.1).
        return answer.with_option(OptionNumber.OBSERVE, 0)

    def _notify(self, key: RelationKey, message: Message, confirmable: bool) -> bool:
        """A notification of an end device's observer, sent as the gateway's are; one of an
        Observe-Composite across end devices carries the records of all of them."""
        spanning = self._spanning.get(key)
        if spanning is not None:
            groups = {
                prefix: [Record(p) for p in paths]
                for prefix, paths in spanning.paths.items()
                if prefix in self._nodes
            }
            content = self._read_all(groups, spanning.fmt)
            if content.code == Code.CONTENT:
                message = message.replace(payload=content.payload)
        alive = self.client.notify(key, message, confirmable)
        if not alive:
            self._forget_spanning(key)
        return alive

    def _forget_spanning(self, key: RelationKey) -> None:
        if self._spanning.pop(key, None) is not None:
            self._drop_parts(key)

    def _drop_parts(self, key: RelationKey) -> None:
        for node in self._nodes.values():
            node.reporter.observer.remove(key)

    def _read_all(self, groups: dict[str, list[Record]], accept: int | None) -> Message:
        handler = self.client.handler
        try:
            fmt = handler.response_format(accept, composite=True)
        except DeviceError as exc:
            return _reply(exc.code, str(exc))
        found: list[Record] = []
        for prefix, part in groups.items():
            tree = self._nodes[prefix].tree if prefix else self.client.tree
            for r in part:
                try:
                    found += [replace(x, path=x.path.with_prefix(prefix)) for x in tree.read(r.path)]
                except NotFound:
                    continue  # a composite read leaves out what does not exist
                except DeviceError as exc:
                    return _reply(exc.code, str(exc))
        try:
            return Message.build(
                Type.ACK, Code.CONTENT, content_format=fmt, payload=handler.encode(found, ROOT, fmt)
            )
        except DeviceError as exc:
            return _reply(exc.code, str(exc))

    def cancelled(self, relation: RelationKey) -> None:
        self._spanning.pop(relation, None)
        self._drop_parts(relation)

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()

    async def stop(self, *, deregister: bool = True) -> None:
        for node in self._nodes.values():
            node.reporter.close()
            node.timer.close()
        await self.client.stop(deregister=deregister)

    async def wait_registered(self, timeout: float | None = None) -> None:
        await self.client.wait_registered(timeout)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _when_heard(node: _Node, event: RequestReceived, server_id: int | None) -> Message:
    assert node.downlink is not None
    await node.downlink()
    answer = node.handler(event, server_id)
    return answer if isinstance(answer, Message) else await answer


def _awake() -> bool:
    return False


def _reply(code: int, diagnostic: str = "") -> Message:
    return Message(Type.ACK, as_code(code), payload=diagnostic.encode())


def _part(event: RequestReceived, payload: bytes) -> RequestReceived:
    """``event`` with the composite payload of one end device's part (paths without prefix)."""
    return replace(event, message=event.message.replace(payload=payload))
