"""The bytes of OSCORE around the AEAD (RFC 8613 §5, §6.1): the OSCORE option value, the
external_aad and its COSE Enc_structure, the nonce, and the HKDF ``info`` of context derivation.

The CBOR here is the handful of fixed shapes RFC 8613 defines (arrays of byte strings, small
integers, one text string, null), written directly: nothing in it parses CBOR from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from lwm2m.errors import OscoreOptionError

__all__ = ["OscoreOption", "aad", "info", "nonce", "piv_bytes"]

# RFC 8613 §3.2.1 and §5.4: the AEAD algorithm AES-CCM-16-64-128 is COSE algorithm 10.
AES_CCM_16_64_128 = 10
NONCE_LENGTH = 13
MAX_PIV_LENGTH = 5  # §6.1: n = 6 and 7 are reserved


def _head(major: int, n: int) -> bytes:
    """A CBOR head of ``major`` type with argument ``n`` (RFC 8949 §3)."""
    if n < 24:
        return bytes(((major << 5) | n,))
    if n < 0x100:
        return bytes(((major << 5) | 24, n))
    if n < 0x10000:
        return bytes(((major << 5) | 25,)) + n.to_bytes(2, "big")
    return bytes(((major << 5) | 26,)) + n.to_bytes(4, "big")


def _bstr(b: bytes) -> bytes:
    return _head(2, len(b)) + b


_NULL = b"\xf6"


def info(id_: bytes, id_context: bytes | None, kind: str, length: int) -> bytes:
    """The HKDF ``info`` of RFC 8613 §3.2.1: [id, id_context, alg_aead, type, L]."""
    ctx = _NULL if id_context is None else _bstr(id_context)
    label = kind.encode()
    return b"".join(
        (b"\x85", _bstr(id_), ctx, _head(0, AES_CCM_16_64_128), _head(3, len(label)), label, _head(0, length))
    )


def aad(request_kid: bytes, request_piv: bytes, class_i: bytes = b"") -> bytes:
    """The AEAD additional data (RFC 8613 §5.4): the COSE Enc_structure ["Encrypt0", h'',
    external_aad], external_aad = [oscore_version 1, [alg_aead], request_kid, request_piv,
    options] with no Class I options (none is defined)."""
    if not class_i and len(request_kid) < 24 and len(request_piv) < 24:
        # The common case, written at once: every byte string is short enough for a 1-byte head.
        external = b"".join(
            (
                _EXTERNAL_HEAD,
                _SHORT_BSTR[len(request_kid)],
                request_kid,
                _SHORT_BSTR[len(request_piv)],
                request_piv,
                b"\x40",
            )
        )
        return _AAD_HEAD + _head(2, len(external)) + external
    external = b"".join((_EXTERNAL_HEAD, _bstr(request_kid), _bstr(request_piv)))
    external += _bstr(class_i)
    return _AAD_HEAD + _bstr(external)


_AAD_HEAD = b"\x83\x68Encrypt0\x40"  # ["Encrypt0", h'' (no protected header), ...
_EXTERNAL_HEAD = b"\x85\x01\x81\x0a"  # [oscore_version 1, [alg_aead 10], ...
_SHORT_BSTR = tuple(bytes((0x40 | n,)) for n in range(24))


def nonce(common_iv: bytes, id_piv: bytes, piv: bytes) -> bytes:
    """The AEAD nonce (RFC 8613 §5.2): the ID of whoever made the Partial IV, padded, its length,
    the Partial IV padded to 5 bytes, XORed with the Common IV."""
    if len(id_piv) > NONCE_LENGTH - 6 or len(piv) > MAX_PIV_LENGTH:
        raise ValueError("an ID of at most 7 bytes and a Partial IV of at most 5 make a nonce")
    # Byte 0 the ID's length, bytes 1-7 the ID padded, bytes 8-12 the Partial IV padded.
    pre = (len(id_piv) << 96) | (int.from_bytes(id_piv, "big") << 40) | int.from_bytes(piv, "big")
    return (pre ^ int.from_bytes(common_iv, "big")).to_bytes(NONCE_LENGTH, "big")


def piv_bytes(sequence: int) -> bytes:
    """The Partial IV of a sender sequence number: big-endian, no leading zeros, 0 is one byte."""
    return sequence.to_bytes(max(1, (sequence.bit_length() + 7) // 8), "big")


@dataclass(frozen=True, slots=True)
class OscoreOption:
    """The OSCORE option value (RFC 8613 §6.1): Partial IV, kid context and kid, each absent
    (None) or present (a kid may be present and empty)."""

    piv: bytes | None = None
    kid: bytes | None = None
    kid_context: bytes | None = None

    def encode(self) -> bytes:
        piv = self.piv or b""
        if len(piv) > MAX_PIV_LENGTH:
            raise ValueError(f"a Partial IV has at most {MAX_PIV_LENGTH} bytes, not {len(piv)}")
        flags = len(piv)
        out = bytearray()
        out += piv
        if self.kid_context is not None:
            if len(self.kid_context) > 0xFF:
                raise ValueError("a kid context has at most 255 bytes")
            flags |= 0x10
            out.append(len(self.kid_context))
            out += self.kid_context
        if self.kid is not None:
            flags |= 0x08
            out += self.kid
        if flags == 0:
            return b""  # §6.1: all flags zero, the option value is empty
        return bytes((flags,)) + bytes(out)

    @classmethod
    def decode(cls, value: bytes) -> OscoreOption:
        """Parse an option value; OscoreOptionError (4.02 Bad Option) for any malformed one."""
        if not value:
            return cls()
        flags = value[0]
        if flags & 0xE0:
            raise OscoreOptionError(f"reserved flag bits set in the OSCORE option ({flags:#04x})")
        n = flags & 0x07
        if n > MAX_PIV_LENGTH:
            raise OscoreOptionError(f"reserved Partial IV length {n} in the OSCORE option")
        pos = 1 + n
        if pos > len(value):
            raise OscoreOptionError("the Partial IV runs past the end of the OSCORE option")
        piv = value[1:pos] if n else None
        kid_context = None
        if flags & 0x10:
            if pos >= len(value):
                raise OscoreOptionError("the kid context length is missing from the OSCORE option")
            s = value[pos]
            start = pos + 1
            pos = start + s
            if pos > len(value):
                raise OscoreOptionError("the kid context runs past the end of the OSCORE option")
            kid_context = value[start:pos]
        kid = None
        if flags & 0x08:
            kid = value[pos:]
        elif pos != len(value):
            raise OscoreOptionError("bytes after the end of the OSCORE option's fields")
        if flags == 0:
            raise OscoreOptionError("an OSCORE option of flags 0 must be empty")
        return cls(piv, kid, kid_context)
