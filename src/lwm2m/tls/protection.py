"""Record protection for the AEAD cipher suites of DTLS 1.2 / TLS 1.2.

- AES-128-CCM with 8-byte tags (RFC 6655 §3, §4: ``TLS_PSK_WITH_AES_128_CCM_8``; RFC 7251:
  ``TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8``), and AES-128-CCM with 16-byte tags;
- AES-128-GCM (RFC 5288 §3: ``TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256``, and RFC 5487 for PSK).

The nonce is the 4-byte implicit salt from the key block (``client/server_write_IV``,
RFC 5246 §6.3) followed by an 8-byte explicit nonce sent before the ciphertext (RFC 5246
§6.2.3.3); for DTLS the explicit nonce is epoch ‖ sequence_number (RFC 6655 §3), which never
repeats under one key. The additional data is that of RFC 5246 §6.2.3.3 with the DTLS
``seq_num`` of RFC 6347 §4.1.2.1 (epoch ‖ sequence_number, type, version, length), or, for a
Connection ID record, that of RFC 9146 §5 (``seq_num_placeholder``, ``tls12_cid``,
``cid_length``, ..., the CID, the length of the ``DTLSInnerPlaintext``).

The tag is checked inside OpenSSL (through ``cryptography``), which compares in constant time.
:meth:`AeadProtection.seal` and :meth:`AeadProtection.open` work on a 64-bit ``seq_num`` and
the header fields, not on a framing, so TLS over TCP (a 5-byte header, an implicit sequence
number) can use them; :meth:`AeadProtection.encrypt` and :meth:`AeadProtection.decrypt` are
the DTLS record forms. Epoch 0 is unprotected: :class:`NullProtection`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from lwm2m.errors import BadRecordMac, DtlsError, RecordError, RecordOverflow
from lwm2m.tls.record import (
    APPLICATION_DATA,
    DTLS_1_2,
    HEADER_LENGTH,
    MAX_PLAINTEXT,
    TLS12_CID,
    DtlsRecord,
    encode_inner_plaintext,
    parse_inner_plaintext,
)

FIXED_IV_LENGTH: Final = 4  # the implicit part of the nonce (RFC 5288 §3, RFC 6655 §3)
EXPLICIT_NONCE_LENGTH: Final = 8  # sent in front of every ciphertext
SEQ_NUM_PLACEHOLDER: Final = b"\xff" * 8  # RFC 9146 §5
# seq_num(8) type(1) version(2) length(2): the additional data without a CID, in one pack.
_AAD: Final = struct.Struct("!QBHH")
_CID_AAD_HEAD: Final = SEQ_NUM_PLACEHOLDER + bytes((TLS12_CID,))
_SEQ_NUM: Final = struct.Struct("!Q")
# RFC 9146 §5 after the placeholder and tls12_cid: cid_length, tls12_cid, version, seq_num.
_CID_AAD_MIDDLE: Final = struct.Struct("!BBHQ")
_LENGTH: Final = struct.Struct("!H")
# A whole RFC 6347 §4.1 record header, type to length, with the 48-bit sequence number as 16 + 32
# bits; then the explicit nonce (RFC 6655 §3): the header and nonce of a sealed record in one pack.
_HEADER_NONCE: Final = struct.Struct("!BHHHIHQ")
# A RFC 9146 §4 header up to its CID: type, version, epoch, sequence number (16 + 32 bits).
_CID_HEADER: Final = struct.Struct("!BHHHI")
# In a datagram that is one record without a CID: where the explicit nonce starts (after the
# 13-byte header) and where the ciphertext does.
_NONCE_AT: Final = 13
_DATAGRAM_OVERHEAD: Final = _NONCE_AT + EXPLICIT_NONCE_LENGTH
# A record header whose epoch and sequence number are the 64-bit seq_num (RFC 6347 §4.1.2.1),
# then the explicit nonce, which is that seq_num too (RFC 6655 §3): type, version, seq_num, length,
# nonce_explicit in one pack.
_SEQ_NUM_HEADER_NONCE: Final = struct.Struct("!BHQHQ")
# The whole nonce: the salt, then the explicit part (RFC 6655 §3).
_NONCE: Final = struct.Struct("!4sQ")
# A RFC 9146 §4 header up to its CID with epoch and sequence number as the one seq_num: type,
# version, seq_num. The same 11 bytes stand in the additional data after its first 10 (RFC 9146 §5).
_CID_HEAD_SEQ_NUM: Final = struct.Struct("!BHQ")
# What follows the CID in a sealed tls12_cid record: its length, then the explicit nonce (the seq_num).
_LENGTH_NONCE: Final = struct.Struct("!HQ")
# The first 10 bytes of the RFC 9146 §5 additional data, by CID length: seq_num_placeholder,
# tls12_cid, cid_length. What follows them is the record's header up to its length (tls12_cid,
# version, epoch, sequence number, CID), then the length of the DTLSInnerPlaintext.
CID_AAD_HEADS: Final = tuple(SEQ_NUM_PLACEHOLDER + bytes((TLS12_CID, n)) for n in range(256))


@dataclass(frozen=True, slots=True)
class AeadAlgorithm:
    """An AEAD of the record layer: its name, key and tag lengths, CCM or GCM."""

    name: str
    key_length: int
    tag_length: int
    ccm: bool


AES_128_CCM_8: Final = AeadAlgorithm("AES_128_CCM_8", 16, 8, ccm=True)
AES_128_CCM: Final = AeadAlgorithm("AES_128_CCM", 16, 16, ccm=True)
AES_128_GCM: Final = AeadAlgorithm("AES_128_GCM", 16, 16, ccm=False)

# The cipher suites (IANA numbers) whose record protection this module gives.
SUITE_ALGORITHMS: Final[dict[int, AeadAlgorithm]] = {
    0xC0A8: AES_128_CCM_8,  # TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655), LwM2M's mandatory suite
    0xC0AE: AES_128_CCM_8,  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251)
    0xC0A4: AES_128_CCM,  # TLS_PSK_WITH_AES_128_CCM (RFC 6655)
    0xC0AC: AES_128_CCM,  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM (RFC 7251)
    0xC02B: AES_128_GCM,  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289)
    0x00A8: AES_128_GCM,  # TLS_PSK_WITH_AES_128_GCM_SHA256 (RFC 5487)
}


def additional_data(seq_num: int, content_type: int, version: int, length: int, cid: bytes = b"") -> bytes:
    """The AEAD additional data of a record whose plaintext is ``length`` bytes long.

    Without a CID: seq_num(8) ‖ type ‖ version ‖ length (RFC 5246 §6.2.3.3, with the DTLS
    seq_num = epoch ‖ sequence_number of RFC 6347 §4.1.2.1). With a CID (RFC 9146 §5):
    seq_num_placeholder ‖ tls12_cid ‖ cid_length ‖ tls12_cid ‖ version ‖ epoch ‖
    sequence_number ‖ cid ‖ length of the DTLSInnerPlaintext; ``content_type`` is then unused
    (the real type is inside the ciphertext).
    """
    if not cid:
        try:
            return _AAD.pack(seq_num, content_type, version, length)
        except struct.error:
            raise RecordError("a field of the additional data does not fit its size") from None
    try:
        middle = _CID_AAD_MIDDLE.pack(len(cid), TLS12_CID, version, seq_num)
        return b"".join((_CID_AAD_HEAD, middle, cid, _LENGTH.pack(length)))
    except struct.error:
        raise RecordError("a field of the additional data does not fit its size") from None


class RecordProtection(Protocol):
    """What the record layer needs of an epoch's protection, in one direction each."""

    def encrypt(self, record: DtlsRecord) -> DtlsRecord:
        """The protected record for a plaintext record."""
        ...

    def decrypt(self, record: DtlsRecord) -> DtlsRecord:
        """The plaintext record (real content type, content) of a protected record."""
        ...


class NullProtection:
    """Epoch 0 (RFC 6347 §4.1): TLS_NULL_WITH_NULL_NULL, the fragment is the plaintext."""

    __slots__ = ()

    def encrypt(self, record: DtlsRecord) -> DtlsRecord:
        if record.cid:
            raise RecordError("a connection ID record is never sent unprotected (RFC 9146 §4)")
        if len(record.fragment) > MAX_PLAINTEXT:
            raise RecordOverflow(
                f"a plaintext of {len(record.fragment)} bytes is longer than {MAX_PLAINTEXT}"
            )
        return record

    def decrypt(self, record: DtlsRecord) -> DtlsRecord:
        if record.content_type == TLS12_CID or record.cid:
            raise RecordError("a connection ID record in an unprotected epoch")
        if len(record.fragment) > MAX_PLAINTEXT:
            raise RecordOverflow(
                f"a plaintext of {len(record.fragment)} bytes is longer than {MAX_PLAINTEXT}"
            )
        return record


class AeadProtection:
    """One direction of one epoch: the write key and salt of the sender (RFC 5246 §6.3),
    used by the sender to encrypt and by the receiver (as its read key) to decrypt.

    ``padding`` zero bytes are added to every ``DTLSInnerPlaintext`` of a CID record
    (RFC 9146 §4), to hide the length of what is sent.

    ``aead``, ``fixed_iv``, ``overhead`` and ``inner_tail`` are read by the connection's direct
    path, which opens and seals application records as :meth:`open_datagram`,
    :meth:`open_cid_datagram`, :meth:`seal_application` and :meth:`seal_cid_application` do, in
    its own frame (the tests hold the two to the same bytes); nothing else should use them.
    """

    __slots__ = ("_opened_at", "aead", "algorithm", "fixed_iv", "inner_tail", "overhead", "padding")

    def __init__(self, algorithm: AeadAlgorithm, key: bytes, fixed_iv: bytes, padding: int = 0) -> None:
        if len(key) != algorithm.key_length:
            raise DtlsError(f"{algorithm.name} needs a {algorithm.key_length}-byte key, not {len(key)}")
        if len(fixed_iv) != FIXED_IV_LENGTH:
            raise DtlsError(f"the implicit nonce is {FIXED_IV_LENGTH} bytes, not {len(fixed_iv)}")
        if padding < 0:
            raise DtlsError("padding cannot be negative")
        self.algorithm = algorithm
        self.padding = padding
        # What follows the content in the DTLSInnerPlaintext of an application-data record with
        # a CID: its real type and the padding (RFC 9146 §4).
        self.inner_tail = bytes((APPLICATION_DATA,)) + bytes(padding)
        self.overhead = EXPLICIT_NONCE_LENGTH + algorithm.tag_length  # a record's bytes beyond its plaintext
        # The bytes of a datagram of one record without a CID beyond its plaintext.
        self._opened_at = _DATAGRAM_OVERHEAD + algorithm.tag_length
        self.fixed_iv = bytes(fixed_iv)
        self.aead: AESCCM | AESGCM = (
            AESCCM(bytes(key), tag_length=algorithm.tag_length) if algorithm.ccm else AESGCM(bytes(key))
        )

    # --- framing-free forms: seq_num and header fields in, fragment out -----------------------

    def seal(self, seq_num: int, content_type: int, version: int, content: bytes, cid: bytes = b"") -> bytes:
        """The protected fragment (explicit nonce ‖ ciphertext ‖ tag) of ``content``.

        ``content_type`` is the real type; with a ``cid`` it goes inside the DTLSInnerPlaintext.
        """
        plaintext = encode_inner_plaintext(content, content_type, self.padding) if cid else content
        if len(plaintext) > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {len(plaintext)} bytes is longer than {MAX_PLAINTEXT}")
        explicit = _SEQ_NUM.pack(seq_num)
        aad = additional_data(seq_num, content_type, version, len(plaintext), cid)
        return explicit + self.aead.encrypt(self.fixed_iv + explicit, plaintext, aad)

    def open(
        self, seq_num: int, content_type: int, version: int, fragment: bytes, cid: bytes = b""
    ) -> tuple[int, bytes]:
        """(real content type, content) of a protected fragment; :class:`BadRecordMac` if it does
        not authenticate. ``content_type`` is the type of the header (``TLS12_CID`` with a CID)."""
        tag_length = self.algorithm.tag_length
        if len(fragment) < EXPLICIT_NONCE_LENGTH + tag_length:
            # Too short to hold a nonce and a tag: it cannot authenticate (RFC 5246 §6.2.3.3).
            raise BadRecordMac("a protected record shorter than its nonce and tag")
        length = len(fragment) - EXPLICIT_NONCE_LENGTH - tag_length
        if length > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {length} bytes is longer than {MAX_PLAINTEXT}")
        nonce = self.fixed_iv + fragment[:EXPLICIT_NONCE_LENGTH]
        if cid:
            aad = additional_data(seq_num, content_type, version, length, cid)
        else:
            try:  # additional_data() inlined: this runs for every record received
                aad = _AAD.pack(seq_num, content_type, version, length)
            except struct.error:
                raise RecordError("a field of the additional data does not fit its size") from None
        try:
            plaintext = self.aead.decrypt(nonce, fragment[EXPLICIT_NONCE_LENGTH:], aad)
        except InvalidTag:
            raise BadRecordMac("the record does not authenticate") from None
        if cid:
            if plaintext and plaintext[-1] == APPLICATION_DATA:
                # What parse_inner_plaintext gives for the common inner plaintext, application
                # data without padding (its last byte is the type), without the scan.
                return APPLICATION_DATA, plaintext[:-1]
            return parse_inner_plaintext(plaintext)
        return content_type, plaintext

    def open_datagram(self, data: bytes, seq_num: int, version: int) -> bytes:
        """The content of ``data``, a datagram that is exactly one protected application-data
        record without a CID, its header already read by the caller (RFC 6347 §4.1): the
        explicit nonce follows the 13-byte header (RFC 6655 §3). What :meth:`open` gives for the
        record's fragment, taken from the datagram with no slice of the fragment in between;
        :class:`BadRecordMac` if it does not authenticate."""
        length = len(data) - self._opened_at
        if length < 0:
            raise BadRecordMac("a protected record shorter than its nonce and tag")
        if length > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {length} bytes is longer than {MAX_PLAINTEXT}")
        # ``seq_num`` and ``version`` come from the header, ``length`` is bounded: the pack cannot
        # fail. Nonce (RFC 6655 §3: the salt, then the explicit part after the header), ciphertext
        # and additional data go straight into the call: this runs for every record received.
        try:
            return self.aead.decrypt(
                self.fixed_iv + data[_NONCE_AT:_DATAGRAM_OVERHEAD],
                data[_DATAGRAM_OVERHEAD:],
                _AAD.pack(seq_num, APPLICATION_DATA, version, length),
            )
        except InvalidTag:
            raise BadRecordMac("the record does not authenticate") from None

    def open_cid_datagram(self, data: bytes, start: int) -> bytes:
        """The ``DTLSInnerPlaintext`` of ``data``, a datagram that is exactly one protected
        ``tls12_cid`` record (RFC 9146 §4) whose header, CID and length included, ends at
        ``start``, the caller having read and checked that header. The additional data is that
        of RFC 9146 §5, made of the header's own bytes (type to CID) behind its first 10; the
        explicit nonce follows the header (RFC 6655 §3). :class:`BadRecordMac` if it does not
        authenticate; splitting off the real type and padding is the caller's."""
        length = len(data) - start - self.overhead  # of the DTLSInnerPlaintext
        if length < 0:
            raise BadRecordMac("a protected record shorter than its nonce and tag")
        if length > MAX_PLAINTEXT:
            raise RecordOverflow(f"a DTLSInnerPlaintext of {length} bytes is longer than {MAX_PLAINTEXT}")
        explicit = start + EXPLICIT_NONCE_LENGTH
        try:
            return self.aead.decrypt(
                self.fixed_iv + data[start:explicit],
                data[explicit:],
                b"".join((CID_AAD_HEADS[start - HEADER_LENGTH], data[: start - 2], _LENGTH.pack(length))),
            )
        except InvalidTag:
            raise BadRecordMac("the record does not authenticate") from None

    def seal_cid_application(self, seq_num: int, content: bytes, cid: bytes) -> bytes:
        """``content`` as one protected application-data record with the peer's ``cid`` on the
        wire (RFC 9146 §4, §5; RFC 6655 §3): what :meth:`seal_record` gives with that ``cid``
        for epoch ``seq_num >> 48`` and sequence number ``seq_num & (2**48 - 1)``. The caller
        keeps the sequence number within its 48 bits and the CID within 255 bytes."""
        inner_length = len(content) + len(self.inner_tail)
        if inner_length > MAX_PLAINTEXT:
            raise RecordOverflow(
                f"a DTLSInnerPlaintext of {inner_length} bytes is longer than {MAX_PLAINTEXT}"
            )
        head = _CID_HEAD_SEQ_NUM.pack(TLS12_CID, DTLS_1_2, seq_num)
        sealed = self.aead.encrypt(
            _NONCE.pack(self.fixed_iv, seq_num),
            content + self.inner_tail,
            b"".join((CID_AAD_HEADS[len(cid)], head, cid, _LENGTH.pack(inner_length))),
        )
        return b"".join((head, cid, _LENGTH_NONCE.pack(inner_length + self.overhead, seq_num), sealed))

    def seal_application(self, seq_num: int, content: bytes) -> bytes:
        """``content`` as one protected application-data record without a CID on the wire
        (RFC 6347 §4.1, RFC 6655 §3): what :meth:`seal_record` gives for epoch ``seq_num >> 48``
        and sequence number ``seq_num & (2**48 - 1)``, the nonce_explicit being the seq_num. The
        caller keeps the sequence number within its 48 bits (one ``seq_num`` per record)."""
        length = len(content)
        if length > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {length} bytes is longer than {MAX_PLAINTEXT}")
        head = _SEQ_NUM_HEADER_NONCE.pack(
            APPLICATION_DATA, DTLS_1_2, seq_num, length + self.overhead, seq_num
        )
        return head + self.aead.encrypt(
            _NONCE.pack(self.fixed_iv, seq_num),
            content,
            _AAD.pack(seq_num, APPLICATION_DATA, DTLS_1_2, length),
        )

    def seal_record(
        self, epoch: int, sequence: int, content_type: int, content: bytes, cid: bytes = b""
    ) -> bytes:
        """The protected DTLS 1.2 record on the wire (header, explicit nonce, ciphertext, tag) of
        ``content``, sealed and framed in one step: the sender of application data makes no
        record object and no intermediate fragment (RFC 6347 §4.1, RFC 6655 §3; RFC 9146 §4
        with a ``cid``). Same checks and bytes as :meth:`seal` then ``encode_record``."""
        if cid:
            if not 0 <= epoch <= 0xFFFF or not 0 <= sequence <= 0xFFFFFFFFFFFF:
                raise RecordError(f"epoch {epoch} or sequence number {sequence} does not fit the header")
            seq_num = (epoch << 48) | sequence
            # RFC 9146 §4, §5: the DTLSInnerPlaintext (content, real type, zeros) sealed under the
            # CID additional data; the header carries tls12_cid and the CID after the sequence.
            if not 0 < content_type <= 0xFF:
                raise RecordError(f"content type {content_type} cannot be carried in DTLSInnerPlaintext")
            inner_length = len(content) + 1 + self.padding
            if inner_length > MAX_PLAINTEXT:
                raise RecordOverflow(
                    f"a DTLSInnerPlaintext of {inner_length} bytes is longer than {MAX_PLAINTEXT}"
                )
            inner = content + bytes((content_type,)) + bytes(self.padding)
            explicit = _SEQ_NUM.pack(seq_num)
            aad = additional_data(seq_num, content_type, DTLS_1_2, inner_length, cid)
            sealed = self.aead.encrypt(self.fixed_iv + explicit, inner, aad)
            head = _CID_HEADER.pack(TLS12_CID, DTLS_1_2, epoch, sequence >> 32, sequence & 0xFFFFFFFF)
            return b"".join((head, cid, _LENGTH.pack(EXPLICIT_NONCE_LENGTH + len(sealed)), explicit, sealed))
        length = len(content)
        if length > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {length} bytes is longer than {MAX_PLAINTEXT}")
        seq_num = (epoch << 48) | sequence
        try:
            # A field out of range (an epoch or a sequence number over its width, or negative,
            # a content type over one byte) makes pack fail: the checks are struct's.
            head = _HEADER_NONCE.pack(
                content_type,
                DTLS_1_2,
                epoch,
                sequence >> 32,
                sequence & 0xFFFFFFFF,
                length + self.overhead,
                seq_num,
            )
        except struct.error:
            fields = f"epoch {epoch}, sequence number {sequence} or content type {content_type}"
            raise RecordError(f"{fields} does not fit the header") from None
        # The nonce is the salt and the explicit part just packed (the last 8 bytes of ``head``).
        aad = _AAD.pack(seq_num, content_type, DTLS_1_2, length)
        return head + self.aead.encrypt(self.fixed_iv + head[-EXPLICIT_NONCE_LENGTH:], content, aad)

    # --- DTLS records -----------------------------------------------------------------------

    def encrypt(self, record: DtlsRecord) -> DtlsRecord:
        """Protect a plaintext record (real type, content; a ``cid`` makes it a RFC 9146 record)."""
        if record.content_type == TLS12_CID:
            raise RecordError("give the real content type; the record is sent as tls12_cid when it has a CID")
        fragment = self.seal(record.seq_num, record.content_type, record.version, record.fragment, record.cid)
        content_type = TLS12_CID if record.cid else record.content_type
        # Built directly rather than with dataclasses.replace, which costs three times as much.
        return DtlsRecord(content_type, record.version, record.epoch, record.sequence, fragment, record.cid)

    def decrypt(self, record: DtlsRecord) -> DtlsRecord:
        """The plaintext record of a protected one: its real content type, its content, the CID
        it came with."""
        if (record.content_type == TLS12_CID) != bool(record.cid):
            raise RecordError("a tls12_cid record needs a CID, and only such a record has one")
        content_type, content = self.open(
            record.seq_num, record.content_type, record.version, record.fragment, record.cid
        )
        return DtlsRecord(content_type, record.version, record.epoch, record.sequence, content, record.cid)
