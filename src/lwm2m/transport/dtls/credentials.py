"""Our DTLS configuration's certificates and raw public keys, as our engine takes them.

``X509Credentials`` and ``RpkCredentials`` (``config.py``) hold bytes as read from files (PEM or
DER); the engine (``lwm2m.tls``) takes loaded keys and certificates in one
``CertificateCredentials`` per side:

- own side: the secp256r1 private key with its certificate chain (RFC 5246 §7.4.2, own
  certificate first) and/or the bare key (RFC 7250 §3, the raw public key certificate type);
  a server with both presents whichever the client takes (RFC 7250 §4), so both must be one
  key pair;
- the peer: an X.509 chain validated against ``trusted`` (RFC 5280 path validation in
  ``cryptography``), or a server certificate pinned by LwM2M certificate usage 1 or 3
  (LwM2M-TS-Transport 1.1 §5.2.8.3, RFC 6698 §2.1.1); a raw public key among the ones we know,
  or, on a server without any, whatever key the client proves it holds: the LwM2M server then
  looks that key up in its security store, as it looks PSK identities up;
- what the engine reports at the end of a handshake becomes a ``PeerIdentity``: ``x509`` with
  the certificate's name (subject CN, else its first DNS subjectAltName) and whole subject,
  ``rpk`` with the hex of the key's DER SubjectPublicKeyInfo.

Unusable files raise ``ValueError`` when the endpoint is made, not in a handshake.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lwm2m.errors import DtlsError
from lwm2m.tls.certificates import (
    CertificateCredentials,
    CertificateType,
    PeerCredentials,
    spki_der,
)
from lwm2m.tls.connection import TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
from lwm2m.transport.dtls.config import (
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    RpkCredentials,
    X509Credentials,
)

__all__ = [
    "ECDSA_SUITE_NUMBERS",
    "client_credentials",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "own_public_key",
    "peer_identity",
    "private_key_der",
    "server_credentials",
]

# Our suite names and the numbers the engine negotiates (RFC 7251, RFC 5289).
ECDSA_SUITE_NUMBERS: dict[CipherSuite, int] = {
    CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    CipherSuite.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
}
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def load_private_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    """A secp256r1 private key from PEM or DER (PKCS#8 or SEC 1), unencrypted."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ValueError(f"cannot load the private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        # The suites of RFC 7251 and RFC 7925 §4.3: ECDSA on secp256r1.
        raise ValueError("the private key is not a secp256r1 (P-256) EC key")
    return key


def load_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle, or the one DER certificate."""
    try:
        pems = _PEM_CERTIFICATE.findall(data)
        if pems:
            return tuple(x509.load_pem_x509_certificate(pem) for pem in pems)
        return (x509.load_der_x509_certificate(data),)
    except ValueError as exc:
        raise ValueError(f"cannot load a certificate: {exc}") from None


def load_public_key(data: bytes) -> bytes:
    """The canonical DER SubjectPublicKeyInfo of a secp256r1 public key given as PEM or DER
    (RFC 7250 §3: what a raw public key is on the wire); a PEM private key gives its public half."""
    try:
        if b"PRIVATE KEY-----" in data:
            return spki_der(load_private_key(data).public_key())
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ValueError(f"cannot load the public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the public key is not a secp256r1 (P-256) EC key")
    return spki_der(key)


def own_public_key(private_key: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key's public half (PEM or DER): what a client
    presents as its raw public key and keeps in its Security object's /0/x/3."""
    return spki_der(load_private_key(private_key).public_key())


def private_key_der(private_key: bytes) -> bytes:
    """A private key (PEM or DER) as unencrypted PKCS#8 DER: the form a Security object's /0/x/5
    holds for a raw public key or a certificate (LwM2M-TS-Core 1.2 §E.1)."""
    return load_private_key(private_key).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _suites(suites: tuple[CipherSuite, ...]) -> tuple[int, ...]:
    return tuple(ECDSA_SUITE_NUMBERS[s] for s in suites if s in ECDSA_SUITE_NUMBERS)


def _accept_any(peer: PeerCredentials) -> bool:
    # A server without a list of client keys takes any key the client proved it holds (its
    # CertificateVerify checked out); the application decides by the key (``PeerIdentity``).
    return True


def _make(**kw: object) -> CertificateCredentials:
    try:
        return CertificateCredentials(**kw)  # type: ignore[arg-type]
    except DtlsError as exc:
        raise ValueError(str(exc)) from None


def server_credentials(config: DtlsServerConfig) -> tuple[CertificateCredentials | None, tuple[int, ...]]:
    """The engine's credentials for a server configuration and the ECDHE_ECDSA suites it
    serves (none without a certificate or a raw public key)."""
    certificate, rpk = config.certificate, config.rpk
    if certificate is None and rpk is None:
        return None, ()
    key = load_private_key((certificate or rpk).private_key)  # type: ignore[union-attr]
    options: dict[str, object] = {"private_key": key}
    if certificate is not None:
        options["certificate_chain"] = load_certificates(certificate.certificate)
        if certificate.trusted:
            options["trust_anchors"] = load_certificates(certificate.trusted)
    if rpk is not None:
        if certificate is not None and spki_der(load_private_key(rpk.private_key).public_key()) != spki_der(
            key.public_key()
        ):
            raise ValueError("the server's raw public key must be its certificate's key")
        options["raw_public_key"] = True
        if rpk.peer_public_keys:
            options["peer_public_keys"] = frozenset(load_public_key(k) for k in rpk.peer_public_keys)
        else:
            options["accept"] = _accept_any
    suites = _suites(config.cipher_suites)
    if not suites and CipherSuite.ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 not in config.cipher_suites:
        raise ValueError("a certificate or raw public key needs an ECDHE-ECDSA cipher suite")
    return _make(**options), suites


def client_credentials(config: DtlsClientConfig) -> tuple[CertificateCredentials | None, tuple[int, ...]]:
    """The engine's credentials for a client configuration and the ECDHE_ECDSA suites it offers."""
    if config.certificate is not None:
        return _client_x509(config.certificate, config.server_name), _checked(config)
    if config.rpk is not None:
        return _client_rpk(config.rpk), _checked(config)
    return None, ()


def _checked(config: DtlsClientConfig) -> tuple[int, ...]:
    suites = _suites(config.cipher_suites)
    if not suites and CipherSuite.ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 not in config.cipher_suites:
        raise ValueError("a certificate or raw public key needs an ECDHE-ECDSA cipher suite")
    return suites


def _client_x509(certificate: X509Credentials, server_name: str | None) -> CertificateCredentials:
    options: dict[str, object] = {
        "private_key": load_private_key(certificate.private_key),
        "certificate_chain": load_certificates(certificate.certificate),
        "expected_name": server_name,
    }
    if certificate.trusted:
        options["trust_anchors"] = load_certificates(certificate.trusted)
    if certificate.certificate_usage is not None:
        options["certificate_usage"] = certificate.certificate_usage
        options["server_certificate"] = load_certificates(certificate.server_certificate)[0]
    return _make(**options)


def _client_rpk(rpk: RpkCredentials) -> CertificateCredentials:
    return _make(
        private_key=load_private_key(rpk.private_key),
        raw_public_key=True,
        peer_public_keys=frozenset(load_public_key(k) for k in rpk.peer_public_keys),
    )


def peer_identity(peer: PeerCredentials) -> PeerIdentity:
    """Who a certificate or raw public key peer is, for the application (``PeerIdentity``)."""
    if peer.certificate_type is CertificateType.RAW_PUBLIC_KEY:
        return PeerIdentity("rpk", peer.public_key.hex())
    subject = peer.subject_text
    return PeerIdentity("x509", peer.name or subject, subject)
