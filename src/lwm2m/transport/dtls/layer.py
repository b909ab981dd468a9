"""The DTLS session layer: between the UDP driver and the sans-IO CoAP endpoint (RFC 6347).

``DtlsLayer`` has the driver's side of ``lwm2m.coap.endpoint.Endpoint``
(``receive_datagram``, ``datagrams_to_send``, ``get_timer``, ``handle_timer``,
``next_event``), so ``UdpDriver`` moves its datagrams unchanged: records
from a peer are decrypted by that peer's session and the plaintext goes to the
CoAP endpoint under the peer's address; what the CoAP endpoint sends is
encrypted by the session of the address it goes to. The application calls
(``request``, ``respond``, ``notify``, ...) go straight to the CoAP endpoint.

Sessions are keyed by the peer's socket address, many on one socket:

- A server keeps nothing for a ClientHello until it carries a valid cookie
  (HelloVerifyRequest, §4.2.1); datagrams from unknown addresses that are no
  ClientHello are dropped.
- Handshakes in progress are bounded by ``handshake_memory`` (the backend's cost
  of one handshake tells how many fit) and ``max_handshakes``; the oldest goes
  first. Each has a retransmission timer (§4.2.4) and a lifetime
  (``handshake_lifetime``) that the timer ends, datagrams or not; an ended
  handshake's connection is let go at once, whatever timer entries remain.
- A ClientHello from an address that has a session starts a second handshake
  beside it; the old session keeps working and is replaced only when the new
  handshake has authenticated the peer (so a forged ClientHello cannot end it).
- Established sessions are bounded (``max_sessions``) and leave memory when idle
  for ``idle_timeout`` or when the least recently used must make room. When the
  backend can save them they are kept as saved state (``max_parked``) and
  taken up again without a handshake when the peer's next record authenticates (or when
  the CoAP endpoint sends to the peer); a parked session with a Connection ID is
  found by it too, from whatever address its next record comes. A datagram that does not
  authenticate leaves it parked.
- A client (``client`` factory given) starts a handshake on the first datagram
  the CoAP endpoint sends to an address without a session, and holds the
  datagrams (``max_queued``) until it ends. The backend is told the address, so
  that it can offer the last session made there: an abbreviated handshake
  (RFC 5246 §7.3, RFC 5077) when the server still knows it or has its ticket.
- Connection IDs (RFC 9146): a ``tls12_cid`` record finds its server session by the CID
  the session gave, whatever address it comes from. When it authenticates with a
  sequence number above every one accepted before, and comes from a new address, the
  session moves there (§6): a replayed or older record cannot redirect it. The CoAP
  endpoint then sees the peer at its new address, and a ``SessionMoved`` event tells the
  application (an LwM2M server moves the registration with it).

A server's sessions survive a restart as bytes: ``export_sessions`` parks every established
one and hands the parked ones out (``saved.py``: the backend's state with the identity beside
it), and they leave the layer, so that no copy is ever taken up twice (that would repeat
sequence numbers, and with them AEAD nonces); ``import_sessions`` parks them in a new layer,
whose peers then go on without a handshake. ``ticket_state``/``load_ticket_state`` carry the
backend's ticket keys (RFC 5077) the same way.

A server of a cluster may hold the records of sessions it does not know (``hold_unknown``, off
by default: ``hold.py``): a tls12_cid record of an unknown CID, an epoch-1 record from an
address without a session, which would be dropped, are held (bounded) and announced
(``SessionSought``); the application answers with another node's saved session
(``authenticates``, then ``take_over``: parked, and the held records fed again) or ``let_go``.
Only that drop path does more work; the others are as they were. ``session_state`` hands out
a live or parked server session's bytes while it goes on here.

Retransmission timers are the backend's (``Connection.get_timer``): the layer keeps one
heap of them and a lifetime per handshake.

An established session's datagrams go through ``Connection.feed_read``: ``feed`` and ``read``
in one call for the datagram such a session gets most, one application record (the engine
opens it without an event object in between); its plaintext goes straight to the CoAP
endpoint, and anything else (None) takes the general way, ``read`` and ``outgoing``.
``advanced`` then tells what ``feed`` would have returned.

Only what authenticated counts as hearing from a peer: plaintext read, or a record that
advanced the replay window (RFC 6347 §4.1.2.6). Anyone can send datagrams from a session's
address (UDP source addresses are not checked), so a datagram that does not authenticate
(garbage, a forged or replayed record) neither refreshes the session's idle time nor moves it
in the eviction order: it cannot keep a session in memory that its peer left.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from lwm2m.coap.logbudget import LogBudget
from lwm2m.errors import DtlsError, HandshakeError, ProtocolError, RecordTooLarge, SessionStateError
from lwm2m.errors import SessionClosed as _SessionClosed
from lwm2m.transport.dtls.backend import ClientFactory, Connection, RecordPath, ServerFactory
from lwm2m.transport.dtls.config import PeerIdentity, SessionLimits
from lwm2m.transport.dtls.events import (
    HandshakeFailed,
    SessionEnded,
    SessionEstablished,
    SessionMoved,
    SessionSought,
)
from lwm2m.transport.dtls.hold import HeldRecords, HoldConfig
from lwm2m.transport.dtls.records import HEADER_LEN, ContentType, epoch, is_client_hello
from lwm2m.transport.dtls.saved import SavedState, decode_saved, encode_saved
from lwm2m.transport.tap import MessageSink, TappedPlain

if TYPE_CHECKING:
    from lwm2m.coap.events import Event, RequestReceived
    from lwm2m.coap.message import Message

__all__ = ["MAX_DATAGRAM", "CoapSide", "DtlsLayer", "SessionInfo"]

log = logging.getLogger(__name__)
# Messages dropped as too large for a peer's records: a few lines and a count, per process.
_TOO_LARGE_LOG = LogBudget(log)

Addr = Any
Role = Literal["server", "client"]

# Plain ints: the first byte of every datagram is compared with them, and a comparison with an
# IntEnum member costs four times one with an int.
_TLS12_CID = int(ContentType.TLS12_CID)
_APPLICATION_DATA = int(ContentType.APPLICATION_DATA)
_PROTECTED = (_APPLICATION_DATA, _TLS12_CID)  # a tuple: the first one found by identity
_CID_AT = HEADER_LEN - 2  # a tls12_cid record's CID follows its sequence number (RFC 9146 §4)
_HANDSHAKE_TYPES = (ContentType.HANDSHAKE, ContentType.CHANGE_CIPHER_SPEC)
_HELLO_HEADER = 13  # a ClientHello's retransmission differs from the first only in the record header
# The largest datagram taken: a full record (2^14 bytes of plaintext, RFC 6347 §4.1) fits; CoAP over
# DTLS stays far below (RFC 7252 §4.6), and the TLS library's input buffer is not much larger.
MAX_DATAGRAM = 16384 + 512
_FULL_RECORD = 16384  # the most plaintext a record carries (RFC 5246 §6.2.1): no limit below it


class PlainSide(Protocol):
    """What the layer hands plaintext to and takes it from: the CoAP endpoint, or a tap."""

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...


class CoapSide(Protocol):
    """What the layer uses of the sans-IO CoAP endpoint it wraps (``lwm2m.coap.endpoint.Endpoint``):
    the driver's side, which the layer stands between, and the application's, which it passes on.

    ``payload_limit`` is set by the layer: the largest CoAP message a peer's session takes, so
    that blocks fit in one record (RFC 8449 §4, RFC 7959). ``released`` is the bytes the
    endpoint let go of so far (estimated), which the layer adds to its own."""

    payload_limit: Callable[[Any], int | None] | None
    events: list[Any]  # the queue ``next_event`` pops from; the layer adds its session events to it

    @property
    def released(self) -> int: ...

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Event | None: ...

    def state_sizes(self) -> dict[str, int]: ...

    def respond(self, event: RequestReceived, response: Message, now: float) -> None: ...

    def request(self, message: Message, addr: Any, now: float, handle: Any = None) -> bytes: ...

    def handles(self) -> list[Any]: ...

    def report_empty_ack(self, addr: Any, token: bytes) -> bool: ...

    def notify(
        self, relation: tuple[Any, bytes], message: Message, now: float, *, confirmable: bool = False
    ) -> bool: ...

    def cancel(self, token: bytes, addr: Any = None, *, near: Any = None) -> None: ...

    def resume_observation(
        self, addr: Any, token: bytes, now: float, request: Message | None = None, handle: Any = None
    ) -> None: ...

    def move_observation(self, token: bytes, addr: Any, new_addr: Any) -> bool: ...

    def observations(self) -> list[tuple[Any, bytes]]: ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the application may know about a session (never its keys)."""

    addr: Addr
    role: Role
    identity: PeerIdentity | None
    cipher_suite: str | None
    established: bool
    last_seen: float


class _Session:
    __slots__ = (
        "addr",
        "cid",
        "cipher",
        "conn",
        "deadline",
        "hello",
        "identity",
        "last_seen",
        "queue",
        "records",
        "role",
        "room",
        "timer_at",
    )

    def __init__(self, conn: Connection, addr: Addr, role: Role, now: float) -> None:
        self.conn = conn
        # The backend's way for this session's application records once it is established
        # (``RecordPath``): the engine's connection itself, with no adapter call in between.
        self.records: RecordPath = conn.records
        self.addr = addr
        self.role = role
        self.identity: PeerIdentity | None = None
        self.cipher: str | None = None
        self.last_seen = now
        self.deadline = 0.0  # a handshake's end of life
        self.cid = b""  # the Connection ID the peer's records carry to us (server sessions)
        self.timer_at: float | None = None
        self.hello = b""  # the ClientHello that started a server handshake, without its record header
        self.queue: deque[bytes] | None = None  # a client's datagrams waiting for the handshake
        # The largest datagram one record takes (the connection's max_application_data, fixed
        # by the handshake: RFC 8449 §4); None while not established, and when the peer set no
        # limit below a full record, so that the CoAP endpoint has nothing to fit.
        self.room: int | None = None

    def info(self) -> SessionInfo:
        return SessionInfo(
            self.addr, self.role, self.identity, self.cipher, self.conn.established, self.last_seen
        )


@dataclass(frozen=True, slots=True)
class _Parked:
    state: bytes
    role: Role
    identity: PeerIdentity | None
    cipher: str | None
    cid: bytes = b""  # the Connection ID the peer's records carry (server sessions), or empty


class _Ended:
    """The connection of a handshake that ended: the library's buffers are let go at once,
    though entries of the timer heap may still name the session until they are popped."""

    __slots__ = ()
    established = False
    advanced = False

    def open_application_data(self, datagram: bytes) -> bytes | None:
        return None

    def protect_application_data(self, data: bytes) -> bytes:
        raise _SessionClosed("the session ended")


_ENDED: Any = _Ended()


def _payload_limit(sessions: Mapping[Addr, _Session]) -> Callable[[Addr], int | None]:
    """The largest CoAP message a session takes (None: not known); a closure over the table
    alone, so that the CoAP endpoint holds no reference back to the layer."""

    def limit(addr: Addr) -> int | None:
        s = sessions.get(addr)
        return None if s is None else s.room

    return limit


def _room(conn: Connection) -> int | None:
    """What the session of ``conn`` bounds a CoAP message to, or None for no bound."""
    room = conn.max_application_data
    return None if room is None or room >= _FULL_RECORD else room


def _client_id(addr: Addr) -> bytes:
    """The transport address a cookie is bound to (RFC 6347 §4.2.1)."""
    return f"{addr[0]}|{addr[1]}".encode()


class _Counters(dict[str, int]):
    """The layer's event counters by name; a name never counted reads as 0. The names:
    hello_verify_sent, handshakes_started, handshakes_done, handshakes_resumed,
    handshakes_failed, sessions_resumed, sessions_parked, sessions_evicted, sessions_moved,
    dropped_unknown_peer, dropped_no_session, dropped_bad_hello, dropped_oversize, dropped_too_large,
    errors, alerts_sent (the fatal alerts of handshakes refused here), alerts_received (a peer's
    close_notify or fatal alert, in a handshake or a session); with ``hold_unknown``: records_held,
    held_refused (also counted as dropped_unknown_peer), held_expired, sessions_taken_over."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return 0


class DtlsLayer:
    """DTLS sessions per peer address around one CoAP ``Endpoint`` (see the module docstring)."""

    def __init__(
        self,
        inner: CoapSide,
        *,
        server: ServerFactory | None = None,
        client: ClientFactory | None = None,
        limits: SessionLimits | None = None,
    ) -> None:
        if server is None and client is None:
            raise ValueError("a DTLS layer needs a server factory, a client factory, or both")
        self._inner = inner
        # Where plaintext goes and comes from: the CoAP endpoint, or a tap around its two calls
        # (``tap``, a per-device message trace) while one is in.
        self._plain: PlainSide = inner
        self._sink: MessageSink | None = None
        # The application side is the CoAP endpoint's own: ``respond`` (once per request a
        # server answers) bound here, the others passed on when called (a simulator runs a
        # layer per device, and a bound method held for each would cost 70 bytes a device).
        self.respond = inner.respond
        self._inner_next = inner.next_event
        self._server = server
        self._client = client
        self.limits = limits or SessionLimits()
        self.handshake_cost = max(f.handshake_cost for f in (server, client) if f is not None)
        self.max_handshakes = self.limits.handshake_cap(self.handshake_cost)
        self._cid_length = server.cid_length if server is not None else 0
        self._by_cid: dict[bytes, _Session] = {}  # server sessions and handshakes by their CID
        self._released = 0  # estimated bytes let go of by ended handshakes and sessions
        self._sessions: OrderedDict[Addr, _Session] = OrderedDict()  # least recently heard first
        self._handshakes: dict[Addr, _Session] = {}  # oldest first
        self._parked: OrderedDict[Addr, _Parked] = OrderedDict()
        self._parked_cid: dict[bytes, Addr] = {}  # parked sessions with a CID, by it
        self._out: list[tuple[bytes, Addr]] = []
        # Session events go into the CoAP endpoint's own queue, in the order things happened:
        # the driver drains that one list directly (``events``), with no call per event.
        self.events: list[Any] = inner.events
        self._heap: list[tuple[float, int, _Session]] = []
        self._seq = 0
        # When the idle sweep is due: never later than the oldest session's last_seen plus the
        # idle timeout, None without sessions. Kept, not computed per ``get_timer`` (the driver
        # asks after every wake-up); a session heard from since makes it early, and the sweep
        # that then finds nothing to park sets it anew.
        self._idle_at: float | None = None
        # CoAP blocks must fit in one record of the peer's limit (RFC 8449 §4, RFC 7959).
        inner.payload_limit = _payload_limit(self._sessions)
        # Counters start empty and read as 0 (``_Counters``): a simulator runs one layer per
        # device, and fourteen zeros in a dict of their own cost each layer about 400 bytes.
        self.counters: dict[str, int] = _Counters()
        # Records for sessions another node may hold (``hold_unknown``): off, None, by default.
        self._hold: HeldRecords | None = None

    # === the driver's side ======================================================================

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Take one datagram from ``addr``; never raises, whatever ``data`` holds."""
        if len(data) > MAX_DATAGRAM:
            self.counters["dropped_oversize"] += 1
            return
        try:
            kind = data[0] if data else 0
            if kind in _PROTECTED:
                if kind == _TLS12_CID and (self._by_cid or self._parked_cid):
                    cid = data[_CID_AT : _CID_AT + self._cid_length]
                    c = self._by_cid.get(cid)
                    if c is not None:
                        if self._sessions.get(c.addr) is c:
                            # The common case inline, as for records found by address below.
                            records = c.records
                            try:
                                plain = records.open_application_data(data)
                            except (DtlsError, ProtocolError):
                                # A replay, or a record that does not authenticate: dropped; it
                                # neither moves the session nor counts as hearing from the peer
                                # (RFC 6347 §4.1.2.6, RFC 9146 §6).
                                return
                            if plain is not None:
                                if addr != c.addr and records.advanced:  # newer than all before (§6)
                                    self._move(c, addr)
                                # An older record from another address authenticated but moves
                                # nothing: it counts as the peer's, at the session's address.
                                c.last_seen = now
                                self._sessions.move_to_end(c.addr)
                                self._plain.receive_datagram(plain, c.addr, now)
                                return
                        self._receive_cid(c, data, addr, now)
                        return
                    if cid in self._parked_cid and self._receive_parked(
                        self._parked_cid[cid], data, addr, now
                    ):
                        return
                s = self._sessions.get(addr)
                if s is not None:
                    # The common case inline: one application record, opened by the backend's
                    # record path, its plaintext straight to the CoAP endpoint (what
                    # _receive_records and _deliver_one do, in one frame).
                    try:
                        plain = s.records.open_application_data(data)
                    except (DtlsError, ProtocolError):
                        # A replay, or a record that does not authenticate: dropped, and not
                        # counted as hearing from the peer (RFC 6347 §4.1.2.6, §4.1.2.7).
                        return
                    if plain is None:  # any other datagram: the general way
                        conn = s.conn
                        plain = conn.feed_read(data, now)
                        if plain is None:
                            self._deliver(s, now, conn.advanced)
                            return
                    s.last_seen = now
                    self._sessions.move_to_end(addr)
                    self._plain.receive_datagram(plain, addr, now)
                    return
            self._receive_other(data, addr, now)
        except DtlsError:
            self.counters["dropped_bad_hello"] += 1
        except Exception:  # a fault of ours or of the TLS library must not take the node down
            self.counters["errors"] += 1
            log.exception("DTLS: datagram from %s dropped", addr)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        plain = self._plain.datagrams_to_send(now)
        out = self._out
        self._out = []
        if not plain:
            return out
        sessions = self._sessions
        for data, addr in plain:
            s = sessions.get(addr)
            if s is None:
                s = self._session_for_sending(addr, now)
                if s is None:
                    self.counters["dropped_no_session"] += 1
                    continue
            if s.queue is not None:  # a client's handshake in progress
                s.queue.append(data)
                continue
            try:
                out.append((s.records.protect_application_data(data), addr))
            except RecordTooLarge as exc:
                # Larger than the peer's record limit (RFC 8449): that message is dropped and
                # counted; its exchange times out, the session goes on.
                self.counters["dropped_too_large"] += 1
                _TOO_LARGE_LOG.log(
                    "DTLS messages too large for the peer's records",
                    now,
                    logging.WARNING,
                    "DTLS: a message to %s dropped: %s",
                    addr,
                    exc,
                )
            except Exception:  # SessionClosed, or a fault in the library: the session is unusable
                self._end(s, "error")
        if self._out:  # handshakes started just now
            out += self._out
            self._out = []
        return out

    def get_timer(self) -> float | None:
        when = self._inner.get_timer()
        heap = self._heap
        while heap:
            at, _, s = heap[0]
            if s.timer_at == at and self._handshakes.get(s.addr) is s:
                if when is None or at < when:
                    when = at
                break
            heapq.heappop(heap)
        idle = self._idle_at
        if idle is not None and self._sessions and (when is None or idle < when):
            when = idle
        if self._hold is not None:
            held = self._hold.timer()
            if held is not None and (when is None or held < when):
                when = held
        return when

    def handle_timer(self, now: float) -> None:
        due = self._inner.get_timer()
        if due is not None and due <= now:
            self._inner.handle_timer(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, s = heapq.heappop(heap)
            if s.timer_at != at or self._handshakes.get(s.addr) is not s:
                continue
            s.timer_at = None
            if now >= s.deadline:
                self._fail(s, "handshake timed out")
            else:
                s.conn.handle_timer(now)
                self._drive(s, now)
        sessions = self._sessions
        idle = self.limits.idle_timeout
        self._idle_at = None
        while sessions:
            first = next(iter(sessions.values()))
            if first.last_seen + idle > now:
                self._idle_at = first.last_seen + idle
                break
            self._park(first, "idle")
        if self._hold is not None:
            self.counters["held_expired"] += self._hold.expire(now)

    @property
    def inner(self) -> CoapSide:
        """The CoAP endpoint inside the layer."""
        return self._inner

    @inner.setter
    def inner(self, endpoint: CoapSide) -> None:
        # ``wire.traced`` puts the DEBUG log inside the layer this way; a tap in stays in.
        self._inner = endpoint
        self.tap(self._sink)

    def tap(self, sink: MessageSink | None) -> None:
        """Copy the plaintext CoAP datagrams to and from the peers ``sink`` names to it; None
        takes the tap out (:mod:`lwm2m.transport.tap`). Nothing is checked per datagram without."""
        self._sink = sink
        self._plain = self._inner if sink is None else TappedPlain(self._inner, sink)

    def next_event(self) -> Any:
        """The oldest event, a session's or the CoAP endpoint's (they share one queue)."""
        return self._inner_next()

    # === the application's side =================================================================
    # The CoAP endpoint's calls, passed on: what they send goes out through the peer's session.

    def request(self, message: Message, addr: Addr, now: float, handle: Any = None) -> bytes:
        return self._inner.request(message, addr, now, handle)

    def handles(self) -> list[Any]:
        return self._inner.handles()

    def report_empty_ack(self, addr: Addr, token: bytes) -> bool:
        return self._inner.report_empty_ack(addr, token)

    def notify(
        self, relation: tuple[Addr, bytes], message: Message, now: float, *, confirmable: bool = False
    ) -> bool:
        return self._inner.notify(relation, message, now, confirmable=confirmable)

    def cancel(self, token: bytes, addr: Addr = None, *, near: Addr = None) -> None:
        self._inner.cancel(token, addr, near=near)

    def resume_observation(
        self, addr: Addr, token: bytes, now: float, request: Message | None = None, handle: Any = None
    ) -> None:
        self._inner.resume_observation(addr, token, now, request, handle)

    def move_observation(self, token: bytes, addr: Addr, new_addr: Addr) -> bool:
        return self._inner.move_observation(token, addr, new_addr)

    def observations(self) -> list[tuple[Addr, bytes]]:
        return self._inner.observations()

    def connect(self, addr: Addr, now: float) -> bool:
        """Make sure a session with ``addr`` exists or is being made (client role); True if it is up."""
        if addr in self._sessions:
            return True
        s = self._session_for_sending(addr, now)
        if s is None:
            raise DtlsError(f"no DTLS session with {addr} and no client credentials to make one")
        return s.queue is None

    def established(self, addr: Addr) -> bool:
        return addr in self._sessions or addr in self._parked

    def connecting(self, addr: Addr) -> bool:
        return addr in self._handshakes

    @property
    def can_connect(self) -> bool:
        return self._client is not None

    def session(self, addr: Addr) -> SessionInfo | None:
        s = self._sessions.get(addr)
        if s is not None:
            return s.info()
        p = self._parked.get(addr)
        if p is not None:
            return SessionInfo(addr, p.role, p.identity, p.cipher, True, 0.0)
        s = self._handshakes.get(addr)
        return None if s is None else s.info()

    def peer_identity(self, addr: Addr) -> PeerIdentity | None:
        """The identity the peer at ``addr`` authenticated with, or None without a session."""
        s = self._sessions.get(addr)
        if s is not None:
            return s.identity
        p = self._parked.get(addr)
        return None if p is None else p.identity

    def sessions(self) -> Iterator[SessionInfo]:
        for s in self._sessions.values():
            yield s.info()

    def parked(self) -> Iterator[SessionInfo]:
        """The sessions kept as saved state (``last_seen`` 0: not kept)."""
        for addr, p in self._parked.items():
            yield SessionInfo(addr, p.role, p.identity, p.cipher, True, 0.0)

    def close(self, addr: Addr, *, notify: bool = True) -> bool:
        """End the session with ``addr`` (a close_notify alert goes out with ``notify``)."""
        parked = self._pop_parked(addr)
        hs = self._handshakes.pop(addr, None)
        if hs is not None:
            hs.timer_at = None
            self._let_go(hs)
        s = self._sessions.pop(addr, None)
        if s is None:
            if parked is not None:
                self.events.append(SessionEnded(addr, parked.identity, "local"))
            return hs is not None or parked is not None
        if notify:
            alert = s.conn.close()
            if alert:
                self._out.append((alert, addr))
        self._let_go(s)
        self.events.append(SessionEnded(addr, s.identity, "local"))
        return True

    def close_all(self, role: Role | None = None) -> None:
        for addr in [a for a, s in self._sessions.items() if role is None or s.role == role]:
            self.close(addr)

    # --- restart ----------------------------------------------------------------------------------

    def export_sessions(self) -> list[tuple[Addr, bytes, bytes]]:
        """The server sessions as (address, CID, bytes) for ``import_sessions`` after a restart:
        the established ones are parked first. They all leave this layer (one copy only: see
        the module docstring); their peers' records are dropped here from now on."""
        for s in [s for s in self._sessions.values() if s.role == "server"]:
            self._park(s, "local")
        out = []
        for addr in [a for a, p in self._parked.items() if p.role == "server"]:
            p = self._pop_parked(addr)
            assert p is not None
            out.append((addr, p.cid, encode_saved(SavedState(p.role, p.identity, p.cipher, p.cid, p.state))))
        return out

    def import_sessions(self, saved: Iterable[tuple[Addr, bytes]]) -> int:
        """Park sessions of ``export_sessions`` (address, bytes); answer how many were taken.
        Bytes that do not read back, and sessions of a role this layer does not play or of an
        address it has a session with, are left out; the backend checks the state itself when
        the peer's next record takes it up."""
        taken = 0
        for addr, data in saved:
            try:
                entry = decode_saved(data)
            except SessionStateError:
                self.counters["errors"] += 1
                continue
            factory = self._server if entry.role == "server" else self._client
            if factory is None or addr in self._sessions or self.limits.max_parked == 0:
                continue
            if entry.cid and (len(entry.cid) != self._cid_length or entry.cid in self._by_cid):
                continue  # not a CID this server routes by, or one a live session holds
            self._keep_parked(addr, _Parked(entry.state, entry.role, entry.identity, entry.cipher, entry.cid))
            taken += 1
        return taken

    # --- sessions held elsewhere (a cluster) -------------------------------------------------------

    def hold_unknown(self, config: HoldConfig | None) -> None:
        """Hold records for sessions this layer does not hold (``hold.py``) and announce them
        (``SessionSought``) instead of dropping them; None (the default) drops them. A server
        of a cluster turns it on: another node may have made the session."""
        if config is None or self._server is None:
            self._hold = None
            return
        self._hold = HeldRecords(config)

    def _hold_record(self, data: bytes, addr: Addr, now: float) -> bool:
        """Hold a record nothing here takes: a tls12_cid one by its CID (RFC 9146 §4), an
        application record of epoch 1 (RFC 6347 §4.1) by its address; False when it is no such
        record or a bound refuses it (it is then dropped)."""
        hold = self._hold
        assert hold is not None
        kind = data[0]
        size = self._cid_length
        if kind == _TLS12_CID and size and len(data) >= _CID_AT + size + 2:
            key: bytes | Addr = data[_CID_AT : _CID_AT + size]
            cid = key
        elif kind == _APPLICATION_DATA and epoch(data) == 1:
            key, cid = addr, b""
        else:
            return False
        outcome = hold.hold(key, data, addr, now)
        if outcome == "refused":
            self.counters["held_refused"] += 1
            return False
        self.counters["records_held"] += 1
        if outcome == "new":
            self.events.append(SessionSought(addr, cid))
        return True

    def authenticates(self, cid: bytes, addr: Addr, saved: bytes, now: float) -> bool:
        """True when a record held under ``cid`` (or ``addr``) authenticates under the session
        ``saved`` (``encode_saved`` bytes): tried on a connection made from the bytes and let go
        at once, nothing sent, nothing taken. A cluster node claims a session from the shared
        store only then, so that a record anyone can forge with a CID seen on the wire does not
        move the session away from the node that holds it."""
        held = [] if self._hold is None else self._hold.peek(cid or addr)
        if not held or self._server is None:
            return False
        try:
            entry = decode_saved(saved)
            if entry.role != "server" or entry.cid != cid:
                return False
            conn = self._server.restore(entry.state)
        except (DtlsError, SessionStateError):  # bytes that do not read back, a PSK since removed
            return False
        except Exception:
            log.warning("DTLS: a shared session could not be tried", exc_info=True)
            return False
        try:
            for data, _ in held:
                if conn.feed_read(data, now) is not None or conn.advanced or conn.read() is not None:
                    return True
        except _SessionClosed:
            return True  # the peer's close_notify authenticated: taking it over ends it
        except DtlsError:
            pass
        return False

    def take_over(self, cid: bytes, addr: Addr, saved: bytes, now: float) -> Addr | None:
        """Take up ``saved`` (``encode_saved`` bytes of a server session, e.g. another node's,
        whose write sequence number the caller made this node's own) for the records held under
        ``cid`` (or ``addr`` without one, as ``SessionSought`` said), then feed those records again:
        the first that authenticates brings the session into the table, at the address it came
        from (RFC 9146 §6). False when the state is not taken: not a server session of this
        layer's CID length and that CID, or one whose address another session holds here; the
        held records are then dropped. With nothing held, the session is parked for its next record."""
        key: bytes | Addr = cid or addr
        held = [] if self._hold is None else self._hold.take(key)
        try:
            entry = decode_saved(saved)
        except SessionStateError:
            entry = None
            self.counters["errors"] += 1
        where = held[0][1] if held else addr
        if (
            entry is None
            or entry.role != "server"
            or self._server is None
            or entry.cid != cid
            or (cid and len(cid) != self._cid_length)
            or self.limits.max_parked == 0
            or where in self._sessions
            or (cid and cid in self._by_cid)
        ):
            self.counters["dropped_unknown_peer"] += len(held)
            return None
        self._keep_parked(where, _Parked(entry.state, "server", entry.identity, entry.cipher, entry.cid))
        self.counters["sessions_taken_over"] += 1
        for data, source in held:
            self.receive_datagram(data, source, now)
        return where

    def let_go(self, cid: bytes, addr: Addr, now: float) -> None:
        """Drop the records held under ``cid`` (or ``addr`` without one): no session was found.
        Records for that key are refused for the hold's ``miss_time`` (a negative cache)."""
        if self._hold is not None:
            self.counters["dropped_unknown_peer"] += self._hold.miss(cid or addr, now)

    def session_state(self, addr: Addr) -> tuple[bytes, bytes] | None:
        """The server session with ``addr`` as (CID, ``encode_saved`` bytes), live or parked, for
        another node to take over; the live session goes on here. None without one, or when
        the backend cannot save it now. The bytes hold the session's keys."""
        s = self._sessions.get(addr)
        if s is not None:
            if s.role != "server":
                return None
            state = s.conn.save()
            if state is None:
                return None
            return s.cid, encode_saved(SavedState("server", s.identity, s.cipher, s.cid, state))
        p = self._parked.get(addr)
        if p is None or p.role != "server":
            return None
        return p.cid, encode_saved(SavedState("server", p.identity, p.cipher, p.cid, p.state))

    def ticket_state(self) -> bytes | None:
        """The server backend's ticket keys as bytes (key material), or None if it has none."""
        return None if self._server is None else self._server.ticket_state()

    def load_ticket_state(self, data: bytes) -> bool:
        """Give the server backend saved ticket keys; False if it has none to take.
        Raises DtlsError for bytes that are not its keys."""
        return self._server is not None and self._server.load_ticket_state(data)

    @property
    def released(self) -> int:
        """Bytes let go of so far (estimated), this layer's and the CoAP endpoint's: the
        transport gives memory back to the system after a large amount was released."""
        return self._released + self._inner.released

    def state_sizes(self) -> dict[str, int]:
        sizes = dict(self._inner.state_sizes())
        sizes.update(
            dtls_sessions=len(self._sessions),
            dtls_handshakes=len(self._handshakes),
            dtls_parked=len(self._parked),
            dtls_parked_cids=len(self._parked_cid),
            dtls_cids=len(self._by_cid),
            dtls_heap=len(self._heap),
            dtls_out=len(self._out),
        )
        if self._hold is not None:
            sizes.update(
                dtls_held=len(self._hold), dtls_held_bytes=self._hold.bytes, dtls_misses=self._hold.misses
            )
        return sizes

    # === receiving ==============================================================================

    def _receive_records(self, s: _Session, data: bytes, now: float) -> None:
        conn = s.conn
        if (plain := conn.feed_read(data, now)) is not None:
            self._deliver_one(s, plain, now)
        else:
            self._deliver(s, now, conn.advanced)

    def _deliver_one(self, s: _Session, plain: bytes, now: float) -> None:
        """The plaintext of a datagram that held one application record and nothing else: no
        read loop, and nothing to send back (the backend's ``feed_read`` said so)."""
        self._heard(s, now)
        self._plain.receive_datagram(plain, s.addr, now)

    def _heard(self, s: _Session, now: float) -> None:
        """The peer of ``s`` sent something that authenticated: its idle time starts anew, and
        it goes last in the eviction order (never for a datagram that did not authenticate)."""
        s.last_seen = now
        self._sessions.move_to_end(s.addr)

    def _receive_cid(self, s: _Session, data: bytes, addr: Addr, now: float) -> None:
        """A tls12_cid record for the session or handshake that gave its CID (RFC 9146 §6), which
        ``receive_datagram`` did not take on its direct path."""
        if self._sessions.get(s.addr) is not s:
            if self._handshakes.get(s.addr) is s and addr == s.addr:
                # A handshake does not move: its peer proved no key yet.
                s.conn.feed(data, now)
                self._drive(s, now)
            return
        conn = s.conn
        plain = conn.feed_read(data, now)
        newer = conn.advanced
        if newer and addr != s.addr:
            self._move(s, addr)
        if plain is not None:
            self._deliver_one(s, plain, now)
        else:
            self._deliver(s, now, newer)

    def _move(self, s: _Session, addr: Addr) -> None:
        """The peer of ``s`` now sends from ``addr`` (RFC 9146 §6)."""
        old = s.addr
        displaced = self._sessions.get(addr)
        if displaced is not None:
            # The NAT gave that address to this peer: the session that was there lost its own.
            self._end(displaced, "replaced")
        self._pop_parked(addr)
        del self._sessions[old]
        s.addr = addr
        self._sessions[addr] = s
        self.counters["sessions_moved"] += 1
        self.events.append(SessionMoved(addr, s.identity, old))

    def _deliver(self, s: _Session, now: float, heard: bool) -> None:
        """What a datagram fed to the session of ``s`` held; ``heard`` when a record of it
        authenticated, else only plaintext read counts as hearing from the peer."""
        conn = s.conn
        addr = s.addr
        if heard:
            self._heard(s, now)
        receive = self._plain.receive_datagram
        try:
            while (plain := conn.read()) is not None:
                if not heard:
                    heard = True
                    self._heard(s, now)
                receive(plain, addr, now)
        except _SessionClosed as exc:
            reason = "closed" if "close" in str(exc).lower() else "error"
            self._count_alerts(0, reason)
            self._end(s, reason)
            return
        for datagram in conn.outgoing():  # e.g. the last flight again, for a peer that missed it (§4.2.4)
            self._out.append((datagram, addr))

    def _receive_other(self, data: bytes, addr: Addr, now: float) -> None:
        if not data:
            return
        hs = self._handshakes.get(addr)
        s = self._sessions.get(addr)
        if is_client_hello(data):
            if self._server is None:
                self.counters["dropped_bad_hello"] += 1
                return
            if hs is not None and hs.role == "server" and hs.hello == data[_HELLO_HEADER:]:
                hs.conn.feed(data, now)  # our flight was lost: the library sends it again
                self._drive(hs, now)
                return
            self._hello(data, addr, now)
            return
        if hs is not None and (s is None or data[0] in _HANDSHAKE_TYPES or epoch(data) == 0):
            hs.conn.feed(data, now)
            self._drive(hs, now)
            return
        if s is not None:
            self._receive_records(s, data, now)
        elif not self._receive_parked(addr, data, addr, now) and (
            self._hold is None or not self._hold_record(data, addr, now)
        ):
            self.counters["dropped_unknown_peer"] += 1

    def _hello(self, data: bytes, addr: Addr, now: float) -> None:
        assert self._server is not None
        conn, reply = self._server.accept(data, _client_id(addr), now)
        if conn is None:
            if reply:
                self._out.append((reply, addr))  # a HelloVerifyRequest, or the alert of a refusal
            if len(reply) > _HELLO_HEADER and reply[0] == ContentType.HANDSHAKE:
                self.counters["hello_verify_sent"] += 1
            else:
                self.counters["dropped_bad_hello"] += 1
            return
        # A valid cookie: the sender owns this address. Only now is state kept.
        cid = conn.cid
        if cid and cid in self._by_cid:
            return  # a random CID that is taken: the client's retransmission gets another one
        old = self._handshakes.pop(addr, None)
        if old is not None:
            old.timer_at = None
            self._let_go(old)
        while len(self._handshakes) >= self.max_handshakes:
            self._fail(next(iter(self._handshakes.values())), "too many handshakes in progress")
        hs = _Session(conn, addr, "server", now)
        hs.hello = data[_HELLO_HEADER:]
        hs.deadline = now + self.limits.handshake_lifetime
        if cid:
            hs.cid = cid
            self._by_cid[cid] = hs
        self._handshakes[addr] = hs
        self.counters["handshakes_started"] += 1
        self._drive(hs, now)

    # === handshakes =============================================================================

    def _drive(self, hs: _Session, now: float) -> None:
        conn = hs.conn
        try:
            done = conn.handshake(now)
        except HandshakeError as exc:
            sent = 0
            for alert in conn.outgoing():
                self._out.append((alert, hs.addr))
                sent += 1
            self._count_alerts(sent, str(exc))
            self._fail(hs, str(exc))
            return
        for datagram in conn.outgoing():
            self._out.append((datagram, hs.addr))
        if done:
            self._establish(hs, now)
            return
        at = conn.get_timer()  # the backend's retransmission timer (RFC 6347 §4.2.4)
        self._arm(hs, hs.deadline if at is None else at)

    def _arm(self, hs: _Session, at: float) -> None:
        at = min(at, hs.deadline)
        hs.timer_at = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, hs))
        if len(self._heap) > 4 * len(self._handshakes) + 64:
            # Drop the entries of handshakes that ended or were re-armed since.
            live = self._handshakes
            self._heap = [e for e in self._heap if e[2].timer_at == e[0] and live.get(e[2].addr) is e[2]]
            heapq.heapify(self._heap)

    def _establish(self, hs: _Session, now: float) -> None:
        addr = hs.addr
        if self._handshakes.get(addr) is hs:
            del self._handshakes[addr]
            if not self._handshakes:
                # A dict keeps its grown table when its last key goes: a new empty one is
                # 100 bytes less for a device's layer, which ends with a session and no handshake.
                self._handshakes = {}
        hs.timer_at = None
        conn = hs.conn
        hs.identity = conn.identity()
        hs.cipher = conn.cipher_suite()
        hs.room = _room(conn)
        hs.last_seen = now
        self.counters["handshakes_done"] += 1
        resumed = conn.resumed
        if resumed:
            self.counters["handshakes_resumed"] += 1
        old = self._sessions.pop(addr, None)
        self._pop_parked(addr)
        if old is not None:
            self._let_go(old)
            self.events.append(SessionEnded(addr, old.identity, "replaced"))
        self._make_room()
        self._sessions[addr] = hs
        self._idle_from(now)
        self.events.append(
            SessionEstablished(addr, hs.identity, hs.cipher, None if old is None else old.identity, resumed)
        )
        queue, hs.queue = hs.queue, None
        if queue:
            for data in queue:
                try:
                    self._out.append((conn.write(data), addr))
                except _SessionClosed:
                    self._end(hs, "error")
                    return
        self._deliver(hs, now, True)  # records that came with the last flight

    def _count_alerts(self, sent: int, reason: str) -> None:
        """Count the alerts of a handshake or session that ended: ``sent`` of ours (a refused
        handshake's fatal alert, RFC 5246 §7.2), and one of the peer's when the reason says it
        ended the handshake with an alert (the engine's words) or closed the session."""
        if sent:
            self.counters["alerts_sent"] += sent
        elif reason == "closed" or "with alert" in reason:
            self.counters["alerts_received"] += 1

    def _fail(self, hs: _Session, reason: str) -> None:
        addr = hs.addr
        if self._handshakes.get(addr) is hs:
            del self._handshakes[addr]
        hs.timer_at = None
        hs.queue = None
        self._let_go(hs)
        self.counters["handshakes_failed"] += 1
        self.events.append(HandshakeFailed(addr, reason))

    def _let_go(self, s: _Session) -> None:
        """Drop the connection of ``s`` now: stale timer entries must not keep its buffers."""
        if s.cid and self._by_cid.get(s.cid) is s:
            del self._by_cid[s.cid]
        if s.conn is not _ENDED:
            s.conn = _ENDED
            s.records = _ENDED
            self._released += self.handshake_cost

    def _session_for_sending(self, addr: Addr, now: float) -> _Session | None:
        """The session to send to ``addr`` with: taken up again if saved, else (client) a new handshake."""
        s = self._unpark(addr, now)
        if s is not None:
            return s
        hs = self._handshakes.get(addr)
        if hs is not None:
            return hs if hs.queue is not None else None
        if self._client is None:
            return None
        while len(self._handshakes) >= self.max_handshakes:
            self._fail(next(iter(self._handshakes.values())), "too many handshakes in progress")
        # The peer's address lets the backend offer the last session made there (RFC 5246 §7.3).
        hs = _Session(self._client.connect(now, peer=_client_id(addr)), addr, "client", now)
        hs.deadline = now + self.limits.handshake_lifetime
        hs.queue = deque(maxlen=self.limits.max_queued)
        self._handshakes[addr] = hs
        self.counters["handshakes_started"] += 1
        self._drive(hs, now)
        return hs if hs.queue is not None else self._sessions.get(addr)

    # === leaving memory =========================================================================

    def _idle_from(self, now: float) -> None:
        """A session was heard from at ``now`` and added: the idle sweep is due by now + the idle
        timeout at the latest (the sessions already there are due no later)."""
        if self._idle_at is None:
            self._idle_at = now + self.limits.idle_timeout

    def _make_room(self) -> None:
        while len(self._sessions) >= self.limits.max_sessions:
            self.counters["sessions_evicted"] += 1
            self._park(next(iter(self._sessions.values())), "evicted")

    def _park(self, s: _Session, reason: str) -> None:
        """Take ``s`` out of memory: kept as saved state when it can be, else ended."""
        del self._sessions[s.addr]
        limit = self.limits.max_parked
        state = s.conn.save() if limit else None
        cid = s.cid
        self._let_go(s)
        if state is None:
            self.events.append(SessionEnded(s.addr, s.identity, reason))
            return
        self._keep_parked(s.addr, _Parked(state, s.role, s.identity, s.cipher, cid))

    def _keep_parked(self, addr: Addr, p: _Parked) -> None:
        parked = self._parked
        self._pop_parked(addr)
        while len(parked) >= self.limits.max_parked:
            gone_addr = next(iter(parked))
            gone = self._pop_parked(gone_addr)
            self.events.append(SessionEnded(gone_addr, gone.identity if gone else None, "evicted"))
        parked[addr] = p
        if p.cid:
            other = self._parked_cid.get(p.cid)
            if other is not None and other != addr:
                self._pop_parked(other)  # a CID is one session's (a restored one may repeat it)
            self._parked_cid[p.cid] = addr
        self.counters["sessions_parked"] += 1

    def _pop_parked(self, addr: Addr) -> _Parked | None:
        p = self._parked.pop(addr, None)
        if p is not None and p.cid and self._parked_cid.get(p.cid) == addr:
            del self._parked_cid[p.cid]
        return p

    def _restore(self, addr: Addr) -> tuple[_Parked, Connection] | None:
        """The parked session of ``addr`` and its connection made anew from the saved bytes; it
        stays parked (taken up by ``_take_up``). None when there is none, or when the bytes do
        not restore: that session then ends."""
        p = self._parked.get(addr)
        if p is None:
            return None
        factory = self._server if p.role == "server" else self._client
        if factory is None:
            return None
        try:
            return p, factory.restore(p.state)
        except DtlsError:
            pass
        except Exception:  # state another backend saved (a restart with other settings)
            log.warning("DTLS: the saved session of %s could not be taken up", addr, exc_info=True)
        self._pop_parked(addr)
        self.events.append(SessionEnded(addr, p.identity, "error"))
        return None

    def _take_up(self, addr: Addr, p: _Parked, conn: Connection, now: float) -> _Session:
        """The parked session of ``addr`` back in the session table, on ``conn`` (``_restore``)."""
        self._pop_parked(addr)
        s = _Session(conn, addr, p.role, now)
        s.identity = p.identity
        s.cipher = p.cipher
        s.room = _room(conn)
        self._make_room()
        self._sessions[addr] = s
        self._idle_from(now)
        if p.role == "server" and conn.cid and conn.cid not in self._by_cid:
            s.cid = conn.cid
            self._by_cid[s.cid] = s
        self.counters["sessions_resumed"] += 1
        return s

    def _unpark(self, addr: Addr, now: float) -> _Session | None:
        """The parked session of ``addr`` taken up to send with, or None."""
        restored = self._restore(addr)
        return None if restored is None else self._take_up(addr, *restored, now)

    def _receive_parked(self, parked: Addr, data: bytes, addr: Addr, now: float) -> bool:
        """A datagram from ``addr`` for the session parked at ``parked`` (the same address, or
        found by its CID); False when no such session could be restored.

        The session is taken up only when something of the datagram authenticates: a datagram
        that does not (anyone can send from the peer's address) leaves it parked as it was, in
        its place, and so moves no live session out of memory to make room."""
        restored = self._restore(parked)
        if restored is None:
            return False
        p, conn = restored
        plain = conn.feed_read(data, now)
        held = [] if plain is None else [plain]
        try:
            while (more := conn.read()) is not None:
                held.append(more)
        except _SessionClosed as exc:  # the peer closed it, or it broke: it leaves the parked ones
            self._pop_parked(parked)
            reason = "closed" if "close" in str(exc).lower() else "error"
            self._count_alerts(0, reason)
            self.events.append(SessionEnded(parked, p.identity, reason))
            return True
        newer = conn.advanced
        if not held and not newer:
            return True  # nothing authenticated: the restored connection is let go
        s = self._take_up(parked, p, conn, now)
        if newer and addr != parked:
            self._move(s, addr)  # a CID record from a new address (RFC 9146 §6)
        receive = self._plain.receive_datagram
        for plaintext in held:
            receive(plaintext, s.addr, now)
        for datagram in conn.outgoing():
            self._out.append((datagram, s.addr))
        return True

    def _end(self, s: _Session, reason: str) -> None:
        if self._sessions.get(s.addr) is s:
            del self._sessions[s.addr]
        self._let_go(s)
        self.events.append(SessionEnded(s.addr, s.identity, reason))
