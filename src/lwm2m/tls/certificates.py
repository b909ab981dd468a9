"""Certificates and raw public keys for the ECDHE_ECDSA handshake: messages, credentials and
the check of the peer's identity.

- Certificate (RFC 5246 §7.4.2): ``ASN.1Cert certificate_list<0..2^24-1>``, each certificate
  ``opaque <1..2^24-1>``, the sender's own first; with the raw public key certificate type
  (RFC 7250 §3) it is instead one ``opaque ASN.1_subjectPublicKeyInfo<1..2^24-1>``.
- CertificateRequest (RFC 5246 §7.4.4): certificate types, supported signature algorithms and
  the acceptable certificate authorities.
- The certificate type negotiation of RFC 7250 §4 (client_certificate_type and
  server_certificate_type, whose messages live in :mod:`lwm2m.tls.messages`).
- The peer's identity: a raw public key is its SubjectPublicKeyInfo DER (RFC 7250 §3), which
  the caller looks up; an X.509 chain is checked with ``cryptography.x509.verification``
  (RFC 5280 path validation) against the trust anchors, a server's certificate with the
  expected name when one is given; the name given to the application is the subject CN, else
  the first DNS subjectAltName.
- LwM2M certificate usage of the Security object (LwM2M-TS-Transport 1.1 §5.2.8.3, the values
  of RFC 6698 §2.1.1): 1 "service certificate constraint" (the server's certificate must be the
  pinned one and pass path validation) and 3 "domain-issued certificate" (it must be the pinned
  one; no path validation).

Parsers raise ``HandshakeFormatError``; a refused peer raises ``CertificateRejected`` (or its
``UnknownCertificateAuthority``), never another exception.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self, TypeGuard

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    DNSName,
    ExtensionPolicy,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from lwm2m.errors import (
    CertificateRejected,
    CertificateTypeMismatch,
    DtlsError,
    HandshakeFormatError,
    UnknownCertificateAuthority,
)
from lwm2m.tls.keyexchange import ECDSA_SECP256R1_SHA256
from lwm2m.tls.messages import (
    ClientCertificateTypeExtension,
    HandshakeType,
    ServerCertificateTypeExtension,
    _Reader,
    _uint,
    _vector,
)

__all__ = [
    "ECDSA_SIGN",
    "CertificateCredentials",
    "CertificateMessage",
    "CertificateRequest",
    "CertificateType",
    "CertificateUsage",
    "PeerCredentials",
    "answered_types",
    "choose_types",
    "offered_types",
    "peer_public_key",
    "spki_der",
]

ECDSA_SIGN: Final = 64  # ClientCertificateType ecdsa_sign (RFC 8422 §5.5)
MAX_CERTIFICATES: Final = 10  # a longer chain is refused before anything is parsed


class CertificateType(enum.IntEnum):
    """The TLS Certificate Types registry values of RFC 7250 §3 this engine knows."""

    X509 = 0
    RAW_PUBLIC_KEY = 2


class CertificateUsage(enum.IntEnum):
    """LwM2M Security object resource 15 (LwM2M-TS-Transport 1.1 §5.2.8.3, RFC 6698 §2.1.1):
    the two values our client honours."""

    SERVICE_CERTIFICATE_CONSTRAINT = 1
    DOMAIN_ISSUED_CERTIFICATE = 3


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    """The SubjectPublicKeyInfo DER of a key: a raw public key on the wire (RFC 7250 §3) and the
    identity by which a server looks an RPK client up."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateMessage:
    """Certificate (RFC 5246 §7.4.2) or, for ``RAW_PUBLIC_KEY``, the SubjectPublicKeyInfo
    (RFC 7250 §3). ``entries`` are DER: the chain, sender's first, or the one SPKI."""

    certificate_type: int
    entries: tuple[bytes, ...]
    msg_type: ClassVar[int] = HandshakeType.CERTIFICATE

    @classmethod
    def parse(cls, body: bytes, certificate_type: int) -> Self:
        reader = _Reader(body, "Certificate")
        if certificate_type == CertificateType.RAW_PUBLIC_KEY:
            spki = reader.vector(3, "ASN.1_subjectPublicKeyInfo", 1)
            reader.done()
            return cls(certificate_type, (spki,))
        chain = _Reader(reader.vector(3, "certificate_list"), "certificate_list")
        reader.done()
        entries: list[bytes] = []
        while chain.remaining:
            if len(entries) == MAX_CERTIFICATES:
                raise HandshakeFormatError(f"Certificate: more than {MAX_CERTIFICATES} certificates")
            entries.append(chain.vector(3, "ASN.1Cert", 1))
        return cls(certificate_type, tuple(entries))

    def to_bytes(self) -> bytes:
        if self.certificate_type == CertificateType.RAW_PUBLIC_KEY:
            if len(self.entries) != 1:
                raise HandshakeFormatError("a raw public key Certificate carries exactly one key")
            return _vector(3, self.entries[0], "ASN.1_subjectPublicKeyInfo", 1)
        chain = b"".join(_vector(3, der, "ASN.1Cert", 1) for der in self.entries)
        return _vector(3, chain, "certificate_list")


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """CertificateRequest (RFC 5246 §7.4.4); ``authorities`` are DER DistinguishedNames."""

    certificate_types: bytes = bytes((ECDSA_SIGN,))
    algorithms: tuple[int, ...] = (ECDSA_SECP256R1_SHA256,)
    authorities: tuple[bytes, ...] = ()
    msg_type: ClassVar[int] = HandshakeType.CERTIFICATE_REQUEST

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "CertificateRequest")
        types = reader.vector(1, "certificate_types", 1)
        packed = reader.vector(2, "supported_signature_algorithms", 2, 0xFFFE)
        if len(packed) % 2:
            raise HandshakeFormatError("CertificateRequest: supported_signature_algorithms has an odd length")
        algorithms = tuple(int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2))
        names = _Reader(reader.vector(2, "certificate_authorities"), "certificate_authorities")
        reader.done()
        authorities: list[bytes] = []
        while names.remaining:
            authorities.append(names.vector(2, "DistinguishedName", 1))
        return cls(types, algorithms, tuple(authorities))

    def to_bytes(self) -> bytes:
        algorithms = b"".join(_uint(a, 2, "SignatureAndHashAlgorithm") for a in self.algorithms)
        names = b"".join(_vector(2, dn, "DistinguishedName", 1) for dn in self.authorities)
        return (
            _vector(1, self.certificate_types, "certificate_types", 1)
            + _vector(2, algorithms, "supported_signature_algorithms", 2, 0xFFFE)
            + _vector(2, names, "certificate_authorities")
        )


# --- credentials and the peer -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Who the peer proved to be: its certificate type, its SubjectPublicKeyInfo DER (the RPK
    identity), its name (X.509: subject CN, else the first DNS subjectAltName; None for an RPK)
    and its certificates as sent (DER, its own first). A resumed or restored session keeps no
    certificates: ``subject`` is then its certificate's subject as the full handshake saw it."""

    certificate_type: CertificateType
    public_key: bytes
    name: str | None = None
    certificates: tuple[bytes, ...] = ()
    # The loaded key, kept so that the handshake's signature checks need not parse it again.
    key: ec.EllipticCurvePublicKey | None = field(default=None, compare=False, repr=False)
    subject: str | None = None

    @property
    def subject_text(self) -> str:
        """The subject of an X.509 peer's certificate (RFC 4514 text; empty for a raw public
        key, or a name that cannot be printed)."""
        if self.subject is not None:
            return self.subject
        if self.certificate_type is not CertificateType.X509 or not self.certificates:
            return ""
        try:
            return x509.load_der_x509_certificate(self.certificates[0]).subject.rfc4514_string()
        except ValueError:  # the handshake parsed it already; a name it cannot print stays empty
            return ""

    @property
    def identity(self) -> bytes:
        """The identity the connection reports: the name for X.509, the SPKI DER for an RPK."""
        if self.certificate_type is CertificateType.X509 and self.name is not None:
            return self.name.encode()
        return self.public_key


@dataclass(frozen=True, slots=True)
class CertificateCredentials:
    """What a connection needs for ECDHE_ECDSA: its own key and how it trusts the peer.

    Own side: ``private_key`` (secp256r1) with ``certificate_chain`` (its own certificate
    first), or ``raw_public_key`` to present the bare key (RFC 7250) when the peer takes one.

    The peer: an X.509 chain must validate against ``trust_anchors``; a server certificate is
    also checked against ``expected_name`` when given (a DNS name or an IP address). A raw
    public key is trusted when its SPKI DER is in ``peer_public_keys`` or ``accept`` says so.
    ``accept`` has the last word on an X.509 peer too (e.g. a server looking the client up).
    For our client, ``certificate_usage`` (LwM2M /0/x/15) 1 or 3 pins the server's certificate
    to ``server_certificate`` (/0/x/4). ``validation_time`` gives the time of path validation
    (None: ``cryptography`` takes the current time), as this package reads no clock.
    """

    private_key: ec.EllipticCurvePrivateKey
    certificate_chain: tuple[x509.Certificate, ...] = ()
    raw_public_key: bool = False
    trust_anchors: tuple[x509.Certificate, ...] = ()
    peer_public_keys: frozenset[bytes] = field(default_factory=frozenset)
    expected_name: str | None = None
    certificate_usage: int | None = None
    server_certificate: x509.Certificate | None = None
    accept: Callable[[PeerCredentials], bool] | None = None
    validation_time: Callable[[], dt.datetime] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.private_key.curve, ec.SECP256R1
        ):
            raise DtlsError("ECDHE_ECDSA needs a secp256r1 private key")
        if not self.certificate_chain and not self.raw_public_key:
            raise DtlsError("a certificate chain is needed unless raw_public_key is set")
        if self.certificate_chain:
            leaf = self.certificate_chain[0].public_key()
            if not isinstance(leaf, ec.EllipticCurvePublicKey) or spki_der(leaf) != self.own_spki:
                raise DtlsError("the first certificate of the chain is not for the private key")
        if self.certificate_usage is not None:
            if self.certificate_usage not in tuple(CertificateUsage):
                raise DtlsError(f"certificate usage {self.certificate_usage} is not 1 or 3")
            if self.server_certificate is None:
                raise DtlsError("a certificate usage needs the server_certificate it pins")
        if self.expected_name is not None:
            _subject(self.expected_name)  # a malformed name fails here, not in a handshake

    @property
    def own_spki(self) -> bytes:
        return spki_der(self.private_key.public_key())

    def session_credential(self) -> bytes:
        """What a session made with these credentials is bound to (``credential_binding``): our
        own key's SubjectPublicKeyInfo and a digest of how the peer is trusted (the anchors,
        the raw public keys, the expected name, the certificate usage and its certificate).
        A session is resumed or taken up only under the same, so that a peer accepted under
        other trust settings is not taken without the checks of a full handshake. ``accept``
        is left out: a function has no value to compare across restarts, and what it decides
        (who may register) is asked again of a resumed session's peer."""
        trust = hashlib.sha256()
        parts = [anchor.public_bytes(serialization.Encoding.DER) for anchor in self.trust_anchors]
        parts += [b"rpk", *sorted(self.peer_public_keys), b"name", (self.expected_name or "").encode()]
        parts += [b"usage", str(self.certificate_usage).encode()]
        if self.server_certificate is not None:
            parts.append(self.server_certificate.public_bytes(serialization.Encoding.DER))
        for part in parts:
            trust.update(len(part).to_bytes(4, "big") + part)
        return self.own_spki + trust.digest()

    def own_certificate(self, certificate_type: int) -> CertificateMessage:
        """Our Certificate message for the negotiated type."""
        if certificate_type == CertificateType.RAW_PUBLIC_KEY:
            return CertificateMessage(certificate_type, (self.own_spki,))
        ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in self.certificate_chain)
        return CertificateMessage(CertificateType.X509, ders)

    # What we can present and what we can check, for the negotiation of RFC 7250 §4.

    def own_types(self) -> tuple[CertificateType, ...]:
        """Our certificate types, preferred first."""
        out: list[CertificateType] = []
        if self.raw_public_key:
            out.append(CertificateType.RAW_PUBLIC_KEY)
        if self.certificate_chain:
            out.append(CertificateType.X509)
        return tuple(out)

    def peer_types(self) -> tuple[CertificateType, ...]:
        """The peer certificate types we can check, preferred first."""
        out: list[CertificateType] = []
        if self.peer_public_keys or self.accept is not None:
            out.append(CertificateType.RAW_PUBLIC_KEY)
        if self.trust_anchors or self.server_certificate is not None:
            out.append(CertificateType.X509)
        return tuple(out)

    # --- the peer's certificate ------------------------------------------------------------

    def check_peer(self, message: CertificateMessage, *, peer_is_server: bool) -> PeerCredentials:
        """The peer's credentials from its Certificate, or ``CertificateRejected``
        (``UnknownCertificateAuthority`` when nothing we trust vouches for it)."""
        if not message.entries:
            raise CertificateRejected("the peer sent no certificate")
        if message.certificate_type == CertificateType.RAW_PUBLIC_KEY:
            spki, key = _checked_spki(message.entries[0])
            peer = PeerCredentials(CertificateType.RAW_PUBLIC_KEY, spki, key=key)
            if peer.public_key in self.peer_public_keys:
                return peer
            if self.accept is not None and self._accepts(peer):
                return peer
            raise UnknownCertificateAuthority("the peer's raw public key is not one we know")
        try:
            chain = [x509.load_der_x509_certificate(der) for der in message.entries]
        except ValueError as error:
            raise CertificateRejected(f"a malformed certificate: {error}") from None
        leaf = chain[0]
        try:
            leaf_key = leaf.public_key()
        except (ValueError, TypeError) as error:  # an unknown or malformed key algorithm
            raise CertificateRejected(f"an unusable certificate key: {error}") from None
        if not _is_p256(leaf_key):
            # RFC 8422 §5.3: the ECDSA suites need an ECDSA-capable key on a group we offered.
            raise CertificateRejected("the peer's certificate key is not a secp256r1 key")
        entries = tuple(message.entries)
        peer = PeerCredentials(CertificateType.X509, spki_der(leaf_key), _name(leaf), entries, leaf_key)
        if peer_is_server and self.certificate_usage is not None:
            assert self.server_certificate is not None
            pinned = self.server_certificate.public_bytes(serialization.Encoding.DER)
            if not hmac.compare_digest(pinned, message.entries[0]):
                raise CertificateRejected("the server's certificate is not the pinned one")
            if self.certificate_usage == CertificateUsage.SERVICE_CERTIFICATE_CONSTRAINT:
                self._validate(chain, peer_is_server=True)
        else:
            self._validate(chain, peer_is_server=peer_is_server)
        if self.accept is not None and not self._accepts(peer):
            raise CertificateRejected("the peer's certificate is refused by the policy")
        return peer

    def _accepts(self, peer: PeerCredentials) -> bool:
        assert self.accept is not None
        return self.accept(peer) is True

    def _validate(self, chain: list[x509.Certificate], *, peer_is_server: bool) -> None:
        if not self.trust_anchors:
            raise UnknownCertificateAuthority("no trust anchors to check the peer's chain against")
        name = self.expected_name if peer_is_server else None
        try:
            self._verify(chain, peer_is_server=peer_is_server, name=name)
        except VerificationError as error:
            if name is not None and self._verifies(chain):
                # A chain we trust, for another name: the certificate, not its issuer, is wrong.
                raise CertificateRejected(f"the server's certificate is not for {name}: {error}") from None
            raise UnknownCertificateAuthority(f"the peer's chain does not validate: {error}") from None
        except ValueError as error:  # e.g. a malformed extension, parsed only now
            raise CertificateRejected(f"a malformed certificate: {error}") from None

    def _verifies(self, chain: list[x509.Certificate]) -> bool:
        try:
            self._verify(chain, peer_is_server=True, name=None)
        except (VerificationError, ValueError):
            return False
        return True

    def _verify(self, chain: list[x509.Certificate], *, peer_is_server: bool, name: str | None) -> None:
        builder = PolicyBuilder().store(Store(list(self.trust_anchors)))
        if self.validation_time is not None:
            builder = builder.time(self.validation_time())
        if name is not None:
            builder.build_server_verifier(_subject(name)).verify(chain[0], chain[1:])
            return
        # A client certificate names its endpoint in the subject CN, often without a
        # subjectAltName, which the Web PKI profile would require; an extended key usage, when
        # present, must still allow clientAuth. A server certificate checked without a name to
        # match is held to the chain alone.
        ee_policy = (
            ExtensionPolicy.permit_all()
            if peer_is_server
            else ExtensionPolicy.webpki_defaults_ee().may_be_present(
                x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
            )
        )
        builder = builder.extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
        builder.build_client_verifier().verify(chain[0], chain[1:])


def _subject(name: str) -> DNSName | IPAddress:
    try:
        return IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return DNSName(name)
    except ValueError:
        raise DtlsError(f"{name!r} is neither a DNS name nor an IP address") from None


def _is_p256(key: object) -> TypeGuard[ec.EllipticCurvePublicKey]:
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def _checked_spki(der: bytes) -> tuple[bytes, ec.EllipticCurvePublicKey]:
    # The key must be one we can verify ECDSA-SHA256 with (RFC 7250 §3 leaves the type open).
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise CertificateRejected(f"a malformed raw public key: {error}") from None
    if not _is_p256(key):
        raise CertificateRejected("the peer's raw public key is not a secp256r1 key")
    return spki_der(key), key  # the canonical DER, whatever equivalent encoding was sent


def _name(certificate: x509.Certificate) -> str | None:
    """Subject CN, else the first DNS subjectAltName (the issue's endpoint rule)."""
    try:
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attribute.value
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    except ValueError as error:
        raise CertificateRejected(f"a malformed certificate name: {error}") from None
    names = san.value.get_values_for_type(x509.DNSName)
    return names[0] if names else None


# --- the certificate types of RFC 7250 §4 -------------------------------------------------------


def offered_types(
    credentials: CertificateCredentials,
) -> tuple[ClientCertificateTypeExtension | None, ServerCertificateTypeExtension | None]:
    """The client's certificate type extensions: each left out when it would offer X.509
    alone, the default without them (RFC 7250 §4.1), so that a peer without RFC 7250 is not
    confused."""
    own, peer = credentials.own_types(), credentials.peer_types()
    client = None if own == (CertificateType.X509,) else ClientCertificateTypeExtension(own)
    server = None if peer in ((CertificateType.X509,), ()) else ServerCertificateTypeExtension(peer)
    return client, server


def _pick(offered: tuple[int, ...] | None, ours: tuple[CertificateType, ...], what: str) -> CertificateType:
    # RFC 7250 §4.2: no extension means X.509; no type in common, unsupported_certificate.
    for kind in ours:
        if (offered is None and kind is CertificateType.X509) or (offered is not None and kind in offered):
            return kind
    raise CertificateTypeMismatch(f"no {what} certificate type in common")


def choose_types(
    credentials: CertificateCredentials,
    client_offer: ClientCertificateTypeExtension | None,
    server_offer: ServerCertificateTypeExtension | None,
) -> tuple[CertificateType, CertificateType]:
    """The server's choice (RFC 7250 §4.2): the type the client presents (one the server can
    check) and the type the server presents (one the client can check), server's preference
    first."""
    client = _pick(client_offer.types if client_offer else None, credentials.peer_types(), "client")
    server = _pick(server_offer.types if server_offer else None, credentials.own_types(), "server")
    return client, server


def answered_types(
    credentials: CertificateCredentials,
    client_answer: ClientCertificateTypeExtension | None,
    server_answer: ServerCertificateTypeExtension | None,
) -> tuple[CertificateType, CertificateType]:
    """The types the server chose, as the client reads them from the ServerHello: each must be
    one we offered (X.509 when the server left the extension out)."""
    chosen: list[CertificateType] = []
    for answer, ours in ((client_answer, credentials.own_types()), (server_answer, credentials.peer_types())):
        kind = CertificateType.X509 if answer is None else answer.types[0]
        if answer is not None and not answer.answer:
            raise CertificateTypeMismatch("a certificate type list in the ServerHello")
        if kind not in ours:
            raise CertificateTypeMismatch(f"the server chose certificate type {kind}, not offered")
        chosen.append(CertificateType(kind))
    return chosen[0], chosen[1]


def peer_public_key(peer: PeerCredentials) -> ec.EllipticCurvePublicKey:
    """The peer's secp256r1 key, to check its signatures with (RFC 8422 §5.4, RFC 5246 §7.4.8)."""
    if peer.key is not None:
        return peer.key
    key = serialization.load_der_public_key(peer.public_key)
    if not isinstance(key, ec.EllipticCurvePublicKey):  # check_peer let only P-256 keys through
        raise CertificateRejected("the peer's key is not an EC key")
    return key
