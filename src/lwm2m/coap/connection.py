"""One CoAP over TCP/TLS connection (RFC 8323), sans-IO.

``TcpConnection`` is the protocol state of one connection, whichever side opened it: it reads
the byte stream, answers signaling, matches responses to requests by token, serves and keeps
observations, and cuts or joins block-wise bodies. It never touches a socket or a clock: the
transport feeds it bytes and ``now`` and sends what it gives::

    conn = TcpConnection(addr, TcpConfig())           # our CSM is the first thing to send
    conn.receive_data(data, now)                        # bytes as they come, any chunking
    conn.data_to_send() -> bytes                        # drain after every call
    conn.get_timer() -> float | None; conn.handle_timer(now)
    conn.events                                         # drained by the application
    conn.request(message, now) -> token                 # responses matched by token
    conn.respond(event, message, now); conn.notify(relation, message, now) -> bool
    conn.cancel(token); conn.ping(now) -> token; conn.release(); conn.abort(reason)
    conn.connection_lost(reason, now)                   # the transport saw the stream end
    conn.closed -> str | None                           # why it ended; then close the socket

What RFC 8323 changes from RFC 7252: no type, no Message ID, no ACK and no retransmission
(§2, §3); the first message each way is a CSM (7.01) carrying Max-Message-Size and
Block-Wise-Transfer (§5.3), a connection whose peer sends anything else first is aborted;
Ping/Pong (§5.4), Release (§5.5) and Abort (§5.6); Observe needs no reordering window since
the stream keeps order (§7.3): every notification is fresh. BERT (§6) is used when both sides
announce Block-Wise-Transfer: a block of SZX 7 carries a multiple of 1024 bytes.

Bounds: a message over our Max-Message-Size aborts the connection from its header alone; a
reassembled body over ``max_body_size`` is refused (4.13) or fails the request; at most
``max_pending_requests`` of our requests, ``max_observations`` served observations and
``max_block_bodies`` block-wise bodies are held, each body for ``block_lifetime`` seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lwm2m.coap.blockwise import request_key, strip, with_options
from lwm2m.coap.events import (
    CoapNotificationReceived,
    Event,
    ObservationCancelled,
    RequestFailed,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    request_received,
)
from lwm2m.coap.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FrameDecoder,
    SignalCode,
    SignalOption,
    encode_frame,
    encode_message,
    is_signal,
    signal,
)
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint
from lwm2m.errors import ConfigError, ConnectionAborted, FrameTooLarge, FramingError, RequestAborted

__all__ = [
    "BlockBudget",
    "ConnectionEnded",
    "CsmReceived",
    "PongReceived",
    "TcpConfig",
    "TcpConnection",
]

_OBSERVE = OptionNumber.OBSERVE
_BLOCK1 = OptionNumber.BLOCK1
_BLOCK2 = OptionNumber.BLOCK2
_SIZE1 = OptionNumber.SIZE1
_SIZE2 = OptionNumber.SIZE2
_KNOWN = frozenset(int(o) for o in OptionNumber)
# Options a request may carry and still take the plain path (no Observe, Block or Size1).
_PLAIN = _KNOWN - {
    int(OptionNumber.OBSERVE),
    int(OptionNumber.BLOCK1),
    int(OptionNumber.BLOCK2),
    int(OptionNumber.SIZE1),
}
_BERT = 7  # RFC 8323 §6: SZX 7 in Block1/Block2 is BERT, blocks of k * 1024 bytes
_BERT_UNIT = 1024
# What a block-wise message carries beside its payload: the framing header (at most 6 bytes),
# code, token and the options of a block (URI, Content-Format, Block, Size, Observe, ETag).
_RESERVE = 128
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class TcpConfig:
    """Limits and timings of one CoAP over TCP/TLS connection.

    ``max_message_size`` is what we announce in our CSM and accept (RFC 8323 §5.3.1);
    ``block_wise`` announces Block-Wise-Transfer (with the peer's, BERT is used, §6);
    ``response_timeout`` is how long a request of ours waits for its response (no
    retransmission over a reliable transport); ``csm_timeout`` how long the peer may take to
    send its CSM before the connection is aborted.
    """

    max_message_size: int = 16384 + _RESERVE
    block_wise: bool = True
    response_timeout: float = 60.0
    csm_timeout: float = 10.0
    max_body_size: int = 1 << 20
    max_pending_requests: int = 1000
    max_observations: int = 256
    max_block_bodies: int = 16
    max_block_bytes: int = 32 << 20  # all block-wise bodies of the connections sharing a BlockBudget
    block_lifetime: float = 60.0
    token_length: int = 8
    # Critical options a layer above handles (RFC 8613's OSCORE option, when the endpoint has an
    # OSCORE layer): a request carrying one is not refused with 4.02 (RFC 7252 §5.4.1).
    extra_critical_options: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not 2 * _RESERVE <= self.max_message_size <= 1 << 24:
            raise ConfigError(f"max_message_size {self.max_message_size}: from {2 * _RESERVE} to {1 << 24}")
        for name in ("response_timeout", "csm_timeout", "block_lifetime"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} {getattr(self, name)}: more than 0 seconds")
        for name in (
            "max_body_size",
            "max_pending_requests",
            "max_observations",
            "max_block_bodies",
            "max_block_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: at least 1")
        if not 1 <= self.token_length <= 8:
            raise ConfigError(f"token_length {self.token_length}: from 1 to 8")


class BlockBudget:
    """The bytes of block-wise bodies that the connections sharing it hold at once (Block1
    bodies being joined, Block2 bodies served or fetched): an endpoint gives one to all its
    connections, so that many connections cannot hold more than one bound together."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


@dataclass(frozen=True, slots=True)
class CsmReceived(Event):
    """The peer's Capabilities and Settings Message (RFC 8323 §5.3): what it accepts."""

    addr: Any
    max_message_size: int
    block_wise: bool


@dataclass(frozen=True, slots=True)
class PongReceived(Event):
    """The answer to our Ping (RFC 8323 §5.4)."""

    addr: Any
    token: bytes


@dataclass(frozen=True, slots=True)
class ConnectionEnded(Event):
    """The connection is over: ``reason`` says why; ``aborted`` for an Abort either way or a
    protocol failure, False for a Release or a plain close (RFC 8323 §5.5, §5.6)."""

    addr: Any
    reason: str
    aborted: bool


@dataclass(slots=True)
class _Block:
    """A block option as RFC 8323 §6 reads it: SZX 7 is BERT (1024-byte units)."""

    num: int
    more: bool
    szx: int

    @property
    def unit(self) -> int:
        return _BERT_UNIT if self.szx == _BERT else 1 << (self.szx + 4)

    def encode(self) -> bytes:
        return encode_uint((self.num << 4) | (0x8 if self.more else 0) | self.szx)


def _block(value: bytes | None) -> _Block | None:
    if value is None:
        return None
    if len(value) > 3:
        raise ValueError("block option longer than 3 bytes")
    v = decode_uint(value)
    return _Block(v >> 4, bool(v & 0x8), v & 0x7)


@dataclass(slots=True)
class _Outgoing:
    request: Message  # as the application gave it (token filled in)
    deadline: float
    observe: bool = False
    established: bool = False  # an observation whose registration was answered
    body: bytes = b""  # Block1: the whole payload to send
    sent: int = 0  # Block1: bytes of it sent
    received: bytearray | None = None  # Block2: the body so far
    # A fetch of the later blocks of an observation's answer or notification (RFC 7959 §2.6):
    # the observation's token, its first block (code and options kept) and its Observe value.
    rest_of: bytes | None = None
    first: Message | None = None
    sequence: int | None = None


@dataclass(slots=True)
class _Held:
    """A block-wise body: a Block2 response served on demand, or a Block1 request being joined."""

    body: bytearray
    expires: float
    response: Message | None = None  # Block2: the response the body belongs to


@dataclass(slots=True)
class _Relation:
    request: Message
    sequence: int


@dataclass(slots=True)
class _Peer:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    block_wise: bool = False
    csm: bool = False


@dataclass
class TcpConnection:
    """The protocol state of one CoAP over TCP/TLS connection (see the module's docstring)."""

    addr: Any
    config: TcpConfig = field(default_factory=TcpConfig)
    rng: random.Random = field(default_factory=random.Random)
    now: float = 0.0  # when the connection was opened: the peer's CSM is due csm_timeout after
    budget: BlockBudget | None = None  # shared by an endpoint's connections; else one of its own

    def __post_init__(self) -> None:
        if self.budget is None:
            self.budget = BlockBudget(self.config.max_block_bytes)
        self._budget: BlockBudget = self.budget
        self.events: list[Event] = []
        self.peer = _Peer()
        self.closed: str | None = None
        self.released = False  # the peer sent Release: no new requests of ours (§5.5)
        self._decoder = FrameDecoder(self.config.max_message_size)
        self._out = bytearray()
        self._requests: dict[bytes, _Outgoing] = {}
        self._relations: dict[bytes, _Relation] = {}
        self._served: dict[tuple[Any, ...], _Held] = {}  # Block2 bodies, by request identity
        self._joining: dict[tuple[Any, ...], _Held] = {}  # Block1 bodies, by request identity
        self._pings: set[bytes] = set()
        self._csm_due: float | None = self.now + self.config.csm_timeout
        options = [(SignalOption.MAX_MESSAGE_SIZE, encode_uint(self.config.max_message_size))]
        if self.config.block_wise:
            options.append((SignalOption.BLOCK_WISE_TRANSFER, b""))
        self._send(signal(SignalCode.CSM, tuple(options)))

    # --- I/O side -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes, now: float) -> None:
        if self.closed is not None:
            return
        try:
            messages = self._decoder.feed(data)
        except FrameTooLarge as exc:
            self.abort(str(exc), now)
            return
        except FramingError as exc:
            self.abort(f"not CoAP over TCP: {exc}", now)
            return
        for message in messages:
            if self.closed is not None:
                return
            self._receive(message, now)

    def get_timer(self) -> float | None:
        if self.closed is not None:
            return None
        at = _INF if self._csm_due is None else self._csm_due
        for out in self._requests.values():
            at = min(at, out.deadline)
        for held in self._served.values():
            at = min(at, held.expires)
        for held in self._joining.values():
            at = min(at, held.expires)
        return None if at == _INF else at

    def handle_timer(self, now: float) -> None:
        if self.closed is not None:
            return
        if self._csm_due is not None and now >= self._csm_due:
            self.abort("no CSM from the peer in time (RFC 8323 §5.3)", now)
            return
        for token, out in list(self._requests.items()):
            if now >= out.deadline:
                del self._requests[token]
                self._release_received(out)
                self.events.append(RequestTimedOut(self.addr, token, out.request))
        for held_by in (self._served, self._joining):
            for key in [k for k, h in held_by.items() if now >= h.expires]:
                self._budget.give(len(held_by.pop(key).body))

    def connection_lost(self, reason: str, now: float) -> None:
        """The stream ended under us (the peer closed it, a socket error, an idle timeout)."""
        if self.closed is None:
            self._end(reason, aborted=False)

    # --- application side --------------------------------------------------------------------

    def request(self, message: Message, now: float) -> bytes:
        """Send a request; its response comes as ``ResponseReceived`` (Block2 joined), a later
        notification of an Observe=0 request as ``CoapNotificationReceived``. Returns the token."""
        if self.closed is not None:
            raise ConnectionAborted(f"the connection is closed: {self.closed}")
        if self.released:
            raise ConnectionAborted("the peer released the connection (RFC 8323 §5.5)")
        token = message.token
        if token and token in self._requests:
            # Replaced: e.g. a GET with Observe=1 deregistering.
            self._release_received(self._requests.pop(token))
        if len(self._requests) >= self.config.max_pending_requests:
            raise RequestAborted(f"{len(self._requests)} requests outstanding on the connection already")
        if not token:
            token = self._new_token()
        message = Message(Type.CON, message.code, 0, token, message.options, message.payload)
        observe = message.observe == 0
        out = _Outgoing(message, now + self.config.response_timeout, observe=observe)
        self._requests[token] = out
        if len(encode_message(message)) > self.peer.max_message_size:
            out.body = message.payload
            self._send_block1(out)
        else:
            self._send(message)
        return token

    def respond(self, event: RequestReceived, response: Message, now: float) -> None:
        """Answer ``event``; a body over what the peer accepts goes out Block2 (BERT when both
        sides announced Block-Wise-Transfer), the later blocks served on request."""
        if self.closed is not None:
            return
        request = event.message
        token = request.token
        if (
            event.observe is None
            and event.block2 is None
            and not response.options
            and len(response.payload) + _RESERVE <= self.peer.max_message_size
        ):
            # The common answer: a code and a short payload, framed here (RFC 8323 §3.2).
            self._out += _plain_frame(response.code, token, response.payload)
            return
        if event.observe == 0 and token in self._relations:
            # The registration answered: a 2.xx with Observe keeps it (RFC 7641 §3.1).
            if _success(response.code) and response.observe is not None:
                self._relations[token].sequence = response.observe
            else:
                del self._relations[token]
        message = Message(Type.CON, response.code, 0, token, response.options, response.payload)
        self._send_body(message, request, _block(request.option(_BLOCK2)), now)

    def notify(self, relation: tuple[Any, bytes], message: Message, now: float) -> bool:
        """A notification on ``relation`` (``RequestReceived.relation``): the connection sets the
        token and the next Observe value; a non-2.xx ends the observation. False when it ended."""
        token = relation[1]
        rel = self._relations.get(token)
        if rel is None or self.closed is not None:
            return False
        options = strip(message.options, frozenset((_OBSERVE,)))
        if _success(message.code):
            rel.sequence = (rel.sequence + 1) & 0xFFFFFF
            options = list(with_options(options, (_OBSERVE, encode_uint(rel.sequence))))
        else:
            del self._relations[token]
        note = Message(Type.CON, message.code, 0, token, tuple(options), message.payload)
        self._send_body(note, rel.request, None, now)
        return True

    def cancel(self, token: bytes) -> None:
        """Forget a request or an observation of ours: what comes for it later is dropped."""
        out = self._requests.pop(token, None)
        if out is not None:
            self._release_received(out)

    def end_observation(self, token: bytes) -> None:
        """Forget a served observation (no more notifications)."""
        self._relations.pop(token, None)

    def ping(self, now: float) -> bytes:
        """Send a Ping (RFC 8323 §5.4); its Pong comes as ``PongReceived``."""
        token = self._new_token()
        self._pings.add(token)
        self._send(Message(Type.CON, SignalCode.PING, 0, token))
        return token

    def release(self, now: float) -> None:
        """Say we close the connection (7.04 Release, RFC 8323 §5.5); then the transport
        closes it once the data is sent."""
        if self.closed is None:
            self._send(signal(SignalCode.RELEASE))
            self._end("released by us", aborted=False)

    def abort(self, reason: str, now: float, bad_csm_option: int | None = None) -> None:
        """Abort the connection (7.05, RFC 8323 §5.6) with ``reason`` as diagnostic payload."""
        if self.closed is not None:
            return
        options = (
            () if bad_csm_option is None else ((SignalOption.BAD_CSM_OPTION, encode_uint(bad_csm_option)),)
        )
        self._send(signal(SignalCode.ABORT, options, reason.encode()[:256]))
        self._end(f"aborted: {reason}", aborted=True)

    def observations(self) -> list[bytes]:
        """The tokens of the observations served on this connection."""
        return list(self._relations)

    def state_sizes(self) -> dict[str, int]:
        return {
            "requests": len(self._requests),
            "observations": len(self._relations),
            "block_bodies": len(self._served) + len(self._joining),
            "buffered": self._decoder.buffered,
        }

    # --- receiving ---------------------------------------------------------------------------

    def _receive(self, message: Message, now: float) -> None:
        code = int(message.code)
        if self._csm_due is not None and code != SignalCode.CSM:
            self.abort("the first message is not a CSM (RFC 8323 §5.3)", now)
            return
        if is_signal(code):
            self._signal(message, now)
        elif code == 0:
            return  # RFC 8323 §3.4: an Empty message is ignored
        elif code < 32:
            self._request(message, now)
        elif code >= 64:
            self._response(message, now)

    def _signal(self, message: Message, now: float) -> None:
        code = int(message.code)
        if code == SignalCode.CSM:
            for number, value in message.options:
                if number == SignalOption.MAX_MESSAGE_SIZE:
                    self.peer.max_message_size = max(decode_uint(value), 2 * _RESERVE)
                elif number == SignalOption.BLOCK_WISE_TRANSFER:
                    self.peer.block_wise = True
                elif number & 1:
                    # RFC 8323 §5.3: an unknown critical CSM option aborts, naming it.
                    self.abort(f"unknown critical CSM option {number}", now, bad_csm_option=number)
                    return
            self._csm_due = None
            self.peer.csm = True
            self.events.append(CsmReceived(self.addr, self.peer.max_message_size, self.peer.block_wise))
            return
        known = (SignalOption.CUSTODY,) if code in (SignalCode.PING, SignalCode.PONG) else ()
        if code not in (SignalCode.RELEASE, SignalCode.ABORT) and _unknown_critical(message, known):
            self.abort(f"unknown critical option in signal {code >> 5}.{code & 0x1F:02d}", now)
            return
        if code == SignalCode.PING:
            # Our responses leave as soon as they are made: Custody is honoured at once (§5.4).
            custody = tuple(o for o in message.options if o[0] == SignalOption.CUSTODY)
            self._send(Message(Type.CON, SignalCode.PONG, 0, message.token, custody))
        elif code == SignalCode.PONG:
            if message.token in self._pings:
                self._pings.discard(message.token)
                self.events.append(PongReceived(self.addr, message.token))
        elif code == SignalCode.RELEASE:
            self.released = True
            self._end("released by the peer", aborted=False)
        elif code == SignalCode.ABORT:
            diagnostic = message.payload.decode("utf-8", "replace")
            self._end(
                f"aborted by the peer: {diagnostic}" if diagnostic else "aborted by the peer", aborted=True
            )
        # Other signaling codes are unassigned: ignored.

    def _request(self, message: Message, now: float) -> None:
        if all(n in _PLAIN for n, _ in message.options):
            # The common request: no Observe, no Block, nothing unknown (one walk over the options).
            self.events.append(request_received(self.addr, message))
            return
        extra = self.config.extra_critical_options
        bad = [n for n, _ in message.options if n & 1 and n not in _KNOWN and n not in extra]
        if bad:
            # RFC 7252 §5.4.1, kept by RFC 8323: unknown critical options in a request: 4.02.
            self._reply(message, Code.BAD_OPTION, f"unknown critical option {bad[0]}".encode())
            return
        try:
            block1 = _block(message.option(_BLOCK1))
            block2 = _block(message.option(_BLOCK2))
        except ValueError as exc:
            self._reply(message, Code.BAD_OPTION, str(exc).encode())
            return
        if block2 is not None and block2.num > 0 and self._serve_block(message, block2, now):
            return
        if block1 is not None:
            joined = self._join(message, block1, now)
            if joined is None:
                return
            message = joined
        observe_value = message.observe if message.code in (Code.GET, Code.FETCH) else None
        token = message.token
        if observe_value == 0:
            if token not in self._relations and len(self._relations) >= self.config.max_observations:
                observe_value = None  # no room: served as a plain GET (RFC 7641 §4.1)
                message = message.without_option(_OBSERVE)
            else:
                self._relations[token] = _Relation(message, 0)
        elif observe_value == 1:
            self._relations.pop(token, None)
        self.events.append(
            RequestReceived(
                self.addr,
                message,
                observe_value,
                None if block1 is None else _as_block_option(block1),
                None if block2 is None else _as_block_option(block2),
            )
        )

    def _join(self, message: Message, block1: _Block, now: float) -> Message | None:
        """A Block1 block (RFC 7959 §2.5): kept until the last, which gives the whole request."""
        key = request_key(message)
        held = self._joining.get(key)
        offset = block1.num * block1.unit
        if block1.num == 0:
            if held is not None:
                self._forget_joining(key)  # the transfer starts again
            if len(self._joining) + len(self._served) >= self.config.max_block_bodies:
                self._reply(message, Code.SERVICE_UNAVAILABLE, b"too many block-wise transfers at once")
                return None
            held = self._joining[key] = _Held(bytearray(), now + self.config.block_lifetime)
        if held is None or offset != len(held.body):
            self._forget_joining(key)
            self._reply(message, Code.REQUEST_ENTITY_INCOMPLETE, b"block out of order")
            return None
        if len(held.body) + len(message.payload) > self.config.max_body_size:
            self._forget_joining(key)
            size1 = encode_uint(self.config.max_body_size)
            self._reply(message, Code.REQUEST_ENTITY_TOO_LARGE, b"body too large", ((_SIZE1, size1),))
            return None
        if not self._budget.take(len(message.payload)):
            # As the UDP endpoint does: the bodies of all transfers together are over the bound.
            self._forget_joining(key)
            self._reply(message, Code.SERVICE_UNAVAILABLE, b"too many block-wise bytes held: try again later")
            return None
        held.body += message.payload
        held.expires = now + self.config.block_lifetime
        if block1.more:
            # 2.31 Continue, echoing the block (a smaller SZX would ask for smaller blocks).
            self._send(Message(Type.CON, Code.CONTINUE, 0, message.token, ((_BLOCK1, block1.encode()),)))
            return None
        self._forget_joining(key)  # the body is the application's now
        options = strip(message.options, frozenset((_BLOCK1, _SIZE1)))
        return Message(Type.CON, message.code, 0, message.token, tuple(options), bytes(held.body))

    def _forget_joining(self, key: tuple[Any, ...]) -> None:
        held = self._joining.pop(key, None)
        if held is not None:
            self._budget.give(len(held.body))

    def _serve_block(self, request: Message, block2: _Block, now: float) -> bool:
        """A later Block2 block of a body we hold (RFC 7959 §2.4): answered here."""
        held = self._served.get(request_key(request))
        if held is None or held.response is None:
            return False
        held.expires = now + self.config.block_lifetime
        base = Message(Type.CON, held.response.code, 0, request.token, held.response.options)
        self._send_slice(base, bytes(held.body), block2.num * block2.unit, block2.szx)
        return True

    def _response(self, message: Message, now: float) -> None:
        token = message.token
        out = self._requests.get(token)
        if out is None:
            return  # no RST over TCP (RFC 8323 §3): what nobody waits for is dropped
        if out.body and message.code == Code.CONTINUE:
            self._continue_block1(out, message)
            return
        try:
            block2 = _block(message.option(_BLOCK2))
        except ValueError:
            block2 = None
        if (
            out.observe
            and block2 is not None
            and block2.more
            and block2.num == 0
            and _success(message.code)
            and message.observe is not None
        ):
            # The registration's answer or a notification in blocks: the rest is fetched on a
            # token of its own, and delivered whole (RFC 7959 §2.6).
            self._fetch_rest(out, message, block2, now)
            return
        if out.established:
            final = not _success(message.code) or message.observe is None
            if final:
                del self._requests[token]
            # RFC 8323 §7.3: the stream keeps the order, so every notification is fresh.
            sequence = None if final else message.observe
            self.events.append(CoapNotificationReceived(self.addr, token, message, sequence))
            return
        if block2 is not None and (block2.more or out.received is not None) and _success(message.code):
            joined = self._fetch_block2(out, message, block2)
            if joined is None:
                return
            message = joined
        if out.rest_of is not None:
            del self._requests[token]
            self._deliver_rest(out, message)
            return
        if out.observe and _success(message.code) and message.observe is not None:
            out.established = True
            out.deadline = _INF
        else:
            del self._requests[token]
        self.events.append(ResponseReceived(self.addr, token, out.request, message))

    def _fetch_rest(self, out: _Outgoing, message: Message, block2: _Block, now: float) -> None:
        if not out.established:
            out.established = True  # the registration is taken: notifications follow
            out.deadline = _INF
            registration = True
        else:
            registration = False
        if not self._budget.take(len(message.payload)):
            # No room for the body: the first block goes up as it came, Block2 option kept.
            self._deliver(out.request, message, None if registration else message.observe, registration)
            return
        token = self._new_token()
        rest = _Block(1, False, block2.szx)
        options = with_options(
            strip(out.request.options, frozenset((_OBSERVE, _BLOCK2))), (_BLOCK2, rest.encode())
        )
        request = Message(Type.CON, out.request.code, 0, token, options, out.request.payload)
        fetch = _Outgoing(request, now + self.config.response_timeout, received=bytearray(message.payload))
        fetch.rest_of, fetch.first = out.request.token, message
        fetch.sequence = None if registration else message.observe
        self._requests[token] = fetch
        self._send(request)

    def _deliver_rest(self, fetch: _Outgoing, whole: Message) -> None:
        """The whole body of an observation's answer or notification fetched in blocks."""
        assert fetch.rest_of is not None and fetch.first is not None
        observation = self._requests.get(fetch.rest_of)
        if observation is None:
            return  # cancelled meanwhile
        first = fetch.first
        kept = tuple(strip(first.options, frozenset((_BLOCK2, _SIZE2))))
        message = Message(Type.CON, first.code, 0, fetch.rest_of, kept, whole.payload)
        self._deliver(observation.request, message, fetch.sequence, fetch.sequence is None)

    def _deliver(self, request: Message, message: Message, sequence: int | None, registration: bool) -> None:
        token = request.token
        if registration:
            self.events.append(ResponseReceived(self.addr, token, request, message))
        else:
            self.events.append(CoapNotificationReceived(self.addr, token, message, sequence))

    def _fetch_block2(self, out: _Outgoing, message: Message, block2: _Block) -> Message | None:
        """Join a Block2 response (RFC 7959 §2.4): ask for the next block until the last."""
        body = out.received if out.received is not None else bytearray()
        if block2.num * block2.unit != len(body):
            self._fail(out, "Block2 block out of order")
            return None
        if len(body) + len(message.payload) > self.config.max_body_size:
            self._fail(out, f"Block2 body over {self.config.max_body_size} bytes")
            return None
        if not self._budget.take(len(message.payload)):
            self._fail(out, "too many block-wise bytes held")
            return None
        body += message.payload
        out.received = body
        if block2.more:
            nxt = _Block(len(body) // block2.unit, False, block2.szx)
            options = with_options(
                strip(out.request.options, frozenset((_OBSERVE, _BLOCK2))), (_BLOCK2, nxt.encode())
            )
            self._send(Message(Type.CON, out.request.code, 0, out.request.token, options))
            return None
        out.received = None
        self._budget.give(len(body))  # the body is the application's now
        kept = tuple(strip(message.options, frozenset((_BLOCK2, _SIZE2))))
        return Message(Type.CON, message.code, 0, message.token, kept, bytes(body))

    def _release_received(self, out: _Outgoing) -> None:
        if out.received is not None:
            self._budget.give(len(out.received))
            out.received = None

    def _fail(self, out: _Outgoing, reason: str) -> None:
        self._release_received(out)
        token = out.request.token
        self._requests.pop(token, None)
        self.events.append(RequestFailed(self.addr, token, out.request, reason))

    # --- sending -----------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self._out += encode_message(message)

    def _reply(
        self, request: Message, code: int, diagnostic: bytes, options: tuple[tuple[int, bytes], ...] = ()
    ) -> None:
        self._send(Message(Type.CON, code, 0, request.token, options, diagnostic))

    def _bert(self) -> bool:
        return self.config.block_wise and self.peer.block_wise

    def _send_body(self, message: Message, request: Message, asked: _Block | None, now: float) -> None:
        """``message``, whole if the peer takes it, else its first block (or the one asked)."""
        limit = self.peer.max_message_size
        if asked is None and len(message.payload) + _RESERVE <= limit:
            self._send(message)
            return
        if asked is None and len(encode_message(message)) <= limit:
            self._send(message)
            return
        szx = (
            _szx_for(limit, self._bert()) if asked is None else min(asked.szx, _szx_for(limit, self._bert()))
        )
        num = 0 if asked is None else asked.num
        unit = _BERT_UNIT if szx == _BERT else 1 << (szx + 4)
        if len(message.payload) > unit or num > 0:
            self._keep_served(request_key(request), message, now)
        self._send_slice(message, message.payload, num * unit, szx)

    def _keep_served(self, key: tuple[Any, ...], message: Message, now: float) -> None:
        """Hold a Block2 body for its later blocks; without room (bodies, bytes) it is not held
        and a later block is asked of the application again."""
        old = self._served.pop(key, None)
        if old is not None:
            self._budget.give(len(old.body))
        if self._served and len(self._served) + len(self._joining) >= self.config.max_block_bodies:
            oldest = self._served.pop(next(iter(self._served)))  # the oldest body gives way
            self._budget.give(len(oldest.body))
        if len(self._served) + len(self._joining) >= self.config.max_block_bodies:
            return
        if self._budget.take(len(message.payload)):
            self._served[key] = _Held(bytearray(message.payload), now + self.config.block_lifetime, message)

    def _send_slice(self, message: Message, body: bytes, offset: int, szx: int) -> None:
        if offset >= len(body) and offset > 0:
            self._send(
                Message(Type.CON, Code.BAD_OPTION, 0, message.token, (), b"block beyond the end of the body")
            )
            return
        unit = _BERT_UNIT if szx == _BERT else 1 << (szx + 4)
        count = 1
        if szx == _BERT:
            # As many 1024-byte units as the peer's Max-Message-Size takes (RFC 8323 §6).
            count = max(1, (self.peer.max_message_size - _RESERVE) // _BERT_UNIT)
        chunk = body[offset : offset + unit * count]
        more = offset + len(chunk) < len(body)
        block = _Block(offset // unit, more, szx)
        extra = [(_BLOCK2, block.encode())]
        if offset == 0:
            extra.append((_SIZE2, encode_uint(len(body))))
        options = with_options(strip(message.options, frozenset((_BLOCK2, _SIZE2))), *extra)
        self._send(Message(Type.CON, message.code, 0, message.token, options, chunk))

    def _send_block1(self, out: _Outgoing) -> None:
        szx = _szx_for(self.peer.max_message_size, self._bert())
        unit = _BERT_UNIT if szx == _BERT else 1 << (szx + 4)
        count = max(1, (self.peer.max_message_size - _RESERVE) // _BERT_UNIT) if szx == _BERT else 1
        chunk = out.body[out.sent : out.sent + unit * count]
        more = out.sent + len(chunk) < len(out.body)
        block = _Block(out.sent // unit, more, szx)
        extra = [(_BLOCK1, block.encode())]
        if out.sent == 0:
            extra.append((_SIZE1, encode_uint(len(out.body))))
        req = out.request
        options = with_options(strip(req.options, frozenset((_BLOCK1, _SIZE1))), *extra)
        out.sent += len(chunk)
        if not more:
            out.body = b""  # the last block: what comes now is the response
        self._send(Message(Type.CON, req.code, 0, req.token, options, chunk))

    def _continue_block1(self, out: _Outgoing, message: Message) -> None:
        self._send_block1(out)

    def _new_token(self) -> bytes:
        while True:
            token = self.rng.getrandbits(8 * self.config.token_length).to_bytes(
                self.config.token_length, "big"
            )
            if token not in self._requests and token not in self._pings:
                return token

    def _end(self, reason: str, *, aborted: bool) -> None:
        self.closed = reason
        self._csm_due = None
        for token, out in self._requests.items():
            self._release_received(out)
            self.events.append(RequestFailed(self.addr, token, out.request, f"connection {reason}"))
        self._requests.clear()
        for token in self._relations:
            self.events.append(ObservationCancelled(self.addr, token, "closed"))
        self._relations.clear()
        for held_by in (self._served, self._joining):
            for held in held_by.values():
                self._budget.give(len(held.body))
            held_by.clear()
        self.events.append(ConnectionEnded(self.addr, reason, aborted))


def _plain_frame(code: int, token: bytes, payload: bytes) -> bytes:
    """A message without options in RFC 8323 framing (what ``encode_frame`` makes of it)."""
    n = len(payload) + 1 if payload else 0
    tkl = len(token)
    if n < 13:
        head = bytes(((n << 4) | tkl, code))
    elif n < 269:
        head = bytes(((13 << 4) | tkl, n - 13, code))
    else:
        return encode_frame(code, token, b"\xff" + payload)
    return head + token + b"\xff" + payload if payload else head + token


def _success(code: int) -> bool:
    return code >> 5 == 2


def _unknown_critical(message: Message, known: tuple[int, ...]) -> bool:
    return any(n & 1 and n not in known for n, _ in message.options)


def _szx_for(limit: int, bert: bool) -> int:
    """The block size exponent for a peer that takes ``limit`` bytes: BERT when it fits two
    units or more and both sides announced it, else the largest block that fits."""
    room = limit - _RESERVE
    if bert and room >= 2 * _BERT_UNIT:
        return _BERT
    szx = 6
    while szx > 0 and (1 << (szx + 4)) > room:
        szx -= 1
    return szx


def _as_block_option(block: _Block) -> BlockOption:
    """The event's ``BlockOption`` (which has no SZX 7): a BERT block reads as 1024-byte units."""
    return BlockOption(block.num, block.more, min(block.szx, 6))
