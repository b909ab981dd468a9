"""Raw public key clients (RFC 7250) against the server over real loopback sockets: the server
takes any client that proves its key in the handshake, and the registration check then decides
with the security store (LwM2M-TS-Core 1.2 §7.1), with the 4.03 rules of PSK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.helpers.certificates import p256
from tests.helpers.pki import KEY
from tests.helpers.security import coaps, deregister, psk, update
from tests.helpers.server import Device, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import ConfigError
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import DtlsClientConfig, RpkCredentials, open_dtls_endpoint
from lwm2m.transport.udp import open_udp_endpoint

SERVER_KEY, TRACKER_1, TRACKER_2, STRANGER = p256(), p256(), p256(), p256()


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def rpk_client(key: ec.EllipticCurvePrivateKey) -> DtlsClientConfig:
    server_public = SERVER_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DtlsClientConfig(rpk=RpkCredentials(pem(key), (server_public,)))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server(ServerConfig(port=0, coaps_port=0, rpk=RpkCredentials(pem(SERVER_KEY)))) as s:
        await s.security.put(SecurityInfo("tracker-1", rpk=spki_der(TRACKER_1.public_key())))
        await s.security.put(SecurityInfo("tracker-2", rpk=spki_der(TRACKER_2.public_key())))
        await s.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        yield s


async def test_the_key_of_the_entry_registers_and_is_reached(server: Server) -> None:
    async with open_dtls_endpoint(client=rpk_client(TRACKER_1), handler=Device()) as client:
        created = await client.request(register("tracker-1"), coaps(server), timeout=5)
        assert created.code == Code.CREATED
        response = await server.read("tracker-1", "/3/0/0", timeout=5)
        assert response.success
        location = created.location_path
        assert (await client.request(update(location), coaps(server), timeout=5)).code == Code.CHANGED
        assert (await client.request(deregister(location), coaps(server), timeout=5)).code == Code.DELETED


async def test_another_endpoint_an_unknown_key_and_plain_coap_get_4_03(server: Server) -> None:
    async with open_dtls_endpoint(client=rpk_client(TRACKER_1)) as client:
        refused = await client.request(register("tracker-2"), coaps(server), timeout=5)
        assert refused.code == Code.FORBIDDEN
        assert (await client.request(register("dev-1"), coaps(server), timeout=5)).code == Code.FORBIDDEN
    # A key no entry holds shakes hands (it proved its key) but registers as nobody.
    async with open_dtls_endpoint(client=rpk_client(STRANGER)) as client:
        assert (await client.request(register("tracker-1"), coaps(server), timeout=5)).code == Code.FORBIDDEN
    async with open_udp_endpoint() as plain:
        assert server.port
        refused = await plain.request(register("tracker-1"), ("127.0.0.1", server.port), timeout=5)
        assert refused.code == Code.FORBIDDEN
    assert await server.registrations() == []


async def test_an_update_from_another_identity_is_refused(server: Server) -> None:
    async with open_dtls_endpoint(client=rpk_client(TRACKER_1)) as first:
        created = await first.request(register("tracker-1"), coaps(server), timeout=5)
        assert created.code == Code.CREATED
        async with open_dtls_endpoint(client=rpk_client(TRACKER_2)) as second:
            refused = await second.request(update(created.location_path), coaps(server), timeout=5)
            assert refused.code == Code.FORBIDDEN
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as third:
            refused = await third.request(deregister(created.location_path), coaps(server), timeout=5)
            assert refused.code == Code.FORBIDDEN


async def test_a_register_without_ep_takes_the_endpoint_of_the_key(server: Server) -> None:
    request = Message.build(
        Type.CON, Code.POST, uri_path="/rd", uri_query=["lt=300", "lwm2m=1.1", "b=U"], payload=b"</3/0>"
    )
    async with open_dtls_endpoint(client=rpk_client(TRACKER_2)) as client:
        assert (await client.request(request, coaps(server), timeout=5)).code == Code.CREATED
    (registration,) = await server.registrations()
    assert registration.endpoint == "tracker-2"


def test_rpk_needs_coaps() -> None:
    with pytest.raises(ConfigError, match="coaps_port"):
        ServerConfig(port=0, rpk=RpkCredentials(pem(SERVER_KEY)))
