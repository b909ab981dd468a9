"""Duplicate detection of the endpoint (RFC 7252 §4.5): a message ID seen from a peer within
EXCHANGE_LIFETIME (CON) or NON_LIFETIME (NON) is a duplicate; a duplicate CON gets the same
ACK or RST again, a duplicate NON is dropped.

Two generations of per-peer records keyed by message ID: the current one takes new
entries; when it is full (half of ``max_dedup_entries``) or has lived its span it becomes
the older one and the one before goes whole. Expiry is still checked on every lookup.
A mixin of :class:`~lwm2m.coap.endpoint.Endpoint`, on the state it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lwm2m.coap.exchange import SeenMessages
from lwm2m.coap.numbers import Type

_CON = Type.CON
_INF = float("inf")


class Deduplication:
    """Mixin of :class:`~lwm2m.coap.endpoint.Endpoint`: it works on the state the endpoint holds."""

    _dedup: dict[Any, SeenMessages]
    _dedup_old: dict[Any, SeenMessages]
    _dedup_count: int
    _dedup_old_count: int
    _dedup_due: float
    _dedup_span: float
    _dedup_old_until: float
    _rx_at: float
    _out: Any

    if TYPE_CHECKING:

        def _sweep(self, now: float) -> None: ...

    def _dedup_peer(self, addr: Any) -> SeenMessages:
        """The record of ``addr`` in the current duplicate-detection generation, made now."""
        seen = self._dedup[addr] = SeenMessages(addr, self._dedup_old.get(addr))
        return seen

    def _duplicate(self, seen: SeenMessages, mid: int, mtype: Type, now: float) -> bool:
        """Whether message ``mid`` from ``seen``'s peer came within its lifetime (§4.5): then a CON
        gets the same ACK or RST again (once there is one), and a NON is dropped."""
        holder: SeenMessages | None = seen
        expires = seen.expires.get(mid)
        if expires is None:
            holder = seen.older
            if holder is None:
                return False
            expires = holder.expires.get(mid)
            if expires is None:
                return False
        if expires <= now:
            # Over: the ID is new again, and the reply to the old message must not answer it.
            holder.replies.pop(mid, None)  # type: ignore[union-attr]
            return False
        if mtype is _CON:
            reply = holder.replies.get(mid)  # type: ignore[union-attr]
            if reply is not None:
                self._out.append((reply, seen.addr))
        return True

    def _rotate_dedup(self, now: float) -> None:
        """Start a new duplicate-detection generation; the current one becomes the older one.

        Called when the current one is full (the older one's entries go, expired or not:
        the cap wins) or has lived ``_dedup_span`` (the older one's entries have all expired;
        if two spans have passed, the current one's too).
        """
        if now >= self._dedup_due + self._dedup_span or self._rx_at + self._dedup_span <= now:
            self._dedup_old = {}
            self._dedup_old_count = 0
            self._dedup_old_until = _INF
        else:
            self._dedup_old = old = self._dedup
            self._dedup_old_count = self._dedup_count
            # Its entries were all recorded by the latest datagram: gone one span after it.
            self._dedup_old_until = self._rx_at + self._dedup_span
            for seen in old.values():
                seen.older = None  # the generation before is gone
        self._dedup = {}
        self._dedup_count = 0
        self._dedup_due = now + self._dedup_span
        self._sweep(now)

    def _cache_reply(self, addr: Any, mid: int, reply: bytes) -> None:
        """Keep ``reply`` (an ACK or RST) to replay for duplicates of message ``mid`` (§4.5)."""
        seen = self._dedup.get(addr)
        if seen is None:
            seen = self._dedup_old.get(addr)
        while seen is not None:
            if mid in seen.expires:
                seen.replies[mid] = reply
                return
            seen = seen.older
        # Gone with its generation already: nothing to replay.
