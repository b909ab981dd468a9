"""The per-device CoAP message trace: what went to and came from one endpoint, decoded.

Switched on per endpoint (``PUT /api/clients/{ep}/trace``) for a while (``ttl`` seconds, at most
``TraceConfig.max_ttl``), after which it switches itself off. While on, every CoAP message to
or from the endpoint's address is kept as a summary (:func:`summarize`: time, direction, type,
code, Message ID, token, options in short form, the first 64 bytes of the payload, size) in a
ring of ``TraceConfig.max_entries`` per endpoint, and handed to whoever follows the trace
(:meth:`MessageTrace.follow`: the SSE stream of the web API). On the datagram path a traced
message costs an append: the datagram is kept as it is (up to ``KEEP_RAW`` bytes) and decoded
when the trace is read.

Bounded: at most ``max_endpoints`` endpoints are traced at once (:class:`~lwm2m.errors.TooManyTraces`
beyond), ``max_entries`` summaries each, ``FOLLOW_BACKLOG`` unread ones per follower. The tap
(:mod:`lwm2m.transport.tap`) is put into the server's CoAP transports with the first trace and
taken out with the last: with no trace on, nothing stands between the sockets and the endpoint.
The trace follows the endpoint's address as the registrar knows it (``peers``), and again when
the device registers or updates from a new one. A trace is this node's: over DTLS, the
plaintext inside the session; over TCP and TLS (RFC 8323), the messages of the device's
connection, summarized as they pass (:func:`summarize_frame`; signaling is not traced).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lwm2m.coap.framing import encode_message
from lwm2m.coap.message import Message, decode_message
from lwm2m.coap.numbers import Code, OptionNumber, Type, code_text
from lwm2m.coap.option import BlockOption, decode_uint
from lwm2m.errors import ConfigError, MessageError, ProtocolError, TooManyTraces
from lwm2m.server.backlog import Backlog
from lwm2m.server.events import ClientRegistered, ClientUpdated, EventStream, ServerEvent
from lwm2m.transport.tap import ConnectionSink

__all__ = [
    "KEEP_RAW",
    "PREVIEW_BYTES",
    "Kept",
    "MessageTrace",
    "TraceConfig",
    "TraceState",
    "as_summary",
    "summarize",
    "summarize_frame",
]

PREVIEW_BYTES = 64  # of a payload, in a summary
# A datagram up to this size is kept as it is and decoded when the trace is read (nothing but an
# append on the datagram path); a larger one, rare, is decoded at once and its summary kept.
KEEP_RAW = 2048
FOLLOW_BACKLOG = 1000  # summaries a follower may leave unread; the oldest go beyond

Tap = Callable[[ConnectionSink | None], None]


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """``max_endpoints`` traced at once; ``max_entries`` summaries kept per endpoint (the oldest
    go); ``default_ttl`` and ``max_ttl``: seconds a trace stays on."""

    max_endpoints: int = 16
    max_entries: int = 500
    default_ttl: float = 600.0
    max_ttl: float = 86400.0

    def __post_init__(self) -> None:
        if self.max_endpoints < 1 or self.max_entries < 1:
            raise ConfigError(
                "max_endpoints and max_entries must be at least 1,"
                f" got {self.max_endpoints}, {self.max_entries}"
            )
        if not 0 < self.default_ttl <= self.max_ttl:
            raise ConfigError(f"need 0 < default_ttl <= max_ttl, got {self.default_ttl}, {self.max_ttl}")


_OPTION_NAMES = {int(n): n.name.replace("_", "-").title() for n in OptionNumber}
# The options by how their values read (RFC 7252 §5.10, RFC 7959 §2.1), as plain ints: a set of
# ints is looked up faster than one of IntEnum members.
_STRINGS = frozenset(
    int(n)
    for n in (
        OptionNumber.URI_PATH,
        OptionNumber.URI_QUERY,
        OptionNumber.LOCATION_PATH,
        OptionNumber.LOCATION_QUERY,
        OptionNumber.URI_HOST,
        OptionNumber.PROXY_URI,
        OptionNumber.PROXY_SCHEME,
    )
)
_BLOCKS = frozenset((int(OptionNumber.BLOCK1), int(OptionNumber.BLOCK2)))
_OPAQUES = frozenset((int(OptionNumber.ETAG), int(OptionNumber.IF_MATCH)))
_EMPTY = int(OptionNumber.IF_NONE_MATCH)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, CR and LF read as text
_TYPE_NAMES = tuple(Type(t).name for t in range(4))
# Every code byte by what a summary calls it: methods by name, the rest as "2.05 Content".
_CODE_NAMES = tuple(
    "empty" if c == 0 else Code(c).name if c in {int(m) for m in Code if m.is_request} else code_text(c)
    for c in range(256)
)


def _option(number: int, value: bytes) -> str:
    """One option in short form: ``Uri-Path: rd``, ``Observe: 3``, ``Block2: 2/1/1024``."""
    name = _OPTION_NAMES.get(number) or str(number)
    try:
        if number in _STRINGS:
            return f"{name}: {value.decode('utf-8')}"
        if number in _BLOCKS:
            block = BlockOption.decode(value)
            return f"{name}: {block.num}/{int(block.more)}/{block.size}"
        if number in _OPAQUES or len(value) > 4:
            return f"{name}: 0x{value.hex()}"
        if number == _EMPTY:
            return name
        return f"{name}: {decode_uint(value)}"
    except (ProtocolError, ValueError):  # a block option that does not read, a name not UTF-8
        return f"{name}: 0x{value.hex()}"


def _preview(payload: bytes) -> tuple[str, str]:
    """The first ``PREVIEW_BYTES`` of a payload as text when they read as such (a character cut
    at the end left out), else as hex."""
    head = payload[:PREVIEW_BYTES]
    for cut in range(4 if len(payload) > PREVIEW_BYTES else 1):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if _CONTROL.search(text) is None:
            return "text", text
        break
    return "hex", head.hex()


def summarize(data: bytes, incoming: bool, at: float) -> dict[str, Any]:
    """A CoAP datagram (RFC 7252 §3) as the trace keeps it; one that does not decode keeps its
    size and the hex of its first bytes."""
    summary: dict[str, Any] = {"at": at, "direction": "in" if incoming else "out", "size": len(data)}
    try:
        msg: Message = decode_message(data)[0]
    except MessageError:
        summary.update(error="not a CoAP message", preview=data[:PREVIEW_BYTES].hex(), previewFormat="hex")
        return summary
    summary.update(type=_TYPE_NAMES[msg.type], code=_CODE_NAMES[msg.code], mid=msg.mid)
    _describe(summary, msg)
    return summary


def summarize_frame(msg: Message, incoming: bool, at: float) -> dict[str, Any]:
    """A CoAP over TCP or TLS message (RFC 8323 §3.2) as the trace keeps it: no type nor Message
    ID; ``size`` is its frame's; ``transport`` says "tcp"."""
    summary: dict[str, Any] = {"at": at, "direction": "in" if incoming else "out", "transport": "tcp"}
    try:
        summary["size"] = len(encode_message(msg))
    except ValueError:  # a token too long to frame: not one a connection sends or takes
        summary["size"] = len(msg.payload)
    summary["code"] = _CODE_NAMES[msg.code & 0xFF]
    _describe(summary, msg)
    return summary


def _describe(summary: dict[str, Any], msg: Message) -> None:
    summary.update(
        token=msg.token.hex(),
        options=[_option(n, v) for n, v in msg.options],
        payloadSize=len(msg.payload),
    )
    if msg.payload:
        kind, preview = _preview(msg.payload)
        summary.update(preview=preview, previewFormat=kind)


# What a trace keeps of one datagram: (time, incoming, the datagram), or its summary already.
Kept = tuple[float, bool, bytes] | dict[str, Any]


def as_summary(kept: Kept) -> dict[str, Any]:
    """A kept datagram as its summary (:func:`summarize`); a summary (or a follower's end
    marker, ``{"end": reason}``) as it is."""
    if isinstance(kept, dict):
        return kept
    at, incoming, data = kept
    return summarize(data, incoming, at)


@dataclass(slots=True)
class _Trace:
    until: float  # time.time() when it switches itself off
    entries: deque[Kept]
    timer: asyncio.TimerHandle | None = None
    address: Any = None
    followers: set[Backlog[Kept]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class TraceState:
    """A trace as the API shows it: on until when, where the device is, entries kept."""

    endpoint: str
    on: bool
    until: float | None
    kept: int

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "on": self.on, "until": self.until, "kept": self.kept}


class MessageTrace:
    """The traces of one server: a :class:`~lwm2m.transport.tap.ConnectionSink` while any is on.

    ``tap`` puts the sink into the server's CoAP transports (None takes it out); ``peers`` is
    the registrar's endpoint -> address map; ``events`` subscribes to the server's events (to
    follow a device that registers or updates from a new address)."""

    def __init__(
        self,
        tap: Tap,
        peers: Mapping[str, Any],
        events: Callable[[], EventStream],
        config: TraceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or TraceConfig()
        self._tap = tap
        self._peers = peers
        self._events = events
        self._clock = clock
        self._traces: dict[str, _Trace] = {}
        self.addresses: dict[Any, str] = {}  # the traced devices' addresses (the sink's)
        self._watch: asyncio.Task[None] | None = None
        self._tapped = False

    # --- switching on and off -------------------------------------------------------------

    def start(self, endpoint: str, ttl: float | None = None) -> TraceState:
        """Trace ``endpoint`` for ``ttl`` seconds from now (default ``default_ttl``; again on a
        traced endpoint: the entries stay, the time starts anew). TooManyTraces beyond
        ``max_endpoints``; ValueError for a ttl not in (0, max_ttl]."""
        config = self.config
        ttl = config.default_ttl if ttl is None else ttl
        if not 0 < ttl <= config.max_ttl:
            raise ValueError(f"ttl: {ttl} is not a number of seconds from 0 (excluded) to {config.max_ttl:g}")
        trace = self._traces.get(endpoint)
        if trace is None:
            if len(self._traces) >= config.max_endpoints:
                raise TooManyTraces(
                    f"{len(self._traces)} endpoints are traced already, the most at once: stop one first"
                )
            trace = self._traces[endpoint] = _Trace(0.0, deque(maxlen=config.max_entries))
        trace.until = self._clock() + ttl
        if trace.timer is not None:
            trace.timer.cancel()
        trace.timer = asyncio.get_running_loop().call_later(ttl, self._expire, endpoint)
        self.relocate(endpoint)
        self._switch()
        return self.state(endpoint)

    def stop(self, endpoint: str, reason: str = "stopped") -> bool:
        """Switch the endpoint's trace off and drop its entries; False when it was not on.
        Its followers get ``{"end": reason}``."""
        trace = self._traces.pop(endpoint, None)
        if trace is None:
            return False
        if trace.timer is not None:
            trace.timer.cancel()
        if trace.address is not None:
            self.addresses.pop(trace.address, None)
        for follower in trace.followers:
            follower.put({"end": reason})
        self._switch()
        return True

    def _expire(self, endpoint: str) -> None:
        trace = self._traces.get(endpoint)
        if trace is not None:
            trace.timer = None
            self.stop(endpoint, "expired")

    def close(self) -> None:
        """Every trace off (the server stops)."""
        for endpoint in list(self._traces):
            self.stop(endpoint)

    def _switch(self) -> None:
        """The tap and the address watch in while a trace is on, out when none is."""
        on = bool(self._traces)
        if on and not self._tapped:
            self._tap(self)
            self._tapped = True
            self._watch = asyncio.get_running_loop().create_task(self._follow_addresses())
        elif not on and self._tapped:
            self._tap(None)
            self._tapped = False
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None

    # --- where the devices are -------------------------------------------------------------

    def relocate(self, endpoint: str) -> None:
        """Follow the endpoint, if traced, to the address the registrar has for it now (the
        server calls this when a DTLS session moves; registrations and updates come as events)."""
        trace = self._traces.get(endpoint)
        if trace is None:
            return
        addr = self._peers.get(endpoint)
        if addr == trace.address:
            return
        if trace.address is not None and self.addresses.get(trace.address) == endpoint:
            del self.addresses[trace.address]
        trace.address = addr
        if addr is not None:
            self.addresses[addr] = endpoint

    async def _follow_addresses(self) -> None:
        stream = self._events()
        try:
            async for event in stream:
                if isinstance(event, ClientRegistered | ClientUpdated):
                    self.relocate(_endpoint_of(event))
        finally:
            stream.close()

    # --- the sink ----------------------------------------------------------------------------

    def seen(self, incoming: bool, data: bytes, addr: Any) -> None:
        endpoint = self.addresses.get(addr)
        trace = None if endpoint is None else self._traces.get(endpoint)
        if trace is None:
            return
        at = self._clock()
        kept: Kept = (at, incoming, data) if len(data) <= KEEP_RAW else summarize(data, incoming, at)
        trace.entries.append(kept)
        for follower in trace.followers:
            follower.put(kept)

    def seen_message(self, incoming: bool, message: Message, addr: Any) -> None:
        """A message over a traced device's TCP or TLS connection: summarized at once (a
        connection hands messages, not datagrams to keep)."""
        endpoint = self.addresses.get(addr)
        trace = None if endpoint is None else self._traces.get(endpoint)
        if trace is None:
            return
        kept = summarize_frame(message, incoming, self._clock())
        trace.entries.append(kept)
        for follower in trace.followers:
            follower.put(kept)

    # --- reading -------------------------------------------------------------------------------

    def state(self, endpoint: str) -> TraceState:
        trace = self._traces.get(endpoint)
        if trace is None:
            return TraceState(endpoint, False, None, 0)
        return TraceState(endpoint, True, trace.until, len(trace.entries))

    def entries(self, endpoint: str) -> list[dict[str, Any]]:
        """The summaries kept for the endpoint, oldest first (empty when it is not traced)."""
        trace = self._traces.get(endpoint)
        return [] if trace is None else [as_summary(kept) for kept in trace.entries]

    def traced(self) -> list[TraceState]:
        return [self.state(endpoint) for endpoint in sorted(self._traces)]

    def follow(self, endpoint: str) -> Backlog[Kept] | None:
        """A backlog that gets the endpoint's datagrams from now on (:func:`as_summary` reads
        them), as they come, and one
        ``{"end": reason}`` when its trace is switched off (``stopped``, ``expired``); None when
        it is not traced. At most ``FOLLOW_BACKLOG`` wait unread: the oldest go beyond.
        :meth:`unfollow` it."""
        trace = self._traces.get(endpoint)
        if trace is None:
            return None
        backlog: Backlog[Kept] = Backlog(FOLLOW_BACKLOG)
        trace.followers.add(backlog)
        return backlog

    def unfollow(self, endpoint: str, backlog: Backlog[Kept]) -> None:
        trace = self._traces.get(endpoint)
        if trace is not None:
            trace.followers.discard(backlog)


def _endpoint_of(event: ServerEvent) -> str:
    assert isinstance(event, ClientRegistered | ClientUpdated)
    return event.registration.endpoint
