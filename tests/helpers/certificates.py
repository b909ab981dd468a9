"""A small certificate factory made with ``cryptography``: a CA, intermediates, end-entity
certificates on secp256r1, and the engine's credentials from them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lwm2m.tls.certificates import CertificateCredentials, spki_der

# Validity around the real time, so that peers which check it against their clock agree.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lwm2m tests")]
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


@dataclass(frozen=True)
class Issued:
    """A key with its certificate and the chain up to (not including) the root."""

    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def spki(self) -> bytes:
        return spki_der(self.key.public_key())

    def cert_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def credentials(self, **options: Any) -> CertificateCredentials:
        """Credentials presenting this chain, validated at ``NOW``."""
        options.setdefault("validation_time", lambda: NOW)
        return CertificateCredentials(private_key=self.key, certificate_chain=self.chain, **options)


class CertificateAuthority:
    """A CA (a root, or an intermediate with its ``parents``) that issues end-entity certificates."""

    def __init__(
        self, name: str = "Test CA", *, parent: CertificateAuthority | None = None, days: int = 365
    ) -> None:
        self.key = p256()
        self.name = _name(name)
        self.parent = parent
        self._serial = 1
        start, end = NOW - dt.timedelta(days=30), NOW + dt.timedelta(days=days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(parent.name if parent else self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
        )
        if parent is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
            )
        self.certificate = builder.sign(parent.key if parent else self.key, hashes.SHA256())

    @property
    def root(self) -> x509.Certificate:
        return self.parent.root if self.parent else self.certificate

    def _intermediates(self) -> tuple[x509.Certificate, ...]:
        return () if self.parent is None else (self.certificate, *self.parent._intermediates())

    def issue(
        self,
        common_name: str | None,
        *,
        dns_names: tuple[str, ...] = (),
        usage: str = "client",
        key: ec.EllipticCurvePrivateKey | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:
        """An end-entity certificate; ``usage`` "client", "server" or "both" sets the extended key
        usage."""
        key = key or p256()
        purposes = {
            "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
            "server": [ExtendedKeyUsageOID.SERVER_AUTH],
            "both": [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        }[usage]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(not_after or NOW + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(purposes),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
            )
        certificate = builder.sign(self.key, hashes.SHA256())
        return Issued(key, (certificate, *self._intermediates()))


def rpk_credentials(key: ec.EllipticCurvePrivateKey, **options: Any) -> CertificateCredentials:
    """Credentials presenting the bare key (RFC 7250)."""
    return CertificateCredentials(private_key=key, raw_public_key=True, **options)


def pem_files(directory: Path, ca: CertificateAuthority, server: Issued, client: Issued) -> dict[str, str]:
    """The PEM files a command-line peer (openssl, gnutls) takes, written under ``directory``:
    name ("ca", "server", "server_key", "client", "client_key") -> path."""
    paths = {
        "ca": (directory / "ca.pem", ca.certificate.public_bytes(serialization.Encoding.PEM)),
        "server": (directory / "server.pem", server.cert_pem()),
        "server_key": (directory / "server.key", server.key_pem()),
        "client": (directory / "client.pem", client.cert_pem()),
        "client_key": (directory / "client.key", client.key_pem()),
    }
    for path, data in paths.values():
        path.write_bytes(data)
    return {name: str(path) for name, (path, _) in paths.items()}
