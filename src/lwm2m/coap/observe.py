"""RFC 7641 observe: the client's freshness rule, and the server's relations with their records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lwm2m.coap.exchange import Transmission

SEQUENCE_MODULUS = 1 << 24  # the Observe value is 24 bits (RFC 7641 §4.4)
_HALF = 1 << 23
FRESHNESS_WINDOW = 128.0  # seconds (RFC 7641 §3.4)
REGISTER = 0
DEREGISTER = 1


def is_fresh(v1: int, t1: float, v2: int, t2: float) -> bool:
    """Whether notification (v2 at t2) is newer than the last one seen (v1 at t1), RFC 7641 §3.4.

    Sequence numbers wrap at 2**24; a difference below 2**23 counts as newer. After
    128 s any notification is taken as newer, since the numbers may have wrapped.
    """
    return (v1 < v2 and v2 - v1 < _HALF) or (v1 > v2 and v1 - v2 > _HALF) or t2 > t1 + FRESHNESS_WINDOW


class Relation:
    """A server-side observation: one client (addr) and the token of its registration."""

    __slots__ = ("addr", "cache_key", "last_con", "seq", "token", "tx")

    def __init__(self, addr: Any, token: bytes, cache_key: tuple[Any, ...], now: float) -> None:
        self.addr = addr
        self.token = token
        self.cache_key = cache_key  # the request's identity, to serve Block2 follow-ups (RFC 7959 §2.6)
        self.seq = 0
        self.tx: Transmission | None = None  # the CON notification in flight, if any (RFC 7641 §4.5.2)
        self.last_con = now  # RFC 7641 §4.5: confirm the client is still there every 24 h

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % SEQUENCE_MODULUS
        return self.seq


class Relations:
    """The server side's observation relations (RFC 7641 §4.1), keyed by (addr, token), within
    the caps on relations in all, per peer, and on peers with any."""

    __slots__ = ("_max_observations", "_max_peers", "_max_per_peer", "per_peer", "table")

    def __init__(self, max_observations: int, max_per_peer: int, max_peers: int) -> None:
        self._max_observations = max_observations
        self._max_per_peer = max_per_peer
        self._max_peers = max_peers
        self.table: dict[tuple[Any, bytes], Relation] = {}
        self.per_peer: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.table)

    def get(self, key: tuple[Any, bytes]) -> Relation | None:
        return self.table.get(key)

    def add(
        self, addr: Any, token: bytes, cache_key: tuple[Any, ...], now: float
    ) -> tuple[Relation | None, Relation | None]:
        """Register an observation: (the new relation, or None when ``addr`` has no room for
        one; the oldest relation, evicted to make room for it, or None)."""
        per_peer = self.per_peer.get(addr, 0)
        if per_peer >= self._max_per_peer or (per_peer == 0 and len(self.per_peer) >= self._max_peers):
            return None, None
        evicted = None
        if len(self.table) >= self._max_observations:
            evicted = next(iter(self.table.values()))
            self.remove(evicted)
        rel = Relation(addr, token, cache_key, now)
        self.table[(addr, token)] = rel
        self.per_peer[addr] = self.per_peer.get(addr, 0) + 1
        return rel, evicted

    def remove(self, rel: Relation) -> bool:
        """Forget ``rel``; False if it was no longer registered."""
        key = (rel.addr, rel.token)
        if self.table.get(key) is not rel:
            return False
        del self.table[key]
        n = self.per_peer[rel.addr] - 1
        if n:
            self.per_peer[rel.addr] = n
        else:
            del self.per_peer[rel.addr]
        return True

    def current(self, rel: Relation) -> bool:
        """Whether ``rel`` is still the registered relation of its (addr, token)."""
        return self.table.get((rel.addr, rel.token)) is rel
