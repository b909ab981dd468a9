"""The client's raw public key and certificate usage settings (LwM2M-TS-Core 1.2 §E.1): the
Security object in RPK mode (/0/x/2 = 1, /0/x/3 own public key, /0/x/4 the server's, /0/x/5
the private key) makes the DTLS configuration, /0/x/15 reaches it for X.509, and a client
made with ``ClientConfig(rpk=...)`` registers with our server over RFC 7250 keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.helpers.certificates import CertificateAuthority, p256
from tests.helpers.client import temperature
from tests.helpers.events import next_event

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import credentials, dtls_for, unusable
from lwm2m.client.core import ServerAccount
from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.coap.numbers import Code
from lwm2m.errors import ConfigError
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import PskCredentials, RpkCredentials, X509Credentials

SERVER_KEY, DEVICE_KEY = p256(), p256()
DER = serialization.Encoding.DER


def private_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return spki_der(key.public_key())


def test_the_security_object_in_rpk_mode_makes_the_dtls_configuration() -> None:
    security = Security(
        0,
        uri="coaps://127.0.0.1:5684",
        mode=SecurityMode.RPK,
        identity=public_der(DEVICE_KEY),
        server_key=public_der(SERVER_KEY),
        secret_key=private_der(DEVICE_KEY),
    )
    config = dtls_for(security)
    assert config is not None and config.rpk is not None and config.psk is None
    assert config.rpk.private_key == private_der(DEVICE_KEY)
    assert config.rpk.peer_public_keys == (public_der(SERVER_KEY),)
    assert unusable(security) is None
    # Without the server's key (or the private key) the account cannot be used.
    for missing in (Security.SERVER_KEY, Security.SECRET_KEY):
        values = {Security.SERVER_KEY: public_der(SERVER_KEY), Security.SECRET_KEY: private_der(DEVICE_KEY)}
        values[missing] = b""
        broken = Security(
            0,
            uri="coaps://127.0.0.1:5684",
            mode=SecurityMode.RPK,
            server_key=values[Security.SERVER_KEY],
            secret_key=values[Security.SECRET_KEY],
        )
        assert unusable(broken) is not None
        with pytest.raises(ValueError):
            dtls_for(broken)


def test_rpk_credentials_fill_the_security_object_and_come_back() -> None:
    pem = DEVICE_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keys = credentials(None, None, RpkCredentials(pem, (public_der(SERVER_KEY),)))
    assert keys["mode"] == SecurityMode.RPK
    assert keys["identity"] == public_der(DEVICE_KEY)  # /0/x/3: our public key, DER
    assert keys["server_key"] == public_der(SERVER_KEY)
    config = dtls_for(Security(0, uri="coaps://h", **keys))
    assert config is not None and config.rpk == RpkCredentials(pem, (public_der(SERVER_KEY),))


@pytest.mark.parametrize("usage", [1, 3])
def test_certificate_usage_reaches_the_dtls_configuration(usage: int) -> None:
    ca = CertificateAuthority("Test CA")
    server = ca.issue("lwm2m-server", usage="server")
    device = ca.issue("sensor-7")
    ca_pem = ca.certificate.public_bytes(serialization.Encoding.PEM)
    bundle = server.cert_pem() + ca_pem  # /0/x/4: the server's certificate, then its authority
    security = Security(
        0,
        uri="coaps://h",
        mode=SecurityMode.CERTIFICATE,
        identity=device.cert_pem(),
        secret_key=device.key_pem(),
        server_key=bundle,
        certificate_usage=usage,
    )
    config = dtls_for(security)
    assert config is not None and config.certificate is not None
    x509 = config.certificate
    assert x509.certificate_usage == usage
    assert x509.server_certificate.strip() == server.cert_pem().strip()
    assert x509.trusted.strip() == (ca_pem.strip() if usage == 1 else b"")
    # Back into a Security object: the pinned certificate is /0/x/4, the usage /0/x/15.
    keys = credentials(None, x509)
    assert keys["certificate_usage"] == usage and keys["server_key"] == x509.server_certificate


def test_without_a_usage_or_with_2_the_server_key_holds_the_authorities() -> None:
    for usage in (None, 2, 0):
        security = Security(
            0,
            uri="coaps://h",
            mode=SecurityMode.CERTIFICATE,
            identity=b"c",
            secret_key=b"k",
            server_key=b"ca",
        )
        if usage is not None:
            security.set(Security.CERTIFICATE_USAGE, usage)
        config = dtls_for(security)
        assert config is not None and config.certificate == X509Credentials(b"c", b"k", b"ca")


def test_rpk_goes_alone_and_with_the_server_key() -> None:
    rpk = RpkCredentials(private_der(DEVICE_KEY), (public_der(SERVER_KEY),))
    with pytest.raises(ConfigError, match="psk and rpk"):
        ClientConfig(rpk=rpk, psk=PskCredentials("a", b"k"))
    with pytest.raises(ConfigError, match="server's public key"):
        ClientConfig(rpk=RpkCredentials(private_der(DEVICE_KEY)))
    with pytest.raises(ConfigError, match="coaps"):
        Client("x", "coap://127.0.0.1:5683", config=ClientConfig(rpk=rpk))


async def test_an_rpk_client_registers_and_is_read() -> None:
    server_rpk = RpkCredentials(private_der(SERVER_KEY))
    async with Server(ServerConfig(port=0, coaps_port=0, rpk=server_rpk)) as server:
        await server.security.put(SecurityInfo("rpk-1", rpk=public_der(DEVICE_KEY)))
        events = server.events()
        assert server.coaps_uri is not None
        rpk = RpkCredentials(private_der(DEVICE_KEY), (public_der(SERVER_KEY),))
        async with Client("rpk-1", server.coaps_uri, [temperature()], config=ClientConfig(rpk=rpk)) as client:
            registration = (await next_event(events, ClientRegistered)).registration
            assert registration.endpoint == "rpk-1"
            answer = await server.read("rpk-1", "/3303/0/5700", timeout=5)
            assert answer.code == Code.CONTENT
            security = client.tree.instances(0)[0]
            assert security.get(Security.MODE) == SecurityMode.RPK
            assert security.get(Security.IDENTITY) == public_der(DEVICE_KEY)


async def test_a_security_object_with_usage_3_registers_to_the_pinned_server() -> None:
    """Factory bootstrap: the Security object pins the server's certificate (/0/x/4, DER) with
    certificate usage 3 (/0/x/15) and names no authority; the client registers over X.509."""
    ca = CertificateAuthority("Test CA")
    ca_pem = ca.certificate.public_bytes(serialization.Encoding.PEM)
    server_cert = ca.issue("lwm2m-server", usage="server")
    device = ca.issue("usage-3", usage="client")
    certificate = X509Credentials(server_cert.cert_pem(), server_cert.key_pem(), ca_pem)
    async with Server(ServerConfig(port=0, coaps_port=0, certificate=certificate)) as server:
        await server.security.put(SecurityInfo("usage-3", x509=True))
        events = server.events()
        assert server.coaps_uri is not None
        security = Security(
            0,
            uri=server.coaps_uri,
            mode=SecurityMode.CERTIFICATE,
            identity=device.certificate.public_bytes(DER),
            secret_key=device.key.private_bytes(
                DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            server_key=server_cert.certificate.public_bytes(DER),
            certificate_usage=3,
        )
        account = ServerAccount(0, short_server_id=1, lifetime=60)
        async with Client("usage-3", None, [security, account, temperature()]):
            registration = (await next_event(events, ClientRegistered)).registration
            assert registration.endpoint == "usage-3"
