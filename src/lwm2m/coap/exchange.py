"""Per-exchange records of the endpoint: our CON transmissions, our requests, per-peer NSTART state,
the Message IDs seen per peer."""

from __future__ import annotations

from collections import deque
from typing import Any

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type

INF = float("inf")
EMPTY_ACK = 0x60  # first header byte of an empty ACK (version 1, type 2, no token)
EMPTY_RST = 0x70


def empty(first_byte: int, mid: int) -> bytes:
    """An empty ACK or RST for ``mid`` (RFC 7252 §4.1)."""
    return bytes((first_byte, 0, mid >> 8, mid & 0xFF))


class Transmission:
    """A CON message of ours awaiting ACK or RST (RFC 7252 §4.2): retransmitted with back-off."""

    __slots__ = ("addr", "data", "deadline", "live", "mid", "owner", "retries", "timeout", "token")

    def __init__(
        self, addr: Any, mid: int, token: bytes, data: bytes, owner: Any, timeout: float, now: float
    ):
        self.addr = addr
        self.mid = mid
        self.token = token
        self.data = data
        self.owner = owner  # OutgoingRequest, Relation (CON notification) or None (separate response)
        self.timeout = timeout
        self.deadline = now + timeout
        self.retries = 0
        self.live = True


class OutgoingRequest:
    """A request of ours, from request() until its final response (or, observing, until cancel)."""

    __slots__ = (
        "addr",
        "b1_offset",
        "b1_sent",
        "b1_szx",
        "b2_buf",
        "b2_etag",
        "b2_first",
        "b2_szx",
        "con",
        "counted",
        "deadline",
        "live",
        "obs_seq",
        "obs_time",
        "observe",
        "observing",
        "parent",
        "parent_seq",
        "request",
        "token",
        "tx",
    )

    def __init__(self, addr: Any, token: bytes, request: Message) -> None:
        self.addr = addr
        self.token = token
        self.request = request  # as the application gave it, token and first message ID filled
        self.con = request.type is Type.CON
        self.tx: Transmission | None = None
        self.counted = False  # holds one of the peer's NSTART slots
        self.deadline = INF  # response wait (NON request, or after an empty ACK)
        self.live = True
        self.observe = request.code in (Code.GET, Code.FETCH) and request.observe == 0
        self.observing = False  # the registration was accepted: later responses are notifications
        self.obs_seq = 0
        self.obs_time = 0.0
        self.b1_offset = 0  # Block1: offset of the block in flight, its length and size exponent
        self.b1_sent = 0
        self.b1_szx = 0
        self.b2_buf: bytearray | None = None  # Block2 body received so far
        self.b2_first: Message | None = None
        self.b2_etag: bytes | None = None
        self.b2_szx = 0  # block size of a Block2 fetch that starts from a first block we got
        self.parent: OutgoingRequest | None = None  # set on a Block2 fetch for an observation (RFC 7959 §2.6)
        self.parent_seq: int | None = None  # the notification's sequence; None: the registration response


class PeerState:
    """NSTART accounting for one peer (RFC 7252 §4.7): CON requests in flight, and the queue."""

    __slots__ = ("inflight", "queue")

    def __init__(self) -> None:
        self.inflight = 0
        self.queue: deque[OutgoingRequest] = deque()


class SeenMessages:
    """One peer's recent Message IDs in one generation of duplicate detection (RFC 7252 §4.5).

    ``expires`` maps a Message ID to the time its exchange ends; ``replies`` holds the
    ACK or RST to send again for a duplicate CON. ``older`` is the same peer's record in
    the older generation, while that generation lasts. Ints, floats and bytes only: the
    garbage collector has nothing to follow per message.
    """

    __slots__ = ("addr", "expires", "older", "replies")

    def __init__(self, addr: Any, older: SeenMessages | None) -> None:
        # The peer's address as first seen: one tuple per peer for every event and key.
        self.addr = addr if older is None else older.addr
        self.expires: dict[int, float] = {}
        self.replies: dict[int, bytes] = {}
        self.older = older
