"""libcoap's clients registering with our server over ECDHE-ECDSA: ``coap-client-openssl`` and
``coap-client-gnutls`` with X.509 test certificates (OpenSSL's DTLS and GnuTLS's), and
``coap-client-gnutls`` with a raw public key (RFC 7250). The identity rules hold as for PSK:
another endpoint's name gets 4.03. A client not installed is a skip.

coap-client exits 0 even when the request failed, so every test reads its output.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.helpers.certificates import CertificateAuthority, p256
from tests.helpers.libcoap import run_process

from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import RpkCredentials, X509Credentials

PEM = serialization.Encoding.PEM
CA = CertificateAuthority("libcoap test CA")
CA_PEM = CA.certificate.public_bytes(PEM)
SERVER = CA.issue("127.0.0.1", usage="server")
SENSOR = CA.issue("sensor-7", usage="client")
RPK_KEY = p256()


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian's libcoap3-bin)")
    return path


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    config = ServerConfig(
        port=0,
        coaps_port=0,
        certificate=X509Credentials(SERVER.cert_pem(), SERVER.key_pem(), CA_PEM),
        rpk=RpkCredentials(SERVER.key_pem()),
    )
    async with Server(config) as s:
        await s.security.put(SecurityInfo("sensor-7", x509=True))
        await s.security.put(SecurityInfo("sensor-8", x509=True))
        await s.security.put(SecurityInfo("tracker-1", rpk=spki_der(RPK_KEY.public_key())))
        yield s


def uri(server: Server, ep: str) -> str:
    return f"coaps://127.0.0.1:{server.coaps_port}/rd?ep={ep}&lt=300&lwm2m=1.1&b=U"


X509_CLIENTS = pytest.mark.parametrize("client", ["coap-client-openssl", "coap-client-gnutls"])


async def register_x509(server: Server, tmp_path: Path, ep: str, client: str = "coap-client-openssl") -> str:
    (tmp_path / "client.pem").write_bytes(SENSOR.cert_pem())
    (tmp_path / "client.key").write_bytes(SENSOR.key_pem())
    (tmp_path / "ca.pem").write_bytes(CA_PEM)
    files = [
        "-c",
        str(tmp_path / "client.pem"),
        "-j",
        str(tmp_path / "client.key"),
        "-C",
        str(tmp_path / "ca.pem"),
    ]
    result = await run_process(
        binary(client),
        "-m",
        "post",
        *files,
        "-t",
        "40",
        "-e",
        "</3/0>",
        "-B",
        "5",
        uri(server, ep),
    )
    assert result.returncode == 0
    return result.stdout + result.stderr


@X509_CLIENTS
async def test_coap_client_registers_with_an_x509_certificate(
    server: Server, tmp_path: Path, client: str
) -> None:
    output = await register_x509(server, tmp_path, "sensor-7", client)
    assert output.strip() == "", output  # 2.01 Created has no payload: nothing printed
    (registration,) = await server.registrations()
    assert registration.endpoint == "sensor-7"  # the certificate's CN was the endpoint's (else 4.03)
    assert server.dtls is not None
    assert server.dtls.dtls.counters["handshakes_done"] == 1


@X509_CLIENTS
async def test_coap_client_gets_403_for_another_endpoint(server: Server, tmp_path: Path, client: str) -> None:
    output = await register_x509(server, tmp_path, "sensor-8", client)
    assert "4.03" in output, output
    assert await server.registrations() == []


async def register_rpk(server: Server, tmp_path: Path, key: ec.EllipticCurvePrivateKey, ep: str) -> str:
    # libcoap wants one PEM file holding the key pair (-M).
    rpk = tmp_path / "rpk.pem"
    rpk.write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    argv = ["-m", "post", "-M", str(rpk), "-t", "40", "-e", "</3/0>", "-B", "5", uri(server, ep)]
    result = await run_process(binary("coap-client-gnutls"), *argv)
    assert result.returncode == 0
    return result.stdout + result.stderr


async def test_coap_client_gnutls_registers_with_a_raw_public_key(server: Server, tmp_path: Path) -> None:
    output = await register_rpk(server, tmp_path, RPK_KEY, "tracker-1")
    assert output.strip() == "", output
    (registration,) = await server.registrations()
    assert registration.endpoint == "tracker-1"  # the key was the store's for it (else 4.03)
    assert server.dtls is not None
    assert server.dtls.dtls.counters["handshakes_done"] == 1


async def test_coap_client_gnutls_with_another_key_gets_403(server: Server, tmp_path: Path) -> None:
    output = await register_rpk(server, tmp_path, p256(), "tracker-1")
    assert "4.03" in output, output
    assert await server.registrations() == []
