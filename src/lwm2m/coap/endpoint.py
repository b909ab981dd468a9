"""The sans-IO CoAP endpoint: RFC 7252 reliability, RFC 7959 block-wise, RFC 7641 observe.

``Endpoint`` is the protocol logic: it reads datagrams, answers and sends requests, and holds
its state in parts that own it, each tested alone: ``Deduplicator`` (``dedup.py``, the
Message IDs seen and replies to replay), ``Unanswered`` (``unanswered.py``, CON requests the
application has not answered yet), ``Exchanges`` (``exchange.py``: our transmissions and
retransmissions, requests, NSTART, tokens, Message IDs, deadlines), ``Relations``
(``observe.py``, server-side observations) and ``BlockTransfers`` (``blockwise.py``, every
block-wise body held, within one byte budget).

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
    events: list[Event]                   # the queue next_event() pops from (drain it directly)

Application side::

    request(message: Message, addr, now: float, handle=None) -> bytes
        Send a request. Type CON (retransmitted with exponential back-off, at most
        ``nstart`` outstanding per peer, the rest queued) or NON (sent once; any other
        type is sent as CON). The endpoint assigns the message ID, and a token if
        ``message.token`` is empty; returns the token. A new request with the token of
        one still open (e.g. a GET with Observe=1 to deregister) replaces it. A
        payload larger than the block size goes out Block1; a Block2 response is
        fetched block by block and delivered whole. With Observe=0 the token stays
        open: the first answer is a ``ResponseReceived``, every later notification a
        ``CoapNotificationReceived``.
        Outcome events: ResponseReceived | RequestTimedOut | ResetReceived | RequestFailed.

    respond(event: RequestReceived, response: Message, now: float) -> None
        Answer a request. The endpoint fills type, message ID and token: piggybacked
        in the ACK while the CON request is not yet acknowledged, else a separate
        CON response (RFC 7252 §5.2.2); a NON request gets a NON response. A payload
        larger than the block size goes out Block2, the later blocks served on demand.
        ``payload_limit`` (settable, ``(addr) -> int | None``): the transport's largest
        message to a peer; blocks to it (Block2, notifications, our Block1) are cut to fit.
        A 2.xx response carrying an Observe option (any value) to a registration
        (``event.observe == 0``) registers an observation; its handle is
        ``event.relation``.

    notify(relation, message: Message, now: float, *, confirmable: bool = False) -> bool
        Send a notification (the endpoint sets Observe to the next sequence number);
        CON if ``confirmable`` or ``message.type`` is CON, else NON.
        ``relation`` is ``RequestReceived.relation`` (== ``(addr, token)``). Large
        notifications carry the first block (RFC 7959 §2.6). A non-2.xx message ends
        the observation. Returns False when the relation no longer exists.

    Every event of a request (its answer, notifications, failure, timeout, RST) carries the
    ``handle`` it was sent with (``event.handle``): a transport's own object for the request,
    such as its observation, found without a table of its own (a million observations held).
    ``handles()`` lists those of the requests still held.

    cancel(token: bytes, addr=None) -> None
        Forget an outstanding request or a client-side observation (later
        notifications for it are answered with RST). No event follows.

    resume_observation(addr, token: bytes, now: float, request: Message | None = None, handle=None)
        Take up a client-side observation this endpoint did not register (e.g. one made
        before a restart and kept in storage): later notifications from ``addr`` with
        ``token`` become ``CoapNotificationReceived`` events, the first one taken as fresh
        whatever its sequence number (RFC 7641 §3.4). ``request`` is the registration,
        used to fetch the rest of a Block2 notification (RFC 7959 §2.6); without it such
        a notification is delivered as its first block, Block2 option kept. ``cancel``
        ends it like any other observation.

    hold_unknown_notifications: bool                   # settable; False (the default): RST
        With it on, a notification (a 2.xx response with Observe, CON or NON) whose token
        the endpoint does not know is held, unanswered, and raises ``UnknownNotification``
        instead of getting the RST of RFC 7641 §3.5: a server node that shares its store
        with others may find the observation there and take it over. At most
        ``HELD_NOTIFICATIONS`` messages (``HELD_BYTES`` of payload, ``HELD_PER_PEER`` from
        one address) are held at once, each for at most ``HOLD_TIME`` seconds; one that finds
        no room gets its RST at once, one left unanswered gets it when its time is over.

    adopt_notification(addr, token: bytes, now: float, request: Message | None = None) -> bool
        Take up the observation of a held notification (``resume_observation``, unless the
        application did already) and deliver what is held for it as ``CoapNotificationReceived``
        events, each CON one acknowledged (RFC 7252 §4.2). False when nothing is held for it.

    reject_notification(addr, token: bytes, now: float) -> bool
        Answer what is held for ``(addr, token)`` with RST (RFC 7641 §3.5, RFC 7252 §4.2, §4.3):
        the peer ends its observation. False when nothing is held for it.

    drop_notification(addr, token: bytes) -> bool
        Forget what is held for ``(addr, token)`` unanswered and unrecorded (a look-up that
        failed): a CON one sent again is held anew. False when nothing is held for it.

    Both answers are queued like any other output; the transport sends them at its next
    wake-up (a datagram, or the timer: ``get_timer`` asks for one at once).

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
    CoapNotificationReceived(addr, token, response, sequence)   # sequence None (.final): ended
    RequestTimedOut(addr, token, request)
    RequestFailed(addr, token, request, reason)       # e.g. a Block2 body over the limit
    ResetReceived(addr, token, mid)                   # an RST answered one of our messages
    ObservationCancelled(addr, token, reason)         # server side: "reset" | "deregistered" |
                                                      # "timeout" | "evicted"
    UnknownNotification(addr, message)                # held (hold_unknown_notifications on)

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

import logging
import random
from collections.abc import Callable
from typing import Any, cast

from lwm2m.coap.blockwise import (
    BlockTransfers,
    block2_options,
    request_key,
    strip,
    szx_within,
    with_options,
)
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.dedup import Deduplicator, SeenMessages
from lwm2m.coap.events import (
    CoapNotificationReceived,
    Event,
    ObservationCancelled,
    RequestAcknowledged,
    RequestFailed,
    RequestFields,
    RequestReceived,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
    UnknownNotification,
    request_received,
)
from lwm2m.coap.exchange import (
    EMPTY_ACK,
    EMPTY_RST,
    BlockState,
    Exchanges,
    OutgoingRequest,
    Transmission,
    empty,
)
from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message, Options, decode_message, encode_parts
from lwm2m.coap.numbers import Code, OptionNumber, Type, code_text
from lwm2m.coap.observe import Relation, Relations, is_fresh
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint
from lwm2m.coap.unanswered import Unanswered
from lwm2m.errors import MessageError

__all__ = ["DEFAULT_CONFIG", "Endpoint", "EndpointConfig"]

_CON, _NON, _ACK, _RST = Type.CON, Type.NON, Type.ACK, Type.RST
_OBSERVE = OptionNumber.OBSERVE
_BLOCK1 = OptionNumber.BLOCK1
_BLOCK2 = OptionNumber.BLOCK2
_SIZE1 = OptionNumber.SIZE1
_KNOWN_OPTIONS = frozenset(int(o) for o in OptionNumber)
_INF = float("inf")
# The requests of running observations, each kept once for all relations made with an equal
# one (a server observing a million devices the same way keeps one): without token and Message
# ID, which are the relation's own (``OutgoingRequest.token``) or read by nothing from then on.
# Messages are immutable, so the table is shared by the endpoints of a process; bounded, it
# starts over when full (relations keep what they hold).
_KEPT: dict[tuple[int, int, Options, bytes], Message] = {}
_KEPT_MAX = 256
_UNKNOWN_REGISTRATION = Message(Type.CON, 0)  # a resumed observation whose request is not known


def _kept(r: Message) -> Message:
    """``r`` as a running observation keeps it: without token and Message ID, shared."""
    key = (r.type, r.code, r.options, r.payload)
    try:
        kept = _KEPT.get(key)
    except TypeError:  # options given as a list: not shared
        return Message(r.type, r.code, 0, b"", r.options, r.payload)
    if kept is None:
        if len(_KEPT) >= _KEPT_MAX:
            _KEPT.clear()
        kept = _KEPT[key] = Message(r.type, r.code, 0, b"", r.options, r.payload)
    return kept


_DEDUP_ENTRY = 200  # bytes a duplicate-detection entry holds, roughly (key, expiry, cached reply)
_decode = decode_message
_new = object.__new__
_RequestFields, _request_received = RequestFields, request_received
_Seen = SeenMessages

# The logger of the requests the endpoint refuses itself; its name predates this module and
# logging configurations refer to it.
log = logging.getLogger("lwm2m.coap.serving")
# Why the endpoint refused a request, for the codes it answers without a diagnostic payload.
_REASONS: dict[int, str] = {
    Code.BAD_OPTION: "an unrecognized critical option (RFC 7252 §5.4.1)",
    Code.REQUEST_ENTITY_INCOMPLETE: "a Block1 block out of order or of an unknown transfer (RFC 7959 §2.9.2)",
    Code.REQUEST_ENTITY_TOO_LARGE: "a body larger than the endpoint takes (RFC 7959 §2.9.3)",
    Code.SERVICE_UNAVAILABLE: "no room for another Block1 transfer from this peer",
}

DEFAULT_CONFIG = EndpointConfig()

# Notifications with an unknown token held for the application (``hold_unknown_notifications``):
# at most this many messages and this many payload bytes at once, each for at most HOLD_TIME
# seconds. The time is under ACK_TIMEOUT (2 s, RFC 7252 §4.8), so a CON notification is answered
# before its sender retransmits it; a look-up in a shared store takes milliseconds. A flood of
# unknown tokens thus holds at most ~1 MiB, and what finds no room is answered with RST at once.
# One peer (a socket address: one device, even behind a NAT) holds at most HELD_PER_PEER, so
# that a single flooding source cannot take the room of the devices that come over.
HELD_NOTIFICATIONS = 1024
HELD_BYTES = 1 << 20
HELD_PER_PEER = 16
HOLD_TIME = 1.0


def _lifetime(value: float | None) -> float:
    # EndpointConfig derives every lifetime it was not given (RFC 7252 §4.8.2).
    assert value is not None
    return value


class HeldNotifications:
    """Notifications with an unknown token that wait for the application's answer, by
    ``(addr, token)`` in arrival order (so also in order of their deadlines), within a count
    (``limit`` in all, ``per_peer`` from one address), a byte budget and a hold time."""

    def __init__(self, limit: int, max_bytes: int, hold_time: float, per_peer: int = HELD_PER_PEER) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.hold_time = hold_time
        self.per_peer = per_peer
        self.count = 0  # messages held
        self.bytes = 0  # their payload bytes
        # (addr, token) -> (deadline of the first, the messages held for it, oldest first)
        self._held: dict[tuple[Any, bytes], tuple[float, list[Message]]] = {}
        self._peers: dict[Any, int] = {}  # addr -> messages held from it

    def __len__(self) -> int:
        return self.count

    @property
    def peers(self) -> int:
        """The addresses that messages are held from."""
        return len(self._peers)

    def hold(self, addr: Any, msg: Message, now: float) -> bool:
        """Hold ``msg``; False when there is no room for it."""
        size = len(msg.payload)
        if self.count >= self.limit or self.bytes + size > self.max_bytes:
            return False
        peers = self._peers
        held_from = peers.get(addr, 0)
        if held_from >= self.per_peer:
            return False
        peers[addr] = held_from + 1
        key = (addr, msg.token)
        entry = self._held.get(key)
        if entry is None:
            self._held[key] = (now + self.hold_time, [msg])
        else:
            entry[1].append(msg)
        self.count += 1
        self.bytes += size
        return True

    def take(self, addr: Any, token: bytes) -> list[Message] | None:
        """What is held for ``(addr, token)``, no longer held; None when nothing is."""
        entry = self._held.pop((addr, token), None)
        if entry is None:
            return None
        self._release(addr, entry[1])
        return entry[1]

    def expire(self, now: float) -> list[tuple[Any, Message]]:
        """The messages whose hold time is over, no longer held, as ``(addr, message)``."""
        held = self._held
        gone: list[tuple[Any, Message]] = []
        while held:
            key = next(iter(held))
            deadline, messages = held[key]
            if deadline > now:
                break
            del held[key]
            self._release(key[0], messages)
            gone += [(key[0], m) for m in messages]
        return gone

    def next_expiry(self) -> float:
        return next(iter(self._held.values()))[0] if self._held else _INF

    def _release(self, addr: Any, messages: list[Message]) -> None:
        self.count -= len(messages)
        self.bytes -= sum(len(m.payload) for m in messages)
        left = self._peers[addr] - len(messages)
        if left:
            self._peers[addr] = left
        else:
            del self._peers[addr]


class Endpoint:
    """A CoAP endpoint without I/O; see the module docstring for the API."""

    def __init__(self, config: EndpointConfig = DEFAULT_CONFIG, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self._szx = config.block_szx
        self._block_size = config.block_size
        # The transport's largest message to a peer (DTLS: what one record may carry, RFC 8449
        # §4), or None for no bound beyond the block size; blocks to that peer are cut to fit.
        # Our requests whose empty ACK raises RequestAcknowledged (report_empty_ack), until it
        # comes or they are answered: a few, so a set rather than a slot on every request.
        self._acks_wanted: set[OutgoingRequest] | None = None
        self.payload_limit: Callable[[Any], int | None] | None = None
        lifetime = _lifetime(config.exchange_lifetime)
        non_lifetime = _lifetime(config.non_lifetime)
        # The shared set when no option is added: a union of its own is 1.2 KB per endpoint.
        extra = config.extra_critical_options
        self._critical_known = _KNOWN_OPTIONS | extra if extra else _KNOWN_OPTIONS
        # What takes a message off the plain request path, in decode_message's summary: not
        # being a request (bit 0), Observe, Block2, Block1, any critical option we do not
        # know, and any option number from 63 up (looked at one by one there).
        attention = 1 | (1 << 6) | (1 << 23) | (1 << 27) | (1 << 63)
        for number in range(1, 63, 2):
            if number not in self._critical_known:
                attention |= 1 << number
        self._attention = attention
        self._out: list[tuple[bytes, Any]] = []
        # A list, not a deque: it holds a few events at a time, and an empty deque is 760 bytes
        # (a block of 64 slots) where an empty list is 56, for every endpoint of a simulated fleet.
        self._events: list[Event] = []
        self.events = self._events  # the queue next_event() pops from, for drivers to drain directly
        # The parts, each owning its state (RFC 7252 §4.5 duplicate detection; §5.2.2 pending
        # answers; §4.2-§4.7 our exchanges; RFC 7641 relations; RFC 7959 bodies). Those most
        # endpoints of a simulated fleet never use (answers pending, relations, block-wise
        # transfers, held notifications, the refusal log) are made when first needed: some
        # 1.5 KB per endpoint otherwise. Each is None here until its property makes it.
        # A new generation of duplicate detection (``Deduplicator.rotated``) has the endpoint
        # sweep after recording the message: no callback, so no reference cycle.
        self._dedup = Deduplicator(lifetime, non_lifetime, config.max_dedup_entries)
        self._exchanges = Exchanges(
            self._rng,
            ack_timeout=config.ack_timeout,
            ack_random_factor=config.ack_random_factor,
            max_retransmit=config.max_retransmit,
            nstart=config.nstart,
            non_lifetime=non_lifetime,
            max_non_sent=config.max_dedup_entries,
            token_length=config.token_length,
        )
        self._un: Unanswered | None = None
        self._rel: Relations | None = None
        self._blk: BlockTransfers | None = None
        self._held: HeldNotifications | None = None
        self._refusals: LogBudget | None = None
        # When handle_timer next has state to forget (duplicate detection, reassembly, served
        # bodies, NON messages sent): the first expiry of what is held, so that it goes on
        # time without a datagram arriving, and no timer is armed while nothing is held.
        self._sweep_at = _INF
        # Bytes (estimated) that handle_timer let go of so far, for the transport to know when
        # to give memory back to the system.
        self.released = 0
        self._now = 0.0  # the latest time the application or the timer told
        self.rejected_after_decode = 0  # well-formed datagrams whose content we could not use
        # Off: a notification with an unknown token gets RST (RFC 7641 §3.5), as a lone server
        # wants. On: it is held and raises UnknownNotification (see the module docstring).
        self.hold_unknown_notifications = False

    # --- the parts made when first needed ---------------------------------------------------------

    @property
    def _unanswered(self) -> Unanswered:
        un = self._un
        if un is None:
            un = self._un = Unanswered(self.config.max_pending_requests, self.config.empty_ack_delay)
        return un

    @property
    def _relations(self) -> Relations:
        rel = self._rel
        if rel is None:
            config = self.config
            rel = self._rel = Relations(
                config.max_observations, config.max_observations_per_peer, config.max_peers
            )
        return rel

    @property
    def _blocks(self) -> BlockTransfers:
        blk = self._blk
        if blk is None:
            config = self.config
            blk = self._blk = BlockTransfers(
                szx=config.block_szx,
                max_body_size=config.max_body_size,
                max_bytes=config.max_block_bytes,
                reassembly_lifetime=_lifetime(config.reassembly_lifetime),
                served_lifetime=_lifetime(config.exchange_lifetime),
                max_reassembly_buffers=config.max_reassembly_buffers,
                max_reassembly_per_peer=config.max_reassembly_per_peer,
                max_peers=config.max_peers,
                max_served=config.max_block_cache,
            )
        return blk

    @property
    def held(self) -> HeldNotifications:
        """Notifications with an unknown token held for the application (see the module docstring)."""
        held = self._held
        if held is None:
            held = self._held = HeldNotifications(HELD_NOTIFICATIONS, HELD_BYTES, HOLD_TIME)
        return held

    @property
    def _refusal_log(self) -> LogBudget:
        """The requests the endpoint refuses itself (4.xx, 5.xx) are logged within a budget."""
        budget = self._refusals
        if budget is None:
            budget = self._refusals = LogBudget(log)
        return budget

    # === I/O side =================================================================================

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        """Everything queued for the wire since the last call, as (datagram, addr) pairs."""
        out = self._out
        if out:
            self._out = []
        return out

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        """The earliest time at which ``handle_timer`` has work (retransmission, empty ACK, timeout,
        state to forget)."""
        exchanges = self._exchanges
        best = exchanges.next_deadline() if exchanges.heap else _INF
        if self._sweep_at < best:
            best = self._sweep_at
        un: Unanswered | None = self._un
        if un is not None and (un.fresh or un.unacked):  # (the common case: every request answered)
            first = un.next_due()
            if first < best:
                best = first
        return None if best == _INF else best

    def handle_timer(self, now: float) -> None:
        """Retransmit, send due empty ACKs, time out requests and forget expired state."""
        self._now = now
        un: Unanswered | None = self._un
        if un is not None:
            for key in un.due(now):
                self._send_empty_ack(key)
        exchanges = self._exchanges
        while (obj := exchanges.pop_due(now)) is not None:
            if isinstance(obj, Transmission):
                self._retransmit(obj, now)
            else:
                self._request_expired(obj)
        dedup = self._dedup
        blocks: BlockTransfers | None = self._blk
        held = _DEDUP_ENTRY * len(dedup) + (blocks.bytes if blocks is not None else 0)
        self._sweep(now)
        held -= _DEDUP_ENTRY * len(dedup) + (blocks.bytes if blocks is not None else 0)
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
        dedup = self._dedup
        dedup.rx_at = now
        if not summary & self._attention:
            # The hot path, inline: a plain request (no Observe, no Block, no unknown critical
            # option), deduplicated and handed to the application. Nothing here can fail on
            # what the datagram holds.
            mid = msg.mid
            con = msg.type is _CON
            seen = dedup.record(addr, mid, con, now)
            if dedup.rotated:  # a new generation: re-plan the sweep
                dedup.rotated = False
                self._sweep(now)
            if type(seen) is not _Seen:
                if seen:  # a duplicate CON: the reply again (§4.5)
                    self._out.append((cast(bytes, seen), addr))
                return
            addr = seen.addr
            if con:
                un = self._un
                if un is None:
                    un = self._unanswered
                if now != un.fresh_at or len(un.fresh) >= un.room:
                    evicted = un.make_room(now)
                    if evicted is not None:
                        self._send_empty_ack(evicted)
                un.fresh[(addr, mid)] = seen
            if _RequestFields is not None:
                ev: Any = _new(_RequestFields)
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

    # === application side =========================================================================

    def request(self, message: Message, addr: Any, now: float, handle: Any = None) -> bytes:
        """Send a request (see the module docstring); returns its token. ``handle`` (anything
        but None) comes back with each of its events: a transport's own object for it."""
        self._now = now
        exchanges = self._exchanges
        given = message.token
        token = given or exchanges.new_token(addr)
        if given or not token:  # (a token made here is in use with no peer)
            old = exchanges.find(addr, token)
            if old is not None:
                self._drop_request(old)
        if message.type is not _CON and message.type is not _NON:
            message = Message(_CON, message.code, 0, token, message.options, message.payload)
        elif message.token != token:
            message = Message(
                message.type, message.code, message.mid, token, message.options, message.payload
            )
        req = OutgoingRequest(addr, token, message)
        req.handle = handle
        exchanges.put(req)
        if req.con:
            peer = exchanges.peer(addr)
            if peer.inflight >= self.config.nstart:
                if len(peer.queue) >= self.config.max_queued_requests_per_peer:
                    exchanges.take(req)
                    req.live = False
                    failed = RequestFailed(addr, token, message, "too many queued requests", handle)
                    self._events.append(failed)
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
        options: Options | list[tuple[int, bytes]] = response.options
        payload = response.payload
        # No block is smaller than 16 bytes: a payload that small never asks for the peer's limit.
        szx = self._szx
        if self.payload_limit is not None and len(payload) > 16:
            limit = self.payload_limit(addr)  # _szx_for inline: this is the path of every answer
            if limit is not None:
                szx = szx_within(limit, szx)
        if (
            event.block1 is not None
            or event.observe is not None
            or event.block2 is not None
            or len(payload) > 1 << (szx + 4)
        ):
            code, options, payload = self._shape_response(event, code, options, payload, now, szx)
        mid = req.mid
        key = (addr, mid)
        un = self._un
        if un is None:
            un = self._unanswered
        fresh = un.fresh
        seen = fresh.pop(key, None)
        if seen is not None and not fresh:
            fresh.clear()  # an emptied dict keeps its table (160 bytes) until cleared
        if seen is not None or (un.unacked and un.unacked.pop(key, None) is not None):
            # The common case: piggybacked in the ACK, which is also cached for duplicates (§4.5).
            data = encode_parts(_ACK, code, mid, req.token, options, payload)
            if seen is not None:
                # (SeenMessages.keep_reply inline: the path of every answer)
                replies = seen.replies
                if replies is not None:
                    replies[mid] = data
                elif seen.mid == mid:
                    seen.reply = data
            else:
                self._dedup.cache_reply(addr, mid, data)
            self._out.append((data, addr))
            return
        exchanges = self._exchanges
        mid = exchanges.alloc_mid()
        if req.type is _CON:
            # §5.2.2: the ACK went out empty already; the response is a CON of its own.
            data = encode_parts(_CON, code, mid, req.token, options, payload)
            exchanges.add_tx(addr, mid, req.token, data, None, now)
        else:
            data = encode_parts(_NON, code, mid, req.token, options, payload)
        self._out.append((data, addr))

    def notify(
        self, relation: tuple[Any, bytes], message: Message, now: float, *, confirmable: bool = False
    ) -> bool:
        """Send a notification on ``relation``; False if that observation has ended."""
        rel = self._relations.get(relation)
        if rel is None:
            return False
        addr = rel.addr
        code = message.code
        options: Options | list[tuple[int, bytes]] = strip(message.options, frozenset((_OBSERVE,)))
        payload = message.payload
        final = code >> 5 != 2
        if final:
            # RFC 7641 §3.2, §4.2: an error ends the observation; it carries no Observe option.
            self._remove_relation(rel)
        else:
            options.append((_OBSERVE, encode_uint(rel.next_seq())))  # type: ignore[union-attr]
            options.sort(key=lambda o: o[0])  # type: ignore[union-attr]
        szx = self._szx if self.payload_limit is None or len(payload) <= 16 else self._szx_for(addr)
        if len(payload) > 1 << (szx + 4):
            # RFC 7959 §2.6: the notification carries the first block; the client GETs the rest.
            total = len(payload)
            base = strip(options, frozenset((_OBSERVE, _BLOCK2, OptionNumber.SIZE2)))
            self._blocks.keep_served((addr, *rel.cache_key), code, base, payload, now)
            self._plan(self._blocks.next_expiry())
            options = block2_options(options, 0, True, szx, total)
            payload = payload[: 1 << (szx + 4)]
        else:
            options = tuple(options)
        if message.type is _CON or now - rel.last_con >= self.config.notification_con_interval:
            confirmable = True
        exchanges = self._exchanges
        mid = exchanges.alloc_mid()
        if confirmable:
            rel.last_con = now
            data = encode_parts(_CON, code, mid, rel.token, options, payload)
            old = rel.tx
            tx = exchanges.add_tx(addr, mid, rel.token, data, None if final else rel, now)
            if old is not None and old.live:
                # RFC 7641 §4.5.2: the new state replaces the one still being retransmitted,
                # keeping its retransmission counter and timeout.
                exchanges.replace_tx(old, tx, now)
                self._remember_non(addr, old.mid, rel, now)  # an RST to it still cancels (§3.6)
            if not final:
                rel.tx = tx
        else:
            data = encode_parts(_NON, code, mid, rel.token, options, payload)
            self._remember_non(addr, mid, None if final else rel, now)
        self._out.append((data, addr))
        return True

    def report_empty_ack(self, addr: Any, token: bytes) -> bool:
        """Raise RequestAcknowledged if the peer acknowledges our CON request ``token`` at ``addr``
        with an empty ACK (its answer then follows as a separate response, §5.2.2); False if there
        is no such request waiting for its answer (answered, or not confirmable)."""
        req = self._exchanges.find(addr, token)
        if req is None or not req.live or not req.con or req.observing:
            return False
        wanted = self._acks_wanted
        if wanted is None:
            wanted = self._acks_wanted = set()
        wanted.add(req)
        return True

    def cancel(self, token: bytes, addr: Any = None, *, near: Any = None) -> None:
        """Forget our request or observation with ``token`` (at ``addr``, or at any peer). ``near``:
        where it most likely is (one look there first; a look through every request, which a
        server with a million observations cannot afford per cancel, only when not there)."""
        exchanges = self._exchanges
        if addr is not None:
            req = exchanges.find(addr, token)
            victims = [req] if req is not None else []
        elif near is not None and (req := exchanges.find(near, token)) is not None:
            victims = [req]
        elif (req := exchanges.requests.get(token)) is not None:
            victims = [req]  # kept by its token: the one request with it
        else:
            victims = [r for r in exchanges.requests.values() if r.token == token]
        for req in victims:
            self._drop_request(req)

    def resume_observation(
        self, addr: Any, token: bytes, now: float, request: Message | None = None, handle: Any = None
    ) -> None:
        """Deliver notifications from ``addr`` with ``token`` again (see the module docstring);
        ``handle`` comes back with them, as with ``request``."""
        self._now = now
        if request is None:
            # Code 0 marks "registration unknown": no Block2 follow-up can be built from it.
            request = _UNKNOWN_REGISTRATION
        else:
            request = _kept(Message(_CON, request.code, 0, b"", request.options, request.payload))
        exchanges = self._exchanges
        old = exchanges.find(addr, token)
        if old is not None:
            self._drop_request(old)
        req = OutgoingRequest(addr, token, request)
        req.handle = handle
        req.observing = True
        # Nothing is known of the sequence numbers sent so far: any notification is newer
        # than "long ago" (RFC 7641 §3.4, the 128 s rule), after which the rule applies.
        req.obs_time = -_INF
        exchanges.put(req)

    def handles(self) -> list[Any]:
        """The handles of the requests (and observations) still held, as given to ``request``."""
        return [req.handle for req in self._exchanges.requests.values() if req.handle is not None]

    def move_observation(self, token: bytes, addr: Any, new_addr: Any) -> bool:
        """Match notifications of observation ``token`` on ``new_addr`` (see the module docstring)."""
        exchanges = self._exchanges
        req = exchanges.find(addr, token)
        if req is None or not req.live or not req.observing:
            return False
        if new_addr == addr:
            return True
        other = exchanges.find(new_addr, token)
        if other is not None:
            self._drop_request(other)
        exchanges.take(req)
        # An accepted observation holds no transmission nor NSTART slot (both released with
        # the registration's answer), so the address is only its key and the peer it names.
        req.addr = new_addr
        exchanges.put(req)
        return True

    def adopt_notification(self, addr: Any, token: bytes, now: float, request: Message | None = None) -> bool:
        """Take up the observation of the notifications held for ``(addr, token)`` and deliver
        them (see the module docstring)."""
        messages = self.held.take(addr, token)
        if messages is None:
            return False
        self._now = now
        exchanges = self._exchanges
        req = exchanges.find(addr, token)
        if req is None or not req.live or not req.observing:
            self.resume_observation(addr, token, now, request)
            req = exchanges.find(addr, token)
            assert req is not None
        for msg in messages:
            if msg.type is _CON:
                ack = empty(EMPTY_ACK, msg.mid)
                self._out.append((ack, addr))
                self._dedup.cache_reply(addr, msg.mid, ack)  # a retransmission gets it again
            if req.live:  # (a final notification among them ends it)
                self._on_notification(req, msg, now)
        self._plan(now)  # the transport's next wake-up sends and delivers it
        return True

    def reject_notification(self, addr: Any, token: bytes, now: float) -> bool:
        """Answer the notifications held for ``(addr, token)`` with RST (RFC 7641 §3.5)."""
        messages = self.held.take(addr, token)
        if messages is None:
            return False
        self._now = now
        for msg in messages:
            self._reset_unknown(addr, msg)
        self._plan(now)
        return True

    def drop_notification(self, addr: Any, token: bytes) -> bool:
        """Forget the notifications held for ``(addr, token)`` without an answer: no ACK and no
        RST (which would end the client's observation, RFC 7641 §3.6), nothing cached for their
        duplicates, so that a confirmable one sent again (RFC 7252 §4.2) is held and decided
        anew. For a look-up that failed, not for a token known to be nobody's."""
        messages = self.held.take(addr, token)
        if messages is None:
            return False
        for msg in messages:
            self._dedup.forget(addr, msg.mid)
        return True

    def _reset_unknown(self, addr: Any, msg: Message) -> None:
        """RST to a message nobody waits for, kept to replay for its duplicates (RFC 7252 §4.2)."""
        rst = empty(EMPTY_RST, msg.mid)
        self._out.append((rst, addr))
        self._dedup.cache_reply(addr, msg.mid, rst)

    def observations(self) -> list[tuple[Any, bytes]]:
        """The server-side observation relations, as ``(addr, token)`` handles."""
        relations: Relations | None = self._rel
        return [] if relations is None else list(relations.table)

    def state_sizes(self) -> dict[str, int]:
        """How much state the endpoint holds, by kind (for monitoring and tests)."""
        exchanges = self._exchanges
        blocks: BlockTransfers | None = self._blk
        un: Unanswered | None = self._un
        relations: Relations | None = self._rel
        held: HeldNotifications | None = self._held
        return {
            "dedup": len(self._dedup),
            "unacked": 0 if un is None else len(un),
            "tx": len(exchanges.tx),
            "non_sent": len(exchanges.non_sent or ()),
            "requests": len(exchanges.requests),
            "peers": len(exchanges.peers),
            "reassembly": 0 if blocks is None else len(blocks.reassembly),
            "block_bytes": 0 if blocks is None else blocks.bytes,
            "served": 0 if blocks is None else len(blocks.served),
            "relations": 0 if relations is None else len(relations),
            "held": 0 if held is None else len(held),
            "heap": len(exchanges.heap),
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
        dedup = self._dedup
        seen = dedup.record(addr, mid, mtype is _CON, now)
        if dedup.rotated:  # a new generation: re-plan the sweep
            dedup.rotated = False
            self._sweep(now)
        if type(seen) is not _Seen:
            if seen:  # a duplicate CON: the reply again (§4.5)
                self._out.append((cast(bytes, seen), addr))
            return
        addr = seen.addr
        # The handlers below fill in record[0], the reply to replay for a duplicate.
        record: list[bytes | None] = [None]
        try:
            if code <= 31:
                self._on_request(msg, addr, seen, record, now)
            elif 64 <= code <= 191:
                self._on_separate_response(msg, addr, record, now)
            elif mtype is _CON:
                # A reserved code class (1, 6, 7): a CON we cannot handle is rejected (§4.2).
                record[0] = rst = empty(EMPTY_RST, msg.mid)
                self._out.append((rst, addr))
        finally:
            if record[0] is not None:
                self._dedup.cache_reply(addr, mid, record[0])

    # --- requests to us (server side) -------------------------------------------------------------

    def _on_request(
        self, msg: Message, addr: Any, peer: SeenMessages, record: list[bytes | None], now: float
    ) -> None:
        """A request off the plain path, recorded in ``peer``; ``record[0]`` gets the reply to
        replay for duplicates."""
        known = self._critical_known
        special = False
        for number, _ in msg.options:
            if number & 1 and number not in known:
                # §5.4.1: an unrecognized critical option in a request is answered with 4.02.
                self._answer(msg, addr, record, Code.BAD_OPTION, (), b"", now)
                return
            if number == 6 or number == 23 or number == 27:
                special = True
        observe = None
        block1 = block2 = None
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
                self._answer(msg, addr, record, Code.BAD_REQUEST, (), b"bad Block or Observe option", now)
                return
            if observe == 1:
                rel = self._relations.get((addr, msg.token))
                if rel is not None:
                    # RFC 7641 §3.6: a GET with Observe=1 deregisters, then is served as usual.
                    self._remove_relation(rel)
                    self._events.append(ObservationCancelled(addr, msg.token, "deregistered"))
            blocks = self._blocks
            if block1 is not None:
                got = blocks.receive_block1(msg, addr, block1, now)
                self._plan(blocks.next_expiry())
                if not isinstance(got, Message):
                    self._answer(msg, addr, record, *got, now)
                    return
                msg = got
            if block2 is not None and block2.num:
                ceiling = None if self.payload_limit is None else self._szx_for(addr)
                answer = blocks.serve_block2(msg, addr, block2, now, ceiling)
                if answer is not None:
                    self._answer(msg, addr, record, *answer, now)
                    return
        if msg.type is _CON:
            un = self._un
            if un is None:  # the first request (the property makes it): no call on the hot path
                un = self._unanswered
            evicted = un.add((addr, msg.mid), peer, now)
            if evicted is not None:
                self._send_empty_ack(evicted)
        self._events.append(RequestReceived(addr, msg, observe, block1, block2))

    def _answer(
        self,
        msg: Message,
        addr: Any,
        record: list[bytes | None],
        code: int,
        options: Options,
        payload: bytes,
        now: float,
    ) -> None:
        """A response made by the endpoint itself: piggybacked for CON, a NON for a NON."""
        if code >= 128:  # a refusal (4.xx, 5.xx): not on the request path of a good request
            self._log_refusal(msg, addr, code, payload, now)
        if msg.type is _CON:
            data = encode_parts(_ACK, code, msg.mid, msg.token, options, payload)
            record[0] = data
        else:
            data = encode_parts(_NON, code, self._exchanges.alloc_mid(), msg.token, options, payload)
        self._out.append((data, addr))

    def _log_refusal(self, msg: Message, addr: Any, code: int, payload: bytes, now: float) -> None:
        """One line per refusal, within the endpoint's budget: a sender that floods the endpoint
        with bad requests gets a count, not a line per datagram."""
        budget = self._refusal_log
        if not budget.log(
            _category(code),
            now,
            logging.INFO,
            "%s %s refused from %s: %s: %s",
            Code(msg.code).name if 1 <= msg.code <= 7 else code_text(msg.code),
            msg.uri_path_str or "/",
            _where(addr),
            code_text(code),
            payload.decode("utf-8", "replace") if payload else _REASONS.get(code, ""),
        ):
            due = budget.next_due()
            if due is not None:
                self._plan(due)  # the count is told from handle_timer once the window ends

    def _send_empty_ack(self, key: tuple[Any, int]) -> None:
        data = empty(EMPTY_ACK, key[1])
        self._dedup.cache_reply(key[0], key[1], data)
        self._out.append((data, key[0]))

    def _shape_response(
        self,
        event: RequestReceived,
        code: int,
        options: Options | list[tuple[int, bytes]],
        payload: bytes,
        now: float,
        szx: int,
    ) -> tuple[int, Options | list[tuple[int, bytes]], bytes]:
        """Block1 echo, Observe registration and Block2 slicing of a response (in blocks of at
        most ``szx``, the peer's)."""
        if event.block1 is not None:
            # RFC 7959 §2.3: the final response to a Block1 transfer echoes the last block.
            options = with_options(strip(options, frozenset((_BLOCK1,))), (_BLOCK1, event.block1.encode()))
        if event.observe is not None:
            options = self._observe_on_respond(event, code, options, now)
        b2 = event.block2
        if len(payload) > 1 << (szx + 4) or (b2 is not None and (b2.num or b2.szx < szx)):
            blocks = self._blocks
            ceiling = None if szx == self._szx else szx
            sliced = blocks.slice_response(
                event.addr, event.message, b2, code, options, payload, now, ceiling
            )
            self._plan(blocks.next_expiry())
            if sliced is None:
                return Code.BAD_OPTION, (), b"block number past the end"
            options, payload = sliced
        return code, options, payload

    def _szx_for(self, addr: Any) -> int:
        # Our block size, or a smaller one when the transport bounds messages to ``addr``.
        assert self.payload_limit is not None
        limit = self.payload_limit(addr)
        return self._szx if limit is None else szx_within(limit, self._szx)

    def _observe_on_respond(
        self, event: RequestReceived, code: int, options: Options | list[tuple[int, bytes]], now: float
    ) -> Options:
        addr, token = event.addr, event.message.token
        rest = strip(options, frozenset((_OBSERVE,)))
        wants = len(rest) != len(options)
        rel = self._relations.get((addr, token))
        if event.observe == 0 and wants and code >> 5 == 2:
            if rel is None:
                rel, evicted = self._relations.add(addr, token, request_key(event.message), now)
                if evicted is not None:
                    self._end_relation_tx(evicted)
                    self._events.append(ObservationCancelled(evicted.addr, evicted.token, "evicted"))
                if rel is None:
                    return tuple(rest)  # not registered: the client sees no Observe option (§4.1)
            return with_options(rest, (_OBSERVE, encode_uint(rel.next_seq())))
        if event.observe == 0 and rel is not None:
            self._remove_relation(rel)  # a refused re-registration ends the old one (§4.1)
        return tuple(rest)

    def _remove_relation(self, rel: Relation) -> None:
        if self._relations.remove(rel):
            self._end_relation_tx(rel)

    def _end_relation_tx(self, rel: Relation) -> None:
        if rel.tx is not None and rel.tx.live:
            self._exchanges.kill_tx(rel.tx)
        rel.tx = None

    # --- answers to our messages (client side) -------------------------------------------------------

    def _on_piggybacked(self, msg: Message, addr: Any, now: float) -> None:
        tx = self._exchanges.tx.get((addr, msg.mid))
        if tx is None or tx.token != msg.token or not isinstance(tx.owner, OutgoingRequest):
            return  # a late or duplicate ACK, or one not matching our token (§5.3.2): ignored
        req = tx.owner
        self._exchanges.kill_tx(tx)
        req.tx = None
        self._on_response(req, msg, now)

    def _on_empty_ack(self, addr: Any, mid: int, now: float) -> None:
        tx = self._exchanges.pop_tx(addr, mid)
        if tx is None:
            return
        owner = tx.owner
        if isinstance(owner, OutgoingRequest):
            # §5.2.2: the response comes separately; the exchange no longer counts for NSTART.
            wanted = self._acks_wanted
            report = wanted is not None and owner in wanted
            owner.tx = None
            self._release(owner, now)
            if not owner.observing:
                timeout = self.config.response_timeout
                assert timeout is not None  # derived by EndpointConfig
                owner.deadline = now + timeout
                self._exchanges.push(owner.deadline, owner)
            if report:
                self._events.append(RequestAcknowledged(addr, owner.token))
        elif isinstance(owner, Relation) and owner.tx is tx:
            owner.tx = None

    def _on_reset(self, addr: Any, mid: int) -> None:
        exchanges = self._exchanges
        tx = exchanges.pop_tx(addr, mid)
        if tx is not None:
            owner, token = tx.owner, tx.token
        else:
            owner = exchanges.pop_non(addr, mid)
            if owner is None:
                return
            token = owner.token
        if isinstance(owner, Relation):
            # RFC 7641 §3.6: an RST to a notification cancels the observation.
            if self._relations.current(owner):
                self._remove_relation(owner)
                self._events.append(ObservationCancelled(addr, owner.token, "reset"))
            return
        if isinstance(owner, OutgoingRequest):
            if not owner.live:
                return
            self._drop_request(owner)
            parent = None if owner.blocks is None else owner.blocks.parent
            if parent is not None:
                if parent.live:
                    self._events.append(
                        RequestFailed(addr, parent.token, parent.request, "block fetch reset", parent.handle)
                    )
                return
        handle = owner.handle if isinstance(owner, OutgoingRequest) else None
        self._events.append(ResetReceived(addr, token, mid, handle))

    def _on_separate_response(self, msg: Message, addr: Any, record: list[bytes | None], now: float) -> None:
        # Exchanges.find inline: every notification comes this way.
        requests = self._exchanges.requests
        token = msg.token
        req = requests.get(token)
        if req is None or req.addr != addr:
            req = requests.get((addr, token))
        if req is None or not req.live or (req.tx is None and req.deadline == _INF and not req.observing):
            if (
                req is None
                and self.hold_unknown_notifications
                and msg.code >> 5 == 2
                and msg.has_option(_OBSERVE)
                and self.held.hold(addr, msg, now)
            ):
                # A notification of an observation another node of a shared store may have
                # made: held, unanswered, for the application to adopt or reject.
                self._plan(self.held.next_expiry())
                self._events.append(UnknownNotification(addr, msg))
                return
            # §5.3.2 / RFC 7641 §3.6: a response or notification nobody waits for gets RST.
            rst = empty(EMPTY_RST, msg.mid)
            record[0] = rst
            self._out.append((rst, addr))
            return
        if msg.type is _CON:
            record[0] = ack = empty(EMPTY_ACK, msg.mid)
            self._out.append((ack, addr))
        if req.tx is not None:
            # A separate response can overtake the (lost) empty ACK: it acknowledges too.
            self._exchanges.kill_tx(req.tx)
            req.tx = None
        self._on_response(req, msg, now)

    def _on_response(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        if req.observing:
            self._on_notification(req, msg, now)
            return
        code = msg.code
        blocks = req.blocks
        try:
            if blocks is not None and blocks.b1_sent and code == Code.CONTINUE:
                self._next_block1(req, blocks, msg, now)
                return
            if blocks is not None:
                blocks.b1_sent = 0
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
                    self._events.append(ResponseReceived(req.addr, req.token, req.request, msg, req.handle))
                # Kept as long as the observation runs, shared with every relation made with
                # an equal request (``_kept``): the relation's token is ``req.token``.
                req.request = _kept(req.request)
                return
            b2 = msg.block2 if code >> 5 == 2 else None
        except ValueError:
            self._fail(req, "malformed Block or Observe option in the response")
            return
        if b2 is not None and (b2.more or (blocks is not None and blocks.b2_buf is not None)):
            whole = self._on_block2(req, msg, b2, now)
            if whole is None:
                return
            msg = whole
        self._finish(req, msg, now)

    def _next_block1(self, req: OutgoingRequest, blocks: BlockState, msg: Message, now: float) -> None:
        b1 = msg.block1
        body = req.request.payload
        nxt = blocks.b1_offset + blocks.b1_sent
        if b1 is None or nxt >= len(body):
            self._fail(req, "2.31 Continue that does not fit the Block1 transfer")
            return
        blocks.b1_offset = nxt
        blocks.b1_szx = min(blocks.b1_szx, b1.szx)  # RFC 7959 §2.5: follow the server's smaller size
        options, payload = self._block1_part(req, blocks)
        self._send(req, options, payload, now)

    def _block1_part(self, req: OutgoingRequest, blocks: BlockState) -> tuple[Options, bytes]:
        body = req.request.payload
        size = 1 << (blocks.b1_szx + 4)
        off = blocks.b1_offset
        chunk = body[off : off + size]
        blocks.b1_sent = len(chunk)
        num = off // size
        extra = [(_BLOCK1, BlockOption(num, off + size < len(body), blocks.b1_szx).encode())]
        if num == 0:
            extra.append((_SIZE1, encode_uint(len(body))))
        return with_options(strip(req.request.options), *extra), chunk

    def _on_block2(self, req: OutgoingRequest, msg: Message, b2: BlockOption, now: float) -> Message | None:
        """Collect one Block2 block; ask for the next, or return the whole response."""
        etag = msg.option(OptionNumber.ETAG)
        blocks = req.transfer()
        buf = blocks.b2_buf
        if buf is None:
            if b2.num != 0:
                self._fail(req, "Block2 response does not start at block 0")
                return None
            buf = blocks.b2_buf = bytearray()
            blocks.b2_first = msg
            blocks.b2_etag = etag
        elif b2.num * b2.size != len(buf):
            self._fail(req, "Block2 block out of sequence")
            return None
        elif etag != blocks.b2_etag:
            self._fail(req, "representation changed during the Block2 transfer")  # RFC 7959 §2.4
            return None
        if len(buf) + len(msg.payload) > self.config.max_body_size:
            self._fail(req, "Block2 body larger than max_body_size")
            return None
        if not self._blocks.reserve(len(msg.payload)):
            self._fail(req, "block-wise memory exhausted (max_block_bytes)")
            return None
        buf += msg.payload
        if b2.more:
            self._send(req, *self._block2_next(req, b2.szx), now)
            return None
        first = blocks.b2_first or msg
        self._free_block2(req)
        options = tuple(strip(first.options))
        return Message(first.type, first.code, first.mid, first.token, options, bytes(buf))

    def _block2_next(self, req: OutgoingRequest, szx: int) -> tuple[Options, bytes]:
        assert req.blocks is not None and req.blocks.b2_buf is not None
        num = len(req.blocks.b2_buf) >> (szx + 4)
        base = strip(req.request.options, frozenset((_BLOCK1, _BLOCK2, _SIZE1, OptionNumber.SIZE2, _OBSERVE)))
        options = with_options(base, (_BLOCK2, BlockOption(num, False, szx).encode()))
        # The request body is sent again only where it identifies the resource (FETCH, RFC 8132).
        payload = req.request.payload if req.request.code == Code.FETCH else b""
        return options, payload

    def _spawn_fetch(self, parent: OutgoingRequest, first: Message, seq: int | None, now: float) -> None:
        """Fetch the rest of a Block2 notification or registration response with a new token
        (RFC 7959 §2.6)."""
        exchanges = self._exchanges
        token = exchanges.new_token(parent.addr)
        base = Message(_CON, parent.request.code, 0, token, parent.request.options, parent.request.payload)
        child = OutgoingRequest(parent.addr, token, base)
        child.observe = False
        blocks = child.blocks = BlockState()
        blocks.parent = parent
        blocks.parent_seq = seq
        blocks.b2_buf = bytearray(first.payload)
        self._blocks.hold(len(first.payload))
        blocks.b2_first = first
        blocks.b2_etag = first.option(OptionNumber.ETAG)
        exchanges.put(child)
        b2 = first.block2
        assert b2 is not None
        blocks.b2_szx = b2.szx
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
            self._events.append(CoapNotificationReceived(req.addr, req.token, msg, None, req.handle))
            return
        if not is_fresh(req.obs_seq, req.obs_time, seq, now):
            return  # reordered: older than what we already have (RFC 7641 §3.4)
        req.obs_seq = seq
        req.obs_time = now
        if b2 is not None and b2.more:
            if req.request.code:
                self._spawn_fetch(req, msg, seq, now)
                return
            # A resumed observation without its registration: nothing to fetch the rest with.
        elif b2 is not None:
            msg = Message(msg.type, code, msg.mid, msg.token, tuple(strip(msg.options)), msg.payload)
        self._events.append(CoapNotificationReceived(req.addr, req.token, msg, seq, req.handle))

    def _finish(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        self._drop_request(req, now)
        blocks = req.blocks
        parent = None if blocks is None else blocks.parent
        if parent is None:
            self._events.append(ResponseReceived(req.addr, req.token, req.request, msg, req.handle))
        elif parent.live:
            assert blocks is not None
            if blocks.parent_seq is None:
                self._events.append(
                    ResponseReceived(parent.addr, parent.token, parent.request, msg, parent.handle)
                )
            else:
                self._events.append(
                    CoapNotificationReceived(parent.addr, parent.token, msg, blocks.parent_seq, parent.handle)
                )

    def _fail(self, req: OutgoingRequest, reason: str) -> None:
        self._drop_request(req)
        parent = None if req.blocks is None else req.blocks.parent
        target = parent if parent is not None else req
        if target.live or target is req:
            self._events.append(RequestFailed(req.addr, target.token, target.request, reason, target.handle))

    def _request_expired(self, req: OutgoingRequest) -> None:
        if req.observing:
            return
        self._drop_request(req)
        parent = None if req.blocks is None else req.blocks.parent
        if parent is None:
            self._events.append(RequestTimedOut(req.addr, req.token, req.request, req.handle))
        elif parent.live:
            self._events.append(
                RequestFailed(req.addr, parent.token, parent.request, "block fetch timed out", parent.handle)
            )

    # --- sending our requests -------------------------------------------------------------------

    def _enqueue(self, req: OutgoingRequest, now: float) -> None:
        if req.con:
            peer = self._exchanges.peer(req.addr)
            if peer.inflight >= self.config.nstart:
                peer.queue.append(req)
                return
        self._start(req, now)

    def _start(self, req: OutgoingRequest, now: float) -> None:
        blocks = req.blocks
        if blocks is not None and blocks.b2_buf is not None:
            options, payload = self._block2_next(req, blocks.b2_szx)
        elif len(req.request.payload) > self._block_size or (
            self.payload_limit is not None and len(req.request.payload) > 1 << (self._szx_for(req.addr) + 4)
        ):
            blocks = req.transfer()
            blocks.b1_szx = self._szx if self.payload_limit is None else self._szx_for(req.addr)
            options, payload = self._block1_part(req, blocks)
        else:
            options, payload = req.request.options, req.request.payload
        mid = self._send(req, options, payload, now)
        r = req.request
        req.request = Message(r.type, r.code, mid, r.token, r.options, r.payload)

    def _send(self, req: OutgoingRequest, options: Options, payload: bytes, now: float) -> int:
        exchanges = self._exchanges
        mid = exchanges.alloc_mid()
        addr = req.addr
        r = req.request
        data = encode_parts(r.type, r.code, mid, req.token, options, payload)
        if req.con:
            req.tx = exchanges.add_tx(addr, mid, req.token, data, req, now)
            exchanges.take_slot(req)
        else:
            timeout = self.config.response_timeout
            assert timeout is not None  # derived by EndpointConfig
            req.deadline = now + timeout
            exchanges.push(req.deadline, req)
            self._remember_non(addr, mid, req, now)
        self._out.append((data, addr))
        return mid

    def _release(self, req: OutgoingRequest, now: float | None = None) -> None:
        """Give back the request's NSTART slot and start queued requests (RFC 7252 §4.7)."""
        if self._acks_wanted:  # acknowledged or answered: no empty ACK to report any more
            self._acks_wanted.discard(req)
        exchanges = self._exchanges
        peer = exchanges.release_slot(req)
        if peer is None:
            return
        if now is None:
            now = max(self._now, self._dedup.rx_at)
        while (nxt := exchanges.next_queued(peer)) is not None:
            self._start(nxt, now)
        exchanges.forget_idle(req.addr, peer)

    def _free_block2(self, req: OutgoingRequest) -> None:
        """Give back the bytes of the Block2 body ``req`` was collecting."""
        blocks = req.blocks
        if blocks is not None and blocks.b2_buf is not None:
            self._blocks.release(len(blocks.b2_buf))
            blocks.b2_buf = None
            blocks.b2_first = None

    def _drop_request(self, req: OutgoingRequest, now: float | None = None) -> None:
        req.live = False
        if self._acks_wanted:
            self._acks_wanted.discard(req)
        if req.blocks is not None:
            self._free_block2(req)
        exchanges = self._exchanges
        exchanges.take(req)
        if req.tx is not None:
            exchanges.kill_tx(req.tx)
            req.tx = None
        if req.counted:
            self._release(req, now)
        else:
            exchanges.unqueue(req)

    # === transmission and timers ===================================================================

    def _retransmit(self, tx: Transmission, now: float) -> None:
        if self._exchanges.back_off(tx, now):
            self._out.append((tx.data, tx.addr))
            return
        owner = tx.owner
        if isinstance(owner, OutgoingRequest):
            if owner.tx is tx:
                owner.tx = None
            self._request_expired(owner)
        elif isinstance(owner, Relation) and self._relations.current(owner):
            # RFC 7641 §4.5: a client that does not acknowledge is no longer interested.
            self._remove_relation(owner)
            self._events.append(ObservationCancelled(owner.addr, owner.token, "timeout"))

    def _remember_non(self, addr: Any, mid: int, owner: Any, now: float) -> None:
        expires = self._exchanges.remember_non(addr, mid, owner, now)
        if expires is not None and expires < self._sweep_at:
            self._sweep_at = expires

    def _plan(self, at: float) -> None:
        """Have handle_timer run by ``at``, when something held expires then."""
        if at < self._sweep_at:
            self._sweep_at = at

    def _sweep(self, now: float) -> None:
        """Forget expired duplicate-detection entries, NON messages sent and stale block-wise
        state, then set ``_sweep_at`` to the next expiry of what is left. Runs from
        ``handle_timer``, so that state goes on time whether or not datagrams keep coming."""
        dedup = self._dedup
        exchanges = self._exchanges
        dedup.expire(now)
        exchanges.expire(now)
        at = min(dedup.next_expiry(), exchanges.next_expiry())
        blocks: BlockTransfers | None = self._blk
        if blocks is not None:
            blocks.expire(now)
            at = min(at, blocks.next_expiry())
        held: HeldNotifications | None = self._held
        if held is not None and held.count:
            # Held notifications nobody answered in time: the RST they would have had at once.
            for addr, msg in held.expire(now):
                self._reset_unknown(addr, msg)
            at = min(at, held.next_expiry())
        refusals: LogBudget | None = self._refusals
        if refusals is not None:
            refusals.tick(now)
            due = refusals.next_due()
            if due is not None and due < at:
                at = due
        self._sweep_at = at


_CATEGORIES: dict[int, str] = {}


def _category(code: int) -> str:
    """The log budget's category of a refusal: one per response code."""
    category = _CATEGORIES.get(code)
    if category is None:
        category = _CATEGORIES[code] = f"CoAP requests refused with {code_text(code)}"
    return category


def _where(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    except (TypeError, IndexError, KeyError):  # any hashable names a peer in the sans-IO API
        return repr(addr)
