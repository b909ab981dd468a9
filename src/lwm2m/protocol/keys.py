"""Raw public keys as LwM2M and DTLS carry them: a SubjectPublicKeyInfo in DER (RFC 5280 §4.1.2.7,
RFC 7250 §3), the value of the Security object's Public Key resources (LwM2M-TS-Core 1.2
§E.1, /0/x/3 and /0/x/4 in RPK mode) and of a security store entry ``{"rpk": hex}``.

Only the outer structure is checked here (a SEQUENCE holding an AlgorithmIdentifier SEQUENCE
and a BIT STRING, nothing after), which needs no cryptographic library: the DTLS engine
compares the key a peer proves it holds with these bytes, so two encodings of one key must
not both be stored. DER is canonical, and a PEM file is its base64 between armour lines.
"""

from __future__ import annotations

import base64
import binascii
import re

from lwm2m.errors import ConfigError

__all__ = ["MAX_PUBLIC_KEY", "public_key_der"]

MAX_PUBLIC_KEY = 1024  # bytes of DER: EC keys take 91 (P-256), RSA-4096 keys 550
_PEM = re.compile(rb"-----BEGIN PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END PUBLIC KEY-----")
_SEQUENCE = 0x30
_BIT_STRING = 0x03
_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")  # the OID id-ecPublicKey (RFC 5480 §2.1.1)


def _element(data: bytes, at: int) -> tuple[int, int, int]:
    """The (tag, start of content, end of content) of the DER element at ``at`` (X.690 §8.1)."""
    if at + 2 > len(data):
        raise ConfigError("the public key is truncated")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 2 or at + count > len(data):
            raise ConfigError("the public key has a bad DER length")
        length = int.from_bytes(data[at : at + count], "big")
        if length < 0x80 or (count == 2 and length < 0x100):
            raise ConfigError("the public key is not in DER (a length is not minimal)")
        at += count
    if at + length > len(data):
        raise ConfigError("the public key is truncated")
    return tag, at, at + length


def public_key_der(data: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of ``data``, given as DER or as a PEM ``PUBLIC KEY`` block;
    ConfigError says what is wrong with anything else (a certificate, a private key, junk)."""
    found = _PEM.search(data)
    if found is not None:
        try:
            data = base64.b64decode(b"".join(found.group(1).split()), validate=True)
        except binascii.Error:
            raise ConfigError("the PEM public key is not valid base64") from None
    elif data.lstrip().startswith(b"-----BEGIN"):
        raise ConfigError("a PEM file must hold a PUBLIC KEY block (not a certificate or a private key)")
    if not data or len(data) > MAX_PUBLIC_KEY:
        raise ConfigError(f"a public key has 1 to {MAX_PUBLIC_KEY} bytes of DER, got {len(data)}")
    tag, start, end = _element(data, 0)
    if tag != _SEQUENCE or end != len(data):
        raise ConfigError("the public key is not a DER SubjectPublicKeyInfo")
    tag, _, algorithm_end = _element(data, start)
    if tag != _SEQUENCE:
        raise ConfigError("the public key has no algorithm identifier")
    tag, key_start, key_end = _element(data, algorithm_end)
    if tag != _BIT_STRING or key_end != end or key_end - key_start < 2:
        raise ConfigError("the public key has no key bits after its algorithm")
    if _EC_PUBLIC_KEY in data[start:algorithm_end] and data[key_start + 1] in (2, 3):
        # RFC 8422 §5.1.2: peers send uncompressed points, and the handshake compares bytes.
        raise ConfigError("the public key is a compressed EC point: give it in uncompressed form")
    return data
