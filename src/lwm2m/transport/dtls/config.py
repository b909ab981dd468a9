"""What a DTLS endpoint is configured with: credentials, cipher suites, session limits.

Values only (frozen dataclasses); no TLS library is imported here, so that
these names can be used where the ``dtls`` extra is not installed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "CERTIFICATE_SUITES",
    "MAX_PSK_IDENTITY_LENGTH",
    "MAX_PSK_LENGTH",
    "PSK_SUITES",
    "CipherSuite",
    "DtlsClientConfig",
    "DtlsServerConfig",
    "PeerIdentity",
    "PskCredentials",
    "PskLookup",
    "RpkCredentials",
    "SessionLimits",
    "X509Credentials",
]

# PSKs of up to 64 bytes and identities of up to 128 (RFC 4279 §5.3 asks for 128 and for
# keys of 64 bytes); LwM2M keys are usually 16. Our engine takes them all; Mbed TLS 2.28
# (MBEDTLS_PSK_MAX_LEN) only keys of 32 bytes, so its backend refuses longer ones.
MAX_PSK_LENGTH = 64
MAX_PSK_IDENTITY_LENGTH = 128
MBEDTLS_MAX_PSK_LENGTH = 32
# A Connection ID (RFC 9146) this server gives: 6 bytes by default, the first the node id.
DEFAULT_CID_LENGTH = 6
MIN_CID_LENGTH = 4
MAX_CID_LENGTH = 32


class CipherSuite(StrEnum):
    """The cipher suites LwM2M uses: the CCM_8 ones are mandatory to implement for CoAP over DTLS
    (RFC 7252 §9.1.3.1 for PSK, §9.1.3.3 for certificates; RFC 7925 §4.2)."""

    PSK_WITH_AES_128_CCM_8 = "TLS-PSK-WITH-AES-128-CCM-8"
    PSK_WITH_AES_128_CBC_SHA256 = "TLS-PSK-WITH-AES-128-CBC-SHA256"
    ECDHE_ECDSA_WITH_AES_128_CCM_8 = "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8"
    ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"
    # The other CBC suites of LwM2M 1.1 (RFC 5489, RFC 5289): used only when ``ciphers`` name them.
    ECDHE_PSK_WITH_AES_128_CBC_SHA256 = "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256"
    ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 = "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256"


PSK_SUITES = (CipherSuite.PSK_WITH_AES_128_CCM_8, CipherSuite.PSK_WITH_AES_128_CBC_SHA256)
CERTIFICATE_SUITES = (
    CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8,
    CipherSuite.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
)


def check_psk(identity: str, key: bytes) -> None:
    if not identity:
        raise ValueError("the PSK identity is empty")
    if len(identity.encode("utf-8")) > MAX_PSK_IDENTITY_LENGTH:
        raise ValueError(f"the PSK identity is longer than {MAX_PSK_IDENTITY_LENGTH} bytes")
    if not 1 <= len(key) <= MAX_PSK_LENGTH:
        raise ValueError(f"a PSK has 1 to {MAX_PSK_LENGTH} bytes, not {len(key)}")


@dataclass(frozen=True, slots=True)
class PskCredentials:
    """A pre-shared key and the identity it is known by (RFC 4279). ``repr`` never shows the key."""

    identity: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_psk(self.identity, self.key)

    @classmethod
    def from_hex(cls, identity: str, key_hex: str) -> PskCredentials:
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise ValueError("the PSK must be given as hexadecimal digits") from None
        return cls(identity, key)


def _read(value: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


@dataclass(frozen=True, slots=True)
class X509Credentials:
    """An own certificate chain (PEM or DER, own certificate first) with its private key, and the
    certificates of the authorities a peer's certificate must chain to. ``repr`` hides the key.

    A peer's certificate must chain to ``trusted`` (one or more CA certificates, PEM or DER):
    with none, X.509 peers are refused, as nothing vouches for them. A client may instead pin
    the server's certificate with ``certificate_usage`` (LwM2M Security /0/x/15, the values of
    RFC 6698 §2.1.1): 1 "service certificate constraint", the server's certificate must be
    ``server_certificate`` and chain to ``trusted``; 3 "domain-issued certificate", it must be
    ``server_certificate``, with no path validation."""

    certificate: bytes
    private_key: bytes = field(repr=False)
    trusted: bytes = b""
    certificate_usage: int | None = None
    server_certificate: bytes = b""

    def __post_init__(self) -> None:
        if self.certificate_usage is not None:
            if self.certificate_usage not in (1, 3):
                raise ValueError(f"certificate usage {self.certificate_usage} is not 1 or 3")
            if not self.server_certificate:
                raise ValueError("a certificate usage needs the server certificate it pins")

    @classmethod
    def from_files(
        cls,
        certificate: str | os.PathLike[str],
        private_key: str | os.PathLike[str],
        trusted: str | os.PathLike[str] | None = None,
    ) -> X509Credentials:
        return cls(_read(certificate), _read(private_key), b"" if trusted is None else _read(trusted))


@dataclass(frozen=True, slots=True)
class RpkCredentials:
    """A raw public key (RFC 7250): our own secp256r1 key pair (``private_key``, PEM or DER,
    PKCS#8 or SEC 1) and the peers' public keys we trust (each PEM or DER
    SubjectPublicKeyInfo). A client needs the server's key; a server with none accepts any
    client that proves it holds its key, and the application decides by that key (the
    LwM2M server looks it up in its security store). ``repr`` hides the private key."""

    private_key: bytes = field(repr=False)
    peer_public_keys: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not self.private_key:
            raise ValueError("a raw public key needs its private key")

    @classmethod
    def from_files(
        cls, private_key: str | os.PathLike[str], *peer_public_keys: str | os.PathLike[str]
    ) -> RpkCredentials:
        return cls(_read(private_key), tuple(_read(p) for p in peer_public_keys))


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who the peer proved to be in the handshake.

    ``kind`` "psk": ``name`` is the PSK identity it used; "rpk": ``name`` is the hex of
    its raw public key's DER SubjectPublicKeyInfo (RFC 7250); "x509": ``name`` is the
    subject's common name (CN) of its certificate, ``subject`` the whole subject. "oscore"
    (no handshake: a request that verified with an OSCORE context, RFC 8613): ``name`` is the
    hex of the peer's Sender ID, after the hex of the ID Context and a colon if it has one.
    """

    kind: Literal["psk", "rpk", "x509", "oscore"]
    name: str
    subject: str = ""

    def __str__(self) -> str:
        if self.kind == "rpk":  # a key's 182 hex digits say less in a log line than its fingerprint
            return f"rpk:sha256:{hashlib.sha256(bytes.fromhex(self.name)).hexdigest()[:16]}"
        return f"{self.kind}:{self.name}"


PskLookup = Callable[[str], "bytes | None"]


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds on the state a DTLS endpoint keeps, and its handshake timers.

    ``handshake_timeout_min``/``max``: the retransmission timer of a handshake flight,
    doubling from min to max (RFC 6347 §4.2.4.1 suggests 1 s and 60 s); a handshake
    that has not ended ``handshake_lifetime`` seconds after it began is dropped.

    Connection IDs (RFC 9146, our engine only): ``cid_length`` bytes (0: none asked for),
    whose first byte is ``node_id`` on a server, so that a cluster can route a record to the
    node holding its session; a record that carries a known CID finds its session whatever
    its source address.
    ``idle_timeout``: a session that has been silent that long leaves memory; it is
    kept as saved state (``max_parked`` of them, the least recently used go first)
    and taken up again without a handshake when its peer sends another record.

    ``record_size_limit`` (our engine only): the largest record plaintext we take, sent as
    record_size_limit (RFC 8449 §4, 64 to 16385); None sends the engine's default (2^14 + 1).
    A peer that takes the extension then sends us no larger record, and our CoAP endpoint
    cuts its blocks to fit the peer's limit in the other direction.

    ``handshake_memory``: what all handshakes in progress together may hold. The cap on
    their number is this divided by the backend's measured cost of one handshake in
    progress (Mbed TLS 2.28: 46 KiB held by each, 88 KiB of RSS per handshake while a
    flood keeps replacing them; taken as 90 KiB, so 64 MiB allow 728), or
    ``max_handshakes`` if that is lower. Beyond it the oldest
    handshake in progress is dropped for a new one (a peer that answers its flights in
    time finishes long before it becomes the oldest).
    """

    max_sessions: int = 10_000
    max_handshakes: int | None = None  # default: from handshake_memory
    handshake_memory: int = 64 << 20
    max_parked: int = 100_000
    idle_timeout: float = 300.0
    handshake_timeout_min: float = 1.0
    handshake_timeout_max: float = 60.0
    handshake_lifetime: float = 120.0
    mtu: int = 1280  # IPv6's minimum link MTU: handshake flights are cut to fit it
    max_queued: int = 64  # datagrams waiting for a client's handshake to end
    cid_length: int = DEFAULT_CID_LENGTH
    node_id: int = 0
    record_size_limit: int | None = None

    def handshake_cap(self, cost: int) -> int:
        """How many handshakes may be in progress when each holds ``cost`` bytes."""
        cap = max(1, self.handshake_memory // max(1, cost))
        return cap if self.max_handshakes is None else min(cap, self.max_handshakes)

    def __post_init__(self) -> None:
        for name, value in (
            ("max_sessions", self.max_sessions),
            ("mtu", self.mtu),
            ("max_queued", self.max_queued),
            ("handshake_memory", self.handshake_memory),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_handshakes is not None and self.max_handshakes < 1:
            raise ValueError("max_handshakes must be at least 1")
        if self.cid_length and not MIN_CID_LENGTH <= self.cid_length <= MAX_CID_LENGTH:
            # Fewer random bytes after the node id would make CIDs collide between sessions.
            raise ValueError(f"cid_length must be 0 or {MIN_CID_LENGTH} to {MAX_CID_LENGTH}")
        if not 0 <= self.node_id <= 0xFF:
            raise ValueError("node_id must be 0 to 255 (the first byte of a connection ID)")
        if self.record_size_limit is not None and not 64 <= self.record_size_limit <= 2**14 + 1:
            raise ValueError("record_size_limit must be 64 to 16385 (RFC 8449 §4)")
        if self.max_parked < 0:
            raise ValueError("max_parked must not be negative")
        if not 0 < self.handshake_timeout_min <= self.handshake_timeout_max:
            raise ValueError("need 0 < handshake_timeout_min <= handshake_timeout_max")
        if self.idle_timeout <= 0 or self.handshake_lifetime <= 0:
            raise ValueError("idle_timeout and handshake_lifetime must be positive")


@dataclass(frozen=True, slots=True)
class DtlsServerConfig:
    """The accepting side: PSKs found per identity by ``psk_lookup`` (called during the handshake,
    so it must answer at once: a dictionary or an in-memory cache), and/or a certificate that
    clients see, with ``certificate.trusted`` the authorities their certificates must chain to,
    and/or a raw public key (``rpk``) for clients that present one (RFC 7250). With a
    certificate or a raw public key the client must present its own (mutual authentication);
    with both, they share one key pair (the certificate's)."""

    psk_lookup: PskLookup | None = None
    certificate: X509Credentials | None = None
    ciphers: tuple[CipherSuite, ...] = ()  # default: the PSK and/or certificate suites configured
    limits: SessionLimits = field(default_factory=SessionLimits)
    rpk: RpkCredentials | None = None

    def __post_init__(self) -> None:
        if self.psk_lookup is None and self.certificate is None and self.rpk is None:
            raise ValueError("a DTLS server needs psk_lookup, a certificate, a raw public key, or some")

    @property
    def cipher_suites(self) -> tuple[CipherSuite, ...]:
        if self.ciphers:
            return self.ciphers
        suites: tuple[CipherSuite, ...] = ()
        if self.psk_lookup is not None:
            suites += PSK_SUITES
        if self.certificate is not None or self.rpk is not None:
            suites += CERTIFICATE_SUITES
        return suites


@dataclass(frozen=True, slots=True)
class DtlsClientConfig:
    """The connecting side: a PSK, a certificate or a raw public key. With a certificate,
    ``certificate.trusted`` holds the authorities the server's certificate must chain to, and
    ``server_name`` (if given) must match it; with a raw public key, the server must present
    one of ``rpk.peer_public_keys``."""

    psk: PskCredentials | None = None
    certificate: X509Credentials | None = None
    ciphers: tuple[CipherSuite, ...] = ()
    server_name: str | None = None
    limits: SessionLimits = field(default_factory=SessionLimits)
    rpk: RpkCredentials | None = None

    def __post_init__(self) -> None:
        if sum(c is not None for c in (self.psk, self.certificate, self.rpk)) != 1:
            raise ValueError("a DTLS client needs one of a PSK, a certificate or a raw public key")
        if self.rpk is not None and not self.rpk.peer_public_keys:
            # Without the server's key anyone could answer for the server.
            raise ValueError("a raw public key client needs the server's public key")

    @property
    def cipher_suites(self) -> tuple[CipherSuite, ...]:
        if self.ciphers:
            return self.ciphers
        return PSK_SUITES if self.psk is not None else CERTIFICATE_SUITES
