"""The sans-IO CoAP endpoint: RFC 7252 reliability, RFC 7959 block-wise, RFC 7641 observe.

This module holds the I/O side and transmission (duplicate detection is in ``dedup.py``); the server side
(answers, Block1/Block2 serving, observe relations) is in ``serving.py`` and the client
side (our requests and what answers them) in ``requesting.py``, as mixins of ``Endpoint``.

API (stable; the transport and the LwM2M roles code against it)
----------------------------------------------------------------

``Endpoint(config: EndpointConfig = EndpointConfig(), *, rng: random.Random | None = None)``

``EndpointConfig`` (``lwm2m.coap.config``, re-exported here) holds the RFC 7252 §4.8
transmission parameters (ack_timeout, ack_random_factor, max_retransmit, nstart,
exchange_lifetime / non_lifetime derived unless given), ``empty_ack_delay``,
``response_timeout``, the preferred block size ``block_szx``, ``max_body_size`` and
the caps on state (``max_dedup_entries``, ``max_pending_requests``, ``max_peers``,
``max_reassembly_buffers``/``_per_peer``, ``max_block_cache``, ``max_block_bytes`` for
all block-wise bodies together, ``max_observations``/``_per_peer``,
``max_queued_requests_per_peer``) and ``reassembly_lifetime``. ``rng`` makes
tokens, message IDs and retransmission jitter reproducible in tests.

State fed by the network leaves memory on time through ``handle_timer``, whether or
not more datagrams come: duplicate-detection entries one lifetime after the latest
datagram, a Block1 transfer ``reassembly_lifetime`` after its last block, a served
Block2 body EXCHANGE_LIFETIME after it was made. ``get_timer`` asks for the next such
expiry only while something is held. Over ``max_block_bytes`` a new Block1 transfer
is refused with 5.03, a block that would pass it ends its transfer with 5.03
(transfers in progress keep their bytes rather than being evicted by newcomers), the
oldest served bodies give way to a new one (their later blocks are asked of the
application again), and a Block2 fetch fails with ``RequestFailed``.

One object serves one local socket and any number of peers. It never touches a
socket or a clock: every method that needs time takes ``now: float`` (seconds,
any monotonic origin). ``addr`` is any hashable value naming the peer (a socket
address tuple for UDP). Nothing here raises on hostile input.

I/O side (the transport loop)::

    receive_datagram(data: bytes, addr, now: float) -> None
    datagrams_to_send(now: float) -> list[tuple[bytes, addr]]   # drain after every call below
    get_timer() -> float | None                                 # earliest deadline, or None
    handle_timer(now: float) -> None                            # call when now >= get_timer()
    next_event() -> Event | None                                # drain until None
    events: deque[Event]                  # the queue next_event() pops from (drain it directly)

Application side::

    request(message: Message, addr, now: float) -> bytes
        Send a request. Type CON (retransmitted with exponential back-off, at most
        ``nstart`` outstanding per peer, the rest queued) or NON (sent once; any other
        type is sent as CON). The endpoint assigns the message ID, and a token if
        ``message.token`` is empty; returns the token. A new request with the token of
        one still open (e.g. a GET with Observe=1 to deregister) replaces it. A
        payload larger than the block size goes out Block1; a Block2 response is
        fetched block by block and delivered whole. With Observe=0 the token stays
        open: the first answer is a ``ResponseReceived``, every later notification a
        ``NotificationReceived``.
        Outcome events: ResponseReceived | RequestTimedOut | ResetReceived | RequestFailed.

    respond(event: RequestReceived, response: Message, now: float) -> None
        Answer a request. The endpoint fills type, message ID and token: piggybacked
        in the ACK while the CON request is not yet acknowledged, else a separate
        CON response (RFC 7252 §5.2.2); a NON request gets a NON response. A payload
        larger than the block size goes out Block2, the later blocks served on demand.
        A 2.xx response carrying an Observe option (any value) to a registration
        (``event.observe == 0``) registers an observation; its handle is
        ``event.relation``.

    notify(relation, message: Message, now: float, *, confirmable: bool = False) -> bool
        Send a notification (the endpoint sets Observe to the next sequence number);
        CON if ``confirmable`` or ``message.type`` is CON, else NON.
        ``relation`` is ``RequestReceived.relation`` (== ``(addr, token)``). Large
        notifications carry the first block (RFC 7959 §2.6). A non-2.xx message ends
        the observation. Returns False when the relation no longer exists.

    cancel(token: bytes, addr=None) -> None
        Forget an outstanding request or a client-side observation (later
        notifications for it are answered with RST). No event follows.

    resume_observation(addr, token: bytes, now: float, request: Message | None = None) -> None
        Take up a client-side observation this endpoint did not register (e.g. one made
        before a restart and kept in storage): later notifications from ``addr`` with
        ``token`` become ``NotificationReceived`` events, the first one taken as fresh
        whatever its sequence number (RFC 7641 §3.4). ``request`` is the registration,
        used to fetch the rest of a Block2 notification (RFC 7959 §2.6); without it such
        a notification is delivered as its first block, Block2 option kept. ``cancel``
        ends it like any other observation.

    move_observation(token: bytes, addr, new_addr) -> bool
        Take the notifications of our observation ``token`` from ``new_addr`` instead of
        ``addr`` (the peer's address changed, e.g. a NAT rebinding it announced with an
        LwM2M Update). Sequence-number state is kept; answers False when there is no such
        accepted (or resumed) observation at ``addr``.

    observations() -> list[tuple[addr, bytes]]      # server-side relations, for inspection
    state_sizes() -> dict[str, int]                   # entries held, by kind, for monitoring

If the application has not answered a CON request after ``config.empty_ack_delay``
seconds, the endpoint sends an empty ACK and the answer later goes as a separate
response.

Events (``lwm2m.coap.events``, frozen dataclasses)::

    RequestReceived(addr, message, observe, block1, block2)   # Block1 already reassembled;
                                                      # .relation, .is_observe_registration
    ResponseReceived(addr, token, request, response)  # Block2 already reassembled
    NotificationReceived(addr, token, response, sequence)   # sequence None (.final): ended
    RequestTimedOut(addr, token, request)
    RequestFailed(addr, token, request, reason)       # e.g. a Block2 body over the limit
    ResetReceived(addr, token, mid)                   # an RST answered one of our messages
    ObservationCancelled(addr, token, reason)         # server side: "reset" | "deregistered" |
                                                      # "timeout" | "evicted"

Behaviour on the wire that needs no application code: duplicate detection per
(peer, message ID) for EXCHANGE_LIFETIME, replaying the cached ACK/RST for a
duplicate CON and dropping a duplicate NON; empty ACK for a separate CON response;
RST for a CON we cannot handle and for a response or notification with an unknown
token; RST for a malformed CON, silence for a malformed NON/ACK/RST and for an
unknown version (RFC 7252 §4.2, §4.3, §3); 4.02 Bad Option for unknown critical
options (§5.4.1); Block1 reassembly answering 2.31 Continue, 4.08 and 4.13 (RFC
7959 §2.3, §2.9); the RFC 7641 §3.4 freshness rule; reactive cancellation by RST
and deregistration by a GET with Observe=1 (RFC 7641 §3.6).
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from typing import Any

from lwm2m.coap.blockwise import (
    Reassembly,
    Served,
)
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.dedup import Deduplication
from lwm2m.coap.events import (
    REQUEST_TWIN,
    Event,
    ObservationCancelled,
    RequestFields,
    RequestReceived,
    request_received,
)
from lwm2m.coap.exchange import EMPTY_RST, OutgoingRequest, PeerState, SeenMessages, Transmission, empty
from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message, decode_message
from lwm2m.coap.numbers import OptionNumber, Type
from lwm2m.coap.observe import Relation
from lwm2m.coap.requesting import ClientSide
from lwm2m.coap.serving import ServerSide
from lwm2m.coap.serving import log as refusals_log
from lwm2m.errors import MessageError

__all__ = ["DEFAULT_CONFIG", "Endpoint", "EndpointConfig"]

_CON, _NON, _ACK, _RST = Type.CON, Type.NON, Type.ACK, Type.RST
_KNOWN_OPTIONS = frozenset(int(o) for o in OptionNumber)
_INF = float("inf")
_DEDUP_ENTRY = 200  # bytes a duplicate-detection entry holds, roughly (key, expiry, cached reply)
_decode = decode_message
_new = object.__new__
_RequestFields, _EV_TWIN, _request_received = RequestFields, REQUEST_TWIN, request_received


DEFAULT_CONFIG = EndpointConfig()


class Endpoint(ServerSide, ClientSide, Deduplication):
    """A CoAP endpoint without I/O; see the module docstring for the API."""

    def __init__(self, config: EndpointConfig = DEFAULT_CONFIG, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self._szx = config.block_szx
        self._block_size = config.block_size
        self._lifetime = config.exchange_lifetime
        self._max_dedup = config.max_dedup_entries
        self._max_pending = config.max_pending_requests
        self._non_lifetime = config.non_lifetime
        # Seconds until an unanswered CON request gets an empty ACK; inf: never.
        self._ack_delay = _INF if config.empty_ack_delay is None else config.empty_ack_delay
        self._critical_known = _KNOWN_OPTIONS | config.extra_critical_options
        # What takes a message off the plain request path, in decode_message's summary: not
        # being a request (bit 0), Observe, Block2, Block1, any critical option we do not
        # know, and any option number from 63 up (looked at one by one there).
        attention = 1 | (1 << 6) | (1 << 23) | (1 << 27) | (1 << 63)
        for number in range(1, 63, 2):
            if number not in self._critical_known:
                attention |= 1 << number
        self._attention = attention
        self._next_mid = self._rng.randrange(0x10000)
        self._out: list[tuple[bytes, Any]] = []
        self._events: deque[Event] = deque()
        self.events = self._events  # the queue next_event() pops from, for drivers to drain directly
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0  # heap tie-breaker
        # Duplicate detection (§4.5), in two generations of per-peer records (SeenMessages:
        # Message ID -> expiry, and the reply to replay). New entries go to the current
        # generation; the older one only answers lookups. When the current one has lived
        # ``_dedup_span`` (every entry of the older one has then expired) or holds half of
        # ``max_dedup_entries``, the older one is dropped whole and the current one takes its
        # place. Lookups check the expiry, so it is exact; the memory goes in bulk, with no
        # per-message bookkeeping. Per message there is one lookup by address and the rest by
        # Message ID (an int: no tuple to build or hash), and nothing is stored that the
        # garbage collector would have to follow.
        self._dedup: dict[Any, SeenMessages] = {}
        self._dedup_old: dict[Any, SeenMessages] = {}
        self._dedup_count = 0  # entries added to the current generation
        self._dedup_old_count = 0
        self._dedup_span = max(self._lifetime, self._non_lifetime)
        self._dedup_half = max(1, self._max_dedup // 2)
        self._dedup_due = -_INF  # when the current generation has lived _dedup_span
        self._dedup_old_until = _INF  # when every entry of the older generation has expired
        # CON requests the application has not answered yet, in arrival order (which is
        # deadline order: the delay is constant). They arrive in _fresh, (addr, mid) -> the
        # SeenMessages holding them, a plain dict where an answer given at once (the common
        # case) finds them cheaply, all with arrival time _fresh_at. The ones still there when
        # time moves on or the timer is consulted go on to _unacked, (addr, mid) -> arrival
        # time, an OrderedDict, whose oldest entry stays O(1) to reach however answers punch
        # holes in it (in a plain dict, finding the first live entry would be a scan over them).
        self._fresh: dict[tuple[Any, int], SeenMessages] = {}
        self._fresh_at = -_INF
        self._unacked: OrderedDict[tuple[Any, int], float] = OrderedDict()
        self._fresh_room = self._max_pending  # entries _fresh may take before _make_room acts
        self._tx: dict[tuple[Any, int], Transmission] = {}
        # (addr, mid) -> (expires, owner): NON messages we sent that an RST may answer
        self._non_sent: OrderedDict[tuple[Any, int], tuple[float, Any]] = OrderedDict()
        self._requests: dict[tuple[Any, bytes], OutgoingRequest] = {}
        self._peers: dict[Any, PeerState] = {}
        self._reassembly: OrderedDict[tuple, Reassembly] = OrderedDict()
        self._reasm_per_peer: dict[Any, int] = {}
        self._served: OrderedDict[tuple, Served] = OrderedDict()
        self._relations: dict[tuple[Any, bytes], Relation] = {}
        self._obs_per_peer: dict[Any, int] = {}
        # Bytes of every block-wise body held (Block1 reassembly, Block2 served and fetched),
        # against max_block_bytes.
        self._block_bytes = 0
        self._max_block_bytes = config.max_block_bytes
        self._reasm_lifetime = config.reassembly_lifetime
        # When handle_timer next has state to forget (duplicate detection, reassembly, served
        # bodies, NON messages sent): the first expiry of what is held, so that it goes on
        # time without a datagram arriving, and no timer is armed while nothing is held.
        self._sweep_at = _INF
        self._rx_at = -_INF  # the time of the latest datagram: no Message ID was recorded after it
        # The expiries of Message IDs recorded at _exp_at (CON, NON): one float object shared by
        # the entries of a batch of datagrams (the transport reads a batch at one ``now``), not
        # one per entry. Under a flood the duplicate-detection entries are the bulk of the small
        # objects alive at once; the fewer they are, the fewer of CPython's arenas the flood
        # fills, and the fewer stay held by some survivor once the entries have gone.
        self._exp_at = -_INF
        self._exp_con = self._exp_non = -_INF
        # Bytes (estimated) that handle_timer let go of so far, for the transport to know when
        # to give memory back to the system.
        self.released = 0
        self._now = 0.0  # the latest time the application or the timer told, for cancel()
        self.rejected_after_decode = 0  # well-formed datagrams whose content we could not use
        # The requests the endpoint refuses itself (4.xx, 5.xx) are logged within a budget.
        self._refusal_log = LogBudget(refusals_log)

    # === I/O side =================================================================================

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        """Everything queued for the wire since the last call, as (datagram, addr) pairs."""
        out = self._out
        if out:
            self._out = []
        return out

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest time at which ``handle_timer`` has work (retransmission, empty ACK, timeout,
        state to forget)."""
        heap = self._heap
        while heap:
            deadline, _, obj = heap[0]
            if obj.live and obj.deadline == deadline:
                break
            heapq.heappop(heap)
        best = heap[0][0] if heap else _INF
        if self._sweep_at < best:
            best = self._sweep_at
        if self._fresh:
            self._settle()
        if self._unacked:
            first = next(iter(self._unacked.values())) + self._ack_delay
            if first < best:
                best = first
        return None if best == _INF else best

    def handle_timer(self, now: float) -> None:
        """Retransmit, send due empty ACKs, time out requests and forget expired state."""
        self._now = now
        if self._fresh:
            self._settle()
        unacked = self._unacked
        delay = self._ack_delay
        while unacked:
            key, arrival = next(iter(unacked.items()))
            if arrival + delay > now:
                break
            del unacked[key]
            self._send_empty_ack(key)
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(heap)
            if not obj.live or obj.deadline != deadline:
                continue
            if isinstance(obj, Transmission):
                self._retransmit(obj, now)
            else:
                self._request_expired(obj)
        held = self._block_bytes + _DEDUP_ENTRY * (self._dedup_count + self._dedup_old_count)
        self._sweep(now)
        held -= self._block_bytes + _DEDUP_ENTRY * (self._dedup_count + self._dedup_old_count)
        if held > 0:
            self.released += held

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        """Take one datagram from ``addr``; never raises, whatever ``data`` holds."""
        try:
            msg, summary = _decode(data)
        except MessageError as exc:
            # §4.2: a malformed CON is rejected with RST; §4.3: anything else is dropped,
            # and an unknown version silently ignored (§3).
            if exc.version_ok and exc.type is _CON and exc.mid is not None:
                self._out.append((empty(EMPTY_RST, exc.mid), addr))
            return
        self._rx_at = now
        mtype = msg.type
        if not summary & self._attention:
            # The hot path, inline: a plain request (no Observe, no Block, no unknown critical
            # option), deduplicated and handed to the application. Nothing here can fail on
            # what the datagram holds.
            mid = msg.mid
            if self._dedup_count >= self._dedup_half or now >= self._dedup_due:
                self._rotate_dedup(now)
            seen = self._dedup.get(addr)
            if seen is None:
                seen = self._dedup_peer(addr)
            addr = seen.addr
            expires = seen.expires
            if (mid in expires or ((older := seen.older) is not None and mid in older.expires)) and (
                self._duplicate(seen, mid, mtype, now)
            ):
                return
            self._dedup_count += 1
            if now != self._exp_at:
                self._expiries(now)
            if mtype is _CON:
                expires[mid] = self._exp_con
                fresh = self._fresh
                if now != self._fresh_at or len(fresh) >= self._fresh_room:
                    fresh = self._make_room(now)
                fresh[(addr, mid)] = seen
            else:
                expires[mid] = self._exp_non
            if _EV_TWIN:
                ev = _new(_RequestFields)
                ev.addr = addr
                ev.message = msg
                ev.observe = ev.block1 = ev.block2 = None
                ev.__class__ = RequestReceived
                self._events.append(ev)
            else:
                self._events.append(_request_received(addr, msg))
            return
        try:
            self._dispatch(msg, addr, now)
        except (ValueError, KeyError, IndexError, TypeError, OverflowError):
            # A datagram that parses but carries nonsense (e.g. a broken option value in a
            # place we read it): treat like a malformed message rather than raise. Counted,
            # since it may also hide a bug of ours.
            self.rejected_after_decode += 1
            if msg.type is _CON:
                self._out.append((empty(EMPTY_RST, msg.mid), addr))

    # === application side (request in requesting.py; respond, notify in serving.py) =============

    def cancel(self, token: bytes, addr: Any = None) -> None:
        """Forget our request or observation with ``token`` (at ``addr``, or at any peer)."""
        if addr is not None:
            req = self._requests.get((addr, token))
            victims = [req] if req is not None else []
        else:
            victims = [r for (a, t), r in self._requests.items() if t == token]
        for req in victims:
            self._drop_request(req)

    def resume_observation(self, addr: Any, token: bytes, now: float, request: Message | None = None) -> None:
        """Deliver notifications from ``addr`` with ``token`` again (see the module docstring)."""
        self._now = now
        if request is None:
            # Code 0 marks "registration unknown": no Block2 follow-up can be built from it.
            request = Message(_CON, 0, 0, token, (), b"")
        else:
            request = Message(_CON, request.code, 0, token, request.options, request.payload)
        old = self._requests.get((addr, token))
        if old is not None:
            self._drop_request(old)
        req = OutgoingRequest(addr, token, request)
        req.observing = True
        # Nothing is known of the sequence numbers sent so far: any notification is newer
        # than "long ago" (RFC 7641 §3.4, the 128 s rule), after which the rule applies.
        req.obs_time = -_INF
        self._requests[(addr, token)] = req

    def move_observation(self, token: bytes, addr: Any, new_addr: Any) -> bool:
        """Match notifications of observation ``token`` on ``new_addr`` (see the module docstring)."""
        req = self._requests.get((addr, token))
        if req is None or not req.live or not req.observing:
            return False
        if new_addr == addr:
            return True
        other = self._requests.get((new_addr, token))
        if other is not None:
            self._drop_request(other)
        del self._requests[(addr, token)]
        # An accepted observation holds no transmission nor NSTART slot (both released with
        # the registration's answer), so the address is only its key and the peer it names.
        req.addr = new_addr
        self._requests[(new_addr, token)] = req
        return True

    def observations(self) -> list[tuple[Any, bytes]]:
        """The server-side observation relations, as ``(addr, token)`` handles."""
        return list(self._relations)

    def state_sizes(self) -> dict[str, int]:
        """How much state the endpoint holds, by kind (for monitoring and tests)."""
        return {
            "dedup": self._dedup_count + self._dedup_old_count,
            "unacked": len(self._fresh) + len(self._unacked),
            "tx": len(self._tx),
            "non_sent": len(self._non_sent),
            "requests": len(self._requests),
            "peers": len(self._peers),
            "reassembly": len(self._reassembly),
            "block_bytes": self._block_bytes,
            "served": len(self._served),
            "relations": len(self._relations),
            "heap": len(self._heap),
            "events": len(self._events),
            "out": len(self._out),
        }

    # === receiving ================================================================================

    def _dispatch(self, msg: Message, addr: Any, now: float) -> None:
        mtype = msg.type
        code = msg.code
        if mtype is _ACK:
            if code == 0:
                self._on_empty_ack(addr, msg.mid, now)
            elif 64 <= code <= 191:
                self._on_piggybacked(msg, addr, now)
            # An ACK carrying a request or a reserved code is a format error: ignored (§4.2).
            return
        if mtype is _RST:
            if code == 0:
                self._on_reset(addr, msg.mid)
            return
        if code == 0:
            # An empty CON is a "CoAP ping", answered with RST; an empty NON is meaningless (§4.3).
            if mtype is _CON:
                self._out.append((empty(EMPTY_RST, msg.mid), addr))
            return
        mid = msg.mid
        if self._dedup_count >= self._dedup_half or now >= self._dedup_due:
            self._rotate_dedup(now)
        seen = self._dedup.get(addr)
        if seen is None:
            seen = self._dedup_peer(addr)
        if self._duplicate(seen, mid, mtype, now):
            return
        addr = seen.addr
        if now != self._exp_at:
            self._expiries(now)
        expires = self._exp_con if mtype is _CON else self._exp_non
        seen.expires[mid] = expires
        self._dedup_count += 1
        # The handlers below fill in record[1], the reply to replay for a duplicate.
        record: list = [expires, None]
        try:
            if code <= 31:
                self._on_request(msg, addr, seen, record, now)
            elif 64 <= code <= 191:
                self._on_separate_response(msg, addr, record, now)
            elif mtype is _CON:
                # A reserved code class (1, 6, 7): a CON we cannot handle is rejected (§4.2).
                record[1] = rst = empty(EMPTY_RST, msg.mid)
                self._out.append((rst, addr))
        finally:
            if record[1] is not None:
                self._cache_reply(addr, mid, record[1])

    def _expiries(self, now: float) -> None:
        """The expiries of the Message IDs recorded at ``now`` (§4.5: EXCHANGE_LIFETIME for a
        CON, NON_LIFETIME for a NON)."""
        self._exp_at = now
        self._exp_con = now + self._lifetime
        self._exp_non = now + self._non_lifetime

    def _make_room(self, now: float) -> dict[tuple[Any, int], SeenMessages]:
        """_fresh, ready to take a request that arrived at ``now``."""
        if now != self._fresh_at:
            self._settle()
            self._fresh_at = now
        if len(self._fresh) >= self._fresh_room:
            self._settle()
            unacked = self._unacked
            if len(unacked) >= self._max_pending:
                # Too many unanswered requests: acknowledge the oldest now, so its answer goes
                # as a separate response and the entry can go.
                oldest, _ = unacked.popitem(last=False)
                self._send_empty_ack(oldest)
                self._fresh_room = self._max_pending - len(unacked)
        return self._fresh

    def _settle(self) -> None:
        """Move the requests still unanswered in _fresh to the end of _unacked, in order."""
        fresh = self._fresh
        if fresh:
            self._unacked.update(dict.fromkeys(fresh, self._fresh_at))
            self._fresh = {}
        self._fresh_room = self._max_pending - len(self._unacked)

    # === transmission and timers ===================================================================

    def _add_tx(self, addr: Any, mid: int, token: bytes, data: bytes, owner: Any, now: float) -> Transmission:
        cfg = self.config
        # §4.2: the first timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
        timeout = cfg.ack_timeout * (1.0 + (cfg.ack_random_factor - 1.0) * self._rng.random())
        tx = Transmission(addr, mid, token, data, owner, timeout, now)
        self._tx[(addr, mid)] = tx
        self._push(tx.deadline, tx)
        return tx

    def _kill_tx(self, tx: Transmission) -> None:
        tx.live = False
        key = (tx.addr, tx.mid)
        if self._tx.get(key) is tx:
            del self._tx[key]

    def _retransmit(self, tx: Transmission, now: float) -> None:
        if tx.retries >= self.config.max_retransmit:
            self._kill_tx(tx)
            owner = tx.owner
            if isinstance(owner, OutgoingRequest):
                if owner.tx is tx:
                    owner.tx = None
                self._request_expired(owner)
            elif isinstance(owner, Relation) and self._relations.get((owner.addr, owner.token)) is owner:
                # RFC 7641 §4.5: a client that does not acknowledge is no longer interested.
                self._remove_relation(owner)
                self._events.append(ObservationCancelled(owner.addr, owner.token, "timeout"))
            return
        # §4.2: double the timeout at every retransmission.
        tx.retries += 1
        tx.timeout *= 2
        tx.deadline = now + tx.timeout
        self._push(tx.deadline, tx)
        self._out.append((tx.data, tx.addr))

    def _push(self, deadline: float, obj: Any) -> None:
        heap = self._heap
        if len(heap) > 1024 and len(heap) > 4 * (len(self._tx) + len(self._requests)):
            # Drop entries of finished transmissions, so the heap tracks live state only.
            heap[:] = [e for e in heap if e[2].live and e[2].deadline == e[0]]
            heapq.heapify(heap)
        self._seq += 1
        heapq.heappush(heap, (deadline, self._seq, obj))

    def _remember_non(self, addr: Any, mid: int, owner: Any, now: float) -> None:
        if owner is None:
            return
        non_sent = self._non_sent
        if len(non_sent) >= self.config.max_dedup_entries:
            non_sent.popitem(last=False)
        expires = now + self._non_lifetime
        non_sent[(addr, mid)] = (expires, owner)
        if expires < self._sweep_at:
            self._sweep_at = expires

    def _alloc_mid(self) -> int:
        mid = self._next_mid
        self._next_mid = (mid + 1) & 0xFFFF
        return mid

    def _new_token(self, addr: Any) -> bytes:
        n = self.config.token_length
        requests = self._requests
        while True:
            token = self._rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""
            if (addr, token) not in requests or not n:
                return token

    def _sweep(self, now: float) -> None:
        """Forget expired duplicate-detection entries and stale block-wise state, then set
        ``_sweep_at`` to the next expiry of what is left. Runs from ``handle_timer``, so that
        state goes on time whether or not datagrams keep coming."""
        if self._dedup_count or self._dedup_old_count:
            if self._rx_at + self._dedup_span <= now:
                # Nothing has arrived for a whole span: every entry of both generations has
                # expired (§4.5); the next datagram starts a new generation.
                self._dedup = {}
                self._dedup_old = {}
                self._dedup_count = self._dedup_old_count = 0
                self._dedup_due = -_INF
                self._dedup_old_until = _INF
            elif now >= self._dedup_due:
                self._rotate_dedup(now)  # sweeps again, with the generations settled
                return
            elif self._dedup_old_count and now >= self._dedup_old_until:
                self._dedup_old = {}
                self._dedup_old_count = 0
                self._dedup_old_until = _INF
                for seen in self._dedup.values():
                    seen.older = None
        elif now >= self._dedup_due or self._rx_at + self._dedup_span <= now:
            self._dedup_due = -_INF  # an empty generation has had its time: the next datagram starts one
        non_sent = self._non_sent
        while non_sent:
            key, entry = non_sent.popitem(last=False)
            if entry[0] > now:
                non_sent[key] = entry
                non_sent.move_to_end(key, last=False)
                break
        while self._reassembly:
            rkey = next(iter(self._reassembly))
            if self._reassembly[rkey].expires > now:
                break
            self._drop_reassembly(rkey)
        served = self._served
        while served:
            key, entry = served.popitem(last=False)
            if entry.expires > now:
                served[key] = entry
                served.move_to_end(key, last=False)
                break
            self._block_bytes -= len(entry.payload)
        # The next time there is something to forget.
        at = _INF
        if self._dedup_due != -_INF:
            at = min(self._dedup_due, self._rx_at + self._dedup_span)
        if self._dedup_old_count and self._dedup_old_until < at:
            at = self._dedup_old_until
        if non_sent:
            at = min(at, next(iter(non_sent.values()))[0])
        if self._reassembly:
            at = min(at, next(iter(self._reassembly.values())).expires)
        if served:
            at = min(at, next(iter(served.values())).expires)
        refusals = self._refusal_log
        refusals.tick(now)
        due = refusals.next_due()
        if due is not None and due < at:
            at = due
        self._sweep_at = at
