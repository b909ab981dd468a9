"""Handshake message fragmentation and reassembly for DTLS 1.2 (RFC 6347 §4.2.3).

A handshake message larger than a record is sent as fragments, each with the message's full
header and its own fragment_offset/fragment_length (RFC 6347 §4.2.2). Datagrams may be lost,
duplicated and reordered, so fragments arrive in any order, possibly overlapping; the receiver
buffers them per message_seq and hands messages on strictly in message_seq order
(RFC 6347 §4.2.2: "the receiver MUST buffer ... and process in order").

Memory is bounded: a message announcing more than ``max_message_length`` is refused, and only
messages within ``window`` of the next expected message_seq are buffered (later ones are
dropped, as §4.2.2 allows; the peer retransmits them).
"""

from __future__ import annotations

from dataclasses import dataclass

from lwm2m.errors import HandshakeFormatError

from .messages import HANDSHAKE_HEADER_LENGTH, HandshakeHeader, handshake_header_bytes

__all__ = ["HandshakeReassembler", "ReassembledMessage", "fragment_handshake"]

DEFAULT_MAX_MESSAGE_LENGTH = 64 * 1024  # larger than any certificate chain LwM2M uses
DEFAULT_WINDOW = 8  # messages buffered ahead of the next expected one; a flight has at most ~6
# Holes a message may have at once: each fragment costs a pass over the ranges, so an unbounded
# number (thousands of 1-byte fragments with gaps) would make reassembly quadratic.
MAX_HOLES = 64


def fragment_handshake(msg_type: int, message_seq: int, body: bytes, max_fragment_size: int) -> list[bytes]:
    """Split one handshake message into fragments of at most ``max_fragment_size`` bytes each,
    header included (RFC 6347 §4.2.3), so that each fits a record. An empty body still makes
    one fragment (ServerHelloDone)."""
    room = max_fragment_size - HANDSHAKE_HEADER_LENGTH
    if room < 1:
        raise HandshakeFormatError(
            f"a fragment of {max_fragment_size} bytes leaves no room after the handshake header"
        )
    out: list[bytes] = []
    offset = 0
    while True:
        chunk = body[offset : offset + room]
        out.append(handshake_header_bytes(msg_type, len(body), message_seq, offset, len(chunk)) + chunk)
        offset += len(chunk)
        if offset >= len(body):
            return out


@dataclass(frozen=True, slots=True)
class ReassembledMessage:
    """A whole handshake message. ``to_bytes`` gives it as if never fragmented, the form the
    handshake hash covers (RFC 6347 §4.2.6)."""

    msg_type: int
    message_seq: int
    body: bytes

    def to_bytes(self) -> bytes:
        length = len(self.body)
        return handshake_header_bytes(self.msg_type, length, self.message_seq, 0, length) + self.body


class _Pending:
    """The fragments of one message received so far: its bytes and the covered ranges."""

    __slots__ = ("buffer", "length", "msg_type", "ranges")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.buffer = bytearray(length)
        # Sorted, disjoint, non-adjacent [start, end) ranges: at most one per gap, so their
        # number stays bounded by the number of distinct fragments received.
        self.ranges: list[tuple[int, int]] = []

    def add(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        # Overlapping fragments may repeat bytes already held (RFC 6347 §4.2.3 allows any
        # re-fragmentation on retransmission); the later copy is written over the earlier one,
        # and the Finished check over the whole transcript catches any that differ.
        self.buffer[offset:end] = data
        merged: list[tuple[int, int]] = []
        start = offset
        for lo, hi in self.ranges:
            if hi < start or lo > end:
                merged.append((lo, hi))
            else:
                start, end = min(lo, start), max(hi, end)
        merged.append((start, end))
        merged.sort()
        if len(merged) > MAX_HOLES:
            raise HandshakeFormatError(f"handshake message arrives in more than {MAX_HOLES} separate pieces")
        self.ranges = merged

    @property
    def complete(self) -> bool:
        return self.length == 0 or self.ranges == [(0, self.length)]


class HandshakeReassembler:
    """Collects handshake fragments and gives out whole messages in message_seq order.

    ``add`` takes one fragment (header and its bytes, as ``split_handshake_fragments`` gives)
    and returns the messages that became deliverable, in order. A fragment of an already
    delivered message (a retransmission) is ignored; ``add`` then returns ``[]`` and
    ``retransmissions`` counts it, so the state machine can decide to resend its last flight
    (RFC 6347 §4.2.4).
    """

    __slots__ = ("_max_length", "_next_seq", "_pending", "_window", "retransmissions")

    def __init__(
        self,
        *,
        next_seq: int = 0,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._next_seq = next_seq
        self._max_length = max_message_length
        self._window = window
        self._pending: dict[int, _Pending] = {}
        self.retransmissions = 0

    @property
    def next_seq(self) -> int:
        """The message_seq of the next message to deliver."""
        return self._next_seq

    @property
    def buffered_bytes(self) -> int:
        """The bytes held for messages not yet complete or not yet in turn."""
        return sum(p.length for p in self._pending.values())

    def add(self, header: HandshakeHeader, fragment: bytes) -> list[ReassembledMessage]:
        if len(fragment) != header.fragment_length:
            raise HandshakeFormatError(
                f"handshake fragment holds {len(fragment)} bytes, its header says {header.fragment_length}"
            )
        if header.length > self._max_length:
            raise HandshakeFormatError(
                f"handshake message of {header.length} bytes exceeds the limit of {self._max_length}"
            )
        seq = header.message_seq
        if seq < self._next_seq:
            self.retransmissions += 1
            return []
        if seq >= self._next_seq + self._window:
            return []  # too far ahead to buffer: dropped, the peer retransmits (RFC 6347 §4.2.2)
        pending = self._pending.get(seq)
        if pending is None:
            pending = self._pending[seq] = _Pending(header.msg_type, header.length)
        elif pending.msg_type != header.msg_type or pending.length != header.length:
            # Fragments of one message must agree on what the message is.
            raise HandshakeFormatError(
                f"fragments of handshake message {seq} disagree: type {pending.msg_type}/{header.msg_type}, "
                f"length {pending.length}/{header.length}"
            )
        pending.add(header.fragment_offset, fragment)
        return self._deliver()

    def _deliver(self) -> list[ReassembledMessage]:
        out: list[ReassembledMessage] = []
        while (pending := self._pending.get(self._next_seq)) is not None and pending.complete:
            del self._pending[self._next_seq]
            out.append(ReassembledMessage(pending.msg_type, self._next_seq, bytes(pending.buffer)))
            self._next_seq += 1
        return out
