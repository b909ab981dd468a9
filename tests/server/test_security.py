"""The server's security rules (LwM2M-TS-Core 1.2 §7.1), over real loopback sockets: registrations over
DTLS are bound to the peer's authenticated identity, and an endpoint with security information cannot
use plain CoAP. Each refusal is a 4.03."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.helpers.pki import KEY, OTHER_KEY, make_pki
from tests.helpers.security import coaps, deregister, psk, update
from tests.helpers.server import Device, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import DtlsHandshakeError
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import CoapDtlsEndpoint, DtlsClientConfig, open_dtls_endpoint
from lwm2m.transport.udp import open_udp_endpoint

KEY_2 = bytes(range(100, 116))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server(ServerConfig(port=0, coaps_port=0)) as s:
        await s.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        await s.security.put(SecurityInfo("dev-2", "dev-2-id", KEY_2))
        yield s


async def test_registration_bound_to_the_psk_identity(server: Server) -> None:
    device = Device()
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=device) as client:
        created = await client.request(register("dev-1"), coaps(server), timeout=5)
        assert created.code == Code.CREATED
        # The server reaches the client over the client's DTLS session.
        response = await server.read("dev-1", "/3/0/0", timeout=5)
        assert response.success and response.records[0].value == "Open Mobile Alliance"
        assert server.coaps_uri is not None and server.coaps_uri.startswith("coaps://")
        location = created.location_path
        assert (await client.request(update(location), coaps(server), timeout=5)).code == Code.CHANGED
        assert (await client.request(deregister(location), coaps(server), timeout=5)).code == Code.DELETED


async def test_registration_as_another_endpoint_is_refused(server: Server) -> None:
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
        refused = await client.request(register("dev-2"), coaps(server), timeout=5)
        assert refused.code == Code.FORBIDDEN
        # An endpoint nobody configured is refused over DTLS too.
        assert (await client.request(register("dev-9"), coaps(server), timeout=5)).code == Code.FORBIDDEN
    assert await server.registrations() == []


async def test_plain_coap_registration_of_a_secured_endpoint_is_refused(server: Server) -> None:
    async with open_udp_endpoint() as client:
        peer = ("127.0.0.1", server.port)
        refused = await client.request(register("dev-1"), peer, timeout=5)
        assert refused.code == Code.FORBIDDEN and b"DTLS" in refused.payload
        # An endpoint without security information still registers over plain CoAP.
        assert (await client.request(register("plain-1"), peer, timeout=5)).code == Code.CREATED


async def test_update_and_deregister_need_the_registering_identity(server: Server) -> None:
    async with (
        open_dtls_endpoint(client=psk("dev-1-id", KEY)) as one,
        open_dtls_endpoint(client=psk("dev-2-id", KEY_2)) as two,
        open_udp_endpoint() as plain,
    ):
        created = await one.request(register("dev-1"), coaps(server), timeout=5)
        location = created.location_path
        # Another authenticated device may not touch dev-1's registration ...
        assert (await two.request(update(location), coaps(server), timeout=5)).code == Code.FORBIDDEN
        assert (await two.request(deregister(location), coaps(server), timeout=5)).code == Code.FORBIDDEN
        # ... nor may anyone over plain CoAP.
        peer = ("127.0.0.1", server.port)
        assert (await plain.request(update(location), peer, timeout=5)).code == Code.FORBIDDEN
        assert (await plain.request(deregister(location), peer, timeout=5)).code == Code.FORBIDDEN
        assert [r.endpoint for r in await server.registrations()] == ["dev-1"]
        # The same identity over a new session may (a client that shook hands again).
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as again:
            assert (await again.request(update(location), coaps(server), timeout=5)).code == Code.CHANGED
            assert (await again.request(deregister(location), coaps(server), timeout=5)).code == Code.DELETED


async def test_register_without_ep_takes_the_endpoint_of_the_identity(server: Server) -> None:
    message = Message.build(
        Type.CON, Code.POST, uri_path="/rd", uri_query=["lt=300", "lwm2m=1.2", "b=U"], payload=b"</3/0>"
    )
    async with open_dtls_endpoint(client=psk("dev-2-id", KEY_2)) as client:
        assert (await client.request(message, coaps(server), timeout=5)).code == Code.CREATED
    (registration,) = await server.registrations()
    assert registration.endpoint == "dev-2" and registration.lifetime == 300


async def test_removed_security_info_ends_the_session_and_the_key(server: Server) -> None:
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
        assert (await client.request(register("dev-1"), coaps(server), timeout=5)).code == Code.CREATED
        assert server.dtls is not None and len(server.dtls.sessions()) == 1
        await server.security.remove("dev-1")
        await asyncio.sleep(0.05)
        assert server.dtls.sessions() == []
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
        with pytest.raises(DtlsHandshakeError):
            await client.connect(coaps(server), timeout=5)
    # A changed key takes effect at once: the old key no longer shakes hands.
    await server.security.put(SecurityInfo("dev-2", "dev-2-id", OTHER_KEY))
    async with open_dtls_endpoint(client=psk("dev-2-id", KEY_2)) as client:
        with pytest.raises(DtlsHandshakeError):
            await client.connect(coaps(server), timeout=5)


async def test_keys_written_by_another_process_work_from_the_next_handshake(tmp_path: Any) -> None:
    from lwm2m.storage.sqlite import SqliteStore

    with SqliteStore(tmp_path / "lwm2m.db") as store:
        async with Server(ServerConfig(port=0, coaps_port=0), store) as server:
            with SqliteStore(tmp_path / "lwm2m.db") as other:  # e.g. `lwm2m security add`
                await other.security.put(SecurityInfo("late-1", "late-1-id", KEY))
            endpoint: CoapDtlsEndpoint
            async with open_dtls_endpoint(client=psk("late-1-id", KEY)) as endpoint:
                with pytest.raises(DtlsHandshakeError):  # not in the cache yet: looked up now
                    await endpoint.connect(coaps(server), timeout=5)
                await asyncio.sleep(0.05)
                created = await endpoint.request(register("late-1"), coaps(server), timeout=5)
                assert created.code == Code.CREATED


async def test_x509_registration_needs_the_endpoint_as_common_name() -> None:
    pki = make_pki()
    async with Server(ServerConfig(port=0, coaps_port=0, certificate=pki.issue("lwm2m-server"))) as server:
        await server.security.put(SecurityInfo("sensor-7", x509=True))
        await server.security.put(SecurityInfo("sensor-8", x509=True))
        async with open_dtls_endpoint(client=DtlsClientConfig(certificate=pki.issue("sensor-7"))) as client:
            peer = coaps(server)
            assert (await client.request(register("sensor-8"), peer, timeout=5)).code == Code.FORBIDDEN
            assert (await client.request(register("sensor-7"), peer, timeout=5)).code == Code.CREATED
        # A PSK client may not take a certificate endpoint's name.
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
            refused = await client.request(register("sensor-8"), coaps(server), timeout=5)
            assert refused.code == Code.FORBIDDEN


async def test_raw_public_key_identities_stand_for_their_endpoint() -> None:
    """The rules hold for RFC 7250 keys as for PSKs: the key of the entry registers, another key
    gets 4.03, and a Register without ep takes the endpoint of the key (LwM2M-TS-Core 1.2 §6.2.1)."""
    from lwm2m.server.security import SecurityPolicy, identity_matches
    from lwm2m.storage.memory import MemoryStore
    from lwm2m.transport.dtls import PeerIdentity

    rpk = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004" + "11" * 64)
    other = PeerIdentity("rpk", (rpk[:-1] + b"\x22").hex())
    mine = PeerIdentity("rpk", rpk.hex())
    store = MemoryStore.create()
    policy = SecurityPolicy(store.security)
    await policy.put(SecurityInfo("tracker-1", rpk=rpk))
    info = await policy.get("tracker-1")
    assert info is not None and identity_matches(info, mine) and not identity_matches(info, other)
    assert not identity_matches(info, PeerIdentity("psk", rpk.hex()))
    assert str(mine).startswith("rpk:sha256:") and len(str(mine)) == len("rpk:sha256:") + 16

    refusal, _, endpoint = await policy.check(
        register("tracker-1"), mine, secure=True, registrations=store.registrations
    )
    assert refusal is None and endpoint == "tracker-1"
    refusal, _, _ = await policy.check(
        register("tracker-1"), other, secure=True, registrations=store.registrations
    )
    assert refusal is not None and refusal.code == Code.FORBIDDEN
    refusal, _, _ = await policy.check(
        register("tracker-1"), None, secure=False, registrations=store.registrations
    )
    assert refusal is not None and refusal.code == Code.FORBIDDEN  # plain CoAP for a keyed endpoint
    no_ep = Message.build(Type.CON, Code.POST, uri_path="rd", uri_query=["lwm2m=1.1"])
    refusal, message, endpoint = await policy.check(
        no_ep, mine, secure=True, registrations=store.registrations
    )
    assert refusal is None and endpoint == "tracker-1" and "ep=tracker-1" in message.uri_query
