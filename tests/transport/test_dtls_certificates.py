"""Certificates and raw public keys through the transport on our engine (``credentials.py``,
``engine_backend.py``): RFC 7250 keys both ways, one server for PSK, X.509 and RPK clients, the
LwM2M certificate usages 1 and 3, files that cannot be used, and Mbed TLS (python-mbedtls) as
an ECDHE-ECDSA X.509 peer on either side."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.certificates import CertificateAuthority, p256
from tests.helpers.mbedtls_backend import MbedtlsBackend
from tests.helpers.pki import KEY, get, make_pki, psk_client

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import DtlsHandshakeError
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import (
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    RpkCredentials,
    X509Credentials,
    open_dtls_endpoint,
)
from lwm2m.transport.dtls.credentials import load_certificates, load_private_key, load_public_key
from lwm2m.transport.dtls.engine_backend import EngineBackend

PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def private_der_sec1(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(PEM, SPKI)


def spki_hex(key: ec.EllipticCurvePrivateKey) -> str:
    return spki_der(key.public_key()).hex()


class Recorder:
    """A handler that answers 2.05 and notes who asked."""

    def __init__(self) -> None:
        self.seen: list[PeerIdentity | None] = []
        self.endpoint: Any = None

    def __call__(self, event: RequestReceived) -> Message:
        self.seen.append(self.endpoint.peer_identity(event.addr))
        return Message(Type.ACK, Code.CONTENT)


SERVER_KEY, CLIENT_KEY = p256(), p256()
CA_PEM = CertificateAuthority("Fuzz CA").certificate.public_bytes(PEM)


# --- raw public keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suite", [CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8, CipherSuite.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
)
async def test_raw_public_keys_both_ways(suite: CipherSuite) -> None:
    recorder = Recorder()
    # The server lists no client keys: it takes any client that proves its key, and says which.
    server_config = DtlsServerConfig(rpk=RpkCredentials(private_pem(SERVER_KEY)))
    # DER in SEC 1 form for the client's private key, PEM for the server's public key.
    rpk = RpkCredentials(private_der_sec1(CLIENT_KEY), (public_pem(SERVER_KEY),))
    async with (
        open_dtls_endpoint(server=server_config, handler=recorder) as server,
        open_dtls_endpoint(client=DtlsClientConfig(rpk=rpk, ciphers=(suite,))) as client,
    ):
        recorder.endpoint = server
        identity = await client.connect(server.addresses[0], timeout=5)
        assert identity == PeerIdentity("rpk", spki_hex(SERVER_KEY))
        assert (await client.request(get("/x"), server.addresses[0], timeout=5)).code == Code.CONTENT
        assert recorder.seen == [PeerIdentity("rpk", spki_hex(CLIENT_KEY))]
        (info,) = server.sessions()
        assert info.cipher_suite == suite
        assert info.identity == PeerIdentity("rpk", spki_hex(CLIENT_KEY))


async def test_a_client_refuses_a_server_with_another_key() -> None:
    server_config = DtlsServerConfig(rpk=RpkCredentials(private_pem(p256())))
    rpk = RpkCredentials(private_pem(CLIENT_KEY), (public_pem(SERVER_KEY),))
    async with (
        open_dtls_endpoint(server=server_config) as server,
        open_dtls_endpoint(client=DtlsClientConfig(rpk=rpk)) as client,
    ):
        with pytest.raises(DtlsHandshakeError):
            await client.connect(server.addresses[0], timeout=5)
        assert server.sessions() == []


async def test_a_server_with_a_list_of_client_keys_takes_only_those() -> None:
    server_config = DtlsServerConfig(rpk=RpkCredentials(private_pem(SERVER_KEY), (public_pem(CLIENT_KEY),)))
    known = RpkCredentials(private_pem(CLIENT_KEY), (public_pem(SERVER_KEY),))
    stranger = RpkCredentials(private_pem(p256()), (public_pem(SERVER_KEY),))
    async with open_dtls_endpoint(server=server_config) as server:
        async with open_dtls_endpoint(client=DtlsClientConfig(rpk=known)) as client:
            assert await client.connect(server.addresses[0], timeout=5) is not None
        async with open_dtls_endpoint(client=DtlsClientConfig(rpk=stranger)) as client:
            with pytest.raises(DtlsHandshakeError):
                await client.connect(server.addresses[0], timeout=5)


# --- one server for PSK, X.509 and raw public keys -------------------------------------------------


async def test_one_server_serves_psk_x509_and_rpk_clients() -> None:
    ca = CertificateAuthority("Test CA")
    ca_pem = ca.certificate.public_bytes(PEM)
    issued = ca.issue("lwm2m-server", key=SERVER_KEY)
    server_config = DtlsServerConfig(
        psk_lookup={"dev-1": KEY}.get,
        certificate=X509Credentials(issued.cert_pem(), issued.key_pem(), ca_pem),
        rpk=RpkCredentials(private_pem(SERVER_KEY)),  # the certificate's key pair, bare
    )
    recorder = Recorder()
    sensor = ca.issue("sensor-7")
    clients = {
        "psk": psk_client("dev-1", KEY),
        "x509": DtlsClientConfig(certificate=X509Credentials(sensor.cert_pem(), sensor.key_pem(), ca_pem)),
        "rpk": DtlsClientConfig(rpk=RpkCredentials(private_pem(CLIENT_KEY), (public_pem(SERVER_KEY),))),
    }
    async with open_dtls_endpoint(server=server_config, handler=recorder) as server:
        recorder.endpoint = server
        for config in clients.values():
            async with open_dtls_endpoint(client=config) as client:
                assert (await client.request(get("/x"), server.addresses[0], timeout=5)).code == Code.CONTENT
    assert [(i.kind, i.name) for i in recorder.seen if i is not None] == [
        ("psk", "dev-1"),
        ("x509", "sensor-7"),
        ("rpk", spki_hex(CLIENT_KEY)),
    ]


def test_a_server_raw_public_key_must_be_its_certificate_key() -> None:
    pki = make_pki()
    with pytest.raises(ValueError, match="certificate's key"):
        EngineBackend().server(
            DtlsServerConfig(certificate=pki.issue("lwm2m-server"), rpk=RpkCredentials(private_pem(p256())))
        )


# --- LwM2M certificate usage (/0/x/15) -------------------------------------------------------------


@pytest.mark.parametrize("usage", [1, 3])
async def test_certificate_usage_pins_the_server_certificate(usage: int) -> None:
    ca = CertificateAuthority("Test CA")
    ca_pem = ca.certificate.public_bytes(PEM)
    server_cert = ca.issue("lwm2m-server", usage="server")
    other_cert = ca.issue("lwm2m-server", usage="server")
    device = ca.issue("sensor-7")
    server_config = DtlsServerConfig(
        certificate=X509Credentials(server_cert.cert_pem(), server_cert.key_pem(), ca_pem)
    )

    def client(pinned: bytes, trusted: bytes) -> DtlsClientConfig:
        credentials = X509Credentials(device.cert_pem(), device.key_pem(), trusted, usage, pinned)
        return DtlsClientConfig(certificate=credentials)

    # Usage 3 needs no authority at all; usage 1 also validates the chain.
    trusted = ca_pem if usage == 1 else b""
    pinned_der = server_cert.certificate.public_bytes(DER)
    async with open_dtls_endpoint(server=server_config) as server:
        async with open_dtls_endpoint(client=client(pinned_der, trusted)) as endpoint:
            identity = await endpoint.connect(server.addresses[0], timeout=5)
            assert identity is not None and identity.name == "lwm2m-server"
        # Another certificate of the same authority and name is not the pinned one.
        async with open_dtls_endpoint(client=client(other_cert.cert_pem(), trusted)) as endpoint:
            with pytest.raises(DtlsHandshakeError):
                await endpoint.connect(server.addresses[0], timeout=5)
    if usage == 1:  # pinned, but chaining to nothing the client trusts
        stranger = CertificateAuthority("Stranger CA").certificate.public_bytes(PEM)
        async with (
            open_dtls_endpoint(server=server_config) as server,
            open_dtls_endpoint(client=client(pinned_der, stranger)) as endpoint,
        ):
            with pytest.raises(DtlsHandshakeError):
                await endpoint.connect(server.addresses[0], timeout=5)


def test_certificate_usage_is_checked_when_configured() -> None:
    pki = make_pki()
    mine = pki.issue("sensor-7")
    for usage, pinned in ((2, b"x"), (0, b"x"), (1, b""), (3, b"")):
        with pytest.raises(ValueError):
            X509Credentials(mine.certificate, mine.private_key, b"", usage, pinned)


# --- files that cannot be used ------------------------------------------------------------------------


def test_unusable_keys_and_certificates_fail_when_the_endpoint_is_made() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    for data in (b"", b"garbage", private_pem(p384)):
        with pytest.raises(ValueError):
            load_private_key(data)
    for data in (
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        p384.public_key().public_bytes(PEM, SPKI),
    ):
        with pytest.raises(ValueError):
            load_public_key(data)
    with pytest.raises(ValueError):
        load_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    # The same key in every form gives the same DER SubjectPublicKeyInfo.
    der = spki_der(SERVER_KEY.public_key())
    assert load_public_key(public_pem(SERVER_KEY)) == der
    assert load_public_key(SERVER_KEY.public_key().public_bytes(DER, SPKI)) == der
    assert load_public_key(private_pem(SERVER_KEY)) == der
    with pytest.raises(ValueError):
        EngineBackend().server(DtlsServerConfig(rpk=RpkCredentials(private_pem(p384))))
    with pytest.raises(ValueError):
        EngineBackend().client(DtlsClientConfig(rpk=RpkCredentials(private_pem(CLIENT_KEY), (b"nonsense",))))
    with pytest.raises(ValueError, match="server's public key"):
        DtlsClientConfig(rpk=RpkCredentials(private_pem(CLIENT_KEY)))
    with pytest.raises(ValueError):
        DtlsClientConfig(
            rpk=RpkCredentials(private_pem(CLIENT_KEY), (public_pem(SERVER_KEY),)),
            psk=psk_client("dev-1", KEY).psk,
        )


def test_a_raw_public_key_repr_hides_the_private_key() -> None:
    key = private_pem(CLIENT_KEY)
    assert key.decode() not in repr(RpkCredentials(key, (public_pem(SERVER_KEY),)))
    assert "private_key" not in repr(RpkCredentials(key))


# --- Mbed TLS as the peer: ECDHE-ECDSA with X.509 -------------------------------------------------------


@pytest.mark.parametrize(
    "suite", [CipherSuite.ECDHE_ECDSA_WITH_AES_128_CCM_8, CipherSuite.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
)
async def test_mbedtls_x509_client_against_our_server(suite: CipherSuite) -> None:
    pytest.importorskip("mbedtls.tls")
    pki = make_pki()
    recorder = Recorder()
    server_config = DtlsServerConfig(certificate=pki.issue("lwm2m-server"))
    client_config = DtlsClientConfig(certificate=pki.issue("sensor-7"), ciphers=(suite,))
    async with (
        open_dtls_endpoint(server=server_config, handler=recorder) as server,
        open_dtls_endpoint(client=client_config, backend=MbedtlsBackend()) as client,
    ):
        recorder.endpoint = server
        assert (await client.request(get("/x"), server.addresses[0], timeout=5)).code == Code.CONTENT
        (seen,) = recorder.seen
        assert seen is not None and (seen.kind, seen.name) == ("x509", "sensor-7")
        assert server.sessions()[0].cipher_suite == suite


async def test_our_x509_client_against_an_mbedtls_server() -> None:
    pytest.importorskip("mbedtls.tls")
    pki = make_pki()
    server_config = DtlsServerConfig(certificate=pki.issue("lwm2m-server"))
    answer = lambda e: Message(Type.ACK, Code.CONTENT)  # noqa: E731
    async with (
        open_dtls_endpoint(server=server_config, handler=answer, backend=MbedtlsBackend()) as server,
        open_dtls_endpoint(client=DtlsClientConfig(certificate=pki.issue("sensor-7"))) as client,
    ):
        identity = await client.connect(server.addresses[0], timeout=5)
        assert identity is not None and (identity.kind, identity.name) == ("x509", "lwm2m-server")
        assert "O=lwm2m tests" in identity.subject
        assert (await client.request(get("/x"), server.addresses[0], timeout=5)).code == Code.CONTENT


# --- hostile files: the loaders raise ValueError and nothing else --------------------------------------

_PEM_ARMOUR = st.sampled_from(
    [b"", b"-----BEGIN PUBLIC KEY-----\n", b"-----BEGIN PRIVATE KEY-----\n", b"-----BEGIN CERTIFICATE-----\n"]
)


@settings(max_examples=300, deadline=None)
@given(armour=_PEM_ARMOUR, body=st.binary(max_size=300), cut=st.integers(0, 200))
def test_the_loaders_take_any_bytes(armour: bytes, body: bytes, cut: int) -> None:
    # Arbitrary bytes, PEM armour around them, and truncations of real DER and PEM.
    real = [
        spki_der(SERVER_KEY.public_key()),
        private_der_sec1(CLIENT_KEY),
        private_pem(CLIENT_KEY),
        CA_PEM,
    ]
    for data in (armour + body + armour.replace(b"BEGIN", b"END"), *(r[:cut] + body[:8] for r in real)):
        for loader in (load_private_key, load_public_key, load_certificates):
            with contextlib.suppress(ValueError):  # anything else fails the test
                loader(data)


async def test_a_client_of_a_kind_the_server_does_not_take_is_refused() -> None:
    """An RPK client of an X.509-only server, an X.509 client of an RPK-only server: each
    handshake fails (RFC 7250 §4: no certificate type in common), and no session is kept."""
    pki = make_pki()
    rpk_client = DtlsClientConfig(rpk=RpkCredentials(private_pem(CLIENT_KEY), (public_pem(SERVER_KEY),)))
    x509_only = DtlsServerConfig(certificate=pki.issue("lwm2m-server"))
    rpk_only = DtlsServerConfig(rpk=RpkCredentials(private_pem(SERVER_KEY)))
    for server_config, client_config in (
        (x509_only, rpk_client),
        (rpk_only, DtlsClientConfig(certificate=pki.issue("c"))),
    ):
        async with (
            open_dtls_endpoint(server=server_config) as server,
            open_dtls_endpoint(client=client_config) as client,
        ):
            with pytest.raises(DtlsHandshakeError):
                await client.connect(server.addresses[0], timeout=5)
            assert server.sessions() == []
