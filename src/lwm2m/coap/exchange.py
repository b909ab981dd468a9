"""Our outgoing exchanges: CON transmissions with retransmission, NON messages an RST may answer,
the requests we wait on, per-peer NSTART accounting, tokens and Message IDs (RFC 7252 §4.2-§4.4,
§4.7, §5.3.1), with one deadline heap for all of them."""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from typing import Any, Protocol

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type

INF = float("inf")
EMPTY_ACK = 0x60  # first header byte of an empty ACK (version 1, type 2, no token)
EMPTY_RST = 0x70


def empty(first_byte: int, mid: int) -> bytes:
    """An empty ACK or RST for ``mid`` (RFC 7252 §4.1)."""
    return bytes((first_byte, 0, mid >> 8, mid & 0xFF))


class Timed(Protocol):
    """What the deadline heap holds: an entry is current while live with its deadline unchanged."""

    live: bool
    deadline: float


class Transmission:
    """A CON message of ours awaiting ACK or RST (RFC 7252 §4.2): retransmitted with back-off."""

    __slots__ = ("addr", "data", "deadline", "live", "mid", "owner", "retries", "timeout", "token")

    def __init__(
        self, addr: Any, mid: int, token: bytes, data: bytes, owner: Any, timeout: float, now: float
    ) -> None:
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
        "blocks",
        "con",
        "counted",
        "deadline",
        "handle",
        "live",
        "obs_seq",
        "obs_time",
        "observe",
        "observing",
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
        self.blocks: BlockState | None = None  # made by the first block-wise transfer it has
        self.handle: Any = None  # the application's, handed back with its events (Endpoint.request)

    def transfer(self) -> BlockState:
        """The state of its block-wise transfer, made now if it had none."""
        blocks = self.blocks
        if blocks is None:
            blocks = self.blocks = BlockState()
        return blocks


class BlockState:
    """What one request keeps for a block-wise transfer (RFC 7959), made for the requests that
    have one: a request without (an observation's, held as long as it runs) carries one slot
    for it rather than nine."""

    __slots__ = (
        "b1_offset",
        "b1_sent",
        "b1_szx",
        "b2_buf",
        "b2_etag",
        "b2_first",
        "b2_szx",
        "parent",
        "parent_seq",
    )

    def __init__(self) -> None:
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


class Exchanges:
    """The endpoint's outgoing side as state: what it sent and waits on, and when to act.

    ``tx``: (addr, Message ID) -> our CON awaiting ACK/RST. ``non_sent``: (addr, Message ID) ->
    (expiry, owner) for NON messages an RST may still answer (NON_LIFETIME). ``requests``:
    (addr, token) -> our open request. ``peers``: NSTART state of peers with CON requests in
    flight or queued. The deadline heap holds transmissions (retransmission due) and requests
    (response wait); entries are dropped lazily once no longer current.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        ack_timeout: float = 2.0,
        ack_random_factor: float = 1.5,
        max_retransmit: int = 4,
        nstart: int = 1,
        non_lifetime: float = 145.0,
        max_non_sent: int = 100_000,
        token_length: int = 8,
    ) -> None:
        self._rng = rng
        self._ack_timeout = ack_timeout
        self._ack_random_factor = ack_random_factor
        self._max_retransmit = max_retransmit
        self.nstart = nstart
        self._non_lifetime = non_lifetime
        self._max_non_sent = max_non_sent
        self._token_length = token_length
        self._next_mid = rng.randrange(0x10000)
        self.tx: dict[tuple[Any, int], Transmission] = {}
        # Made for the first NON message kept (an empty OrderedDict is 128 bytes, per endpoint).
        self.non_sent: OrderedDict[tuple[Any, int], tuple[float, Any]] | None = None
        # Our requests by token where the token is ours alone (every token we make is: see
        # new_token), else by (address, token): a token the application chose, or an empty one.
        # A request at a million observations is then one key less (the tuple is 56 bytes);
        # find() checks the address, so a response from another peer matches nothing.
        self.requests: dict[bytes | tuple[Any, bytes], OutgoingRequest] = {}
        self.peers: dict[Any, PeerState] = {}
        self.heap: list[tuple[float, int, Any]] = []
        self._seq = 0  # heap tie-breaker

    # --- identifiers (RFC 7252 §4.4, §5.3.1) ---------------------------------------------------

    def alloc_mid(self) -> int:
        mid = self._next_mid
        self._next_mid = (mid + 1) & 0xFFFF
        return mid

    def new_token(self, addr: Any) -> bytes:
        """A random token not in use with any peer (empty when tokens are configured off)."""
        n = self._token_length
        requests = self.requests
        while True:
            token = self._rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""
            if not n or (token not in requests and (addr, token) not in requests):
                return token

    # --- our requests by token (RFC 7252 §5.3.2: a response matches the token and the peer) -----

    def find(self, addr: Any, token: bytes) -> OutgoingRequest | None:
        """Our request with ``token`` at ``addr``, if any."""
        requests = self.requests
        req = requests.get(token)
        if req is not None and req.addr == addr:
            return req
        return requests.get((addr, token))

    def put(self, req: OutgoingRequest) -> None:
        """Keep ``req`` (none with its token at its address is kept: the caller dropped it)."""
        token = req.token
        requests = self.requests
        if token and token not in requests:
            requests[token] = req
        else:
            requests[(req.addr, token)] = req

    def take(self, req: OutgoingRequest) -> None:
        """Forget ``req`` (if it is kept)."""
        requests = self.requests
        token = req.token
        if requests.get(token) is req:
            del requests[token]
        else:
            key = (req.addr, token)
            if requests.get(key) is not req:
                return
            del requests[key]
        if not requests:
            requests.clear()  # an emptied dict keeps its table (160 bytes) until cleared

    # --- CON transmissions (RFC 7252 §4.2) -------------------------------------------------------

    def add_tx(self, addr: Any, mid: int, token: bytes, data: bytes, owner: Any, now: float) -> Transmission:
        # §4.2: the first timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
        timeout = self._ack_timeout * (1.0 + (self._ack_random_factor - 1.0) * self._rng.random())
        tx = Transmission(addr, mid, token, data, owner, timeout, now)
        self.tx[(addr, mid)] = tx
        self.push(tx.deadline, tx)
        return tx

    def kill_tx(self, tx: Transmission) -> None:
        tx.live = False
        key = (tx.addr, tx.mid)
        txs = self.tx
        if txs.get(key) is tx:
            del txs[key]
            if not txs:
                txs.clear()  # an emptied dict keeps its table (160 bytes) until cleared

    def pop_tx(self, addr: Any, mid: int) -> Transmission | None:
        """The transmission an empty ACK or RST for ``mid`` ends, taken out (None if unknown)."""
        txs = self.tx
        tx = txs.pop((addr, mid), None)
        if tx is not None:
            tx.live = False
            if not txs:
                txs.clear()
        return tx

    def back_off(self, tx: Transmission, now: float) -> bool:
        """Plan the next retransmission of ``tx``; False (and ``tx`` ended) when MAX_RETRANSMIT
        is reached. The caller sends ``tx.data`` again on True."""
        if tx.retries >= self._max_retransmit:
            self.kill_tx(tx)
            return False
        # §4.2: double the timeout at every retransmission.
        tx.retries += 1
        tx.timeout *= 2
        tx.deadline = now + tx.timeout
        self.push(tx.deadline, tx)
        return True

    def replace_tx(self, old: Transmission, new: Transmission, now: float) -> None:
        """``new`` takes over the retransmission counter and timeout of ``old``, which ends
        (RFC 7641 §4.5.2: a newer notification replaces the one still being retransmitted)."""
        self.kill_tx(old)
        new.retries = old.retries
        new.timeout = old.timeout
        new.deadline = now + old.timeout
        self.push(new.deadline, new)

    # --- deadlines ---------------------------------------------------------------------------------

    def push(self, deadline: float, obj: Timed) -> None:
        heap = self.heap
        if len(heap) > 1024 and len(heap) > 4 * (len(self.tx) + len(self.requests)):
            # Drop entries of finished transmissions, so the heap tracks live state only.
            heap[:] = [e for e in heap if e[2].live and e[2].deadline == e[0]]
            heapq.heapify(heap)
        self._seq += 1
        heapq.heappush(heap, (deadline, self._seq, obj))

    def next_deadline(self) -> float:
        """The earliest current deadline (inf: none)."""
        heap = self.heap
        while heap:
            deadline, _, obj = heap[0]
            if obj.live and obj.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return INF

    def pop_due(self, now: float) -> Transmission | OutgoingRequest | None:
        """The next transmission or request whose deadline has come by ``now``, taken off the heap."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(heap)
            if obj.live and obj.deadline == deadline:
                return obj  # type: ignore[no-any-return]
        return None

    # --- NON messages (RFC 7252 §4.3) --------------------------------------------------------------

    def remember_non(self, addr: Any, mid: int, owner: Any, now: float) -> float | None:
        """Keep NON message ``mid`` for NON_LIFETIME, so an RST to it finds ``owner``; returns
        its expiry (None: nothing kept, the message has no owner)."""
        if owner is None:
            return None
        non_sent = self.non_sent
        if non_sent is None:
            non_sent = self.non_sent = OrderedDict()
        if len(non_sent) >= self._max_non_sent:
            non_sent.popitem(last=False)
        expires = now + self._non_lifetime
        non_sent[(addr, mid)] = (expires, owner)
        return expires

    def pop_non(self, addr: Any, mid: int) -> Any:
        """The owner of our NON message ``mid`` to ``addr``, forgotten (None if unknown)."""
        non_sent = self.non_sent
        entry = None if non_sent is None else non_sent.pop((addr, mid), None)
        return None if entry is None else entry[1]

    def expire(self, now: float) -> None:
        """Forget NON messages whose lifetime is over."""
        non_sent = self.non_sent
        while non_sent:  # (None until the first NON kept)
            key, entry = non_sent.popitem(last=False)
            if entry[0] > now:
                non_sent[key] = entry
                non_sent.move_to_end(key, last=False)
                break

    def next_expiry(self) -> float:
        """When ``expire`` next has something to forget (inf: nothing held)."""
        non_sent = self.non_sent
        return next(iter(non_sent.values()))[0] if non_sent else INF

    # --- NSTART (RFC 7252 §4.7) ------------------------------------------------------------------

    def peer(self, addr: Any) -> PeerState:
        peer = self.peers.get(addr)
        if peer is None:
            peer = self.peers[addr] = PeerState()
        return peer

    def take_slot(self, req: OutgoingRequest) -> None:
        """``req`` (a CON just sent) holds one of its peer's NSTART slots until released."""
        if not req.counted:
            req.counted = True
            self.peer(req.addr).inflight += 1

    def release_slot(self, req: OutgoingRequest) -> PeerState | None:
        """Give back ``req``'s NSTART slot; the peer whose queue may now move, if any."""
        if not req.counted:
            return None
        req.counted = False
        peer = self.peers.get(req.addr)
        if peer is None:
            return None
        peer.inflight -= 1
        return peer

    def next_queued(self, peer: PeerState) -> OutgoingRequest | None:
        """The next live queued request ``peer`` has room for, taken off its queue."""
        while peer.queue and peer.inflight < self.nstart:
            nxt = peer.queue.popleft()
            if nxt.live:
                return nxt
        return None

    def forget_idle(self, addr: Any, peer: PeerState) -> None:
        peers = self.peers
        if peer.inflight <= 0 and not peer.queue and peers.get(addr) is peer:
            del peers[addr]
            if not peers:
                peers.clear()

    def unqueue(self, req: OutgoingRequest) -> None:
        """Take ``req`` (holding no slot) off its peer's queue, if it waits there."""
        peer = self.peers.get(req.addr)
        if peer is not None and req in peer.queue:
            peer.queue.remove(req)
            self.forget_idle(req.addr, peer)
