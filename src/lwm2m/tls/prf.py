"""The TLS 1.2 key schedule with HMAC-SHA256, as DTLS 1.2 uses it.

- ``prf``: P_SHA256 and PRF(secret, label, seed) (RFC 5246 §5).
- ``master_secret``: from the premaster secret and the hello randoms (RFC 5246 §8.1), and
  ``extended_master_secret`` from the session hash (RFC 7627 §4).
- ``key_block``: the key expansion (RFC 5246 §6.3) split into the client/server write keys and
  the 4-byte implicit IVs ("salts") of the AEAD suites (RFC 5288 §3, RFC 6655 §3).
- ``verify_data``: the 12-byte Finished value (RFC 5246 §7.4.9), and ``check_finished`` to
  compare a received one in constant time.
- ``psk_premaster_secret`` (RFC 4279 §2) and ``ecdhe_psk_premaster_secret`` (RFC 5489 §2).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from lwm2m.errors import HandshakeError, KeyScheduleError

__all__ = [
    "MAX_PSK_LENGTH",
    "HmacSha256",
    "KeyBlock",
    "check_finished",
    "ecdhe_psk_premaster_secret",
    "extended_master_secret",
    "key_block",
    "master_secret",
    "prf",
    "psk_premaster_secret",
    "verify_data",
]

MAX_PSK_LENGTH = 64  # issue 14: PSKs of any length up to 64 bytes (python-mbedtls caps at 32)
MASTER_SECRET_LENGTH = 48  # RFC 5246 §8.1
VERIFY_DATA_LENGTH = 12  # RFC 5246 §7.4.9: the default for every suite we implement
RANDOM_LENGTH = 32  # RFC 5246 §7.4.1.2
# The PRF output is produced 32 bytes at a time; bounding the request keeps a caller's mistake
# from turning into an unbounded computation.
MAX_PRF_OUTPUT = 1024


_BLOCK = 64  # SHA-256's block size, the length of HMAC's padded key (RFC 2104 §2)
_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))


class HmacSha256:
    """HMAC-SHA256 (RFC 2104) under one key, prepared once: the padded key's two blocks are
    hashed when it is made, and each MAC then continues copies of those two hashes. The P_hash
    of the PRF makes two MACs per 32 bytes under one secret, and a cookie checker one per hello
    under its secret: the key setup of each one-shot HMAC is half the cost of a short MAC.

    It holds what the key is worth (the key's hashed pads): keep it as long as the key only."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256(key, message): what ``hmac.digest(key, message, "sha256")`` gives."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _p_sha256(secret: bytes, seed: bytes, length: int) -> bytes:
    # RFC 5246 §5: A(0) = seed, A(i) = HMAC(secret, A(i-1));
    # P_hash = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
    mac = HmacSha256(secret).digest
    out = bytearray()
    a = seed
    while len(out) < length:
        a = mac(a)
        out += mac(a + seed)
    return bytes(out[:length])


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) = P_SHA256(secret, label + seed), ``length`` bytes (RFC 5246 §5)."""
    if not 0 <= length <= MAX_PRF_OUTPUT:
        raise KeyScheduleError(f"PRF output length {length} is outside 0..{MAX_PRF_OUTPUT}")
    return _p_sha256(secret, label + seed, length)


def _check_random(name: str, value: bytes) -> None:
    if len(value) != RANDOM_LENGTH:
        raise KeyScheduleError(f"{name} is {len(value)} bytes, not {RANDOM_LENGTH}")


def master_secret(premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    """The 48-byte master secret (RFC 5246 §8.1)."""
    _check_random("client_random", client_random)
    _check_random("server_random", server_random)
    return prf(premaster, b"master secret", client_random + server_random, MASTER_SECRET_LENGTH)


def extended_master_secret(premaster: bytes, session_hash: bytes) -> bytes:
    """The 48-byte master secret bound to the handshake transcript (RFC 7627 §4).

    ``session_hash`` is the SHA-256 of the handshake messages up to and including the
    ClientKeyExchange; binding it defeats the triple-handshake attack (RFC 7627 §1).
    """
    if len(session_hash) != hashlib.sha256().digest_size:
        raise KeyScheduleError(f"session_hash is {len(session_hash)} bytes, not 32 (SHA-256)")
    return prf(premaster, b"extended master secret", session_hash, MASTER_SECRET_LENGTH)


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """The write keys of both sides and, for the AEAD suites, their 4-byte implicit IVs.

    ``client_write_mac_key``/``server_write_mac_key`` are empty for AEAD suites (RFC 5246 §6.3:
    mac_key_length is 0 there).
    """

    client_write_mac_key: bytes
    server_write_mac_key: bytes
    client_write_key: bytes
    server_write_key: bytes
    client_write_iv: bytes
    server_write_iv: bytes


def key_block(
    master: bytes,
    client_random: bytes,
    server_random: bytes,
    *,
    key_length: int = 16,
    iv_length: int = 4,
    mac_key_length: int = 0,
) -> KeyBlock:
    """Expand the master secret into the connection keys (RFC 5246 §6.3).

    The defaults fit AES-128-CCM(_8) and AES-128-GCM: 16-byte keys and 4-byte salts
    (RFC 6655 §3, RFC 5288 §3). Note the seed order: server_random first, unlike §8.1.
    """
    if len(master) != MASTER_SECRET_LENGTH:
        raise KeyScheduleError(f"master secret is {len(master)} bytes, not {MASTER_SECRET_LENGTH}")
    _check_random("client_random", client_random)
    _check_random("server_random", server_random)
    for name, value in (
        ("key_length", key_length),
        ("iv_length", iv_length),
        ("mac_key_length", mac_key_length),
    ):
        if not 0 <= value <= 64:
            raise KeyScheduleError(f"{name} {value} is outside 0..64")
    total = 2 * (mac_key_length + key_length + iv_length)
    block = prf(master, b"key expansion", server_random + client_random, total)
    parts: list[bytes] = []
    at = 0
    # RFC 5246 §6.3: client MAC, server MAC, client key, server key, client IV, server IV.
    for size in (mac_key_length, mac_key_length, key_length, key_length, iv_length, iv_length):
        parts.append(block[at : at + size])
        at += size
    return KeyBlock(*parts)


def verify_data(master: bytes, label: bytes, handshake_hash: bytes) -> bytes:
    """The 12-byte Finished value (RFC 5246 §7.4.9).

    ``label`` is ``b"client finished"`` or ``b"server finished"``; ``handshake_hash`` is the
    SHA-256 of every handshake message so far (in DTLS with its full 12-byte header,
    RFC 6347 §4.2.6, and without HelloVerifyRequest and the first ClientHello).
    """
    if label not in (b"client finished", b"server finished"):
        raise KeyScheduleError(f"Finished label {label!r} is neither client nor server finished")
    if len(master) != MASTER_SECRET_LENGTH:
        raise KeyScheduleError(f"master secret is {len(master)} bytes, not {MASTER_SECRET_LENGTH}")
    if len(handshake_hash) != hashlib.sha256().digest_size:
        raise KeyScheduleError(f"handshake hash is {len(handshake_hash)} bytes, not 32 (SHA-256)")
    return prf(master, label, handshake_hash, VERIFY_DATA_LENGTH)


def check_finished(master: bytes, label: bytes, handshake_hash: bytes, received: bytes) -> None:
    """Raise ``HandshakeError`` unless ``received`` is the peer's expected verify_data.

    The comparison is constant-time (``hmac.compare_digest``): a timing difference would let
    an attacker learn the expected value byte by byte.
    """
    expected = verify_data(master, label, handshake_hash)
    if not hmac.compare_digest(expected, received):
        raise HandshakeError("the peer's Finished does not verify: a wrong key or a changed transcript")


def _check_psk(psk: bytes) -> None:
    if not 1 <= len(psk) <= MAX_PSK_LENGTH:
        raise KeyScheduleError(f"PSK is {len(psk)} bytes; 1..{MAX_PSK_LENGTH} are allowed")


def _opaque16(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def psk_premaster_secret(psk: bytes) -> bytes:
    """Plain PSK: uint16 N, N zero bytes, uint16 N, the PSK (RFC 4279 §2)."""
    _check_psk(psk)
    return _opaque16(bytes(len(psk))) + _opaque16(psk)


def ecdhe_psk_premaster_secret(shared_secret: bytes, psk: bytes) -> bytes:
    """ECDHE_PSK: other_secret is the ECDH shared secret Z (RFC 5489 §2), then the PSK."""
    _check_psk(psk)
    if not 1 <= len(shared_secret) <= 66:  # up to P-521's field size; P-256 gives 32
        raise KeyScheduleError(f"ECDH shared secret is {len(shared_secret)} bytes")
    return _opaque16(shared_secret) + _opaque16(psk)
