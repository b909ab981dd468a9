"""Full DTLS 1.2 handshakes per second of our sans-IO engine in memory, both roles in this one
process (so each figure pays for the client and the server): ECDHE-ECDSA with CCM_8 and GCM,
with X.509 (a one-level chain, checked by ``cryptography.x509.verification`` on both sides) and
with raw public keys (RFC 7250), beside PSK with CCM_8. Every handshake includes the cookie
exchange and Connection ID, as a server with a ``CookieChecker`` runs it.

    python bench/tls_ecdsa.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lwm2m.tls import (
    CertificateCredentials,
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
    DtlsRole,
    spki_der,
)
from lwm2m.tls.connection import TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256

NOW = dt.datetime.now(dt.UTC)
HOST = "lwm2m.example"


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    usage: str,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]) if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
    )
    if issuer is None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key())
        builder = builder.add_extension(authority, critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        if usage == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _configs() -> dict[str, tuple[ConnectionConfig, ConnectionConfig]]:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("Bench CA", ca_key, None, "")
    server_cert = _certificate(HOST, server_key, ("Bench CA", ca_key), "server")
    client_cert = _certificate("urn:imei:490154203237518", client_key, ("Bench CA", ca_key), "client")
    checker = CookieChecker(b"a cookie secret of 32 bytes ....")
    x509_server = CertificateCredentials(server_key, (server_cert,), trust_anchors=(ca,))
    x509_client = CertificateCredentials(client_key, (client_cert,), trust_anchors=(ca,), expected_name=HOST)
    rpk_server = CertificateCredentials(
        server_key, raw_public_key=True, peer_public_keys=frozenset({spki_der(client_key.public_key())})
    )
    rpk_client = CertificateCredentials(
        client_key, raw_public_key=True, peer_public_keys=frozenset({spki_der(server_key.public_key())})
    )
    out: dict[str, tuple[ConnectionConfig, ConnectionConfig]] = {}
    psk = bytes(range(16))
    out["PSK CCM_8"] = (
        ConnectionConfig(psk_identity=b"bench", psk=psk),
        ConnectionConfig(psk_lookup={b"bench": psk}.get, cookie_checker=checker),
    )
    for suite_name, suite in (
        ("CCM_8", TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
        ("GCM", TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ):
        for kind, client, server in (("X.509", x509_client, x509_server), ("RPK", rpk_client, rpk_server)):
            out[f"ECDHE-ECDSA {suite_name} {kind}"] = (
                ConnectionConfig(certificate=client, ecdsa_suites=(suite,)),
                ConnectionConfig(certificate=server, cookie_checker=checker, ecdsa_suites=(suite,)),
            )
    return out


def handshake(client_config: ConnectionConfig, server_config: ConnectionConfig) -> None:
    client = DtlsConnection(DtlsRole.CLIENT, client_config, 0.0)
    server = DtlsConnection(DtlsRole.SERVER, server_config, 0.0, address=b"192.0.2.7:5684")
    for _ in range(10):
        moved = False
        for source, sink in ((client, server), (server, client)):
            for datagram in source.datagrams_to_send(0.0):
                moved = True
                sink.receive_datagram(datagram, 0.0)
        if not moved:
            break
    if not (client.established and server.established):
        raise SystemExit(f"a handshake failed: {client.next_event()} {server.next_event()}")


def rate(run: Callable[[], None], seconds: float) -> float:
    run()  # warm-up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        run()
        done += 1
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    options = parser.parse_args()
    print("full handshakes/s, our engine, in memory, client and server in one process")
    for name, (client, server) in _configs().items():
        figure = rate(lambda c=client, s=server: handshake(c, s), options.seconds)  # type: ignore[misc]
        print(f"  {name:28} {figure:8.0f}")


if __name__ == "__main__":
    main()
