"""Object instances on the client: resource values and the handlers the server's operations call.

An object is a Python class: subclass :class:`ObjectInstance`, name the object
with ``object_id`` (its definition comes from the catalogue), and override
``read``, ``write`` or ``execute`` where the device does something real::

    class Lamp(ObjectInstance):
        object_id = 3311

        def write(self, resource_id, value, *, replace=True):
            super().write(resource_id, value, replace=replace)
            if resource_id == 5850:
                gpio.set(value)

The base class is also the generic in-memory instance for any catalogued
object: ``ObjectInstance(0, {5700: 21.5}, object_id=3303)``. Device-side
changes go through :meth:`ObjectInstance.set`, which triggers notifications
for the server's observations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, cast

from lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from lwm2m.model.catalogue import catalogue_definition
from lwm2m.model.definition import ObjectDefinition, ResourceDefinition
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import (
    INT64_MAX,
    INT64_MIN,
    ObjLink,
    ResourceType,
    Value,
    check_value,
    values_equal,
)

ResourceValue = Value | dict[int, Value]  # a multiple resource: resource instance ID -> value
ChangeListener = Callable[["ObjectInstance", int], None]

_DEFAULTS: dict[ResourceType, Value] = {
    ResourceType.STRING: "",
    ResourceType.CORELNK: "",
    ResourceType.INTEGER: 0,
    ResourceType.UNSIGNED_INTEGER: 0,
    ResourceType.TIME: 0,
    ResourceType.FLOAT: 0.0,
    ResourceType.BOOLEAN: False,
    ResourceType.OPAQUE: b"",
    ResourceType.OBJLNK: ObjLink(0xFFFF, 0xFFFF),  # the null link
}


def default_value(resource: ResourceDefinition) -> Value | None:
    """The zero value of a resource's type (None for executables)."""
    return _DEFAULTS.get(resource.type)


_PLAIN = frozenset({str, int, float, bool, bytes})  # value types that are never a Mapping
# The Python type check_value hands back unchanged for a resource of each type (an int only
# within the type's range, checked apart).
_OWN_TYPE: dict[ResourceType, type] = {
    ResourceType.STRING: str,
    ResourceType.CORELNK: str,
    ResourceType.FLOAT: float,
    ResourceType.BOOLEAN: bool,
    ResourceType.OPAQUE: bytes,
    ResourceType.INTEGER: int,
    ResourceType.TIME: int,
    ResourceType.UNSIGNED_INTEGER: int,
}
_UNSIGNED = ResourceType.UNSIGNED_INTEGER


def _own(r: ResourceDefinition, value: Any) -> bool:
    """Whether ``value`` is of the single resource ``r``'s own Python type (an int within 64
    bits, not negative for an unsigned one): what check_value would hand back unchanged, so
    the start and set_number store it without the check."""
    kind = type(value)
    return (
        not r.multiple
        and _OWN_TYPE.get(r.type) is kind
        and (kind is not int or (INT64_MIN <= value <= INT64_MAX and (value >= 0 or r.type is not _UNSIGNED)))
    )


class ObjectInstance:
    """One object instance: its resource values, and handlers for read, write and execute.

    ``values`` maps resource IDs to values; a multiple resource takes a
    ``{instance_id: value}`` dict (or a list, numbered from 0). Mandatory
    readable resources missing from ``values`` start at their type's zero value,
    so that a generic instance answers a Read of its object like a device would.
    """

    # Thousands per simulated fleet: no dict of attributes (a subclass may still have one).
    __slots__ = ("_layout", "_listener", "_values", "definition", "id")

    object_id: ClassVar[int | None] = None
    version: ClassVar[str | None] = None  # None: the newest version the registry holds
    # Executable resources this class acts on (beside the mandatory ones of the definition).
    executable: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        instance_id: int = 0,
        values: Mapping[int, Any] | None = None,
        *,
        object_id: int | None = None,
        definition: ObjectDefinition | None = None,
        models: ObjectRegistry | None = None,
    ) -> None:
        if definition is None:
            oid = object_id if object_id is not None else type(self).object_id
            if oid is None:
                raise TypeError(f"{type(self).__name__} needs an object_id or a definition")
            version = type(self).version
            definition = models.get(oid, version) if models else catalogue_definition(oid, version)
            if definition is None:
                raise ValueError(f"object {oid} is not in the model registry: give its definition")
        if not 0 <= instance_id <= 65534:
            raise ValueError(f"invalid instance ID {instance_id}: must be 0..65534")
        self.definition = definition
        self.id = instance_id
        self._listener: ChangeListener | None = None
        family = _family(definition)
        initial = dict(family.zeros)  # the mandatory readable resources, at their zero values
        if values:
            own = family.own
            for rid, v in values.items():
                # _own inline: a device's start sets dozens of values, nearly all of their
                # resource's own type (the least an int of that resource may be beside it).
                kind = type(v)
                spec = own.get(rid)
                if spec is not None and spec[0] is kind and (kind is not int or spec[1] <= v <= INT64_MAX):
                    initial[rid] = v
                else:
                    initial[rid] = self._checked(rid, v)
        # The values sit in a list, in the order of a layout that instances holding the same
        # resources share (None: absent): a list of pointers is a third of a dict of the values.
        layout = self._layout = family.layout(initial)
        self._values = _listed(initial, layout.ids)

    # --- identity --------------------------------------------------------------------

    @property
    def object(self) -> int:
        return self.definition.id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} /{self.definition.id}/{self.id}>"

    # --- values ----------------------------------------------------------------------

    def resource_definition(self, resource_id: int) -> ResourceDefinition:
        """The definition of ``resource_id``; NotFound if the object has no such resource."""
        r = self.definition.resources.get(resource_id)
        if r is None:
            raise NotFound(
                f"/{self.definition.id}/{self.id}/{resource_id}: object has no resource {resource_id}"
            )
        return r

    def _checked(self, resource_id: int, value: Any) -> ResourceValue:
        r = self.definition.resources.get(resource_id)
        if r is not None and _own(r, value):  # a device's start sets dozens, nearly all so
            return value  # type: ignore[no-any-return]
        r = self.resource_definition(resource_id)
        if r.multiple:
            if isinstance(value, list | tuple):
                value = dict(enumerate(value))
            if not isinstance(value, Mapping):
                raise BadRequest(f"{self._path(resource_id)} is a multiple resource: give {{id: value}}")
            return shared({int(k): self._one(r, v) for k, v in sorted(value.items())})
        # A plain value first: the check against the Mapping ABC is the slow part of a set.
        if type(value) not in _PLAIN and isinstance(value, Mapping):
            raise BadRequest(f"{self._path(resource_id)} is a single resource, not a multiple one")
        return self._one(r, value)

    def _one(self, r: ResourceDefinition, value: Any) -> Value:
        if r.type is ResourceType.NONE:
            raise MethodNotAllowed(f"{self._path(r.id)} is executable: it holds no value")
        try:
            return check_value(value, r.type)
        except ValueError as exc:
            raise BadRequest(f"{self._path(r.id)}: {exc}") from None

    def _path(self, resource_id: int) -> str:
        return f"/{self.definition.id}/{self.id}/{resource_id}"

    def get(self, resource_id: int, default: Any = None) -> Any:
        """The stored value of a resource (no handler runs), or ``default``."""
        i = self._layout.index.get(resource_id)
        v = self._values[i] if i is not None else None
        return default if v is None else v

    def resource_ids(self) -> list[int]:
        """The resources this instance has: those with a value, and its executable ones."""
        ids = [rid for rid, v in zip(self._layout.ids, self._values, strict=True) if v is not None]
        executable = self.executable
        acting = [
            r.id
            for r in self.definition.resources.values()
            if r.operations.executable and (r.mandatory or r.id in executable)
        ]
        return sorted({*ids, *acting}) if acting else ids

    def has_resource(self, resource_id: int) -> bool:
        i = self._layout.index.get(resource_id)
        if i is not None and self._values[i] is not None:
            return True
        r = self.definition.resources.get(resource_id)
        return r is not None and r.operations.executable and (r.mandatory or resource_id in self.executable)

    def set(self, resource_id: int, value: Any, *, instance: int | None = None) -> None:
        """Change a value from the device side (no permission check) and notify observers.

        ``instance`` sets one instance of a multiple resource.
        """
        if instance is not None:
            r = self.resource_definition(resource_id)
            if not r.multiple:
                raise ValueError(f"{self._path(resource_id)} is not a multiple resource")
            current = dict(cast("dict[int, Value]", self.get(resource_id) or {}))
            current[instance] = self._one(r, value)
            new: ResourceValue = shared(dict(sorted(current.items())))
        else:
            new = self._checked(resource_id, value)
        i = self._place(resource_id)
        store = self._values
        old = store[i]
        store[i] = new
        if old is None or not _same(old, new):
            self.changed(resource_id)

    def set_number(self, resource_id: int, value: int | float) -> None:
        """``set(resource_id, value)`` for a number of a single resource, with less work when it
        already is the resource's own Python type (``_own``: an int within the type's range, a
        float for Float): what a simulated device moving thousands of values a second does."""
        r = self.definition.resources.get(resource_id)
        if r is None or not _own(r, value):
            self.set(resource_id, value)
            return
        kind = type(value)
        i = self._layout.index.get(resource_id)
        if i is None:
            i = self._place(resource_id)
        store = self._values
        old = store[i]
        store[i] = value
        # As _same: a value of another type, or another value (NaN equal to NaN), is a change.
        if old is None or type(old) is not kind or (old != value and not (old != old and value != value)):
            self.changed(resource_id)

    def remove(self, resource_id: int) -> None:
        """Drop an optional resource's value (it is then absent from reads)."""
        i = self._layout.index.get(resource_id)
        if i is not None and self._values[i] is not None:
            self._values[i] = None  # the place stays: a value removed often comes back
            self.changed(resource_id)

    def changed(self, resource_id: int) -> None:
        """Tell observers that ``resource_id`` changed (``set`` calls this itself)."""
        listener = self._listener
        if listener is not None:
            listener(self, resource_id)

    def attach(self, listener: ChangeListener | None) -> None:
        """Called by the client that serves this instance; ``listener`` hears every change."""
        self._listener = listener

    def values(self) -> Iterator[tuple[int, ResourceValue]]:
        """The stored values, by resource ID."""
        return iter(
            [(rid, v) for rid, v in zip(self._layout.ids, self._values, strict=True) if v is not None]
        )

    def stored(self, resource_id: int) -> ResourceValue | None:
        """The stored value of a resource, None when it has none (no handler runs)."""
        i = self._layout.index.get(resource_id)
        return None if i is None else self._values[i]

    def store(self, resource_id: int, value: ResourceValue) -> None:
        """Keep ``value`` (already checked) as it is: no observer hears of it. For a subclass
        that stores several values before telling observers, and for restoring a snapshot."""
        i = self._place(resource_id)  # first: a new place is in a new list
        self._values[i] = value

    def _place(self, resource_id: int) -> int:
        """Where the value of ``resource_id`` goes in the list, making it a place if it has none
        (the instance moves to the layout that has one; KeyError: not a resource of the object)."""
        layout = self._layout
        i = layout.index.get(resource_id)
        if i is not None:
            return i
        if resource_id not in self.definition.resources:
            raise KeyError(resource_id)
        grown = layout.grown(resource_id)
        values = self._values
        if len(grown.ids) == len(values) + 1:
            # One place more, in ID order: the list cut there (concatenation makes it exactly long).
            at = grown.index[resource_id]
            self._values = values[:at] + [None] + values[at:]  # noqa: RUF005 (unpacking over-allocates)
        else:  # the layout with a place for every resource
            self._values = _listed(dict(zip(layout.ids, values, strict=True)), grown.ids)
        self._layout = grown
        return grown.index[resource_id]

    def snapshot(self) -> dict[int, ResourceValue]:
        """A copy of the stored values (multiple resources copied too), for :meth:`restore`."""
        return {rid: dict(v) if isinstance(v, dict) else v for rid, v in self.values()}

    def restore(self, values: Mapping[int, ResourceValue]) -> None:
        """Put back the values of a :meth:`snapshot` (no handler runs, no observer hears)."""
        layout = self._layout = _family(self.definition).layout(values)
        self._values = _listed(
            {rid: dict(v) if isinstance(v, dict) else v for rid, v in values.items()}, layout.ids
        )

    # --- handlers: override these --------------------------------------------------------

    def read(self, resource_id: int) -> ResourceValue:
        """The current value of a resource, for a Read or a notification.

        Override to read a sensor; raise NotFound for a resource the device lacks.
        """
        i = self._layout.index.get(resource_id)
        v = self._values[i] if i is not None else None
        if v is None:
            raise NotFound(f"{self._path(resource_id)} is not present")
        return v

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        """Store a value the server wrote (already checked against the resource type).

        ``replace`` False on a multiple resource adds or changes the given
        instances only (partial update, LwM2M-TS-Core 1.2 §6.3.3).
        """
        if not replace and isinstance(value, dict):
            merged = dict(cast("dict[int, Value]", self.get(resource_id) or {}))
            merged.update(value)
            value = dict(sorted(merged.items()))
        self.set(resource_id, value)

    def execute(self, resource_id: int, arguments: str) -> Awaitable[None] | None:
        """Run an executable resource; ``arguments`` as the server sent them (``0='x',1``).

        The default does nothing and answers 2.04. A coroutine function may be
        used; the answer then waits for it.
        """
        return None

    def delete(self) -> None:
        """Called before the instance is removed by a Delete; raise to refuse."""


class _Layout:
    """The resources that have a place in an instance's list of values, in ID order, and where.

    Instances of one definition holding the same resources share one layout (most instances of
    a fleet's devices of one kind hold the same ones); storing a resource without a place moves
    the instance to the layout with one more, found once and kept (:meth:`grown`)."""

    __slots__ = ("_grown", "family", "ids", "index")

    def __init__(self, family: _Family, ids: tuple[int, ...]) -> None:
        self.family = family
        self.ids = ids
        self.index = {rid: i for i, rid in enumerate(ids)}
        self._grown: dict[int, _Layout] = {}

    def grown(self, resource_id: int) -> _Layout:
        found = self._grown.get(resource_id)
        if found is None:
            found = self._grown[resource_id] = self.family.layout((*self.ids, resource_id))
        return found


class _Family:
    """The layouts of one definition's instances."""

    __slots__ = ("definition", "full", "layouts", "own", "zeros")

    def __init__(self, definition: ObjectDefinition) -> None:
        self.definition = definition
        self.layouts: dict[tuple[int, ...], _Layout] = {}
        self.full = _Layout(self, tuple(definition.resources))  # a place for every resource
        # What a new instance holds before its given values: every mandatory readable resource
        # at its type's zero value (an empty multiple resource), found once per definition.
        zeros: dict[int, ResourceValue] = {}
        for r in definition.resources.values():
            if r.mandatory and r.operations.readable:
                zero = default_value(r)
                if zero is not None:
                    zeros[r.id] = _EMPTY if r.multiple else zero
        self.zeros: Mapping[int, ResourceValue] = zeros
        # For each single resource with an own Python type (_own): that type, and the least
        # value an int of it may have (0 when unsigned).
        self.own: dict[int, tuple[type, int]] = {
            r.id: (kind, 0 if r.type is _UNSIGNED else INT64_MIN)
            for r in definition.resources.values()
            if not r.multiple and (kind := _OWN_TYPE.get(r.type)) is not None
        }

    def layout(self, resource_ids: Iterable[int]) -> _Layout:
        """The layout with a place for each of ``resource_ids`` (resources of the definition)."""
        key = tuple(sorted(resource_ids))
        found = self.layouts.get(key)
        if found is None:
            if len(self.layouts) >= MAX_LAYOUTS:
                return self.full  # instances holding ever other resources: one place for each
            found = self.layouts[key] = _Layout(self, key)
        return found


def _listed(values: Mapping[int, ResourceValue | None], ids: tuple[int, ...]) -> list[ResourceValue | None]:
    """``values`` in the order of ``ids`` (None where absent), in a list of exactly that size: a
    list built by appending keeps room to grow, up to half as much again."""
    out: list[ResourceValue | None] = [None] * len(ids)
    for i, rid in enumerate(ids):
        out[i] = values.get(rid)
    return out


_FAMILIES: dict[int, _Family] = {}
MAX_LAYOUTS = 64  # layouts of one definition; then its further instances take the full one
MAX_FAMILIES = 4096  # definitions whose layouts are kept (a process loading DDF files again and again)


def _family(definition: ObjectDefinition) -> _Family:
    key = id(definition)
    found = _FAMILIES.get(key)
    if found is not None and found.definition is definition:
        return found
    if len(_FAMILIES) >= MAX_FAMILIES:
        _FAMILIES.clear()
    found = _FAMILIES[key] = _Family(definition)  # it keeps the definition alive: its id stays its own
    return found


_SHARED: dict[tuple[tuple[int, type, object], ...], dict[int, Value]] = {}
MAX_SHARED = 8192  # distinct multiple-resource values kept for sharing


def shared(value: dict[int, Value]) -> dict[int, Value]:
    """The one dict every instance holding these resource instances shares.

    A stored multiple resource is never changed in place (a change stores a new dict: ``set``,
    ``write`` and every caller copy first), so the instances of a fleet's devices can hold one
    dict for the same Power Source list or Error Code instead of one each."""
    try:
        # Floats by their hex form: -0.0 and 0.0 are equal but not the same value.
        key = tuple((k, type(v), v.hex() if type(v) is float else v) for k, v in value.items())
        found = _SHARED.get(key)
    except TypeError:  # an unhashable value: kept as it is
        return value
    if found is not None:
        return found
    if len(_SHARED) < MAX_SHARED:
        _SHARED[key] = value
    return value


_EMPTY: dict[int, Value] = shared({})


def _same(a: ResourceValue, b: ResourceValue) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
            return False
        return all(values_equal(a[k], b[k]) for k in a)
    return values_equal(a, b)


def parse_arguments(text: str) -> dict[int, str | None]:
    """Execute arguments (LwM2M-TS-Core 1.2 §5.4.5): ``0='x',1`` -> ``{0: "x", 1: None}``.

    Raises BadRequest on anything else than digits, optionally ``='value'``, comma separated.
    """
    out: dict[int, str | None] = {}
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j].isdigit():
            j += 1
        if j == i:
            raise BadRequest(f"bad execute arguments {text!r}: expected a digit at {i}")
        key = int(text[i:j])
        if key > 9:
            raise BadRequest(f"bad execute arguments {text!r}: argument numbers are 0..9")
        value: str | None = None
        if j < n and text[j] == "=":
            if j + 1 >= n or text[j + 1] != "'":
                raise BadRequest(f"bad execute arguments {text!r}: a value is written '...'")
            end = text.find("'", j + 2)
            if end < 0:
                raise BadRequest(f"bad execute arguments {text!r}: unterminated value")
            value = text[j + 2 : end]
            j = end + 1
        if key in out:
            raise BadRequest(f"bad execute arguments {text!r}: argument {key} given twice")
        out[key] = value
        if j < n:
            if text[j] != ",":
                raise BadRequest(f"bad execute arguments {text!r}: expected ',' at {j}")
            j += 1
            if j >= n:
                raise BadRequest(f"bad execute arguments {text!r}: trailing ','")
        i = j
    return out
