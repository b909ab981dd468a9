"""CON requests the application has not answered yet, and when each gets an empty ACK (RFC 7252
§5.2.2: an answer that takes time goes as a separate response after an empty ACK)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from lwm2m.coap.dedup import SeenMessages

_INF = float("inf")

Key = tuple[Any, int]  # (addr, Message ID)


class Unanswered:
    """The CON requests not answered yet, in arrival order (which is deadline order: the delay
    is constant), at most ``max_pending`` of them.

    They arrive in ``fresh``, (addr, mid) -> the duplicate-detection record holding them, a
    plain dict where an answer given at once (the common case) finds them cheaply, all with
    arrival time ``fresh_at``. The ones still there when time moves on or the timer is
    consulted go on to ``unacked``, (addr, mid) -> arrival time, an OrderedDict, whose oldest
    entry stays O(1) to reach however answers punch holes in it (in a plain dict, finding the
    first live entry would be a scan over them). The endpoint's plain request path reads
    ``fresh``, ``fresh_at`` and ``room`` directly, and calls ``make_room`` only when they say so;
    an answer takes its request out of ``fresh`` (or, held longer, ``unacked``) itself.
    """

    __slots__ = ("_delay", "_max_pending", "fresh", "fresh_at", "room", "unacked")

    def __init__(self, max_pending: int, delay: float | None) -> None:
        self._max_pending = max_pending
        # Seconds until an unanswered CON request gets an empty ACK; inf: never.
        self._delay = _INF if delay is None else delay
        self.fresh: dict[Key, SeenMessages] = {}
        self.fresh_at = -_INF
        self.unacked: OrderedDict[Key, float] = OrderedDict()
        self.room = max_pending  # entries ``fresh`` may take before ``make_room`` acts

    def __len__(self) -> int:
        return len(self.fresh) + len(self.unacked)

    def add(self, key: Key, seen: SeenMessages, now: float) -> Key | None:
        """Hold the request ``key`` that arrived at ``now``; returns the oldest one, taken out to
        make room, which is to be acknowledged now (None if there was room)."""
        evicted = None
        if now != self.fresh_at or len(self.fresh) >= self.room:
            evicted = self.make_room(now)
        self.fresh[key] = seen
        return evicted

    def make_room(self, now: float) -> Key | None:
        """Ready ``fresh`` to take a request that arrived at ``now``; the oldest request, taken out
        when ``max_pending`` are held (its answer then goes as a separate response)."""
        if now != self.fresh_at:
            self.settle()
            self.fresh_at = now
        if len(self.fresh) >= self.room:
            self.settle()
            unacked = self.unacked
            if len(unacked) >= self._max_pending:
                oldest, _ = unacked.popitem(last=False)
                self.room = self._max_pending - len(unacked)
                return oldest
        return None

    def settle(self) -> None:
        """Move the requests still unanswered in ``fresh`` to the end of ``unacked``, in order."""
        fresh = self.fresh
        if fresh:
            self.unacked.update(dict.fromkeys(fresh, self.fresh_at))
            self.fresh = {}
        self.room = self._max_pending - len(self.unacked)

    def next_due(self) -> float:
        """When the oldest request held is to be acknowledged (inf: none held)."""
        if self.fresh:
            self.settle()
        if self.unacked:
            return next(iter(self.unacked.values())) + self._delay
        return _INF

    def due(self, now: float) -> list[Key]:
        """The requests to acknowledge by ``now``, taken out, oldest first."""
        if self.fresh:
            self.settle()
        unacked = self.unacked
        delay = self._delay
        keys = []
        while unacked:
            key, arrival = next(iter(unacked.items()))
            if arrival + delay > now:
                break
            del unacked[key]
            keys.append(key)
        return keys
