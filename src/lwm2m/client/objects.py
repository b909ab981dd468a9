"""The objects a client serves: instances grouped by object, and the records of any path.

:class:`ObjectTree` is what the request handler reads and writes; it knows
nothing of CoAP. Reads give :class:`~lwm2m.model.record.Record` lists in path
order, writes take them, and the errors of ``lwm2m.errors`` carry the
CoAP code of each refusal (LwM2M-TS-Core 1.2 §6.3, §6.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType

from lwm2m.client.instance import ObjectInstance, ResourceValue
from lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from lwm2m.model.definition import ObjectDefinition
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.registration import ObjectLink

InstanceFactory = Callable[[int], ObjectInstance]

# LwM2M-TS-Core 1.2 §6.2.1: Security (0) and OSCORE (21) are never listed to, nor
# reachable by, an LwM2M server; only the bootstrap server sees them.
BOOTSTRAP_ONLY_OBJECTS = frozenset({0, 21})

_NONE: Mapping[int, ObjectInstance] = MappingProxyType({})


class LwM2MObject:
    """All instances of one object, and how a Create makes a new one.

    ``factory(instance_id)`` builds the instance a Create asks for; without
    one, the class of the first instance is used if it takes the generic
    arguments, else a generic :class:`ObjectInstance`.
    """

    __slots__ = ("_held", "definition", "factory")  # a few per simulated device

    def __init__(self, definition: ObjectDefinition, factory: InstanceFactory | None = None) -> None:
        self.definition = definition
        self.factory = factory
        # Most objects of a device have one instance: held as it is, a dict (in ID order) only
        # from the second on (a dict of one is 224 bytes, and a fleet has several per device).
        self._held: ObjectInstance | dict[int, ObjectInstance] | None = None

    @property
    def id(self) -> int:
        return self.definition.id

    @property
    def instances(self) -> Mapping[int, ObjectInstance]:
        """The instances by ID, in ID order (a read-only view: :class:`ObjectTree` adds and removes)."""
        held = self._held
        if held is None:
            return _NONE
        if isinstance(held, dict):
            return MappingProxyType(held)
        return MappingProxyType({held.id: held})

    @property
    def empty(self) -> bool:
        return self._held is None

    def instance(self, instance_id: int) -> ObjectInstance | None:
        held = self._held
        if isinstance(held, dict):
            return held.get(instance_id)
        return held if held is not None and held.id == instance_id else None

    def each(self) -> Iterable[ObjectInstance]:
        """The instances in ID order."""
        held = self._held
        if held is None:
            return ()
        if isinstance(held, dict):
            return held.values()
        return (held,)

    def _put(self, instance: ObjectInstance) -> None:
        held = self._held
        if held is None:
            self._held = instance
            return
        if not isinstance(held, dict):
            held = {held.id: held}
        in_order = next(reversed(held)) < instance.id
        held[instance.id] = instance
        # Kept in ID order (reads and discovery list them so); most instances come in order.
        self._held = held if in_order else dict(sorted(held.items()))

    def _pop(self, instance_id: int) -> ObjectInstance:
        held = self._held
        if isinstance(held, dict):
            instance = held.pop(instance_id)
            if len(held) == 1:
                self._held = next(iter(held.values()))
            return instance
        if held is None or held.id != instance_id:
            raise KeyError(instance_id)
        self._held = None
        return held

    def new_instance(self, instance_id: int) -> ObjectInstance:
        if self.factory is not None:
            return self.factory(instance_id)
        return ObjectInstance(instance_id, definition=self.definition)

    def free_id(self) -> int:
        """The lowest instance ID not in use."""
        i = 0
        while self.instance(i) is not None:
            i += 1
        return i

    def __repr__(self) -> str:
        return f"<LwM2MObject {self.id} instances={sorted(self.instances)}>"


class ObjectTree:
    """The client's objects by ID.

    ``on_value(instance, resource_id)`` hears every value change;
    ``on_structure()`` hears instances added or removed (the client then
    sends an Update with its new object list, LwM2M-TS-Core 1.2 §6.2.2).
    """

    def __init__(self, models: ObjectRegistry) -> None:
        self.models = models
        self.objects: dict[int, LwM2MObject] = {}
        self.on_value: Callable[[ObjectInstance, int], None] | None = None
        self.on_structure: Callable[[], None] | None = None
        # One bound method for every instance to call, not one made per instance added.
        self._on_change = self._value_changed

    # --- building ------------------------------------------------------------------------

    def declare(
        self, definition: ObjectDefinition | int, factory: InstanceFactory | None = None
    ) -> LwM2MObject:
        """Serve an object (possibly without instances yet); returns it."""
        if isinstance(definition, int):
            found = self.models.get(definition)
            if found is None:
                raise ValueError(f"object {definition} is not in the model registry")
            definition = found
        obj = self.objects.get(definition.id)
        if obj is None:
            obj = self.objects[definition.id] = LwM2MObject(definition, factory)
            self._structure_changed()
        elif factory is not None:
            obj.factory = factory
        return obj

    def add(self, instance: ObjectInstance) -> ObjectInstance:
        obj = self.objects.get(instance.definition.id)
        if obj is None:
            obj = self.objects[instance.definition.id] = LwM2MObject(instance.definition)
        if obj.instance(instance.id) is not None:
            raise ValueError(f"instance /{obj.id}/{instance.id} exists already")
        if not obj.empty and not obj.definition.multiple:
            raise ValueError(f"object {obj.id} ({obj.definition.name}) is single-instance")
        obj._put(instance)
        instance.attach(self._on_change)
        self._structure_changed()
        return instance

    def remove(self, object_id: int, instance_id: int) -> ObjectInstance:
        obj = self.objects.get(object_id)
        if obj is None or obj.instance(instance_id) is None:
            raise NotFound(f"/{object_id}/{instance_id} does not exist")
        instance = obj._pop(instance_id)
        instance.attach(None)
        self._structure_changed()
        return instance

    def _value_changed(self, instance: ObjectInstance, resource_id: int) -> None:
        if self.on_value is not None:
            self.on_value(instance, resource_id)

    def _structure_changed(self) -> None:
        if self.on_structure is not None:
            self.on_structure()

    # --- lookup ----------------------------------------------------------------------------

    def instance(self, object_id: int, instance_id: int) -> ObjectInstance | None:
        obj = self.objects.get(object_id)
        return obj.instance(instance_id) if obj is not None else None

    def instances(self, object_id: int) -> list[ObjectInstance]:
        obj = self.objects.get(object_id)
        return list(obj.each()) if obj is not None else []

    def __iter__(self) -> Iterator[ObjectInstance]:
        for oid in sorted(self.objects):
            yield from self.objects[oid].each()

    def object_links(self, hidden: frozenset[int] = BOOTSTRAP_ONLY_OBJECTS) -> tuple[ObjectLink, ...]:
        """The Objects and Object Instances list of Register and Update (LwM2M-TS-Core 1.2 §6.2.1)."""
        links: list[ObjectLink] = []
        for oid in sorted(self.objects):
            if oid in hidden:
                continue
            obj = self.objects[oid]
            ver = obj.definition.version
            version = ver if ver not in ("", "1.0") else None
            instances = [inst.id for inst in obj.each()]
            if version is not None or not instances:
                links.append(ObjectLink(oid, None, version))
            links += [ObjectLink(oid, iid) for iid in instances]
        return tuple(links)

    def exists(self, path: Path) -> bool:
        """Whether ``path`` names something this client has."""
        ids = path.ids
        if not ids:
            return True
        obj = self.objects.get(ids[0])
        if obj is None:
            return False
        if len(ids) == 1:
            return True
        inst = obj.instance(ids[1])
        if inst is None:
            return False
        if len(ids) == 2:
            return True
        if not inst.has_resource(ids[2]):
            return False
        if len(ids) == 3:
            return True
        v = inst.get(ids[2])
        return isinstance(v, dict) and ids[3] in v

    def resolve(self, path: Path) -> tuple[LwM2MObject, ObjectInstance | None]:
        """The object and instance ``path`` names; NotFound when either is missing."""
        ids = path.ids
        obj = self.objects.get(ids[0]) if ids else None
        if obj is None:
            raise NotFound(f"{path}: no such object")
        if len(ids) < 2:
            return obj, None
        inst = obj.instance(ids[1])
        if inst is None:
            raise NotFound(f"{path}: no such object instance")
        return obj, inst

    # --- read -----------------------------------------------------------------------------

    def read(self, path: Path) -> list[Record]:
        """Records of ``path`` (object, instance, resource or resource instance) for a Read."""
        ids = path.ids
        if not ids:
            raise MethodNotAllowed("Read of the root is not an LwM2M operation")
        obj, inst = self.resolve(path)
        if inst is None:
            out: list[Record] = []
            for i in obj.each():
                out += self._instance_records(i)
            return out
        if len(ids) == 2:
            return self._instance_records(inst)
        r = inst.resource_definition(ids[2])
        if not r.operations.readable:
            raise MethodNotAllowed(f"{path} is not readable")
        value = inst.read(ids[2])
        if len(ids) == 3:
            return _records(path, value)
        if not isinstance(value, dict):
            raise NotFound(f"{path}: {path.parent} is not a multiple resource")
        if ids[3] not in value:
            raise NotFound(f"{path} does not exist")
        return [Record(path, value[ids[3]])]

    def _instance_records(self, inst: ObjectInstance) -> list[Record]:
        base = Path.of(inst.definition.id, inst.id)
        out: list[Record] = []
        resources = inst.definition.resources
        for rid in inst.resource_ids():
            r = resources.get(rid)
            if r is None or not r.operations.readable:
                continue
            try:
                value = inst.read(rid)
            except NotFound:
                continue
            out += _records(base.child(rid), value)
        return out

    # --- write ------------------------------------------------------------------------------

    def write(
        self, path: Path, records: Sequence[Record], *, replace: bool, check_access: bool = True
    ) -> None:
        """Apply a Write (replace or partial update) of ``records`` to ``path``.

        Every value is checked before any is stored, so a refused Write changes nothing.
        """
        ids = path.ids
        if len(ids) < 2:
            raise MethodNotAllowed(f"Write: {path} must be an instance, resource or resource instance")
        _, inst = self.resolve(path)
        assert inst is not None
        changes = self._group(inst, path, records, check_access)
        if len(ids) == 4:
            if len(changes) != 1:  # the payload carried no value for this resource instance
                raise BadRequest(f"Write: no value for {path}")
            ((rid, value),) = changes.items()
            inst.write(rid, value, replace=False)
            return
        if len(ids) == 3 and ids[2] not in changes:
            r = inst.resource_definition(ids[2])
            if not r.multiple:
                raise BadRequest(f"Write: no value for {path}")
            changes[ids[2]] = {}  # an empty multiple resource
        if replace and len(ids) == 2:
            # LwM2M-TS-Core 1.2 §6.3.3: a replace of an instance drops the writable
            # optional resources the payload does not carry.
            for rid in list(inst.resource_ids()):
                rd = inst.definition.resources.get(rid)
                if rd is not None and rd.operations.writable and not rd.mandatory and rid not in changes:
                    inst.remove(rid)
        for rid, value in changes.items():
            # Within an instance each resource given is replaced whole; a POST on a multiple
            # resource updates only the instances it carries.
            inst.write(rid, value, replace=replace if len(ids) == 3 else True)

    def _group(
        self, inst: ObjectInstance, path: Path, records: Sequence[Record], check_access: bool
    ) -> dict[int, ResourceValue]:
        """Records under ``path`` as ``{resource_id: value or {ri: value}}``, checked."""
        n = len(path.ids)
        out: dict[int, ResourceValue] = {}
        for rec in records:
            rids = rec.path.ids
            if rids[:n] != path.ids or len(rids) < 3:
                if len(rids) <= 2 and rec.value is None:
                    continue  # an instance record without values (empty instance)
                raise BadRequest(f"Write: record {rec.path} is not a resource under {path}")
            rid = rids[2]
            r = inst.resource_definition(rid)
            if check_access and not r.operations.writable:
                raise MethodNotAllowed(f"{rec.path} is not writable")
            if rec.value is None:
                if len(rids) == 3 and r.multiple:
                    out.setdefault(rid, {})
                    continue
                raise BadRequest(f"Write: record {rec.path} has no value")
            if len(rids) == 4:
                if not r.multiple:
                    raise BadRequest(f"{rec.path}: {rec.path.parent} is not a multiple resource")
                current = out.setdefault(rid, {})
                if not isinstance(current, dict):
                    raise BadRequest(f"Write: {rec.path.parent} given both as single and multiple")
                current[rids[3]] = inst._one(r, rec.value)
            else:
                if r.multiple:
                    raise BadRequest(f"{rec.path} is a multiple resource: write its instances")
                out[rid] = inst._one(r, rec.value)
        return out

    def create(
        self, object_id: int, records: Iterable[Record], instance_id: int | None = None
    ) -> ObjectInstance:
        """A Create: a new instance with the given values (LwM2M-TS-Core 1.2 §6.3.6)."""
        obj = self.objects.get(object_id)
        if obj is None:
            raise NotFound(f"/{object_id}: no such object")
        if instance_id is None:
            instance_id = obj.free_id()
        if obj.instance(instance_id) is not None:
            raise BadRequest(f"/{object_id}/{instance_id} exists already")
        if not obj.empty and not obj.definition.multiple:
            raise BadRequest(f"object {object_id} is single-instance and has an instance")
        if instance_id > 65534:
            raise BadRequest(f"invalid instance ID {instance_id}")
        inst = obj.new_instance(instance_id)
        path = Path.of(object_id, instance_id)
        for rid, value in self._group(inst, path, list(records), check_access=False).items():
            inst.write(rid, value)
        self.add(inst)
        return inst


def _records(path: Path, value: ResourceValue) -> list[Record]:
    if isinstance(value, dict):
        return [Record(path.child(ri), v) for ri, v in value.items()]
    return [Record(path, value)]
