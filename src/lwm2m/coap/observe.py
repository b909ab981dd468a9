"""RFC 7641 observe: the client's freshness rule and the server's relation record."""

from __future__ import annotations

from typing import Any

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

    def __init__(self, addr: Any, token: bytes, cache_key: tuple, now: float) -> None:
        self.addr = addr
        self.token = token
        self.cache_key = cache_key  # the request's identity, to serve Block2 follow-ups (RFC 7959 §2.6)
        self.seq = 0
        self.tx: Any = None  # the CON notification in flight, if any (RFC 7641 §4.5.2)
        self.last_con = now  # RFC 7641 §4.5: confirm the client is still there every 24 h

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % SEQUENCE_MODULUS
        return self.seq
