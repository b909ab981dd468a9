"""How a client reaches a server: its URI, and the DTLS credentials of a Security instance
(LwM2M-TS-Core 1.2 §E.1: Security Mode, Public Key or Identity, Secret Key, Server Public Key,
Certificate Usage).

Raw public key mode (1): /0/x/3 our public key, /0/x/5 our private key, /0/x/4 the server's
public key (RFC 7250), which the server must present. Certificate mode (2): /0/x/3 our
certificate, /0/x/5 its private key, /0/x/4 the server's certificate or its authority; with
certificate usage (/0/x/15, RFC 6698 §2.1.1) 1 or 3, the first certificate of /0/x/4 is the
server's own, pinned (3: nothing more is checked; 1: it must also chain to /0/x/4's other
certificates, or to itself when there is none); without it, or with 0 or 2, the server's
chain must validate against the certificates of /0/x/4."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lwm2m.client.core.oscore import AEAD_AES_CCM_16_64_128, HKDF_SHA_256, Oscore
from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.client.instance import ObjectInstance
from lwm2m.errors import ConfigError, DtlsError
from lwm2m.model.value import ObjLink
from lwm2m.transport.dtls.config import DtlsClientConfig, PskCredentials, RpkCredentials, X509Credentials

# Default ports: RFC 7252 §6.1, §6.2 (UDP, DTLS) and RFC 8323 §8.1, §8.2 (TCP, TLS).
_DEFAULT_PORTS = {"coap": 5683, "coaps": 5684, "coap+tcp": 5683, "coaps+tcp": 5684}


@dataclass(frozen=True, slots=True)
class ServerUri:
    scheme: str
    host: str
    port: int

    @property
    def secure(self) -> bool:
        """``coaps://`` (DTLS) or ``coaps+tcp://`` (TLS)."""
        return self.scheme in ("coaps", "coaps+tcp")

    @property
    def tcp(self) -> bool:
        """CoAP over TCP or TLS (RFC 8323): ``coap+tcp://`` or ``coaps+tcp://``."""
        return self.scheme.endswith("+tcp")

    @classmethod
    def parse(cls, uri: str) -> ServerUri:
        # Frozen: the devices of a fleet, all naming one server, share one (and parse it once).
        return _parse_server_uri(uri) if cls is ServerUri else cls._parse(uri)

    @classmethod
    def _parse(cls, uri: str) -> ServerUri:
        parts = urlsplit(uri)
        if parts.scheme not in _DEFAULT_PORTS:
            raise ConfigError(
                f"server URI {uri!r}: expected coap://, coaps://, coap+tcp:// or coaps+tcp://HOST[:PORT]"
            )
        if not parts.hostname:
            raise ConfigError(f"server URI {uri!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"server URI {uri!r} has a bad port") from None
        return cls(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


@functools.lru_cache(maxsize=256)
def _parse_server_uri(uri: str) -> ServerUri:
    return ServerUri._parse(uri)


def unusable(security: ObjectInstance) -> str | None:
    """Why this client cannot reach the server of a Security instance; None when it can."""
    uri = str(security.get(Security.URI, ""))
    try:
        ServerUri.parse(uri)
        dtls_for(security)  # coaps+tcp:// takes PSK, raw public keys and X.509 as coaps:// does
    except ValueError as exc:
        return f"{uri}: {exc}"
    return None


def dtls_for(security: ObjectInstance) -> DtlsClientConfig | None:
    """The DTLS credentials a Security instance gives (§E.1); None for NoSec. ValueError if unusable.
    The host of its URI, when a DNS name, is the server name (RFC 6066 §3 SNI, and the name a
    server certificate must carry)."""
    return _credentials(security, _server_name(str(security.get(Security.URI, ""))))


@functools.lru_cache(maxsize=256)  # a pure function of the URI; every device of a fleet asks it
def _server_name(uri: str) -> str | None:
    try:
        # Here, not at the top: lwm2m.tls needs the dtls extra, which a NoSec client (the
        # demo's simulated devices) runs without; without it there is no DTLS to name a server to.
        from lwm2m.tls.negotiation import sni_host_name
    except ImportError:
        return None
    try:
        host = urlsplit(uri).hostname
        return host if host is not None and sni_host_name(host) is not None else None
    except (ValueError, DtlsError):  # no URI yet, an IP address, or a host no handshake can name
        return None


def _credentials(security: ObjectInstance, server_name: str | None) -> DtlsClientConfig | None:
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
        return DtlsClientConfig(server_name=server_name, psk=PskCredentials(name, secret))
    server_key = security.get(Security.SERVER_KEY) or b""
    if mode == SecurityMode.RPK:
        if not secret or not server_key:
            raise ValueError("raw public key mode without a private key or the server's public key")
        return DtlsClientConfig(server_name=server_name, rpk=RpkCredentials(secret, (server_key,)))
    if mode == SecurityMode.CERTIFICATE:
        if not identity or not secret:
            raise ValueError("certificate mode without a certificate or a private key")
        usage = security.get(Security.CERTIFICATE_USAGE)
        if usage is not None and int(usage) in (1, 3):
            if not server_key:
                raise ValueError(f"certificate usage {usage} without the server's certificate (/0/x/4)")
            pinned, anchors = _split(server_key)
            trusted = anchors or pinned if int(usage) == 1 else b""
            certificate = X509Credentials(identity, secret, trusted, int(usage), pinned)
            return DtlsClientConfig(server_name=server_name, certificate=certificate)
        certificate = X509Credentials(identity, secret, server_key)
        return DtlsClientConfig(server_name=server_name, certificate=certificate)
    raise ValueError(f"security mode {mode} is not supported by this client")


_PEM_END = b"-----END CERTIFICATE-----"


def _split(server_key: bytes) -> tuple[bytes, bytes]:
    """The first certificate of /0/x/4 and the rest (PEM); one DER certificate has no rest."""
    if _PEM_END not in server_key:
        return server_key, b""
    first, _, rest = server_key.partition(_PEM_END)
    return first + _PEM_END + b"\n", rest.strip()


def credentials(
    psk: PskCredentials | None, certificate: X509Credentials | None, rpk: RpkCredentials | None = None
) -> dict[str, Any]:
    """The Security object's mode and keys for the given DTLS credentials (LwM2M-TS-Core 1.2 §E.1)."""
    if psk is not None:
        return {"mode": SecurityMode.PSK, "identity": psk.identity.encode(), "secret_key": psk.key}
    if certificate is not None:
        usage = certificate.certificate_usage
        return {
            "mode": SecurityMode.CERTIFICATE,
            "identity": certificate.certificate,
            "secret_key": certificate.private_key,
            "server_key": certificate.server_certificate if usage is not None else certificate.trusted,
            "certificate_usage": usage,
        }
    if rpk is not None:
        from lwm2m.transport.dtls.credentials import own_public_key

        try:
            own = own_public_key(rpk.private_key)  # the public half, as its DER SubjectPublicKeyInfo
        except ValueError as exc:
            raise ConfigError(f"rpk: {exc}") from None
        return {
            "mode": SecurityMode.RPK,
            "identity": own,
            "secret_key": rpk.private_key,
            "server_key": rpk.peer_public_keys[0] if rpk.peer_public_keys else b"",
        }
    return {}


class OscoreSequenceFile:
    """The client's OSCORE sender sequence numbers kept in a file, in ranges (RFC 8613 Appendix
    B.1.1): before a number of a new range is used, the range's end is written (atomically, and
    synced), and after a restart each context starts at the end written, so no nonce is used
    twice. One JSON object for every OSCORE instance of the device, by its path."""

    STEP = 256

    def __init__(self, path: str) -> None:
        self.path = path

    def _read(self) -> dict[str, int]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"the OSCORE sequence file {self.path}: {exc}") from None
        if not isinstance(data, dict) or not all(type(v) is int and v >= 0 for v in data.values()):
            raise ValueError(f"the OSCORE sequence file {self.path} is not an object of numbers")
        return data

    def start(self, key: str) -> int:
        return self._read().get(key, 0)

    def reserve(self, key: str, limit: int) -> bool:
        data = self._read()
        data[key] = max(limit, data.get(key, 0))
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".oscore-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True


def oscore_for(security: ObjectInstance, tree: Any, sequence_file: str | None = None) -> Any:
    """The OSCORE context (``lwm2m.coap.oscore.OscoreContext``) of a Security instance whose
    OSCORE Security Mode (/0/x/17) links to an OSCORE instance (/21/y, LwM2M-TS-Core 1.2 §E.5);
    None when it links to none. ValueError when the instance cannot make a context. With
    ``sequence_file`` its sender sequence numbers are stored there (``OscoreSequenceFile``),
    else kept in memory only."""
    link = security.get(Security.OSCORE)
    if not isinstance(link, ObjLink) or link.object_id != 21 or link.instance_id == 0xFFFF:
        return None
    instance = tree.instance(21, link.instance_id)
    if instance is None:
        raise ValueError(f"/0/{security.id}/17 links to /21/{link.instance_id}, which does not exist")
    from lwm2m.coap.oscore import OscoreConfig, OscoreContext  # needs the cryptography package

    def value(resource: int) -> bytes:
        v = instance.get(resource)
        return bytes(v) if isinstance(v, (bytes, bytearray)) else b""

    aead, hmac = instance.get(Oscore.AEAD), instance.get(Oscore.HMAC)
    if aead not in (None, AEAD_AES_CCM_16_64_128) or hmac not in (None, HKDF_SHA_256):
        raise ValueError(
            f"/21/{link.instance_id}: AEAD {aead} / HMAC {hmac}: only AES-CCM-16-64-128 (10) with"
            " HKDF SHA-256 (-10) is supported (RFC 8613 §3.2.1)"
        )
    context = instance.get(Oscore.ID_CONTEXT)
    try:
        config = OscoreConfig(
            value(Oscore.MASTER_SECRET),
            sender_id=value(Oscore.SENDER_ID),
            recipient_id=value(Oscore.RECIPIENT_ID),
            master_salt=value(Oscore.MASTER_SALT),
            id_context=bytes(context) if isinstance(context, (bytes, bytearray)) else None,
        )
    except ConfigError as exc:
        raise ValueError(f"/21/{link.instance_id}: {exc}") from None
    if sequence_file is None:
        return OscoreContext(config)
    from lwm2m.coap.oscore import SenderSequence

    store = OscoreSequenceFile(sequence_file)
    key = f"/21/{link.instance_id}"
    sequence = SenderSequence(
        store.start(key), reserve=lambda limit: store.reserve(key, limit), step=OscoreSequenceFile.STEP
    )
    return OscoreContext(config, sequence=sequence)
