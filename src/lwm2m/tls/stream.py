"""TLS 1.2 record framing over a byte stream (RFC 5246 §6.2): what TLS over TCP changes in
the DTLS engine's record layer, and nothing else.

- A record has a 5-byte header (type, version, length) and no epoch or sequence number on
  the wire: the 64-bit sequence number is implicit, counted per direction and reset to 0 by
  ChangeCipherSpec (RFC 5246 §6.1). :class:`StreamRecordReader` cuts records out of any
  chunking of the stream; records are bounded by 2^14 + 2048 bytes (RFC 5246 §6.2.3), so the
  reader never holds more than one record and its header.
- Handshake messages have a 4-byte header (type, length; RFC 5246 §7.4), may span records
  and share them: :class:`HandshakeStream` cuts whole messages out of the handshake bytes.
- The handshake hash covers the messages with that 4-byte header (RFC 5246 §7.4.9); the
  engine keeps its transcript in the DTLS form (RFC 6347 §4.2.6), and :func:`tls_transcript`
  gives the TLS form of it.

The record protection (:mod:`lwm2m.tls.protection`) takes the implicit sequence number as its
``seq_num`` (RFC 5246 §6.2.3.3, RFC 5288 §3, RFC 6655 §3) and is shared with DTLS.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from lwm2m.errors import HandshakeFormatError, RecordError, RecordOverflow
from lwm2m.tls.messages import HANDSHAKE_HEADER_LENGTH
from lwm2m.tls.record import CONTENT_TYPES, MAX_CIPHERTEXT, TLS12_CID

TLS_1_2: Final = 0x0303  # RFC 5246 §6.2.1: {3, 3}
STREAM_HEADER_LENGTH: Final = 5  # type(1) version(2) length(2)
TLS_HANDSHAKE_HEADER_LENGTH: Final = 4  # msg_type(1) length(3)
# The largest handshake message taken: a certificate chain fits; anything longer ends the
# handshake rather than being buffered.
MAX_HANDSHAKE_MESSAGE: Final = 2**16
MAX_SEQUENCE_NUMBER: Final = 2**64 - 1  # RFC 5246 §6.1: a sequence number never wraps

_HEADER: Final = struct.Struct("!BHH")


def encode_stream_record(content_type: int, version: int, fragment: bytes) -> bytes:
    """A TLSPlaintext / TLSCiphertext record on the wire (RFC 5246 §6.2.1)."""
    if len(fragment) > MAX_CIPHERTEXT:
        raise RecordOverflow(f"a record of {len(fragment)} bytes is longer than {MAX_CIPHERTEXT}")
    try:
        return _HEADER.pack(content_type, version, len(fragment)) + fragment
    except struct.error:
        raise RecordError(f"content type {content_type} or version {version:#x} does not fit") from None


class StreamRecordReader:
    """Cuts TLS records out of a byte stream, whatever its chunking.

    :meth:`feed` returns the records that became whole, as (content type, version, fragment).
    A header that cannot start a TLS 1.x record (an unknown type, a version whose major is not
    3, a length over 2^14 + 2048) raises :class:`~lwm2m.errors.RecordError` (or
    :class:`~lwm2m.errors.RecordOverflow`): nothing after it can be framed, the connection ends.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """The bytes of a record not yet whole."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buffer = self._buffer
        buffer += data
        records: list[tuple[int, int, bytes]] = []
        at = 0
        while len(buffer) - at >= STREAM_HEADER_LENGTH:
            content_type, version, length = _HEADER.unpack_from(buffer, at)
            if content_type not in CONTENT_TYPES or content_type == TLS12_CID:
                del buffer[:]
                raise RecordError(f"unknown record content type {content_type}")
            if version >> 8 != 3:
                del buffer[:]
                raise RecordError(f"record version {version:#06x} is not TLS")
            if length > MAX_CIPHERTEXT:
                del buffer[:]
                raise RecordOverflow(f"a record of {length} bytes is longer than {MAX_CIPHERTEXT}")
            end = at + STREAM_HEADER_LENGTH + length
            if end > len(buffer):
                break
            records.append((content_type, version, bytes(buffer[at + STREAM_HEADER_LENGTH : end])))
            at = end
        del buffer[:at]
        return records


class HandshakeStream:
    """Cuts whole handshake messages (RFC 5246 §7.4: msg_type, 24-bit length, body) out of the
    handshake records' contents, which may split a message or hold several."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """The bytes of a message not yet whole."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        messages: list[tuple[int, bytes]] = []
        at = 0
        while len(buffer) - at >= TLS_HANDSHAKE_HEADER_LENGTH:
            msg_type = buffer[at]
            length = int.from_bytes(buffer[at + 1 : at + 4], "big")
            if length > MAX_HANDSHAKE_MESSAGE:
                del buffer[:]
                raise HandshakeFormatError(
                    f"handshake message of {length} bytes exceeds the limit of {MAX_HANDSHAKE_MESSAGE}"
                )
            end = at + TLS_HANDSHAKE_HEADER_LENGTH + length
            if end > len(buffer):
                break
            messages.append((msg_type, bytes(buffer[at + TLS_HANDSHAKE_HEADER_LENGTH : end])))
            at = end
        del buffer[:at]
        return messages


def tls_handshake_bytes(msg_type: int, body: bytes) -> bytes:
    """A handshake message with its TLS header (RFC 5246 §7.4)."""
    if not 0 <= msg_type <= 0xFF or len(body) > 0xFFFFFF:
        raise HandshakeFormatError(f"handshake type {msg_type} or length {len(body)} does not fit")
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


def tls_transcript(dtls_messages: Iterable[bytes]) -> bytes:
    """The TLS handshake hash input (RFC 5246 §7.4.9) of whole messages kept in the DTLS form
    (RFC 6347 §4.2.6): each keeps its type and length, and loses message_seq,
    fragment_offset and fragment_length."""
    return b"".join(m[:TLS_HANDSHAKE_HEADER_LENGTH] + m[HANDSHAKE_HEADER_LENGTH:] for m in dtls_messages)


class StreamState:
    """The stream side of one TLS connection: the receiver's buffers, the epoch and implicit
    sequence number of the records received (RFC 5246 §6.1; the engine counts those it sends
    per epoch, which is the same count), and the message_seq the
    engine's reassembly expects of the next handshake message received."""

    __slots__ = ("_read_seq", "handshake", "next_message_seq", "read_epoch", "reader")

    def __init__(self) -> None:
        self.reader = StreamRecordReader()
        self.handshake = HandshakeStream()
        self.read_epoch = 0
        self._read_seq = 0
        self.next_message_seq = 0

    def next_read(self) -> int:
        """The implicit sequence number of the next record received."""
        sequence = self._read_seq
        if sequence >= MAX_SEQUENCE_NUMBER:
            raise RecordError("the read sequence number would wrap (RFC 5246 §6.1)")
        self._read_seq = sequence + 1
        return sequence

    def change_read_cipher_spec(self) -> None:
        """ChangeCipherSpec received: the next records are protected, from sequence number 0."""
        self.read_epoch = 1
        self._read_seq = 0

    @property
    def buffered(self) -> int:
        """The bytes held for records and handshake messages not yet whole."""
        return self.reader.buffered + self.handshake.buffered
