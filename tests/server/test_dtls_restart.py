"""A server restart keeps its DTLS sessions (issue 14): at a clean stop the server saves its
sessions and ticket keys in the store, at the next start it takes them up, and a device goes
on over its old session: no ClientHello, no handshake, on SQLite and in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.helpers.certificates import p256
from tests.helpers.pki import KEY
from tests.helpers.ports import free_udp_port
from tests.helpers.security import coaps, count_hellos, psk, update
from tests.helpers.server import Device, register

from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SavedDtlsSession, SecurityInfo, Store
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import (
    DtlsClientConfig,
    PeerIdentity,
    RpkCredentials,
    SessionLimits,
    open_dtls_endpoint,
)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_a_device_goes_on_over_its_session_after_a_server_restart(kind: str, tmp_path: FsPath) -> None:
    memory = MemoryStore.create()

    def store() -> Store:
        return SqliteStore(tmp_path / "lwm2m.db") if kind == "sqlite" else memory

    config = ServerConfig(port=free_udp_port(), coaps_port=free_udp_port())
    device = Device()
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=device) as client:
        first = store()
        async with Server(config, first) as server:
            await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
            created = await client.request(register("dev-1"), coaps(server), timeout=5)
            assert created.code == Code.CREATED
        first.close()
        hellos = count_hellos(client)
        second = store()
        saved = await second.dtls_sessions.take()
        assert len(saved) == 1 and saved[0].address == tuple(client.addresses[0])[:2]
        await second.dtls_sessions.save(saved)  # put back: the server takes it at its start
        async with Server(config, second) as server:
            layer = server.dtls.dtls  # type: ignore[union-attr]
            assert layer.state_sizes()["dtls_parked"] == 1
            changed = await client.request(update(created.location_path), coaps(server), timeout=5)
            assert changed.code == Code.CHANGED
            read = await server.read("dev-1", "/3/0/0", timeout=5)
            assert read.success
            assert hellos == [] and layer.counters["handshakes_started"] == 0
            assert layer.counters["sessions_resumed"] == 1
        assert await second.dtls_sessions.ticket_keys() is not None
        second.close()


async def test_a_session_is_taken_up_once_even_if_the_server_stops_without_saving(tmp_path: FsPath) -> None:
    """After a start took the sessions up, the store holds none: a crash then costs a handshake,
    never a second use of the same sequence numbers."""
    config = ServerConfig(port=free_udp_port(), coaps_port=free_udp_port())
    path = tmp_path / "lwm2m.db"
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
        with SqliteStore(path) as store:
            async with Server(config, store) as server:
                await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
                assert (
                    await client.request(register("dev-1"), coaps(server), timeout=5)
                ).code == Code.CREATED
            assert len(await store.dtls_sessions.take()) == 1
            async with Server(config, store) as server:
                layer = server.dtls.dtls  # type: ignore[union-attr]
                assert layer.state_sizes()["dtls_parked"] == 0


async def test_removed_security_info_ends_parked_sessions_too() -> None:
    config = ServerConfig(port=0, coaps_port=0, dtls_limits=SessionLimits(idle_timeout=0.2))
    async with (
        Server(config) as server,
        open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client,
    ):
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        assert (await client.request(register("dev-1"), coaps(server), timeout=5)).code == Code.CREATED
        layer = server.dtls.dtls  # type: ignore[union-attr]
        for _ in range(100):
            if layer.state_sizes()["dtls_parked"]:
                break
            await asyncio.sleep(0.02)
        (parked,) = layer.parked()
        assert parked.identity == PeerIdentity("psk", "dev-1-id") and parked.last_seen == 0.0
        await server.security.remove("dev-1")
        assert list(layer.parked()) == [] and layer.state_sizes()["dtls_parked_cids"] == 0


async def test_a_raw_public_key_device_goes_on_over_its_session_after_a_server_restart() -> None:
    """An RPK session (RFC 7250) is saved and taken up as a PSK one is; the registration check
    then decides by the key the session was made with, as for a new session."""
    server_key, device_key = p256(), p256()
    der, spki_format = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    client_config = DtlsClientConfig(
        rpk=RpkCredentials(_pem(device_key), (server_key.public_key().public_bytes(der, spki_format),))
    )
    config = ServerConfig(
        port=free_udp_port(), coaps_port=free_udp_port(), rpk=RpkCredentials(_pem(server_key))
    )
    store = MemoryStore.create()
    async with open_dtls_endpoint(client=client_config, handler=Device()) as client:
        async with Server(config, store) as server:
            await server.security.put(SecurityInfo("tracker-1", rpk=spki_der(device_key.public_key())))
            created = await client.request(register("tracker-1"), coaps(server), timeout=5)
            assert created.code == Code.CREATED
        hellos = count_hellos(client)
        async with Server(config, store) as server:
            layer = server.dtls.dtls  # type: ignore[union-attr]
            assert layer.state_sizes()["dtls_parked"] == 1
            changed = await client.request(update(created.location_path), coaps(server), timeout=5)
            assert changed.code == Code.CHANGED
            assert (await server.read("tracker-1", "/3/0/0", timeout=5)).success
            assert hellos == [] and layer.counters["handshakes_started"] == 0
            assert layer.counters["sessions_resumed"] == 1
            device = tuple(client.addresses[0])[:2]
            assert layer.peer_identity(device) == PeerIdentity("rpk", spki_der(device_key.public_key()).hex())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def test_a_node_on_a_shared_store_neither_saves_nor_takes_sessions() -> None:
    """On a store several nodes share (``shared_store``), the one set of saved sessions would be
    every node's: a node's stop would replace another's, and the next start take them all. A
    node keeps its sessions to itself; the ticket keys are still shared."""
    shared = MemoryStore.create()
    config = ServerConfig(port=free_udp_port(), coaps_port=free_udp_port(), shared_store=True)
    async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
        async with Server(config, shared) as server:
            await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
            assert (await client.request(register("dev-1"), coaps(server), timeout=5)).code == Code.CREATED
        assert await shared.dtls_sessions.take() == []
        assert await shared.dtls_sessions.ticket_keys() is not None
        other = SavedDtlsSession(("192.0.2.9", 5684), b"", b"state of another node's session")
        await shared.dtls_sessions.save([other])
        async with Server(config, shared) as server:
            layer = server.dtls.dtls  # type: ignore[union-attr]
            assert layer.state_sizes()["dtls_parked"] == 0
        assert await shared.dtls_sessions.take() == [other]  # left for the node it belongs to
