"""Plain CoAP (NoSec) is unauthenticated: ``nosec_endpoints="deny"`` takes it only from endpoints listed
with mode ``nosec``; the entries themselves in the stores, the REST API and over loopback sockets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.helpers.pki import KEY
from tests.helpers.security import coaps, deregister, psk, update
from tests.helpers.server import Device, register
from tests.helpers.web import client_for

from lwm2m.coap.numbers import Code
from lwm2m.protocol.registration import RegisterRequest, Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.server.security import SecurityPolicy
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.memory import MemorySecurityStore, MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.dtls import open_dtls_endpoint
from lwm2m.transport.udp import open_udp_endpoint

LOG = "lwm2m.server.security"


def test_nosec_entries() -> None:
    info = SecurityInfo("meter-1", nosec=True)
    assert info.mode == "nosec" and info.psk_key is None and info.key_hint is None
    assert info.to_dict() == {"endpoint": "meter-1", "mode": "nosec", "x509": False}
    assert info.to_dict(with_key=True) == info.to_dict()
    assert SecurityInfo.from_dict(info.to_dict(with_key=True)) == info
    # Entries stored before nosec existed read as before.
    assert SecurityInfo.from_dict({"endpoint": "c", "mode": "x509", "x509": True}).mode == "x509"
    with pytest.raises(ValueError, match="give one of x509, nosec, not several"):
        SecurityInfo("meter-1", x509=True, nosec=True)
    with pytest.raises(ValueError, match="a PSK or nosec, not both"):
        SecurityInfo("meter-1", "id", b"k", nosec=True)


async def test_nosec_entries_in_the_stores(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        await store.security.put(SecurityInfo("meter-1", nosec=True))
        await store.security.put(SecurityInfo("meter-2", nosec=True))  # no PSK identity to clash on
        await store.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        assert [i.mode for i in await store.security.all()] == ["psk", "nosec", "nosec"]
        assert await store.security.get("meter-1") == SecurityInfo("meter-1", nosec=True)
    memory = MemorySecurityStore()
    await memory.put(SecurityInfo("meter-1", nosec=True))
    await memory.put(SecurityInfo("meter-2", nosec=True))
    assert [i.mode for i in await memory.all()] == ["nosec", "nosec"]


def test_the_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="nosec_endpoints must be 'allow' or 'deny'"):
        SecurityPolicy(MemorySecurityStore(), nosec_endpoints="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nosec_endpoints"):
        Server(ServerConfig(port=0, nosec_endpoints="Deny"))  # type: ignore[arg-type]


async def test_deny_takes_plain_coap_only_from_listed_endpoints(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    async with Server(ServerConfig(port=0, coaps_port=0, nosec_endpoints="deny")) as server:
        await server.security.put(SecurityInfo("meter-1", nosec=True))
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        peer = ("127.0.0.1", server.port)
        async with open_udp_endpoint(handler=Device()) as plain:
            refused = await plain.request(register("stranger"), peer, timeout=5)
            assert refused.code == Code.FORBIDDEN
            assert (
                refused.payload
                == b"endpoint 'stranger' is not listed for plain CoAP (mode nosec): it must use DTLS"
            )
            # A PSK endpoint over plain CoAP: refused, as before.
            secured = await plain.request(register("dev-1"), peer, timeout=5)
            assert secured.code == Code.FORBIDDEN and secured.payload == b"endpoint 'dev-1' must use DTLS"
            created = await plain.request(register("meter-1"), peer, timeout=5)
            assert created.code == Code.CREATED
            # The server reaches it over plain CoAP.
            response = await server.read("meter-1", "/3/0/0", timeout=5)
            assert response.success and response.records[0].value == "Open Mobile Alliance"
            assert (await plain.request(update(created.location_path), peer, timeout=5)).code == Code.CHANGED
            # Once its entry is gone, its Update and De-register are refused too.
            await server.security.remove("meter-1")
            assert (
                await plain.request(update(created.location_path), peer, timeout=5)
            ).code == Code.FORBIDDEN
            gone = await plain.request(deregister(created.location_path), peer, timeout=5)
            assert gone.code == Code.FORBIDDEN
        assert [r.endpoint for r in await server.registrations()] == ["meter-1"]
    lines = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert len(lines) == 4
    assert lines[0].startswith("Register refused from 127.0.0.1:") and "'stranger'" in lines[0]
    assert "'dev-1' must use DTLS" in lines[1]
    assert lines[2].startswith("Update refused") and lines[3].startswith("De-register refused")


async def test_allow_takes_every_endpoint_without_security_information() -> None:
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        assert server.security.nosec_endpoints == "allow"
        await server.security.put(SecurityInfo("meter-1", nosec=True))
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        peer = ("127.0.0.1", server.port)
        async with open_udp_endpoint() as plain:
            assert (await plain.request(register("stranger"), peer, timeout=5)).code == Code.CREATED
            assert (await plain.request(register("meter-1"), peer, timeout=5)).code == Code.CREATED
            assert (await plain.request(register("dev-1"), peer, timeout=5)).code == Code.FORBIDDEN


async def test_a_nosec_endpoint_cannot_register_over_dtls_with_another_identity() -> None:
    async with Server(ServerConfig(port=0, coaps_port=0, nosec_endpoints="deny")) as server:
        await server.security.put(SecurityInfo("meter-1", nosec=True))
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY)) as client:
            refused = await client.request(register("meter-1"), coaps(server), timeout=5)
            assert refused.code == Code.FORBIDDEN
        assert await server.registrations() == []


async def test_a_restarted_server_reaches_nosec_endpoints_over_plain_coap() -> None:
    """At start the server sends requests over DTLS to the endpoints with keys; not to nosec ones."""
    store = MemoryStore.create()
    await store.security.put(SecurityInfo("meter-1", nosec=True))
    async with open_udp_endpoint(handler=Device()) as device:
        request = RegisterRequest.from_message(register("meter-1"))
        await store.registrations.add(Registration.from_request(request, ("127.0.0.1", device.port), 1e12))
        async with Server(ServerConfig(port=0, coaps_port=0, nosec_endpoints="deny"), store) as server:
            response = await server.read("meter-1", "/3/0/0", timeout=5)
            assert response.success and response.records[0].value == "Open Mobile Alliance"


async def test_put_nosec_through_the_api() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        url = "/api/security/clients/meter-1"
        created = await api.put(url, json={"mode": "nosec"})
        assert created.status_code == 201
        assert created.json() == {"endpoint": "meter-1", "mode": "nosec", "x509": False}
        assert (await api.get(url)).json()["mode"] == "nosec"
        assert (await server.security.get("meter-1")) == SecurityInfo("meter-1", nosec=True)
        # mode names the other kinds too.
        assert (await api.put("/api/security/clients/cam-1", json={"mode": "x509"})).json()["mode"] == "x509"
        for body, message in (
            ({"mode": "nosec", "pskIdentity": "a", "pskKey": "00"}, "mode nosec takes no"),
            ({"mode": "nosec", "x509": True}, 'contradicts "mode": "nosec"'),
            ({"mode": "none"}, '"mode" must be one of psk, rpk, x509, nosec'),
            ({"mode": {}}, '"mode" must be one of'),
            ({"mode": ["nosec"]}, '"mode" must be one of'),
        ):
            answer = await api.put(url, json=body)
            assert answer.status_code == 400, body
            assert message in answer.json()["error"]
        assert (await api.delete(url)).status_code == 200
