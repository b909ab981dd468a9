"""Records held for a session another node may have made (a cluster node's DTLS layer).

A node of a cluster gets records for sessions it does not hold: a ``tls12_cid`` record whose
Connection ID (RFC 9146) it does not know, or an epoch-1 record (RFC 6347 §4.1) from an
address without a session, when the device's node died or the balancer moved the device. The
layer drops them today; with holding on (``DtlsLayer.hold_unknown``) it keeps them here, by CID
or by address, while the application looks the session up in the shared store, and either
hands it over (the held records are fed again) or lets them go.

Bounded whatever arrives: at most ``max_keys`` sessions sought at once, ``max_per_key``
datagrams and ``max_bytes`` bytes held in all, each held at most ``hold_time`` seconds. A key
the application let go of is refused for ``miss_time`` seconds (a negative cache of
``max_misses`` keys), so that forged records with made-up CIDs cost one store lookup per CID
and period at most, and no memory beyond these bounds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["HeldRecords", "HoldConfig"]

Key = bytes | tuple[Any, ...]  # a CID, or a peer's socket address
Outcome = Literal["new", "joined", "refused"]


@dataclass(frozen=True, slots=True)
class HoldConfig:
    """How much a layer holds for sessions it looks for (see the module docstring)."""

    max_keys: int = 256
    max_per_key: int = 8
    max_bytes: int = 256 * 1024
    hold_time: float = 2.0
    miss_time: float = 10.0
    max_misses: int = 16_384

    def __post_init__(self) -> None:
        for name, value in (
            ("max_keys", self.max_keys),
            ("max_per_key", self.max_per_key),
            ("max_bytes", self.max_bytes),
            ("max_misses", self.max_misses),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.hold_time <= 0 or self.miss_time < 0:
            raise ValueError("hold_time must be positive and miss_time not negative")


class _Waiting:
    __slots__ = ("datagrams", "until")

    def __init__(self, until: float) -> None:
        self.until = until
        self.datagrams: list[tuple[bytes, Any]] = []


class HeldRecords:
    """The datagrams held per key, oldest key first, and the keys recently let go of."""

    def __init__(self, config: HoldConfig) -> None:
        self.config = config
        self._waiting: OrderedDict[Key, _Waiting] = OrderedDict()
        self._misses: OrderedDict[Key, float] = OrderedDict()  # key -> refused until
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, key: Key) -> bool:
        return key in self._waiting

    @property
    def datagrams(self) -> int:
        return sum(len(w.datagrams) for w in self._waiting.values())

    @property
    def misses(self) -> int:
        return len(self._misses)

    def hold(self, key: Key, data: bytes, addr: Any, now: float) -> Outcome:
        """Keep ``data`` from ``addr`` under ``key``: "new" when the key was not sought yet (the
        application is to look it up), "joined" when it was, "refused" when a bound or the
        negative cache says no (the datagram is then dropped)."""
        config = self.config
        if self.bytes + len(data) > config.max_bytes:
            return "refused"
        waiting = self._waiting.get(key)
        if waiting is not None:
            if len(waiting.datagrams) >= config.max_per_key:
                return "refused"
            waiting.datagrams.append((data, addr))
            self.bytes += len(data)
            return "joined"
        until = self._misses.get(key)
        if until is not None:
            if until > now:
                return "refused"
            del self._misses[key]
        if len(self._waiting) >= config.max_keys:
            return "refused"
        waiting = self._waiting[key] = _Waiting(now + config.hold_time)
        waiting.datagrams.append((data, addr))
        self.bytes += len(data)
        return "new"

    def peek(self, key: Key) -> list[tuple[bytes, Any]]:
        """The datagrams held under ``key``, in arrival order, left held."""
        waiting = self._waiting.get(key)
        return [] if waiting is None else list(waiting.datagrams)

    def take(self, key: Key) -> list[tuple[bytes, Any]]:
        """The datagrams held under ``key``, in arrival order; the key is no more sought."""
        waiting = self._waiting.pop(key, None)
        if waiting is None:
            return []
        self.bytes -= sum(len(d) for d, _ in waiting.datagrams)
        return waiting.datagrams

    def miss(self, key: Key, now: float) -> int:
        """The application let ``key`` go: its datagrams are dropped (answered: how many) and
        the key refused for ``miss_time``."""
        dropped = len(self.take(key))
        if self.config.miss_time > 0:
            misses = self._misses
            misses.pop(key, None)
            while len(misses) >= self.config.max_misses:
                misses.popitem(last=False)
            misses[key] = now + self.config.miss_time
        return dropped

    def timer(self) -> float | None:
        """When the oldest key's hold time is over (keys are held in order of arrival)."""
        for waiting in self._waiting.values():
            return waiting.until
        return None

    def expire(self, now: float) -> int:
        """Drop the keys held for ``hold_time`` without an answer, and negative-cache entries
        that ran out; answer how many datagrams were dropped."""
        dropped = 0
        waiting = self._waiting
        while waiting:
            key, first = next(iter(waiting.items()))
            if first.until > now:
                break
            dropped += len(self.take(key))
        misses = self._misses
        while misses:
            key, until = next(iter(misses.items()))
            if until > now:
                break
            del misses[key]
        return dropped
