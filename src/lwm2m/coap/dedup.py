"""Duplicate detection (RFC 7252 §4.5): a Message ID seen from a peer within EXCHANGE_LIFETIME
(CON) or NON_LIFETIME (NON) is a duplicate; a duplicate CON gets the same ACK or RST again, a
duplicate NON is dropped.

Two generations of per-peer records keyed by Message ID: the current one takes new entries;
when it is full (half of ``max_entries``) or has lived its span it becomes the older one and
the one before goes whole. Expiry is still checked on every lookup, so it is exact; the memory
goes in bulk, with no per-message bookkeeping. Per message there is one lookup by address and
the rest by Message ID (an int: no tuple to build or hash), and nothing is stored that the
garbage collector would have to follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_INF = float("inf")


class SeenMessages:
    """One peer's recent Message IDs in one generation of duplicate detection.

    ``older`` is the same peer's record in the older generation, while that generation lasts.
    Most peers send one message in a generation (a device's Register, an Update): its Message
    ID, expiry and reply are slots of the record (``mid``, ``exp``, ``reply``). From the second
    message on, ``expires`` maps each Message ID to the time its exchange ends and ``replies``
    holds the ACK or RST to send again for a duplicate CON: two dicts, ~450 bytes, that a
    million peers with a message each would otherwise hold. Ints, floats and bytes only: the
    garbage collector has nothing to follow per message.
    """

    __slots__ = ("addr", "exp", "expires", "mid", "older", "replies", "reply")

    def __init__(self, addr: Any, older: SeenMessages | None) -> None:
        # The peer's address as first seen: one tuple per peer for every event and key.
        self.addr: Any = addr if older is None else older.addr
        self.older = older
        self.mid = -1  # the one Message ID held while ``expires`` is None (-1: none yet)
        self.exp = _INF
        self.reply: bytes | None = None
        self.expires: dict[int, float] | None = None
        self.replies: dict[int, bytes] | None = None

    def expiry(self, mid: int) -> float | None:
        """When the exchange of message ``mid`` ends, if it is held."""
        expires = self.expires
        if expires is None:
            return self.exp if mid == self.mid else None
        return expires.get(mid)

    def add(self, mid: int, exp: float) -> None:
        expires = self.expires
        if expires is not None:
            expires[mid] = exp
        elif self.mid < 0 or self.mid == mid:
            self.mid, self.exp = mid, exp
        else:  # a second message: the dicts from now on
            self.expires = {self.mid: self.exp, mid: exp}
            self.replies = {} if self.reply is None else {self.mid: self.reply}
            self.mid, self.reply = -1, None

    def keep_reply(self, mid: int, reply: bytes) -> bool:
        """Hold ``reply`` for message ``mid``; False when ``mid`` is not held here."""
        expires = self.expires
        if expires is None:
            if mid != self.mid:
                return False
            self.reply = reply
            return True
        if mid not in expires:
            return False
        assert self.replies is not None
        self.replies[mid] = reply
        return True

    def reply_for(self, mid: int) -> bytes:
        """The reply held for message ``mid`` (``b""``: none)."""
        if self.expires is None:
            reply = self.reply if mid == self.mid else None
        else:
            assert self.replies is not None
            reply = self.replies.get(mid)
        return b"" if reply is None else reply

    def drop_reply(self, mid: int) -> None:
        if self.expires is None:
            if mid == self.mid:
                self.reply = None
        else:
            assert self.replies is not None
            self.replies.pop(mid, None)

    def forget(self, mid: int) -> None:
        """Message ``mid`` as if never seen here."""
        if self.expires is None:
            if mid == self.mid:
                self.mid, self.exp, self.reply = -1, _INF, None
        else:
            assert self.replies is not None
            self.expires.pop(mid, None)
            self.replies.pop(mid, None)


class Deduplicator:
    """The Message IDs seen per peer, in two generations, with the replies to replay.

    ``rx_at`` is the time of the latest datagram, set by the endpoint for every one: no
    Message ID was recorded after it. ``on_rotate(now)`` is called after a new generation
    started while recording, so that the owner can re-plan its expiry timer; ``rotated`` is set
    then too, for an owner that looks after recording instead (and clears it).
    """

    __slots__ = (
        "_con_lifetime",
        "_exp_at",
        "_exp_con",
        "_exp_non",
        "_non_lifetime",
        "_on_rotate",
        "count",
        "current",
        "due",
        "half",
        "old_count",
        "old_until",
        "older",
        "rotated",
        "rx_at",
        "span",
    )

    def __init__(
        self,
        con_lifetime: float,
        non_lifetime: float,
        max_entries: int,
        on_rotate: Callable[[float], None] | None = None,
    ) -> None:
        self._con_lifetime = con_lifetime
        self._non_lifetime = non_lifetime
        self._on_rotate = on_rotate
        self.current: dict[Any, SeenMessages] = {}
        self.older: dict[Any, SeenMessages] = {}
        self.count = 0  # entries added to the current generation
        self.old_count = 0
        self.span = max(con_lifetime, non_lifetime)
        self.half = max(1, max_entries // 2)
        self.due = -_INF  # when the current generation has lived ``span``
        self.old_until = _INF  # when every entry of the older generation has expired
        self.rx_at = -_INF
        self.rotated = False
        # The expiries of Message IDs recorded at _exp_at (CON, NON): one float object shared by
        # the entries of a batch of datagrams (the transport reads a batch at one ``now``), not
        # one per entry. Under a flood these entries are the bulk of the small objects alive at
        # once; the fewer they are, the fewer of CPython's arenas the flood fills, and the fewer
        # stay held by some survivor once the entries have gone.
        self._exp_at = -_INF
        self._exp_con = self._exp_non = -_INF

    def __len__(self) -> int:
        return self.count + self.old_count

    def record(self, addr: Any, mid: int, con: bool, now: float) -> SeenMessages | bytes | None:
        """Record message ``mid`` from ``addr`` arriving at ``now``, unless it is a duplicate.

        Returns the peer's record (a new message), or, for a duplicate, the reply to send again
        (``b""`` when there is none: a NON, or a CON not answered yet) -- None when the
        duplicate is a NON, which is dropped silently."""
        if self.count >= self.half or now >= self.due:
            self.rotate(now)
            self.rotated = True
            if self._on_rotate is not None:
                self._on_rotate(now)
        seen = self.current.get(addr)
        if seen is None:
            seen = self.current[addr] = SeenMessages(addr, self.older.get(addr))
        expires = seen.expires
        if (mid in expires if expires is not None else mid == seen.mid) or (
            (older := seen.older) is not None and older.expiry(mid) is not None
        ):
            reply = self._duplicate(seen, mid, now)
            if reply is not None:
                return reply if con else None
        self.count += 1
        if now != self._exp_at:
            self._expiries(now)
        if expires is not None:
            expires[mid] = self._exp_con if con else self._exp_non
        else:
            seen.add(mid, self._exp_con if con else self._exp_non)
        return seen

    def _duplicate(self, seen: SeenMessages, mid: int, now: float) -> bytes | None:
        """The reply to replay if ``mid`` came within its lifetime (``b""``: none yet), else None."""
        holder = seen
        expires = seen.expiry(mid)
        if expires is None:
            if seen.older is None:
                return None
            holder = seen.older
            expires = holder.expiry(mid)
            if expires is None:
                return None
        if expires <= now:
            # Over: the ID is new again, and the reply to the old message must not answer it.
            holder.drop_reply(mid)
            return None
        return holder.reply_for(mid)

    def _expiries(self, now: float) -> None:
        """The expiries of the Message IDs recorded at ``now`` (§4.5: EXCHANGE_LIFETIME for a CON,
        NON_LIFETIME for a NON)."""
        self._exp_at = now
        self._exp_con = now + self._con_lifetime
        self._exp_non = now + self._non_lifetime

    def cache_reply(self, addr: Any, mid: int, reply: bytes) -> None:
        """Keep ``reply`` (an ACK or RST) to replay for duplicates of message ``mid``."""
        seen = self.current.get(addr)
        if seen is None:
            seen = self.older.get(addr)
        while seen is not None:
            if seen.keep_reply(mid, reply):
                return
            seen = seen.older
        # Gone with its generation already: nothing to replay.

    def forget(self, addr: Any, mid: int) -> None:
        """Message ``mid`` from ``addr`` as if never seen: the next one with that ID is new (a
        message left unanswered on purpose, whose retransmission must be handled afresh)."""
        seen = self.current.get(addr)
        if seen is None:
            seen = self.older.get(addr)
        while seen is not None:
            seen.forget(mid)
            seen = seen.older

    def rotate(self, now: float) -> None:
        """Start a new generation; the current one becomes the older one.

        Called when the current one is full (the older one's entries go, expired or not: the
        cap wins) or has lived ``span`` (the older one's entries have all expired; if two spans
        have passed, the current one's too).
        """
        if now >= self.due + self.span or self.rx_at + self.span <= now:
            self.older = {}
            self.old_count = 0
            self.old_until = _INF
        else:
            self.older = old = self.current
            self.old_count = self.count
            # Its entries were all recorded by the latest datagram: gone one span after it.
            self.old_until = self.rx_at + self.span
            for seen in old.values():
                seen.older = None  # the generation before is gone
        self.current = {}
        self.count = 0
        self.due = now + self.span

    def expire(self, now: float) -> None:
        """Forget what has expired by ``now``; run from the owner's timer, whether or not
        datagrams keep coming."""
        if self.count or self.old_count:
            if self.rx_at + self.span <= now:
                # Nothing has arrived for a whole span: every entry of both generations has
                # expired (§4.5); the next datagram starts a new generation.
                self.current = {}
                self.older = {}
                self.count = self.old_count = 0
                self.due = -_INF
                self.old_until = _INF
            elif now >= self.due:
                self.rotate(now)
                self.expire(now)  # again, with the generations settled
            elif self.old_count and now >= self.old_until:
                self.older = {}
                self.old_count = 0
                self.old_until = _INF
                for seen in self.current.values():
                    seen.older = None
        elif now >= self.due or self.rx_at + self.span <= now:
            self.due = -_INF  # an empty generation has had its time: the next datagram starts one

    def next_expiry(self) -> float:
        """When ``expire`` next has something to do (inf: nothing held)."""
        at = _INF
        if self.due != -_INF:
            at = min(self.due, self.rx_at + self.span)
        if self.old_count and self.old_until < at:
            at = self.old_until
        return at
