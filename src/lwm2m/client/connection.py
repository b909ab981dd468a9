"""How a client reaches a server: its URI, and the DTLS credentials of a Security instance
(LwM2M-TS-Core 1.2 §E.1: Security Mode, Public Key or Identity, Secret Key, Server Public Key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.client.instance import ObjectInstance
from lwm2m.errors import ConfigError
from lwm2m.transport.dtls.config import DtlsClientConfig, PskCredentials, X509Credentials


@dataclass(frozen=True, slots=True)
class ServerUri:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, uri: str) -> ServerUri:
        parts = urlsplit(uri)
        if parts.scheme not in ("coap", "coaps"):
            raise ConfigError(f"server URI {uri!r}: expected coap://HOST[:PORT]")
        if not parts.hostname:
            raise ConfigError(f"server URI {uri!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"server URI {uri!r} has a bad port") from None
        default = 5684 if parts.scheme == "coaps" else 5683
        return cls(parts.scheme, parts.hostname, port or default)


def unusable(security: ObjectInstance) -> str | None:
    """Why this client cannot reach the server of a Security instance; None when it can."""
    uri = str(security.get(Security.URI, ""))
    try:
        ServerUri.parse(uri)
        dtls_for(security)
    except ValueError as exc:
        return f"{uri}: {exc}"
    return None


def dtls_for(security: ObjectInstance) -> DtlsClientConfig | None:
    """The DTLS credentials a Security instance gives (§E.1); None for NoSec. ValueError if unusable."""
    mode = security.get(Security.MODE, SecurityMode.NO_SEC)
    identity = security.get(Security.IDENTITY) or b""
    secret = security.get(Security.SECRET_KEY) or b""
    if mode == SecurityMode.NO_SEC:
        return None
    if mode == SecurityMode.PSK:
        try:
            name = identity.decode()
        except UnicodeDecodeError:
            raise ValueError("the PSK identity is not UTF-8 text") from None
        return DtlsClientConfig(psk=PskCredentials(name, secret))
    if mode == SecurityMode.CERTIFICATE:
        if not identity or not secret:
            raise ValueError("certificate mode without a certificate or a private key")
        trusted = security.get(Security.SERVER_KEY) or b""
        return DtlsClientConfig(certificate=X509Credentials(identity, secret, trusted))
    raise ValueError(f"security mode {mode} is not supported by this client")


def credentials(psk: PskCredentials | None, certificate: X509Credentials | None) -> dict[str, Any]:
    """The Security object's mode and keys for the given DTLS credentials (LwM2M-TS-Core 1.2 §E.1)."""
    if psk is not None:
        return {"mode": SecurityMode.PSK, "identity": psk.identity.encode(), "secret_key": psk.key}
    if certificate is not None:
        return {
            "mode": SecurityMode.CERTIFICATE,
            "identity": certificate.certificate,
            "secret_key": certificate.private_key,
            "server_key": certificate.trusted,
        }
    return {}
