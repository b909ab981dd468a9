"""Record protection for the CBC cipher suites of LwM2M 1.1 (LwM2M-TS-Transport 1.1 §5.2.8):
AES-128-CBC with HMAC-SHA256, MAC-then-encrypt (RFC 5246 §6.2.3.2, "GenericBlockCipher").

- ``TLS_PSK_WITH_AES_128_CBC_SHA256`` (RFC 5487 §3.2), ``TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256``
  (RFC 5489 §3.2), ``TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256`` (RFC 5289 §3.1).
- A fragment is IV(16) ‖ AES-128-CBC(content ‖ MAC(32) ‖ padding ‖ padding_length): the IV is
  random per record (RFC 5246 §6.2.3.2, "explicit IV"), the MAC is HMAC-SHA256 over
  seq_num ‖ type ‖ version ‖ length ‖ content (RFC 5246 §6.2.3.1, with the DTLS seq_num of
  RFC 6347 §4.1.2.1), or for a Connection ID record over the RFC 9146 §5 "block ciphers" input
  (the placeholder header, the CID, and the DTLSInnerPlaintext).

These suites are off unless a configuration asks for them. MAC-then-encrypt leaks through the
time a receiver takes to reject a record with bad padding (Lucky Thirteen): the check below
always computes one MAC over the same number of bytes and answers every failure with the same
error, but Python does not run in constant time, so a timing difference remains measurable on
a network that is quiet enough. The AEAD suites (``lwm2m.tls.protection``) have no such leak.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lwm2m.errors import BadRecordMac, DtlsError, RecordError, RecordOverflow
from lwm2m.tls.protection import SEQ_NUM_PLACEHOLDER
from lwm2m.tls.record import (
    APPLICATION_DATA,
    MAX_PLAINTEXT,
    TLS12_CID,
    DtlsRecord,
    encode_inner_plaintext,
    parse_inner_plaintext,
)

__all__ = ["BLOCK_SIZE", "CBC_SUITES", "MAC_LENGTH", "CbcProtection"]

BLOCK_SIZE: Final = 16  # AES
MAC_LENGTH: Final = 32  # HMAC-SHA256 (RFC 5246 §6.2.3.1: mac_length = 32 for SHA256)
KEY_LENGTH: Final = 16  # AES-128
# RFC 5246 §6.2.3.2: the compressed plaintext may grow by 1024 bytes at most when encrypted.
MAX_FRAGMENT: Final = MAX_PLAINTEXT + 1024 + BLOCK_SIZE

# The cipher suites (IANA numbers) whose record protection this module gives.
CBC_SUITES: Final[frozenset[int]] = frozenset(
    {
        0x00AE,  # TLS_PSK_WITH_AES_128_CBC_SHA256 (RFC 5487)
        0xC037,  # TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 (RFC 5489)
        0xC023,  # TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (RFC 5289)
    }
)


def _mac_input(seq_num: int, content_type: int, version: int, content: bytes, cid: bytes) -> bytes:
    if not cid:  # RFC 5246 §6.2.3.1
        header = seq_num.to_bytes(8, "big") + bytes((content_type,)) + version.to_bytes(2, "big")
        return header + len(content).to_bytes(2, "big") + content
    # RFC 9146 §5 (block ciphers): the content is the DTLSInnerPlaintext.
    return b"".join(
        (
            SEQ_NUM_PLACEHOLDER,
            bytes((TLS12_CID, len(cid), TLS12_CID)),
            version.to_bytes(2, "big"),
            seq_num.to_bytes(8, "big"),
            cid,
            len(content).to_bytes(2, "big"),
            content,
        )
    )


class CbcProtection:
    """One direction of one epoch under a CBC suite: the sender's MAC key and write key
    (RFC 5246 §6.3; the key block's IVs are unused, every record carries its own)."""

    __slots__ = ("_aes", "_mac_key", "_random", "padding")

    def __init__(
        self,
        mac_key: bytes,
        key: bytes,
        *,
        padding: int = 0,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(mac_key) != MAC_LENGTH:
            raise DtlsError(f"HMAC-SHA256 needs a {MAC_LENGTH}-byte MAC key, not {len(mac_key)}")
        if len(key) != KEY_LENGTH:
            raise DtlsError(f"AES-128-CBC needs a {KEY_LENGTH}-byte key, not {len(key)}")
        if padding < 0:
            raise DtlsError("padding cannot be negative")
        self.padding = padding
        self._mac_key = bytes(mac_key)
        self._aes = algorithms.AES(bytes(key))
        self._random = random

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._mac_key, data, hashlib.sha256).digest()

    def seal(self, seq_num: int, content_type: int, version: int, content: bytes, cid: bytes = b"") -> bytes:
        """IV ‖ ciphertext of ``content`` (with its MAC and padding)."""
        plaintext = encode_inner_plaintext(content, content_type, self.padding) if cid else content
        if len(plaintext) > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {len(plaintext)} bytes is longer than {MAX_PLAINTEXT}")
        mac = self._mac(_mac_input(seq_num, content_type, version, plaintext, cid))
        pad = BLOCK_SIZE - (len(plaintext) + MAC_LENGTH + 1) % BLOCK_SIZE
        if pad == BLOCK_SIZE:
            pad = 0
        # RFC 5246 §6.2.3.2: every padding byte, and the length byte after them, hold the length.
        block = plaintext + mac + bytes((pad,)) * (pad + 1)
        iv = self._random(BLOCK_SIZE)
        if len(iv) != BLOCK_SIZE:
            raise DtlsError("the random source gave an IV of the wrong length")
        encryptor = Cipher(self._aes, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(block) + encryptor.finalize()

    def open_datagram(self, data: bytes, seq_num: int, version: int) -> bytes:
        """The content of ``data``, a datagram that is exactly one protected application-data
        record without a CID, its 13-byte header already read (RFC 6347 §4.1); as :meth:`open`."""
        return self.open(seq_num, APPLICATION_DATA, version, data[13:])[1]

    def open(
        self, seq_num: int, content_type: int, version: int, fragment: bytes, cid: bytes = b""
    ) -> tuple[int, bytes]:
        """(real content type, content) of a protected fragment; :class:`BadRecordMac` for any
        record that does not authenticate, whatever the reason (RFC 5246 §6.2.3.2: bad padding
        and a bad MAC must look the same)."""
        if len(fragment) > MAX_FRAGMENT:
            raise RecordOverflow(
                f"a protected fragment of {len(fragment)} bytes is longer than {MAX_FRAGMENT}"
            )
        body = len(fragment) - BLOCK_SIZE
        if body < MAC_LENGTH + BLOCK_SIZE or body % BLOCK_SIZE:  # public facts: no secret in them
            raise BadRecordMac("the record does not authenticate")
        decryptor = Cipher(self._aes, modes.CBC(fragment[:BLOCK_SIZE])).decryptor()
        block = decryptor.update(fragment[BLOCK_SIZE:]) + decryptor.finalize()
        pad = block[-1]
        good_padding = pad + 1 + MAC_LENGTH <= len(block)
        padding = block[len(block) - pad - 1 :] if good_padding else b""
        good_padding = good_padding and hmac.compare_digest(padding, bytes((pad,)) * (pad + 1))
        # With bad padding, take no padding at all, so the MAC below still covers as many bytes
        # as a record with one padding byte would (RFC 5246 §6.2.3.2's advice).
        end = len(block) - (pad + 1 if good_padding else 1) - MAC_LENGTH
        plaintext, mac = block[:end], block[end : end + MAC_LENGTH]
        expected = self._mac(_mac_input(seq_num, content_type, version, plaintext, cid))
        if not (hmac.compare_digest(mac, expected) and good_padding):
            raise BadRecordMac("the record does not authenticate")
        if len(plaintext) > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {len(plaintext)} bytes is longer than {MAX_PLAINTEXT}")
        if cid:
            return parse_inner_plaintext(plaintext)
        return content_type, plaintext

    def encrypt(self, record: DtlsRecord) -> DtlsRecord:
        """Protect a plaintext record (real type, content; a ``cid`` makes it a RFC 9146 record)."""
        if record.content_type == TLS12_CID:
            raise RecordError("give the real content type; the record is sent as tls12_cid when it has a CID")
        fragment = self.seal(record.seq_num, record.content_type, record.version, record.fragment, record.cid)
        return replace(
            record, content_type=TLS12_CID if record.cid else record.content_type, fragment=fragment
        )

    def decrypt(self, record: DtlsRecord) -> DtlsRecord:
        """The plaintext record of a protected one."""
        if (record.content_type == TLS12_CID) != bool(record.cid):
            raise RecordError("a tls12_cid record needs a CID, and only such a record has one")
        content_type, content = self.open(
            record.seq_num, record.content_type, record.version, record.fragment, record.cid
        )
        return replace(record, content_type=content_type, fragment=content)
