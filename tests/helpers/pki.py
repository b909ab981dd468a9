"""DTLS test material: keys, a certificate authority, in-memory DTLS layers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.events import RequestReceived, ResponseReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.dtls import (
    DtlsClientConfig,
    DtlsLayer,
    DtlsServerConfig,
    PeerIdentity,
    PskCredentials,
    RpkCredentials,
    SessionLimits,
    X509Credentials,
)
from lwm2m.transport.dtls.backend import Backend
from lwm2m.transport.dtls.engine_backend import EngineBackend

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
OTHER_KEY = bytes.fromhex("ffeeddccbbaa99887766554433221100")


def get(path: str) -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path)


def psk_server(keys: dict[str, bytes], limits: SessionLimits | None = None) -> DtlsServerConfig:
    return DtlsServerConfig(psk_lookup=keys.get, limits=limits or SessionLimits())


def psk_client(identity: str, key: bytes, **kw: Any) -> DtlsClientConfig:
    return DtlsClientConfig(psk=PskCredentials(identity, key), **kw)


# A small PKI (made with ``cryptography``: a CA with the extensions RFC 5280 path validation
# asks for, end-entity certificates "O=lwm2m tests, CN=<name>").
@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    issue: Callable[[str], X509Credentials]  # credentials for a common name, trusting the CA


def make_pki(ca_name: str = "Test CA") -> Pki:
    from cryptography.hazmat.primitives import serialization
    from tests.helpers.certificates import CertificateAuthority

    ca = CertificateAuthority(ca_name)
    ca_pem = ca.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(common_name: str) -> X509Credentials:
        issued = ca.issue(common_name, usage="both")  # for a client or a server alike
        return X509Credentials(issued.cert_pem(), issued.key_pem(), ca_pem)

    return Pki(ca_pem, issue)


SERVER = ("127.0.0.1", 5999)


class Wire:
    """DTLS layers joined in memory: ``pump`` carries datagrams until none is left."""

    def __init__(self) -> None:
        self.nodes: dict[Any, DtlsLayer] = {}
        self.drop: Callable[[bytes, Any, Any], bool] = lambda data, src, dst: False
        self.sent: list[tuple[bytes, Any, Any]] = []

    def add(self, addr: Any, layer: DtlsLayer) -> DtlsLayer:
        self.nodes[addr] = layer
        return layer

    def pump(self, now: float | None = None) -> None:
        for _ in range(100):
            moved = False
            for src, layer in list(self.nodes.items()):
                t = time.monotonic() if now is None else now
                for data, dst in layer.datagrams_to_send(t):
                    self.sent.append((data, src, dst))
                    moved = True
                    if dst in self.nodes and not self.drop(data, src, dst):
                        self.nodes[dst].receive_datagram(data, src, t)
                for layer2 in self.nodes.values():
                    answer_requests(layer2, t)
            if not moved:
                return

    def tick(self, now: float) -> None:
        for layer in self.nodes.values():
            due = layer.get_timer()
            if due is not None and due <= now:
                layer.handle_timer(now)
        self.pump(now)


def answer_requests(layer: DtlsLayer, now: float) -> None:
    """Serve every pending request with the sender's identity; keep the other events."""
    kept = []
    while (event := layer.next_event()) is not None:
        if isinstance(event, RequestReceived):
            identity = layer.peer_identity(event.addr)
            reply = Message.build(Type.ACK, Code.CONTENT, payload=str(identity).encode())
            layer.respond(event, reply, now)
        else:
            kept.append(event)
    layer.seen = [*getattr(layer, "seen", []), *kept]  # type: ignore[attr-defined]


def events_of(layer: DtlsLayer, kind: type) -> list[Any]:
    """The events of ``kind`` that ``answer_requests`` kept for ``layer``."""
    return [e for e in getattr(layer, "seen", []) if isinstance(e, kind)]


def server_layer(
    keys: dict[str, bytes], limits: SessionLimits | None = None, backend: Backend | None = None
) -> DtlsLayer:
    """A PSK server layer, on our engine unless ``backend`` says otherwise."""
    config = psk_server(keys, limits)
    factory = (backend or EngineBackend()).server(config)
    return DtlsLayer(Endpoint(), server=factory, limits=config.limits)


def client_layer(
    identity: str, key: bytes, limits: SessionLimits | None = None, backend: Backend | None = None
) -> DtlsLayer:
    config = psk_client(identity, key, limits=limits or SessionLimits())
    factory = (backend or EngineBackend()).client(config)
    return DtlsLayer(Endpoint(), client=factory, limits=config.limits)


def layer_of(config: DtlsServerConfig | DtlsClientConfig) -> DtlsLayer:
    """A server or client layer on our engine for ``config`` (PSK, certificate or RPK)."""
    if isinstance(config, DtlsServerConfig):
        return DtlsLayer(Endpoint(), server=EngineBackend().server(config), limits=config.limits)
    return DtlsLayer(Endpoint(), client=EngineBackend().client(config), limits=config.limits)


def certificate_configs(
    kind: str, limits: SessionLimits | None = None
) -> tuple[DtlsServerConfig, DtlsClientConfig, str]:
    """A server and a client configuration authenticating with X.509 certificates (``kind``
    "x509") or raw public keys ("rpk"), each with new key pairs, and what the server's
    ``peer_identity`` of that client prints."""
    from cryptography.hazmat.primitives import serialization
    from tests.helpers.certificates import p256

    from lwm2m.tls.certificates import spki_der

    limits = limits or SessionLimits()
    if kind == "x509":
        pki = make_pki()
        server = DtlsServerConfig(certificate=pki.issue("lwm2m-server"), limits=limits)
        return server, DtlsClientConfig(certificate=pki.issue("dev-x509"), limits=limits), "x509:dev-x509"
    server_key, client_key = p256(), p256()
    pem = serialization.Encoding.PEM

    def private(key: Any) -> bytes:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    server_public = server_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    server = DtlsServerConfig(rpk=RpkCredentials(private(server_key)), limits=limits)
    client = DtlsClientConfig(rpk=RpkCredentials(private(client_key), (server_public,)), limits=limits)
    return server, client, str(PeerIdentity("rpk", spki_der(client_key.public_key()).hex()))


def mbedtls_hello(identity: str = "dev-1", key: bytes = KEY) -> tuple[Any, bytes]:
    """A ClientHello (no cookie) from Mbed TLS, a peer we did not write, and its connection."""
    from tests.helpers.mbedtls_backend import MbedtlsBackend

    conn = MbedtlsBackend().client(psk_client(identity, key)).connect(time.monotonic())
    conn.handshake(time.monotonic())
    return conn, b"".join(conn.outgoing())


def ask(wire: Wire, client_addr: Any, now: float | None = None) -> Message | None:
    """A GET from the client at ``client_addr`` to SERVER over the wire; its response, if any."""
    layer = wire.nodes[client_addr]
    t = time.monotonic() if now is None else now
    token = layer.request(get("/who"), SERVER, t)
    wire.pump(now)
    for event in layer.seen:  # type: ignore[attr-defined]
        if isinstance(event, ResponseReceived) and event.token == token:
            return event.response
    return None
