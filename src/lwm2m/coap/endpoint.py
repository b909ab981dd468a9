"""The sans-IO CoAP endpoint: RFC 7252 reliability, RFC 7959 block-wise, RFC 7641 observe.

API (stable; the transport and the LwM2M roles code against it)
----------------------------------------------------------------

``Endpoint(config: EndpointConfig = EndpointConfig(), *, rng: random.Random | None = None)``

``EndpointConfig`` (``lwm2m.coap.config``, re-exported here) holds the RFC 7252 §4.8
transmission parameters (ack_timeout, ack_random_factor, max_retransmit, nstart,
exchange_lifetime / non_lifetime derived unless given), ``empty_ack_delay``,
``response_timeout``, the preferred block size ``block_szx``, ``max_body_size`` and
the caps on state (``max_dedup_entries``, ``max_pending_requests``, ``max_peers``,
``max_reassembly_buffers``/``_per_peer``, ``max_block_cache``,
``max_observations``/``_per_peer``, ``max_queued_requests_per_peer``). ``rng`` makes
tokens, message IDs and retransmission jitter reproducible in tests.

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
    block2_options,
    block_slice,
    request_key,
    strip,
    with_options,
)
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.events import (
    Event,
    NotificationReceived,
    ObservationCancelled,
    RequestFailed,
    RequestReceived,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
)
from lwm2m.coap.exchange import EMPTY_ACK, EMPTY_RST, OutgoingRequest, PeerState, Transmission, empty
from lwm2m.coap.message import Message, MessageError, encode_parts
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.observe import Relation, is_fresh
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint

__all__ = ["DEFAULT_CONFIG", "Endpoint", "EndpointConfig"]

_CON, _NON, _ACK, _RST = Type.CON, Type.NON, Type.ACK, Type.RST
_OBSERVE = OptionNumber.OBSERVE
_BLOCK1 = OptionNumber.BLOCK1
_BLOCK2 = OptionNumber.BLOCK2
_SIZE1 = OptionNumber.SIZE1
_KNOWN_OPTIONS = frozenset(int(o) for o in OptionNumber)
_INF = float("inf")
_decode = Message.decode
_new = object.__new__
_EV_FIELDS = ("addr", "message", "observe", "block1", "block2")
_EV_SET = tuple(RequestReceived.__dict__[f].__set__ for f in _EV_FIELDS)


def _request_received(addr: Any, msg: Message) -> RequestReceived:
    """``RequestReceived(addr, msg)`` for the hot path, without the frozen dataclass ``__init__``."""
    ev = _new(RequestReceived)
    sa, sm, so, s1, s2 = _EV_SET
    sa(ev, addr)
    sm(ev, msg)
    so(ev, None)
    s1(ev, None)
    s2(ev, None)
    return ev


DEFAULT_CONFIG = EndpointConfig()


class Endpoint:
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
        self._next_mid = self._rng.randrange(0x10000)
        self._out: list[tuple[bytes, Any]] = []
        self._events: deque[Event] = deque()
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0  # heap tie-breaker
        # (addr, mid) -> [expires, cached reply or None, empty-ACK deadline]: duplicate
        # detection (§4.5); the third item matters while the entry is in _unacked.
        self._dedup: dict[tuple[Any, int], list] = {}
        # The same entries in arrival order, to evict and expire the oldest in O(1). (Deleting
        # from the front of a plain dict makes ``next(iter(d))`` scan the holes it leaves.)
        self._dedup_order: deque[tuple[tuple[Any, int], list]] = deque()
        # (addr, mid) -> its dedup entry: CON requests the application has not answered
        # yet. Insertion order is deadline order (the delay is constant).
        self._unacked: OrderedDict[tuple[Any, int], list] = OrderedDict()
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
        self._now = 0.0  # the latest time we were told, for cancel(), which takes none
        self.rejected_after_decode = 0  # well-formed datagrams whose content we could not use

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
        """The earliest time at which ``handle_timer`` has work (retransmission, empty ACK, timeout)."""
        heap = self._heap
        while heap:
            deadline, _, obj = heap[0]
            if obj.live and obj.deadline == deadline:
                break
            heapq.heappop(heap)
        best = heap[0][0] if heap else _INF
        if self._unacked:
            first = next(iter(self._unacked.values()))[2]
            if first < best:
                best = first
        return None if best == _INF else best

    def handle_timer(self, now: float) -> None:
        """Retransmit, send due empty ACKs, time out requests and forget expired state."""
        self._now = now
        unacked = self._unacked
        while unacked:
            key, seen = next(iter(unacked.items()))
            if seen[2] > now:
                break
            del unacked[key]
            self._send_empty_ack(key, seen)
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(heap)
            if not obj.live or obj.deadline != deadline:
                continue
            if isinstance(obj, Transmission):
                self._retransmit(obj, now)
            else:
                self._request_expired(obj)
        self._sweep(now)

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        """Take one datagram from ``addr``; never raises, whatever ``data`` holds."""
        try:
            msg = _decode(data)
        except MessageError as exc:
            # §4.2: a malformed CON is rejected with RST; §4.3: anything else is dropped,
            # and an unknown version silently ignored (§3).
            if exc.version_ok and exc.type is _CON and exc.mid is not None:
                self._out.append((empty(EMPTY_RST, exc.mid), addr))
            return
        self._now = now
        try:
            mtype = msg.type
            if 0 < msg.code < 32 and (mtype is _CON or mtype is _NON):
                # The hot path, inline: a request, deduplicated, handed to the application.
                key = (addr, msg.mid)
                dedup = self._dedup
                seen = dedup.get(key)
                if seen is not None and seen[0] > now:
                    # §4.5: a duplicate CON gets the same ACK or RST again; a duplicate NON is dropped.
                    if mtype is _CON and seen[1] is not None:
                        self._out.append((seen[1], addr))
                    return
                order = self._dedup_order
                if len(order) >= self._max_dedup:
                    old_key, old = order.popleft()
                    if dedup.get(old_key) is old:
                        del dedup[old_key]
                elif order and order[0][1][0] <= now:
                    self._sweep(now)
                seen = [now + (self._lifetime if mtype is _CON else self._non_lifetime), None, 0.0]
                dedup[key] = seen
                order.append((key, seen))
                known = self._critical_known
                for number, _ in msg.options:
                    if number == 6 or number == 23 or number == 27 or (number & 1 and number not in known):
                        self._on_request(msg, addr, key, seen, now)
                        return
                if mtype is _CON:
                    unacked = self._unacked
                    if len(unacked) >= self._max_pending:
                        self._ack_oldest()
                    seen[2] = now + self._ack_delay  # inf when never
                    unacked[key] = seen
                self._events.append(_request_received(addr, msg))
                return
            self._dispatch(msg, addr, now)
        except (ValueError, KeyError, IndexError, TypeError, OverflowError):
            # A datagram that parses but carries nonsense (e.g. a broken option value in a
            # place we read it): treat like a malformed message rather than raise. Counted,
            # since it may also hide a bug of ours.
            self.rejected_after_decode += 1
            if msg.type is _CON:
                self._out.append((empty(EMPTY_RST, msg.mid), addr))

    # === application side ========================================================================

    def request(self, message: Message, addr: Any, now: float) -> bytes:
        """Send a request (see the module docstring); returns its token."""
        self._now = now
        token = message.token
        if not token:
            token = self._new_token(addr)
        key = (addr, token)
        old = self._requests.get(key)
        if old is not None:
            self._drop_request(old)
        if message.type is not _CON and message.type is not _NON:
            message = Message(_CON, message.code, 0, token, message.options, message.payload)
        elif message.token != token:
            message = Message(
                message.type, message.code, message.mid, token, message.options, message.payload
            )
        req = OutgoingRequest(addr, token, message)
        self._requests[key] = req
        if req.con:
            peer = self._peers.get(addr)
            if peer is None:
                peer = self._peers[addr] = PeerState()
            if peer.inflight >= self.config.nstart:
                if len(peer.queue) >= self.config.max_queued_requests_per_peer:
                    del self._requests[key]
                    req.live = False
                    self._events.append(RequestFailed(addr, token, message, "too many queued requests"))
                    return token
                peer.queue.append(req)
                return token
        self._start(req, now)
        return token

    def respond(self, event: RequestReceived, response: Message, now: float) -> None:
        """Answer ``event``; type, message ID and token of ``response`` are filled in here."""
        req = event.message
        addr = event.addr
        code = response.code
        options = response.options
        payload = response.payload
        if (
            event.block1 is not None
            or event.observe is not None
            or event.block2 is not None
            or len(payload) > self._block_size
        ):
            code, options, payload = self._shape_response(event, code, options, payload, now)
        key = (addr, req.mid)
        seen = self._unacked.pop(key, None)
        if seen is not None:
            # The common case: piggybacked in the ACK, which is also cached for duplicates (§4.5).
            seen[1] = data = encode_parts(_ACK, code, req.mid, req.token, options, payload)
            self._out.append((data, addr))
            return
        mid = self._alloc_mid()
        if req.type is _CON:
            # §5.2.2: the ACK went out empty already; the response is a CON of its own.
            data = encode_parts(_CON, code, mid, req.token, options, payload)
            self._add_tx(addr, mid, req.token, data, None, now)
        else:
            data = encode_parts(_NON, code, mid, req.token, options, payload)
            self._remember_non(addr, mid, None, now)
        self._out.append((data, addr))

    def _shape_response(
        self, event: RequestReceived, code: int, options: Any, payload: bytes, now: float
    ) -> tuple[int, Any, bytes]:
        """Block1 echo, Observe registration and Block2 slicing of a response."""
        if event.block1 is not None:
            # RFC 7959 §2.3: the final response to a Block1 transfer echoes the last block.
            options = with_options(strip(options, frozenset((_BLOCK1,))), (_BLOCK1, event.block1.encode()))
        if event.observe is not None:
            options = self._observe_on_respond(event, code, options, now)
        b2 = event.block2
        if len(payload) > self._block_size or (b2 is not None and (b2.num or b2.szx < self._szx)):
            sliced = self._block2_respond(event, code, options, payload, now)
            if sliced is None:
                return Code.BAD_OPTION, (), b"block number past the end"
            options, payload = sliced
        return code, options, payload

    def notify(
        self, relation: tuple[Any, bytes], message: Message, now: float, *, confirmable: bool = False
    ) -> bool:
        """Send a notification on ``relation``; False if that observation has ended."""
        rel = self._relations.get(relation)
        if rel is None:
            return False
        addr = rel.addr
        code = message.code
        options: Any = strip(message.options, frozenset((_OBSERVE,)))
        payload = message.payload
        final = code >> 5 != 2
        if final:
            # RFC 7641 §3.2, §4.2: an error ends the observation; it carries no Observe option.
            self._remove_relation(rel)
        else:
            options.append((_OBSERVE, encode_uint(rel.next_seq())))
            options.sort(key=lambda o: o[0])
        if len(payload) > self._block_size:
            # RFC 7959 §2.6: the notification carries the first block; the client GETs the rest.
            total = len(payload)
            base = strip(options, frozenset((_OBSERVE, _BLOCK2, OptionNumber.SIZE2)))
            self._cache_served((addr, *rel.cache_key), code, base, payload, now)
            options = block2_options(options, 0, True, self._szx, total)
            payload = payload[: self._block_size]
        else:
            options = tuple(options)
        if message.type is _CON or now - rel.last_con >= self.config.notification_con_interval:
            confirmable = True
        mid = self._alloc_mid()
        if confirmable:
            rel.last_con = now
            data = encode_parts(_CON, code, mid, rel.token, options, payload)
            old = rel.tx
            tx = self._add_tx(addr, mid, rel.token, data, None if final else rel, now)
            if old is not None and old.live:
                # RFC 7641 §4.5.2: the new state replaces the one still being retransmitted,
                # keeping its retransmission counter and timeout.
                self._kill_tx(old)
                self._remember_non(addr, old.mid, rel, now)  # an RST to it still cancels (§3.6)
                tx.retries = old.retries
                tx.timeout = old.timeout
                tx.deadline = now + old.timeout
                self._push(tx.deadline, tx)
            if not final:
                rel.tx = tx
        else:
            data = encode_parts(_NON, code, mid, rel.token, options, payload)
            self._remember_non(addr, mid, None if final else rel, now)
        self._out.append((data, addr))
        return True

    def cancel(self, token: bytes, addr: Any = None) -> None:
        """Forget our request or observation with ``token`` (at ``addr``, or at any peer)."""
        if addr is not None:
            req = self._requests.get((addr, token))
            victims = [req] if req is not None else []
        else:
            victims = [r for (a, t), r in self._requests.items() if t == token]
        for req in victims:
            self._drop_request(req)

    def observations(self) -> list[tuple[Any, bytes]]:
        """The server-side observation relations, as ``(addr, token)`` handles."""
        return list(self._relations)

    def state_sizes(self) -> dict[str, int]:
        """How much state the endpoint holds, by kind (for monitoring and tests)."""
        return {
            "dedup": len(self._dedup),
            "unacked": len(self._unacked),
            "tx": len(self._tx),
            "non_sent": len(self._non_sent),
            "requests": len(self._requests),
            "peers": len(self._peers),
            "reassembly": len(self._reassembly),
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
        key = (addr, msg.mid)
        seen = self._dedup.get(key)
        if seen is not None and seen[0] > now:
            # §4.5: a duplicate CON gets the same ACK or RST again; a duplicate NON is dropped.
            if mtype is _CON and seen[1] is not None:
                self._out.append((seen[1], addr))
            return
        seen = self._new_seen(key, mtype, now)
        if code <= 31:
            self._on_request(msg, addr, key, seen, now)
        elif 64 <= code <= 191:
            self._on_separate_response(msg, addr, seen, now)
        elif mtype is _CON:
            # A reserved code class (1, 6, 7): a CON we cannot handle is rejected (§4.2).
            seen[1] = rst = empty(EMPTY_RST, msg.mid)
            self._out.append((rst, addr))

    def _new_seen(self, key: tuple[Any, int], mtype: Type, now: float) -> list:
        """Record a new CON or NON for duplicate detection: [expires, cached reply]."""
        dedup, order = self._dedup, self._dedup_order
        if order and (len(order) >= self._max_dedup or order[0][1][0] <= now):
            self._trim_dedup(now)
        seen = [now + (self._lifetime if mtype is _CON else self._non_lifetime), None, 0.0]
        dedup[key] = seen
        order.append((key, seen))
        return seen

    def _trim_dedup(self, now: float) -> None:
        """Make room for one entry: the oldest goes when full; expired state goes anyway."""
        dedup, order = self._dedup, self._dedup_order
        if len(order) >= self._max_dedup:
            old_key, old = order.popleft()
            if dedup.get(old_key) is old:
                del dedup[old_key]
        if order and order[0][1][0] <= now:
            self._sweep(now)

    def _ack_oldest(self) -> None:
        # Too many unanswered requests: acknowledge the oldest now, so its answer goes as a
        # separate response and the entry can go.
        oldest, seen = self._unacked.popitem(last=False)
        self._send_empty_ack(oldest, seen)

    def _on_request(self, msg: Message, addr: Any, key: tuple[Any, int], seen: list, now: float) -> None:
        known = self._critical_known
        special = False
        for number, _ in msg.options:
            if number & 1 and number not in known:
                # §5.4.1: an unrecognized critical option in a request is answered with 4.02.
                self._answer(msg, addr, seen, Code.BAD_OPTION, (), b"", now)
                return
            if number == 6 or number == 23 or number == 27:
                special = True
        observe = block1 = block2 = None
        if special:
            try:
                raw = msg.option(_OBSERVE)
                if raw is not None and msg.code in (Code.GET, Code.FETCH):
                    observe = decode_uint(raw)
                    if observe > 0xFFFFFF:
                        raise ValueError("observe value too large")
                block1 = msg.block1
                block2 = msg.block2
            except ValueError:
                self._answer(msg, addr, seen, Code.BAD_REQUEST, (), b"bad Block or Observe option", now)
                return
            if observe == 1:
                rel = self._relations.get((addr, msg.token))
                if rel is not None:
                    # RFC 7641 §3.6: a GET with Observe=1 deregisters, then is served as usual.
                    self._remove_relation(rel)
                    self._events.append(ObservationCancelled(addr, msg.token, "deregistered"))
            if block1 is not None:
                msg = self._on_block1(msg, addr, block1, seen, now)  # type: ignore[assignment]
                if msg is None:
                    return
            if block2 is not None and block2.num and self._serve_block2(msg, addr, block2, seen, now):
                return
        if msg.type is _CON:
            unacked = self._unacked
            if len(unacked) >= self._max_pending:
                self._ack_oldest()
            seen[2] = now + self._ack_delay
            unacked[key] = seen
        self._events.append(RequestReceived(addr, msg, observe, block1, block2))

    def _answer(
        self, msg: Message, addr: Any, seen: list, code: int, options: Any, payload: bytes, now: float
    ) -> None:
        """A response made by the endpoint itself: piggybacked for CON, a NON for a NON."""
        if msg.type is _CON:
            data = encode_parts(_ACK, code, msg.mid, msg.token, tuple(options), payload)
            seen[1] = data
        else:
            data = encode_parts(_NON, code, self._alloc_mid(), msg.token, tuple(options), payload)
        self._out.append((data, addr))

    def _send_empty_ack(self, key: tuple[Any, int], seen: list) -> None:
        seen[1] = data = empty(EMPTY_ACK, key[1])
        self._out.append((data, key[0]))

    # --- Block1, server side (RFC 7959 §2.3) -----------------------------------------------------

    def _on_block1(self, msg: Message, addr: Any, b1: BlockOption, seen: list, now: float) -> Message | None:
        limit = self.config.max_body_size
        rkey = (addr, *request_key(msg))
        payload = msg.payload
        szx = min(b1.szx, self._szx)  # the server may ask for smaller blocks (§2.5)
        if b1.num == 0:
            self._drop_reassembly(rkey)
            size1 = msg.size1
            if (size1 is not None and size1 > limit) or len(payload) > limit:
                self._too_large(msg, addr, seen, now)
                return None
            if not b1.more:
                return self._reassembled(msg, payload)
            if len(payload) != b1.size:
                self._answer(msg, addr, seen, Code.BAD_REQUEST, (), b"block size mismatch", now)
                return None
            if not self._reassembly_room(addr):
                self._answer(msg, addr, seen, Code.SERVICE_UNAVAILABLE, (), b"", now)
                return None
            self._reassembly[rkey] = Reassembly(payload, now + self._lifetime)
            self._reasm_per_peer[addr] = self._reasm_per_peer.get(addr, 0) + 1
            self._continue(msg, addr, seen, BlockOption(0, True, szx), now)
            return None
        r = self._reassembly.get(rkey)
        if r is None or r.expires <= now or b1.num * b1.size != len(r.buf):
            # §2.9.2: a block out of sequence, or a transfer we do not (any longer) know.
            self._drop_reassembly(rkey)
            self._answer(msg, addr, seen, Code.REQUEST_ENTITY_INCOMPLETE, (), b"", now)
            return None
        if b1.more and len(payload) != b1.size:
            self._drop_reassembly(rkey)
            self._answer(msg, addr, seen, Code.BAD_REQUEST, (), b"block size mismatch", now)
            return None
        if len(r.buf) + len(payload) > limit:
            self._drop_reassembly(rkey)
            self._too_large(msg, addr, seen, now)
            return None
        r.buf += payload
        if b1.more:
            # Touched: move to the end so that expiry order stays insertion order.
            r.expires = now + self._lifetime
            self._reassembly.move_to_end(rkey)
            self._continue(msg, addr, seen, BlockOption(b1.num, True, szx), now)
            return None
        body = bytes(r.buf)
        self._drop_reassembly(rkey)
        return self._reassembled(msg, body)

    @staticmethod
    def _reassembled(msg: Message, body: bytes) -> Message:
        options = tuple(o for o in msg.options if o[0] != _BLOCK1 and o[0] != _SIZE1)
        return Message(msg.type, msg.code, msg.mid, msg.token, options, body)

    def _continue(self, msg: Message, addr: Any, seen: list, b1: BlockOption, now: float) -> None:
        self._answer(msg, addr, seen, Code.CONTINUE, ((_BLOCK1, b1.encode()),), b"", now)

    def _too_large(self, msg: Message, addr: Any, seen: list, now: float) -> None:
        # §2.9.3: 4.13 with Size1 telling the largest body we take.
        size1 = ((_SIZE1, encode_uint(self.config.max_body_size)),)
        self._answer(msg, addr, seen, Code.REQUEST_ENTITY_TOO_LARGE, size1, b"", now)

    def _reassembly_room(self, addr: Any) -> bool:
        cfg = self.config
        per_peer = self._reasm_per_peer.get(addr, 0)
        if per_peer >= cfg.max_reassembly_per_peer:
            return False
        if per_peer == 0 and len(self._reasm_per_peer) >= cfg.max_peers:
            return False
        if len(self._reassembly) >= cfg.max_reassembly_buffers:
            self._drop_reassembly(next(iter(self._reassembly)))
        return True

    def _drop_reassembly(self, rkey: tuple) -> None:
        if self._reassembly.pop(rkey, None) is not None:
            addr = rkey[0]
            n = self._reasm_per_peer[addr] - 1
            if n:
                self._reasm_per_peer[addr] = n
            else:
                del self._reasm_per_peer[addr]

    # --- Block2, server side (RFC 7959 §2.4) -----------------------------------------------------

    def _serve_block2(self, msg: Message, addr: Any, b2: BlockOption, seen: list, now: float) -> bool:
        """Answer a later Block2 request from the kept representation; False if there is none."""
        served = self._served.get((addr, *request_key(msg)))
        if served is None or served.expires <= now:
            return False
        szx = min(b2.szx, self._szx)
        num = b2.num << (b2.szx - szx)
        part = block_slice(served.payload, num, szx)
        if part is None:
            self._answer(msg, addr, seen, Code.BAD_OPTION, (), b"block number past the end", now)
            return True
        chunk, more = part
        options = block2_options(served.base, num, more, szx, len(served.payload))
        self._answer(msg, addr, seen, served.code, options, chunk, now)
        return True

    def _block2_respond(
        self, event: RequestReceived, code: int, options: Any, payload: bytes, now: float
    ) -> tuple[Any, bytes] | None:
        b2 = event.block2
        if b2 is None:
            szx, num = self._szx, 0
        else:
            szx = min(b2.szx, self._szx)
            num = b2.num << (b2.szx - szx)
        if num == 0 and len(payload) <= 1 << (szx + 4):
            return options, payload
        part = block_slice(payload, num, szx)
        if part is None:
            return None
        chunk, more = part
        base = strip(options, frozenset((_BLOCK2, OptionNumber.SIZE2)))
        if more or num:
            kept = [o for o in base if o[0] != _OBSERVE]
            self._cache_served((event.addr, *request_key(event.message)), code, kept, payload, now)
        return block2_options(base, num, more, szx, len(payload)), chunk

    def _cache_served(self, key: tuple, code: int, base: list, payload: bytes, now: float) -> None:
        served = self._served
        if served.pop(key, None) is None and len(served) >= self.config.max_block_cache:
            served.popitem(last=False)
        served[key] = Served(code, base, payload, now + self._lifetime)

    # --- observe, server side (RFC 7641 §4) ------------------------------------------------------

    def _observe_on_respond(self, event: RequestReceived, code: int, options: Any, now: float) -> Any:
        addr, token = event.addr, event.message.token
        key = (addr, token)
        rest = strip(options, frozenset((_OBSERVE,)))
        wants = len(rest) != len(options)
        rel = self._relations.get(key)
        if event.observe == 0 and wants and code >> 5 == 2:
            if rel is None:
                if not self._observation_room(addr):
                    return tuple(rest)  # not registered: the client sees no Observe option (§4.1)
                rel = Relation(addr, token, request_key(event.message), now)
                self._relations[key] = rel
                self._obs_per_peer[addr] = self._obs_per_peer.get(addr, 0) + 1
            return with_options(rest, (_OBSERVE, encode_uint(rel.next_seq())))
        if event.observe == 0 and rel is not None:
            self._remove_relation(rel)  # a refused re-registration ends the old one (§4.1)
        return tuple(rest)

    def _observation_room(self, addr: Any) -> bool:
        cfg = self.config
        per_peer = self._obs_per_peer.get(addr, 0)
        if per_peer >= cfg.max_observations_per_peer:
            return False
        if per_peer == 0 and len(self._obs_per_peer) >= cfg.max_peers:
            return False
        if len(self._relations) >= cfg.max_observations:
            oldest = next(iter(self._relations.values()))
            self._remove_relation(oldest)
            self._events.append(ObservationCancelled(oldest.addr, oldest.token, "evicted"))
        return True

    def _remove_relation(self, rel: Relation) -> None:
        key = (rel.addr, rel.token)
        if self._relations.get(key) is not rel:
            return
        del self._relations[key]
        n = self._obs_per_peer[rel.addr] - 1
        if n:
            self._obs_per_peer[rel.addr] = n
        else:
            del self._obs_per_peer[rel.addr]
        if rel.tx is not None and rel.tx.live:
            self._kill_tx(rel.tx)
        rel.tx = None

    # --- responses, client side ------------------------------------------------------------------

    def _on_piggybacked(self, msg: Message, addr: Any, now: float) -> None:
        tx = self._tx.get((addr, msg.mid))
        if tx is None or tx.token != msg.token or not isinstance(tx.owner, OutgoingRequest):
            return  # a late or duplicate ACK, or one not matching our token (§5.3.2): ignored
        req = tx.owner
        self._kill_tx(tx)
        req.tx = None
        self._on_response(req, msg, now)

    def _on_empty_ack(self, addr: Any, mid: int, now: float) -> None:
        tx = self._tx.pop((addr, mid), None)
        if tx is None:
            return
        tx.live = False
        owner = tx.owner
        if isinstance(owner, OutgoingRequest):
            # §5.2.2: the response comes separately; the exchange no longer counts for NSTART.
            owner.tx = None
            self._release(owner, now)
            if not owner.observing:
                owner.deadline = now + self.config.response_timeout
                self._push(owner.deadline, owner)
        elif isinstance(owner, Relation) and owner.tx is tx:
            owner.tx = None

    def _on_reset(self, addr: Any, mid: int) -> None:
        key = (addr, mid)
        tx = self._tx.pop(key, None)
        if tx is not None:
            tx.live = False
            owner, token = tx.owner, tx.token
        else:
            entry = self._non_sent.pop(key, None)
            if entry is None:
                return
            owner = entry[1]
            token = owner.token
        if isinstance(owner, Relation):
            # RFC 7641 §3.6: an RST to a notification cancels the observation.
            if self._relations.get((owner.addr, owner.token)) is owner:
                self._remove_relation(owner)
                self._events.append(ObservationCancelled(addr, owner.token, "reset"))
            return
        if isinstance(owner, OutgoingRequest):
            if not owner.live:
                return
            self._drop_request(owner)
            if owner.parent is not None:
                parent = owner.parent
                if parent.live:
                    self._events.append(
                        RequestFailed(addr, parent.token, parent.request, "block fetch reset")
                    )
                return
        self._events.append(ResetReceived(addr, token, mid))

    def _on_separate_response(self, msg: Message, addr: Any, seen: list, now: float) -> None:
        req = self._requests.get((addr, msg.token))
        if req is None or not req.live or (req.tx is None and req.deadline == _INF and not req.observing):
            # §5.3.2 / RFC 7641 §3.6: a response or notification nobody waits for gets RST.
            rst = empty(EMPTY_RST, msg.mid)
            seen[1] = rst
            self._out.append((rst, addr))
            return
        if msg.type is _CON:
            seen[1] = ack = empty(EMPTY_ACK, msg.mid)
            self._out.append((ack, addr))
        if req.tx is not None:
            # A separate response can overtake the (lost) empty ACK: it acknowledges too.
            self._kill_tx(req.tx)
            req.tx = None
        self._on_response(req, msg, now)

    def _on_response(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        if req.observing:
            self._on_notification(req, msg, now)
            return
        code = msg.code
        try:
            if req.b1_sent and code == Code.CONTINUE:
                self._next_block1(req, msg, now)
                return
            req.b1_sent = 0
            if req.observe and code >> 5 == 2 and msg.has_option(_OBSERVE):
                # RFC 7641 §3.1: the registration is accepted; the token stays open.
                self._release(req, now)
                req.observing = True
                req.deadline = _INF
                req.obs_seq = msg.observe or 0
                req.obs_time = now
                b2 = msg.block2
                if b2 is not None and b2.more:
                    self._spawn_fetch(req, msg, None, now)
                else:
                    self._events.append(ResponseReceived(req.addr, req.token, req.request, msg))
                return
            b2 = msg.block2 if code >> 5 == 2 else None
        except ValueError:
            self._fail(req, "malformed Block or Observe option in the response")
            return
        if b2 is not None and (b2.more or req.b2_buf is not None):
            msg = self._on_block2(req, msg, b2, now)  # type: ignore[assignment]
            if msg is None:
                return
        self._finish(req, msg, now)

    def _next_block1(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        b1 = msg.block1
        body = req.request.payload
        nxt = req.b1_offset + req.b1_sent
        if b1 is None or nxt >= len(body):
            self._fail(req, "2.31 Continue that does not fit the Block1 transfer")
            return
        req.b1_offset = nxt
        req.b1_szx = min(req.b1_szx, b1.szx)  # §2.5: follow the server's smaller size
        options, payload = self._block1_part(req)
        self._send(req, options, payload, now)

    def _block1_part(self, req: OutgoingRequest) -> tuple[Any, bytes]:
        body = req.request.payload
        size = 1 << (req.b1_szx + 4)
        off = req.b1_offset
        chunk = body[off : off + size]
        req.b1_sent = len(chunk)
        num = off // size
        extra = [(_BLOCK1, BlockOption(num, off + size < len(body), req.b1_szx).encode())]
        if num == 0:
            extra.append((_SIZE1, encode_uint(len(body))))
        return with_options(strip(req.request.options), *extra), chunk

    def _on_block2(self, req: OutgoingRequest, msg: Message, b2: BlockOption, now: float) -> Message | None:
        """Collect one Block2 block; ask for the next, or return the whole response."""
        etag = msg.option(OptionNumber.ETAG)
        buf = req.b2_buf
        if buf is None:
            if b2.num != 0:
                self._fail(req, "Block2 response does not start at block 0")
                return None
            buf = req.b2_buf = bytearray()
            req.b2_first = msg
            req.b2_etag = etag
        elif b2.num * b2.size != len(buf):
            self._fail(req, "Block2 block out of sequence")
            return None
        elif etag != req.b2_etag:
            self._fail(req, "representation changed during the Block2 transfer")  # §2.4
            return None
        buf += msg.payload
        if len(buf) > self.config.max_body_size:
            self._fail(req, "Block2 body larger than max_body_size")
            return None
        if b2.more:
            self._send(req, *self._block2_next(req, b2.szx), now)
            return None
        first = req.b2_first or msg
        req.b2_buf = None
        options = tuple(strip(first.options))
        return Message(first.type, first.code, first.mid, first.token, options, bytes(buf))

    def _block2_next(self, req: OutgoingRequest, szx: int) -> tuple[Any, bytes]:
        assert req.b2_buf is not None
        num = len(req.b2_buf) >> (szx + 4)
        base = strip(req.request.options, frozenset((_BLOCK1, _BLOCK2, _SIZE1, OptionNumber.SIZE2, _OBSERVE)))
        options = with_options(base, (_BLOCK2, BlockOption(num, False, szx).encode()))
        # The request body is sent again only where it identifies the resource (FETCH, RFC 8132).
        payload = req.request.payload if req.request.code == Code.FETCH else b""
        return options, payload

    def _spawn_fetch(self, parent: OutgoingRequest, first: Message, seq: int | None, now: float) -> None:
        """Fetch the rest of a Block2 notification or registration response with a new token (§2.6)."""
        token = self._new_token(parent.addr)
        base = Message(_CON, parent.request.code, 0, token, parent.request.options, parent.request.payload)
        child = OutgoingRequest(parent.addr, token, base)
        child.observe = False
        child.parent = parent
        child.parent_seq = seq
        child.b2_buf = bytearray(first.payload)
        child.b2_first = first
        child.b2_etag = first.option(OptionNumber.ETAG)
        self._requests[(parent.addr, token)] = child
        b2 = first.block2
        assert b2 is not None
        child.b2_szx = b2.szx
        self._enqueue(child, now)

    def _on_notification(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        code = msg.code
        try:
            seq = msg.observe if code >> 5 == 2 else None
            b2 = msg.block2 if seq is not None else None
        except ValueError:
            return
        if seq is None:
            # RFC 7641 §3.2: an error or a response without Observe ends the observation.
            self._drop_request(req)
            self._events.append(NotificationReceived(req.addr, req.token, msg, None))
            return
        if not is_fresh(req.obs_seq, req.obs_time, seq, now):
            return  # reordered: older than what we already have (§3.4)
        req.obs_seq = seq
        req.obs_time = now
        if b2 is not None and b2.more:
            self._spawn_fetch(req, msg, seq, now)
            return
        if b2 is not None:
            msg = Message(msg.type, code, msg.mid, msg.token, tuple(strip(msg.options)), msg.payload)
        self._events.append(NotificationReceived(req.addr, req.token, msg, seq))

    def _finish(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        self._drop_request(req, now)
        parent = req.parent
        if parent is None:
            self._events.append(ResponseReceived(req.addr, req.token, req.request, msg))
        elif parent.live:
            if req.parent_seq is None:
                self._events.append(ResponseReceived(parent.addr, parent.token, parent.request, msg))
            else:
                self._events.append(NotificationReceived(parent.addr, parent.token, msg, req.parent_seq))

    def _fail(self, req: OutgoingRequest, reason: str) -> None:
        self._drop_request(req)
        target = req.parent if req.parent is not None else req
        if target.live or target is req:
            self._events.append(RequestFailed(req.addr, target.token, target.request, reason))

    def _request_expired(self, req: OutgoingRequest) -> None:
        if req.observing:
            return
        self._drop_request(req)
        if req.parent is None:
            self._events.append(RequestTimedOut(req.addr, req.token, req.request))
        elif req.parent.live:
            parent = req.parent
            self._events.append(
                RequestFailed(req.addr, parent.token, parent.request, "block fetch timed out")
            )

    # === sending ==================================================================================

    def _enqueue(self, req: OutgoingRequest, now: float) -> None:
        if req.con:
            peer = self._peers.get(req.addr)
            if peer is None:
                peer = self._peers[req.addr] = PeerState()
            if peer.inflight >= self.config.nstart:
                peer.queue.append(req)
                return
        self._start(req, now)

    def _start(self, req: OutgoingRequest, now: float) -> None:
        if req.b2_buf is not None:
            options, payload = self._block2_next(req, req.b2_szx)
        elif len(req.request.payload) > self._block_size:
            req.b1_szx = self._szx
            options, payload = self._block1_part(req)
        else:
            options, payload = req.request.options, req.request.payload
        mid = self._send(req, options, payload, now)
        r = req.request
        req.request = Message(r.type, r.code, mid, r.token, r.options, r.payload)

    def _send(self, req: OutgoingRequest, options: Any, payload: bytes, now: float) -> int:
        mid = self._alloc_mid()
        addr = req.addr
        r = req.request
        data = encode_parts(r.type, r.code, mid, req.token, options, payload)
        if req.con:
            req.tx = self._add_tx(addr, mid, req.token, data, req, now)
            if not req.counted:
                req.counted = True
                peer = self._peers.get(addr)
                if peer is None:
                    peer = self._peers[addr] = PeerState()
                peer.inflight += 1
        else:
            req.deadline = now + self.config.response_timeout
            self._push(req.deadline, req)
            self._remember_non(addr, mid, req, now)
        self._out.append((data, addr))
        return mid

    def _release(self, req: OutgoingRequest, now: float | None = None) -> None:
        """Give back the request's NSTART slot and start queued requests (§4.7)."""
        if not req.counted:
            return
        req.counted = False
        peer = self._peers.get(req.addr)
        if peer is None:
            return
        peer.inflight -= 1
        if now is None:
            now = self._now
        nstart = self.config.nstart
        while peer.queue and peer.inflight < nstart:
            nxt = peer.queue.popleft()
            if nxt.live:
                self._start(nxt, now)
        if peer.inflight <= 0 and not peer.queue:
            del self._peers[req.addr]

    def _drop_request(self, req: OutgoingRequest, now: float | None = None) -> None:
        req.live = False
        key = (req.addr, req.token)
        if self._requests.get(key) is req:
            del self._requests[key]
        if req.tx is not None:
            self._kill_tx(req.tx)
            req.tx = None
        if req.counted:
            self._release(req, now)
        else:
            peer = self._peers.get(req.addr)
            if peer is not None and req in peer.queue:
                peer.queue.remove(req)
                if peer.inflight <= 0 and not peer.queue:
                    del self._peers[req.addr]

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
        non_sent[(addr, mid)] = (now + self._non_lifetime, owner)

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
        """Forget expired duplicate-detection entries and stale block-wise state."""
        dedup, order = self._dedup, self._dedup_order
        while order and order[0][1][0] <= now:
            key, seen = order.popleft()
            if dedup.get(key) is seen:
                del dedup[key]
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
