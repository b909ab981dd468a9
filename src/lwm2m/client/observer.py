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

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lwm2m.client.timer import IMMEDIATELY
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

# What a relation's ``pending`` deadline does when it comes.
_EVALUATE = 1  # a change held back by epmin: evaluate it
_SEND = 2  # a notification held back by pmin: send it


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
        "pending_kind",
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
        # Timers as deadlines (loop-clock seconds), None when not armed.
        self.pending: float | None = None  # a change waiting for pmin or epmin
        self.pending_kind = 0  # _EVALUATE or _SEND
        self.periodic: float | None = None  # pmax
        self.poll: float | None = None  # epmax

    def cancel_timers(self) -> None:
        self.pending = self.periodic = self.poll = None

    def covers(self, changed: Path) -> bool:
        return any(p.startswith(changed) or changed.startswith(p) for p in self.paths)

    def next_deadline(self) -> float | None:
        best: float | None = None
        for t in (self.pending, self.periodic, self.poll):
            if t is not None and (best is None or t < best):
                best = t
        return best


class Observer:
    """Observe relations of one client and their notification timing.

    ``emit(relation, message, confirmable)`` sends a notification and says
    whether the relation still exists; ``defaults()`` gives the attributes that
    apply where no level sets one (pmin/pmax of the Server object). With
    ``server_of(relation)`` (the Short Server ID of the server that observes), each
    relation follows its own server's attributes and ``defaults(server_id)`` (§5.1.1).

    Sans-IO (DESIGN.md): it never reads a clock. New relations, attribute changes and value
    changes are taken in at the next ``handle_timer(now)``, which also sends what pmin, pmax,
    epmin and epmax make due; ``get_timer()`` is when to call it next (:data:`IMMEDIATELY`
    while inputs wait). Timers are deadlines kept as data, so a notification costs no timer
    handle of the event loop. ``on_timer()`` is called when ``get_timer()`` became earlier through an
    input, so the driver (the client's loop) can call ``handle_timer`` sooner.
    """

    def __init__(
        self,
        handler: RequestHandler,
        emit: Emit,
        *,
        defaults: Callable[..., Attributes] = Attributes,
        server_of: Callable[[RelationKey], int | None] | None = None,
        on_timer: Callable[[], None] | None = None,
    ) -> None:
        self.handler = handler
        self._emit = emit
        self._defaults = defaults
        self._server_of = server_of
        self._on_timer = on_timer
        self._relations: dict[RelationKey, _Relation] = {}
        self._by_object: dict[int, set[RelationKey]] | None = None  # made by the first relation
        # Dicts as ordered sets (an empty dict is 64 bytes, an empty set 216), made when first
        # needed: most clients of a fleet are never observed.
        self._dirty: dict[RelationKey, None] | None = None  # relations whose values changed
        self._new: dict[RelationKey, None] | None = None  # relations just made, to start
        self._rearm: dict[RelationKey, None] | None = None  # relations whose attributes changed
        self._immediate = False  # inputs wait for handle_timer
        self._earliest: float | None = None  # no deadline of any relation is before this
        self.sent = 0

    def __len__(self) -> int:
        return len(self._relations)

    @property
    def relations(self) -> list[tuple[RelationKey, tuple[Path, ...]]]:
        return [(r.key, r.paths) for r in self._relations.values()]

    # --- the driver's side ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When ``handle_timer`` is due next: IMMEDIATELY, a deadline, or None for never. It may
        be early (a deadline dropped since): then ``handle_timer`` finds nothing and moves it on."""
        return IMMEDIATELY if self._immediate else self._earliest

    def handle_timer(self, now: float) -> None:
        """Take in what changed, then send what is due at ``now``."""
        if self._immediate:
            self._immediate = False
            new, self._new = self._new or {}, None
            for key in new:
                r = self._relations.get(key)
                if r is not None:
                    r.last_sent = r.last_eval = now
                    self._arm(r, self._attributes(r), now)
            rearm, self._rearm = self._rearm or {}, None
            for key in rearm:
                if key in new:
                    continue  # armed above
                r = self._relations.get(key)
                if r is not None:
                    self._arm(r, self._attributes(r), now)
            # Changes made in one step of the loop (a Location fix, a firmware state and its
            # result) make one notification, not one per resource.
            dirty, self._dirty = self._dirty or {}, None
            for key in dirty:
                r = self._relations.get(key)
                if r is not None:
                    self._changed(r, now)
        earliest = self._earliest
        if earliest is None or earliest > now:
            return  # nothing due: no pass over the relations
        self._earliest = None
        for r in list(self._relations.values()):
            t = r.next_deadline()
            while t is not None and t <= now and self._relations.get(r.key) is r:
                self._fire(r, now)
                t = r.next_deadline()
            if t is not None and self._relations.get(r.key) is r:
                self._armed(t)

    def _armed(self, t: float) -> None:
        """A deadline was set: ``_earliest`` stays a lower bound of them all (a deadline dropped
        or moved later leaves it early: that handle_timer finds nothing due and moves it on)."""
        if self._earliest is None or t < self._earliest:
            self._earliest = t

    def _wake(self) -> None:
        if not self._immediate:
            self._immediate = True
            if self._on_timer is not None:
                self._on_timer()

    # --- relations ------------------------------------------------------------------------

    def add(self, key: RelationKey, paths: tuple[Path, ...], fmt: ContentFormat, composite: bool) -> None:
        """A relation the handler just answered (the answer counts as the first notification:
        its time is that of the next ``handle_timer``)."""
        self.remove(key)
        r = _Relation(key, paths, fmt, composite)
        self._relations[key] = r
        by_object = self._by_object
        if by_object is None:
            by_object = self._by_object = {}
        for oid in {p.ids[0] for p in paths if p.ids}:
            by_object.setdefault(oid, set()).add(key)
        r.last_value = r.prev_value = self._value(r)
        r.last_payload = self._payload(r)
        if self._new is None:
            self._new = {}
        self._new[key] = None
        self._wake()

    def remove(self, key: RelationKey) -> None:
        r = self._relations.pop(key, None)
        if r is None:
            return
        r.cancel_timers()
        if not self._relations:
            self._earliest = None
        for waiting in (self._new, self._rearm, self._dirty):
            if waiting is not None:
                waiting.pop(key, None)
        by_object = self._by_object
        if by_object is None:
            return
        for oid in {p.ids[0] for p in r.paths if p.ids}:
            keys = by_object.get(oid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del by_object[oid]

    def close(self) -> None:
        for key in list(self._relations):
            self.remove(key)

    # --- what changes ---------------------------------------------------------------------

    def value_changed(self, instance: ObjectInstance, resource_id: int) -> None:
        by_object = self._by_object
        if by_object is None:
            return  # never observed: what a fleet's devices mostly are
        keys = by_object.get(instance.definition.id)
        if not keys:
            return
        changed = Path.of(instance.definition.id, instance.id, resource_id)
        for key in keys:
            r = self._relations.get(key)
            if r is not None and r.covers(changed):
                if self._dirty is None:
                    self._dirty = {}
                self._dirty[key] = None
        if self._dirty:
            self._wake()

    def removed(self, path: Path) -> None:
        """``path`` (an instance) is gone: its single-path observations end with 4.04 (RFC 7641 §3.2)."""
        for r in list(self._relations.values()):
            if not r.composite and r.paths[0].startswith(path):
                self._emit(r.key, Message(Type.ACK, Code.NOT_FOUND), False)
                self.remove(r.key)

    def attributes_changed(self, path: Path) -> None:
        for r in self._relations.values():
            if r.covers(path):
                if self._rearm is None:
                    self._rearm = {}
                self._rearm[r.key] = None
        if self._rearm:
            self._wake()

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

    def _fire(self, r: _Relation, now: float) -> None:
        """The earliest of the relation's deadlines came."""
        t = r.next_deadline()
        if t == r.pending:
            kind, r.pending = r.pending_kind, None
            if kind == _EVALUATE:
                self._evaluate(r, self._attributes(r), now)
            else:
                self._send(r, now)
        elif t == r.periodic:
            r.periodic = None
            self._send(r, now)
        else:
            self._poll(r, now)

    def _changed(self, r: _Relation, now: float) -> None:
        attrs = self._attributes(r)
        if attrs.epmin and now - r.last_eval < attrs.epmin:
            if r.pending is None:
                r.pending, r.pending_kind = r.last_eval + attrs.epmin, _EVALUATE
                self._armed(r.pending)
            return
        self._evaluate(r, attrs, now)

    def _evaluate(self, r: _Relation, attrs: Attributes, now: float) -> None:
        r.last_eval = now
        if not self._conditions(r, attrs):
            return
        due = r.last_sent + (attrs.pmin or 0)
        if due <= now:
            self._send(r, now)
        elif r.pending is None:
            r.pending, r.pending_kind = due, _SEND
            self._armed(due)

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
        """(Re)start a relation's timers: at its start (the answer was its first notification,
        §5.1.2 counts pmin and pmax from it) and when its attributes change."""
        r.cancel_timers()
        pmax, pmin = attrs.pmax, attrs.pmin or 0
        if pmax and pmax >= pmin:
            r.periodic = r.last_sent + pmax
            self._armed(r.periodic)
        if attrs.epmax:
            r.poll = now + attrs.epmax
            self._armed(r.poll)

    def _poll(self, r: _Relation, now: float) -> None:
        """epmax: read the value again and treat a difference as a change."""
        r.poll = None
        attrs = self._attributes(r)
        if self._payload(r) != r.last_payload:
            self._evaluate(r, attrs, now)
        else:
            r.last_eval = now
        if r.poll is None and self._relations.get(r.key) is r and attrs.epmax:
            r.poll = now + attrs.epmax
            self._armed(r.poll)

    def _send(self, r: _Relation, now: float) -> None:
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
        r.periodic = None
        pmax, pmin = attrs.pmax, attrs.pmin or 0
        if pmax and pmax >= pmin:
            r.periodic = now + pmax
            self._armed(r.periodic)

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
