"""The ECDHE key exchange of the ECDHE_ECDSA and ECDHE_PSK cipher suites: its messages and its
cryptography.

- ServerECDHParams with a named curve (RFC 8422 §5.4): ``curve_type`` named_curve (3), the
  NamedCurve, and the server's ephemeral point ``opaque point <1..2^8-1>`` in the uncompressed
  form of RFC 8422 §5.4.1 (the only one RFC 8422 keeps); only secp256r1 (23) is taken.
- The ServerKeyExchange of ECDHE_ECDSA (RFC 8422 §5.4): the params, then a ``digitally-signed``
  element over ``client_random + server_random + params`` (RFC 5246 §4.7, §7.4.3).
- The ClientKeyExchange of ECDHE (RFC 8422 §5.7): the client's ephemeral point, same encoding.
- ECDHE_PSK (RFC 5489 §2) puts the same params, unsigned, after the PSK identity hint of its
  ServerKeyExchange, and the same point after the PSK identity of its ClientKeyExchange
  (``lwm2m.tls.messages`` carries both parts opaque; ``ServerEcdhParams.parse`` and
  ``EcdhClientKeyExchange.parse`` read them).
- CertificateVerify (RFC 5246 §7.4.8): a ``digitally-signed`` element over the handshake
  messages so far.
- The ``digitally-signed`` element of TLS 1.2 (RFC 5246 §4.7): SignatureAndHashAlgorithm,
  then ``opaque signature<0..2^16-1>``; only ecdsa_secp256r1_sha256, i.e. (sha256 4,
  ecdsa 3), with a DER ECDSA-Sig-Value (RFC 8422 §5.4).
- The premaster secret of ECDH (RFC 8422 §5.10): the x coordinate of the shared point, leading
  zeros kept, which is what ``cryptography``'s ``exchange`` gives.

Parsers raise ``HandshakeFormatError`` (a ProtocolError) on malformed bytes; a point off the
curve or a signature that does not verify raises ``SecurityError`` subclasses, never another
exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lwm2m.errors import BadSignature, HandshakeFormatError, InvalidPeerKey
from lwm2m.tls.messages import HandshakeType, _Reader, _uint, _vector

__all__ = [
    "ECDSA_SECP256R1_SHA256",
    "SECP256R1",
    "DigitallySigned",
    "EcdhClientKeyExchange",
    "EcdheKeyPair",
    "EcdheServerKeyExchange",
    "ServerEcdhParams",
    "ecdsa_sign",
    "ecdsa_verify",
    "load_point",
    "server_params_content",
]

SECP256R1: Final = 23  # NamedCurve secp256r1 (RFC 8422 §5.1.1)
NAMED_CURVE: Final = 3  # ECCurveType named_curve (RFC 8422 §5.4)
UNCOMPRESSED: Final = 0  # ECPointFormat uncompressed (RFC 8422 §5.1.2)
# SignatureAndHashAlgorithm as one uint16: hash sha256 (4), signature ecdsa (3), RFC 5246 §7.4.1.4.1.
ECDSA_SECP256R1_SHA256: Final = 0x0403
P256_POINT_LENGTH: Final = 65  # 0x04 ‖ x ‖ y (RFC 8422 §5.4.1, SEC 1 §2.3.3)
MAX_SIGNATURE_LENGTH: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class DigitallySigned:
    """The TLS 1.2 ``digitally-signed`` element (RFC 5246 §4.7): the algorithm pair, then the
    signature bytes (for ECDSA a DER ECDSA-Sig-Value, RFC 8422 §5.4)."""

    algorithm: int
    signature: bytes

    @classmethod
    def read(cls, reader: _Reader) -> Self:
        algorithm = reader.uint(2, "SignatureAndHashAlgorithm")
        signature = reader.vector(2, "signature")
        return cls(algorithm, signature)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        """A whole CertificateVerify body (RFC 5246 §7.4.8)."""
        reader = _Reader(body, "digitally-signed")
        out = cls.read(reader)
        reader.done()
        return out

    def to_bytes(self) -> bytes:
        return _uint(self.algorithm, 2, "SignatureAndHashAlgorithm") + _vector(2, self.signature, "signature")


@dataclass(frozen=True, slots=True)
class ServerEcdhParams:
    """ServerECDHParams with a named curve (RFC 8422 §5.4)."""

    named_curve: int
    point: bytes

    @classmethod
    def read(cls, reader: _Reader) -> Self:
        curve_type = reader.uint(1, "curve_type")
        if curve_type != NAMED_CURVE:
            # explicit_prime and explicit_char2 are deprecated (RFC 8422 §5.4) and unsupported.
            raise HandshakeFormatError(f"ServerECDHParams: curve_type {curve_type}, not named_curve")
        curve = reader.uint(2, "namedcurve")
        point = reader.vector(1, "point", 1)
        return cls(curve, point)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        """Params that fill ``body`` exactly: the part after the identity hint in the
        ServerKeyExchange of ECDHE_PSK (RFC 5489 §2), which nothing signs."""
        reader = _Reader(body, "ServerECDHParams")
        out = cls.read(reader)
        reader.done()
        return out

    def to_bytes(self) -> bytes:
        curve = _uint(self.named_curve, 2, "namedcurve")
        return bytes((NAMED_CURVE,)) + curve + _vector(1, self.point, "point", 1)


@dataclass(frozen=True, slots=True)
class EcdheServerKeyExchange:
    """The ServerKeyExchange of ECDHE_ECDSA (RFC 8422 §5.4): params and their signature."""

    params: ServerEcdhParams
    signed: DigitallySigned
    msg_type: ClassVar[int] = HandshakeType.SERVER_KEY_EXCHANGE

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "ServerKeyExchange")
        params = ServerEcdhParams.read(reader)
        signed = DigitallySigned.read(reader)
        reader.done()
        return cls(params, signed)

    def to_bytes(self) -> bytes:
        return self.params.to_bytes() + self.signed.to_bytes()


@dataclass(frozen=True, slots=True)
class EcdhClientKeyExchange:
    """The ClientKeyExchange of ECDHE (RFC 8422 §5.7): ``opaque point <1..2^8-1>``."""

    point: bytes
    msg_type: ClassVar[int] = HandshakeType.CLIENT_KEY_EXCHANGE

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "ClientKeyExchange")
        point = reader.vector(1, "ecdh_Yc", 1)
        reader.done()
        return cls(point)

    def to_bytes(self) -> bytes:
        return _vector(1, self.point, "ecdh_Yc", 1)


def server_params_content(client_random: bytes, server_random: bytes, params: ServerEcdhParams) -> bytes:
    """What the server signs in its ServerKeyExchange (RFC 8422 §5.4): both randoms, then the
    params as sent, so that a signature cannot be replayed in another handshake."""
    return client_random + server_random + params.to_bytes()


def load_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """The peer's ephemeral P-256 public key from its uncompressed point (RFC 8422 §5.4.1);
    anything else, or a point not on the curve, raises ``InvalidPeerKey``."""
    if len(point) != P256_POINT_LENGTH or point[0] != 4:
        raise InvalidPeerKey(f"an ECDH point of {len(point)} bytes is not an uncompressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidPeerKey("the peer's ECDH point is not on secp256r1") from None


class EcdheKeyPair:
    """An ephemeral secp256r1 key pair for one handshake (RFC 8422 §2: fresh per handshake)."""

    __slots__ = ("_private", "point")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        # A given key is for known-answer tests; a handshake always takes a fresh one.
        self._private = private_key or ec.generate_private_key(ec.SECP256R1())
        self.point = self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def shared_secret(self, peer_point: bytes) -> bytes:
        """The premaster secret with the peer's point (RFC 8422 §5.10): the shared x
        coordinate, 32 bytes, leading zeros kept."""
        peer = load_point(peer_point)
        try:
            return self._private.exchange(ec.ECDH(), peer)
        except ValueError:
            raise InvalidPeerKey("no ECDH shared secret with the peer's point") from None


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, content: bytes) -> DigitallySigned:
    """Sign ``content`` with ECDSA-SHA256 (RFC 8422 §5.4: the DER signature)."""
    return DigitallySigned(ECDSA_SECP256R1_SHA256, key.sign(content, ec.ECDSA(hashes.SHA256())))


def ecdsa_verify(key: ec.EllipticCurvePublicKey, content: bytes, signed: DigitallySigned) -> None:
    """Check an ECDSA-SHA256 signature of ``content`` under ``key``: ``BadSignature`` when the
    algorithm is another, the key is not on P-256, or the signature does not verify."""
    if signed.algorithm != ECDSA_SECP256R1_SHA256:
        raise BadSignature(f"signature algorithm {signed.algorithm:#06x} was not offered")
    if not isinstance(key.curve, ec.SECP256R1):
        raise BadSignature(f"an ECDSA key on {key.curve.name}, not secp256r1")
    try:
        key.verify(signed.signature, content, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise BadSignature("the ECDSA signature does not verify") from None
