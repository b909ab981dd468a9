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
from dataclasses import dataclass

from lwm2m.client.config import ClientConfig
from lwm2m.client.core.device import Device
from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.observer import RelationKey
from lwm2m.client.reporting import Reporter
from lwm2m.client.role import Client
from lwm2m.client.timer import LoopTimer
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import GatewayError, InvalidPath
from lwm2m.model.path import check_prefix
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.gateway import DEVICE_ID, GATEWAY_OBJECT, IOT_DEVICE_OBJECTS, PREFIX
from lwm2m.protocol.registration import ObjectList

MAX_END_DEVICES = 1000  # behind one gateway, as the server keeps at most (protocol.gateway)


@dataclass(frozen=True, slots=True)
class _Node:
    """One end device: its objects, the handler that answers for them, its observations."""

    tree: ObjectTree
    handler: RequestHandler
    reporter: Reporter
    timer: LoopTimer
    instance: ObjectInstance  # its /25 instance on the gateway


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
        self.client = Client(endpoint, server, objects, models=models, config=config, on_request=on_request)
        self._nodes: dict[str, _Node] = {}
        self.client.routes = self

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
    ) -> ObjectTree:
        """An end device behind the gateway, reached at ``/prefix/...``: its objects (a Device
        object 3 is added when not given), its /25 instance with ``device_id`` (the prefix when
        not given). Its tree is returned. GatewayError for a bad or taken prefix."""
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
            client.notify,
            # An end device's notifications go out as the gateway's do; in queue mode they are
            # not held while the gateway sleeps (see README, "LwM2M Gateway").
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
        node = _Node(tree, handler, reporter, timer, record)
        self._nodes[prefix] = node
        self._describe(node)
        tree.on_structure = lambda: self._describe(node)
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

    @staticmethod
    def _describe(node: _Node) -> None:
        # /25/x/3: the end device's objects in the Registration payload's form (object 25 v2.0).
        links = ObjectList(node.tree.object_links()).to_payload().decode()
        node.instance.set(IOT_DEVICE_OBJECTS, links)

    # --- routing (PrefixRoutes) -----------------------------------------------------------------

    def route(self, event: RequestReceived, server_id: int | None) -> Message | Awaitable[Message] | None:
        """The answer of the end device named by the first Uri-Path segment; None for a request
        to the gateway's own objects (a first segment that is a number, or none)."""
        segments = event.message.uri_path
        if not segments or segments[0].isdigit() or segments[0] == "":
            return None
        node = self._nodes.get(segments[0])
        if node is None:
            if segments[0] in ("rd", "bs", "dp"):
                return None  # not a path of an object: the client's own answer (4.04 or 4.05)
            return Message(
                Type.ACK, Code.NOT_FOUND, payload=f"no end device with prefix {segments[0]!r:.40}".encode()
            )
        return node.handler(event, server_id)

    def cancelled(self, relation: RelationKey) -> None:
        for node in self._nodes.values():
            node.reporter.observer.remove(relation)

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


def _awake() -> bool:
    return False
