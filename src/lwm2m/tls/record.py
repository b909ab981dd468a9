"""DTLS 1.2 record framing: RFC 6347 §4.1 (the 13-byte record header), RFC 9146 §4 (the
``tls12_cid`` record that carries a Connection ID) and RFC 9146 §4 / §5 (the
``DTLSInnerPlaintext`` that hides the real content type behind zero padding).

This module only frames bytes; it protects nothing. A datagram may carry several records
(RFC 6347 §4.1.1): :func:`parse_datagram` returns all of them, :func:`encode_datagram` packs
them. The record protection (``lwm2m.tls.protection``) works on the 64-bit ``seq_num`` and
the header fields, not on this framing, so that TLS over TCP (RFC 5246 §6.2, a 5-byte
header and an implicit sequence number) can reuse it with its own framing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from lwm2m.errors import RecordError, RecordOverflow

# ContentType (RFC 5246 §6.2.1, RFC 9146 §4).
CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
HANDSHAKE: Final = 22
APPLICATION_DATA: Final = 23
TLS12_CID: Final = 25
CONTENT_TYPES: Final = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, TLS12_CID})

# ProtocolVersion on the wire: DTLS 1.2 is {254, 253}; DTLS 1.0 {254, 255} may appear in the
# record of a first ClientHello (RFC 6347 §4.2.1 lets a client offer it there).
DTLS_1_2: Final = 0xFEFD
DTLS_1_0: Final = 0xFEFF

HEADER_LENGTH: Final = 13  # type(1) version(2) epoch(2) sequence_number(6) length(2)
MAX_PLAINTEXT: Final = 2**14  # RFC 5246 §6.2.1
MAX_CIPHERTEXT: Final = 2**14 + 2048  # RFC 5246 §6.2.3: what a receiver must accept at most
MAX_EPOCH: Final = 0xFFFF
MAX_SEQUENCE: Final = 2**48 - 1
MAX_CID_LENGTH: Final = 255  # RFC 9146 §3: opaque cid<0..2^8-1>

# type(1) version(2) epoch(2) sequence_number(6 = 2 + 4), as one unpack: a record is parsed for
# every datagram, so the fields are read in one call rather than one slice each.
_HEAD: Final = struct.Struct("!BHHHI")
# The whole header of a record without a CID: type, version, epoch, sequence number (16 + 32 bits),
# length. The receiver of application data reads it straight from the datagram.
RECORD_HEADER: Final = struct.Struct("!BHHHIH")
_LENGTH: Final = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class DtlsRecord:
    """One DTLS record (``DTLSPlaintext`` or ``DTLSCiphertext``, RFC 6347 §4.1).

    ``cid`` is empty for the RFC 6347 format. A record with a ``cid`` is a RFC 9146 record:
    on the wire its ``content_type`` is ``TLS12_CID``; before protection (and after it is
    removed) ``content_type`` is the real one and ``cid`` says which format to send.
    """

    content_type: int
    version: int
    epoch: int
    sequence: int
    fragment: bytes
    cid: bytes = b""

    def __post_init__(self) -> None:
        # Refuse at construction what could never be put on the wire, so encode() cannot fail.
        if not 0 <= self.content_type <= 0xFF:
            raise RecordError(f"content type {self.content_type} does not fit in one byte")
        if not 0 <= self.version <= 0xFFFF:
            raise RecordError(f"version {self.version:#x} does not fit in two bytes")
        if not 0 <= self.epoch <= MAX_EPOCH:
            raise RecordError(f"epoch {self.epoch} does not fit in 16 bits")
        if not 0 <= self.sequence <= MAX_SEQUENCE:
            raise RecordError(f"sequence number {self.sequence} does not fit in 48 bits")
        if len(self.cid) > MAX_CID_LENGTH:
            raise RecordError(f"a connection ID of {len(self.cid)} bytes is longer than 255")
        if len(self.fragment) > MAX_CIPHERTEXT:
            raise RecordOverflow(f"a record of {len(self.fragment)} bytes is longer than {MAX_CIPHERTEXT}")

    @property
    def seq_num(self) -> int:
        """The 64-bit ``seq_num`` of the MAC and AEAD input: epoch ‖ sequence_number (RFC 6347 §4.1)."""
        return (self.epoch << 48) | self.sequence

    def encode(self) -> bytes:
        """The record on the wire: the RFC 6347 header, or the RFC 9146 one with the CID after
        the sequence number when ``cid`` is set (the type is then ``TLS12_CID``)."""
        return encode_record(
            self.content_type, self.version, self.epoch, self.sequence, self.fragment, self.cid
        )


def encode_record(
    content_type: int, version: int, epoch: int, sequence: int, fragment: bytes, cid: bytes = b""
) -> bytes:
    """A record on the wire from its fields, without a :class:`DtlsRecord` in between (the
    sender of application data builds one per record). The fields are checked as
    :class:`DtlsRecord` checks them; with a ``cid`` the type on the wire is ``TLS12_CID``."""
    if not 0 <= epoch <= MAX_EPOCH or not 0 <= sequence <= MAX_SEQUENCE:
        raise RecordError(f"epoch {epoch} or sequence number {sequence} does not fit the header")
    if len(fragment) > MAX_CIPHERTEXT:
        raise RecordOverflow(f"a record of {len(fragment)} bytes is longer than {MAX_CIPHERTEXT}")
    if len(cid) > MAX_CID_LENGTH:
        raise RecordError(f"a connection ID of {len(cid)} bytes is longer than 255")
    try:
        content_type = TLS12_CID if cid else content_type
        head = _HEAD.pack(content_type, version, epoch, sequence >> 32, sequence & 0xFFFFFFFF)
    except struct.error:
        raise RecordError(f"content type {content_type} or version {version:#x} does not fit") from None
    return b"".join((head, cid, _LENGTH.pack(len(fragment)), fragment))


def parse_record(data: bytes, offset: int = 0, cid_length: int = 0) -> tuple[DtlsRecord, int]:
    """Parse the record at ``offset`` of ``data``; return it and the offset after it.

    ``cid_length`` is the length of the CID this receiver negotiated for itself (RFC 9146 §4:
    the wire carries no CID length, the receiver knows it). 0 means no CID records are
    expected: a ``tls12_cid`` record is then refused. A parsed CID record keeps
    ``content_type == TLS12_CID`` until its protection is removed.
    """
    if not 0 <= cid_length <= MAX_CID_LENGTH:
        raise RecordError(f"connection ID length {cid_length} is not 0..255")
    available = len(data) - offset
    if available < HEADER_LENGTH:
        raise RecordError(f"a record header needs {HEADER_LENGTH} bytes, {available} left")
    content_type, version, epoch, sequence_high, sequence_low = _HEAD.unpack_from(data, offset)
    if content_type not in CONTENT_TYPES:
        # Not a DTLS record we know (RFC 7983 demultiplexing puts 20..63 here); the rest of the
        # datagram cannot be framed either, so the whole datagram is refused.
        raise RecordError(f"unknown record content type {content_type}")
    if version >> 8 != 0xFE:
        raise RecordError(f"record version {version:#06x} is not DTLS")
    position = offset + 11
    cid = b""
    if content_type == TLS12_CID:
        if cid_length == 0:
            raise RecordError("a tls12_cid record, but no connection ID was negotiated")
        if len(data) - position < cid_length + 2:
            raise RecordError("a tls12_cid record shorter than its connection ID and length")
        cid = bytes(data[position : position + cid_length])
        position += cid_length
    (length,) = _LENGTH.unpack_from(data, position)
    position += 2
    if length > MAX_CIPHERTEXT:
        raise RecordOverflow(f"a record of {length} bytes is longer than {MAX_CIPHERTEXT}")
    if length > len(data) - position:
        raise RecordError(f"a record of {length} bytes, but the datagram has {len(data) - position} left")
    fragment = bytes(data[position : position + length])
    # CID records always carry their CID as a field; the real type is inside the ciphertext.
    record = DtlsRecord(content_type, version, epoch, (sequence_high << 32) | sequence_low, fragment, cid)
    return record, position + length


def single_protected_record(data: bytes, cid_length: int) -> tuple[int, int, int, int, bytes] | None:
    """(content type, version, sequence number, start of the fragment, CID) of a datagram that
    is exactly one epoch-1 record of application data (RFC 6347 §4.1), or of type
    ``tls12_cid`` with a CID of ``cid_length`` bytes (RFC 9146 §4) when that is not 0; None
    for any other datagram, which then needs :func:`parse_datagram`. The receiver of
    application data reads it so, straight from the datagram, without a record object."""
    n = len(data)
    if n < HEADER_LENGTH:
        return None
    if not cid_length:  # the common form, read whole: header and length in one unpack
        content_type, version, epoch, sequence_high, sequence_low, length = RECORD_HEADER.unpack_from(data)
        if (
            content_type != APPLICATION_DATA
            or epoch != 1
            or length + HEADER_LENGTH != n
            or version >> 8 != 0xFE
        ):
            return None  # another type or epoch, several records, or a length that does not match
        return content_type, version, (sequence_high << 32) | sequence_low, HEADER_LENGTH, b""
    content_type, version, epoch, sequence_high, sequence_low = _HEAD.unpack_from(data)
    start = HEADER_LENGTH + cid_length  # the CID lies before the length (RFC 9146 §4)
    if content_type != TLS12_CID or epoch != 1 or version >> 8 != 0xFE or n < start:
        return None
    if start + ((data[start - 2] << 8) | data[start - 1]) != n:
        return None  # several records, or a length that does not match: the general parser's
    return content_type, version, (sequence_high << 32) | sequence_low, start, data[11 : 11 + cid_length]


def parse_datagram(data: bytes, cid_length: int = 0) -> list[DtlsRecord]:
    """Every record of a datagram, in order (RFC 6347 §4.1.1: several records may share one).

    A datagram that does not frame exactly into records is refused as a whole with
    :class:`~lwm2m.errors.RecordError`: a length that runs past the end leaves nothing to trust.
    """
    records: list[DtlsRecord] = []
    offset = 0
    if not data:
        raise RecordError("an empty datagram holds no record")
    while offset < len(data):
        record, offset = parse_record(data, offset, cid_length)
        records.append(record)
    return records


def encode_datagram(records: Iterable[DtlsRecord]) -> bytes:
    """The records one after the other, as one datagram."""
    return b"".join(record.encode() for record in records)


def encode_inner_plaintext(content: bytes, content_type: int, padding: int = 0) -> bytes:
    """``DTLSInnerPlaintext`` (RFC 9146 §4): the content, its real type, then ``padding`` zeros.

    The padding hides the length of the content from an observer (RFC 9146 §5 / §8).
    """
    if not 0 < content_type <= 0xFF:
        # Type 0 cannot be told apart from the padding.
        raise RecordError(f"content type {content_type} cannot be carried in DTLSInnerPlaintext")
    if padding < 0:
        raise RecordError("padding cannot be negative")
    inner = content + bytes((content_type,)) + bytes(padding)
    if len(inner) > MAX_PLAINTEXT:
        raise RecordOverflow(f"a DTLSInnerPlaintext of {len(inner)} bytes is longer than {MAX_PLAINTEXT}")
    return inner


def parse_inner_plaintext(inner: bytes) -> tuple[int, bytes]:
    """Split ``DTLSInnerPlaintext`` into (real content type, content): the last non-zero byte
    is the type, the zeros after it are padding (RFC 9146 §4)."""
    if len(inner) > MAX_PLAINTEXT:
        raise RecordOverflow(f"a DTLSInnerPlaintext of {len(inner)} bytes is longer than {MAX_PLAINTEXT}")
    end = len(inner.rstrip(b"\x00"))
    if end == 0:
        raise RecordError("a DTLSInnerPlaintext of zeros only has no content type")
    content_type = inner[end - 1]
    if content_type not in CONTENT_TYPES or content_type == TLS12_CID:
        raise RecordError(f"unknown inner content type {content_type}")
    return content_type, inner[: end - 1]
