"""The client's observations: when to notify, by the attributes of LwM2M-TS-Core 1.2 §5.1.2.

A value change (``ObjectInstance.set``) or a timer leads to a notification when:

- at least ``pmin`` seconds have passed since the last one (else it waits for pmin);
- for a numeric resource with ``gt``, ``lt`` or ``st``: the value crossed ``gt``
  or ``lt``, or moved by ``st`` or more since the last notified value;
- for a boolean resource with ``edge``: it went false→true (edge=1) or true→false (0);
- without those: any change.

``pmax`` sends the current state when nothing was sent for that long (if pmax
is not below pmin). ``epmin`` is the shortest time between two evaluations of
a change; ``epmax`` the longest, after which the value is read again (so a
resource whose ``read`` samples a sensor is noticed without ``set``).
``con=1`` makes notifications confirmable. Attributes set at object or
instance level are inherited (§5.1.1); what no level sets comes from the
Server object's Default Minimum/Maximum Period (/1/x/2, /1/x/3).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, as_code
from lwm2m.codec.base import ContentFormat
from lwm2m.errors import DeviceError
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import Attributes

if TYPE_CHECKING:
    from lwm2m.client.handler import RequestHandler
    from lwm2m.client.instance import ObjectInstance

log = logging.getLogger(__name__)

RelationKey = tuple[Any, bytes]  # (peer address, token), as the CoAP endpoint names a relation
Emit = Callable[[RelationKey, Message, bool], bool]  # (relation, notification, confirmable) -> alive


class _Relation:
    __slots__ = (
        "composite",
        "fmt",
        "key",
        "last_eval",
        "last_payload",
        "last_sent",
        "last_value",
        "paths",
        "pending",
        "periodic",
        "poll",
        "prev_value",
    )

    def __init__(
        self, key: RelationKey, paths: tuple[Path, ...], fmt: ContentFormat, composite: bool
    ) -> None:
        self.key = key
        self.paths = paths
        self.fmt = fmt
        self.composite = composite
        self.last_sent = 0.0
        self.last_eval = 0.0
        self.last_value: Any = None  # the last notified value of a single-value resource
        self.prev_value: Any = None  # its value at the last evaluation (for edge)
        self.last_payload = b""
        self.pending: asyncio.TimerHandle | None = None  # a change waiting for pmin or epmin
        self.periodic: asyncio.TimerHandle | None = None  # pmax
        self.poll: asyncio.TimerHandle | None = None  # epmax

    def cancel_timers(self) -> None:
        for h in (self.pending, self.periodic, self.poll):
            if h is not None:
                h.cancel()
        self.pending = self.periodic = self.poll = None

    def covers(self, changed: Path) -> bool:
        return any(p.startswith(changed) or changed.startswith(p) for p in self.paths)


class Observer:
    """Observe relations of one client and their notification timing.

    ``emit(relation, message, confirmable)`` sends a notification and says
    whether the relation still exists; ``defaults()`` gives the attributes that
    apply where no level sets one (pmin/pmax of the Server object). With
    ``server_of(relation)`` (the Short Server ID of the server that observes), each
    relation follows its own server's attributes and ``defaults(server_id)`` (§5.1.1).
    """

    def __init__(
        self,
        handler: RequestHandler,
        emit: Emit,
        *,
        defaults: Callable[..., Attributes] = Attributes,
        server_of: Callable[[RelationKey], int | None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.handler = handler
        self._emit = emit
        self._defaults = defaults
        self._server_of = server_of
        self._loop = loop or asyncio.get_event_loop()
        self._relations: dict[RelationKey, _Relation] = {}
        self._by_object: dict[int, set[RelationKey]] = {}
        self._dirty: set[RelationKey] = set()
        self._flush_scheduled = False
        self.sent = 0

    def __len__(self) -> int:
        return len(self._relations)

    @property
    def relations(self) -> list[tuple[RelationKey, tuple[Path, ...]]]:
        return [(r.key, r.paths) for r in self._relations.values()]

    # --- relations ------------------------------------------------------------------------

    def add(self, key: RelationKey, paths: tuple[Path, ...], fmt: ContentFormat, composite: bool) -> None:
        """A relation the handler just answered (the answer counts as the first notification)."""
        self.remove(key)
        r = _Relation(key, paths, fmt, composite)
        self._relations[key] = r
        for oid in {p.ids[0] for p in paths if p.ids}:
            self._by_object.setdefault(oid, set()).add(key)
        now = self._loop.time()
        r.last_sent = r.last_eval = now
        r.last_value = r.prev_value = self._value(r)
        r.last_payload = self._payload(r)
        self._arm(r, self._attributes(r), now)

    def remove(self, key: RelationKey) -> None:
        r = self._relations.pop(key, None)
        if r is None:
            return
        r.cancel_timers()
        for oid in {p.ids[0] for p in r.paths if p.ids}:
            keys = self._by_object.get(oid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_object[oid]

    def close(self) -> None:
        for key in list(self._relations):
            self.remove(key)

    # --- what changes ---------------------------------------------------------------------

    def value_changed(self, instance: ObjectInstance, resource_id: int) -> None:
        keys = self._by_object.get(instance.definition.id)
        if not keys:
            return
        changed = Path.of(instance.definition.id, instance.id, resource_id)
        for key in keys:
            r = self._relations.get(key)
            if r is not None and r.covers(changed):
                self._dirty.add(key)
        if self._dirty and not self._flush_scheduled:
            # Changes made in one step of the loop (a Location fix, a firmware state and its
            # result) make one notification, not one per resource.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_changes)

    def _flush_changes(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            r = self._relations.get(key)
            if r is not None:
                self._changed(r)

    def removed(self, path: Path) -> None:
        """``path`` (an instance) is gone: its single-path observations end with 4.04 (RFC 7641 §3.2)."""
        for r in list(self._relations.values()):
            if not r.composite and r.paths[0].startswith(path):
                self._emit(r.key, Message(Type.ACK, Code.NOT_FOUND), False)
                self.remove(r.key)

    def attributes_changed(self, path: Path) -> None:
        now = self._loop.time()
        for r in list(self._relations.values()):
            if r.covers(path):
                r.cancel_timers()
                self._arm(r, self._attributes(r), now)

    # --- timing -------------------------------------------------------------------------------

    def _attributes(self, r: _Relation) -> Attributes:
        if self._server_of is None:
            server, defaults = None, self._defaults()
        else:
            server = self._server_of(r.key)
            defaults = self._defaults(server)
        if r.composite:
            return defaults
        return self.handler.effective_attributes(r.paths[0], defaults, server)

    def _changed(self, r: _Relation) -> None:
        attrs = self._attributes(r)
        now = self._loop.time()
        if attrs.epmin and now - r.last_eval < attrs.epmin:
            if r.pending is None:
                r.pending = self._loop.call_at(r.last_eval + attrs.epmin, self._evaluate_later, r.key)
            return
        self._evaluate(r, attrs, now)

    def _evaluate_later(self, key: RelationKey) -> None:
        r = self._relations.get(key)
        if r is not None:
            r.pending = None
            self._evaluate(r, self._attributes(r), self._loop.time())

    def _evaluate(self, r: _Relation, attrs: Attributes, now: float) -> None:
        r.last_eval = now
        if not self._conditions(r, attrs):
            return
        due = r.last_sent + (attrs.pmin or 0)
        if due <= now:
            self._send(r, now)
        elif r.pending is None:
            r.pending = self._loop.call_at(due, self._send_later, r.key)

    def _send_later(self, key: RelationKey) -> None:
        r = self._relations.get(key)
        if r is not None:
            r.pending = None
            self._send(r, self._loop.time())

    def _conditions(self, r: _Relation, attrs: Attributes) -> bool:
        """Whether the change of a relation's value meets its gt/lt/st/edge (§5.1.2)."""
        if r.composite or (attrs.gt is None and attrs.lt is None and attrs.st is None and attrs.edge is None):
            return True
        new = self._value(r)
        old = r.last_value
        if isinstance(new, bool):
            # edge compares with the value before this change, notified or not.
            before, r.prev_value = r.prev_value, new
            if attrs.edge is None or not isinstance(before, bool):
                return new != old
            return new != before and new is bool(attrs.edge)
        if not isinstance(new, int | float) or not isinstance(old, int | float):
            return new != old
        if attrs.gt is not None and (old <= attrs.gt) != (new <= attrs.gt):
            return True
        if attrs.lt is not None and (old < attrs.lt) != (new < attrs.lt):
            return True
        return attrs.st is not None and abs(new - old) >= attrs.st

    def _arm(self, r: _Relation, attrs: Attributes, now: float) -> None:
        pmax, pmin = attrs.pmax, attrs.pmin or 0
        if pmax and pmax >= pmin:
            r.periodic = self._loop.call_at(r.last_sent + pmax, self._send_later, r.key)
        if attrs.epmax:
            r.poll = self._loop.call_at(now + attrs.epmax, self._poll, r.key)

    def _poll(self, key: RelationKey) -> None:
        """epmax: read the value again and treat a difference as a change."""
        r = self._relations.get(key)
        if r is None:
            return
        r.poll = None
        attrs = self._attributes(r)
        now = self._loop.time()
        if self._payload(r) != r.last_payload:
            self._evaluate(r, attrs, now)
        else:
            r.last_eval = now
        if r.poll is None and key in self._relations and attrs.epmax:
            r.poll = self._loop.call_at(now + attrs.epmax, self._poll, key)

    def _send(self, r: _Relation, now: float) -> None:
        if r.pending is not None:
            r.pending.cancel()
            r.pending = None
        try:
            message = self._content(r)
        except DeviceError as exc:
            # The resource went away or can no longer be read: the error ends the relation.
            self._emit(r.key, Message(Type.ACK, as_code(exc.code), payload=str(exc).encode()), False)
            self.remove(r.key)
            return
        attrs = self._attributes(r)
        if not self._emit(r.key, message, attrs.con == 1):
            self.remove(r.key)
            return
        self.sent += 1
        r.last_sent = now
        r.last_payload = message.payload
        r.last_value = self._value(r)
        if r.periodic is not None:
            r.periodic.cancel()
            r.periodic = None
        pmax, pmin = attrs.pmax, attrs.pmin or 0
        if pmax and pmax >= pmin:
            r.periodic = self._loop.call_at(now + pmax, self._send_later, r.key)

    def _content(self, r: _Relation) -> Message:
        if self._server_of is not None:
            # The notification is served to the relation's server: a Read of a whole object
            # shows it only the instances it may read (LwM2M-TS-Core 1.2 §7.3.2).
            self.handler.server_id = self._server_of(r.key)
        return self.handler.content(r.paths, r.fmt, r.composite)

    def _value(self, r: _Relation) -> Any:
        """The value of a single-value resource relation (None for anything else)."""
        path = r.paths[0]
        if r.composite or len(path.ids) < 3:
            return None
        inst = self.handler.tree.instance(path.ids[0], path.ids[1])
        if inst is None:
            return None
        try:
            value = inst.read(path.ids[2])
        except DeviceError:
            return None
        if isinstance(value, dict):
            return value.get(path.ids[3]) if len(path.ids) == 4 else None
        return value

    def _payload(self, r: _Relation) -> bytes:
        try:
            return self._content(r).payload
        except DeviceError:
            return b""
