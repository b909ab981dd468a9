"""Fleets over DTLS with a PSK per device, and fleets that bootstrap, against our servers over loopback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.helpers.ports import free_udp_port
from tests.helpers.simulator import served

from lwm2m.bootstrap import BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.coap.numbers import Code
from lwm2m.errors import RemoteApiError
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.simulator.fleet import KEY_BYTES
from lwm2m.simulator.provision import JsonApi, provision_api, provision_stores
from lwm2m.storage.memory import MemorySecurityStore, MemoryStore
from lwm2m.web.app import create_app
from lwm2m.web.bootstrap_api import create_bootstrap_app

TOKEN = "fleet-token"


def fleet_options(**options: Any) -> dict[str, Any]:
    return {"rate": None, "local_host": "127.0.0.1", "seed": 3, **options}


async def test_a_psk_fleet_registers_over_dtls_with_keys_given_through_the_rest_api() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server,
        served(create_app(server, api_token=TOKEN)) as base,
    ):
        assert server.coaps_uri is not None
        fleet = Fleet(server.coaps_uri, FleetConfig(**fleet_options(count=6, prefix="psk", security="psk")))
        keys = fleet.server_keys()
        assert [k.endpoint for k in keys] == [f"psk-{i:05d}" for i in range(6)]
        assert all(k.identity == k.endpoint and len(k.key) == KEY_BYTES for k in keys)
        assert len({k.key for k in keys}) == 6  # one key each
        assert keys[0].key.hex() not in repr(keys)

        done = await provision_api(fleet, JsonApi(base, TOKEN))
        assert (done.server_keys, done.configs, done.bootstrap_keys) == (6, 0, 0)
        # The server's store got them through PUT /api/security/clients/{ep}.
        for key in keys:
            stored = await server.security.get(key.endpoint)
            assert stored is not None and (stored.psk_identity, stored.psk_key) == (key.endpoint, key.key)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            listed = (await api.get("/api/security/clients")).json()
        assert sorted(e["endpoint"] for e in listed) == [k.endpoint for k in keys]

        async with fleet:
            await fleet.wait_registered(timeout=10)
            registrations = await server.registrations()
            assert sorted(r.endpoint for r in registrations) == [k.endpoint for k in keys]
            device = fleet.devices[2]
            assert device.client.server_uri is not None and device.client.server_uri.scheme == "coaps"
            answer = await server.read(device.endpoint, "/3/0/0", timeout=5)
            assert answer.code == Code.CONTENT and answer.records[0].value
            stats = fleet.stats()
            assert (stats.registered, stats.errors, stats.requests) == (6, 0, 1)
        assert await server.registrations() == []  # de-registered over DTLS too


async def test_a_psk_fleet_registers_over_tls_over_tcp_with_keys_in_the_servers_store() -> None:
    """coaps+tcp:// (RFC 8323 §9): the same PSK per device as over DTLS, through TLS over TCP."""
    async with Server(ServerConfig(host="127.0.0.1", port=0, tls_port=0)) as server:
        assert server.tls_uri is not None
        fleet = Fleet(server.tls_uri, FleetConfig(**fleet_options(count=3, prefix="tls", security="psk")))
        assert fleet.server_psk and not fleet.bootstrap_psk
        done = await provision_stores(fleet, server)
        assert done.server_keys == 3
        async with fleet:
            await fleet.wait_registered(timeout=10)
            assert sorted(r.endpoint for r in await server.registrations()) == [
                f"tls-{i:05d}" for i in range(3)
            ]
            device = fleet.devices[1]
            assert device.client.server_uri is not None and device.client.server_uri.scheme == "coaps+tcp"
            assert server.transport_of(device.endpoint) == "tls"
            answer = await server.read(device.endpoint, "/3/0/0", timeout=5)
            assert answer.code == Code.CONTENT and answer.records[0].value
        assert await server.registrations() == []  # de-registered over TLS too


async def test_a_refused_key_names_the_endpoint_and_the_reason() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server,
        served(create_app(server, api_token=TOKEN)) as base,
    ):
        assert server.coaps_uri is not None
        fleet = Fleet(server.coaps_uri, FleetConfig(**fleet_options(count=3, security="psk")))
        with pytest.raises(RemoteApiError, match=r"'sim-0000\d' refused \(401\)"):
            await provision_api(fleet, JsonApi(base, "wrong token"))


async def test_a_fleet_bootstraps_over_dtls_and_registers_over_dtls() -> None:
    """Both links secured: each device's bootstrap PSK is in the bootstrap server's own store, and
    its configuration (PUT /api/bootstrap/{ep}) hands out the LwM2M server with another PSK, which
    that API also gives the LwM2M server."""
    bootstrap_keys = MemorySecurityStore()
    bs_port = free_udp_port()
    async with Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server:
        assert server.coaps_uri is not None
        fleet = Fleet(
            server.coaps_uri,
            FleetConfig(
                **fleet_options(
                    count=5,
                    prefix="bs",
                    security="psk",
                    bootstrap=f"coaps://127.0.0.1:{bs_port}",
                    lifetime=60,
                )
            ),
        )
        assert fleet.server_psk and fleet.bootstrap_psk
        own = await provision_stores(fleet, bootstrap_security=bootstrap_keys)
        assert (own.bootstrap_keys, own.server_keys, own.configs) == (5, 0, 0)
        async with (
            BootstrapServer(BootstrapServerConfig(port=0, coaps_port=bs_port), security=bootstrap_keys) as bs,
            served(create_bootstrap_app(bs, security=server.security)) as base,
        ):
            done = await provision_api(fleet, JsonApi(base))
            assert (done.configs, done.server_keys, done.not_provisioned) == (5, 5, 0)
            server_keys = {k.endpoint: k.key for k in fleet.server_keys()}
            for key in fleet.bootstrap_server_keys():
                assert key.key != server_keys[key.endpoint]  # one key per server
                stored = await server.security.get(key.endpoint)
                assert stored is not None and stored.psk_key == server_keys[key.endpoint]

            async with fleet:
                await fleet.wait_registered(timeout=10)
                stats = fleet.stats()
                assert (stats.bootstraps, stats.registered, stats.errors) == (5, 5, 0)
                registrations = {r.endpoint: r for r in await server.registrations()}
                assert sorted(registrations) == [f"bs-{i:05d}" for i in range(5)]
                assert {r.lifetime for r in registrations.values()} == {60}
                device = fleet.devices[4]
                assert device.client.server_uri is not None
                assert device.client.server_uri.port == server.coaps_port
                answer = await server.read(device.endpoint, "/3/0/0", timeout=5)
                assert answer.code == Code.CONTENT
            finished = [s for s in bs.sessions() if s.status == "finished"]
            assert sorted(s.endpoint for s in finished) == sorted(registrations)


async def test_a_fleet_bootstraps_over_coap_with_configurations_written_into_the_store() -> None:
    """Plain CoAP throughout; configurations straight into the store the bootstrap server reads."""
    store = MemoryStore.create()
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0), store) as bs,
    ):
        fleet = Fleet(
            server.uri, FleetConfig(**fleet_options(count=4, bootstrap=bs.uri, lwm2m_version="1.0"))
        )
        assert fleet.server_keys() == [] and fleet.bootstrap_server_keys() == []
        done = await provision_stores(fleet, store)
        assert (done.configs, done.server_keys) == (4, 0)
        config = await store.bootstrap_configs.get("sim-00003")
        assert config is not None and config.servers[0].uri == server.uri
        async with fleet:
            await fleet.wait_registered(timeout=10)
            assert fleet.stats().bootstraps == 4
            registrations = await server.registrations()
            assert sorted(r.endpoint for r in registrations) == [f"sim-{i:05d}" for i in range(4)]
            assert {r.lwm2m_version for r in registrations} == {"1.0"}


async def test_keys_already_stored_are_kept_on_the_next_run() -> None:
    store = MemoryStore.create()
    first = Fleet("coaps://127.0.0.1:5999", FleetConfig(count=3, security="psk"))
    assert (await provision_stores(first, store)).server_keys == 3
    again = Fleet("coaps://127.0.0.1:5999", FleetConfig(count=4, security="psk"))
    done = await provision_stores(again, store)
    assert (done.server_keys, done.kept) == (4, 3)
    assert [k.key for k in again.server_keys()[:3]] == [k.key for k in first.server_keys()]
    stored = await store.security.get("sim-00003")
    assert stored is not None and stored.psk_key == again.server_keys()[3].key


def test_a_bootstrap_configuration_names_the_server_with_the_devices_key() -> None:
    fleet = Fleet(
        "coaps://lwm2m.example:5684",
        FleetConfig(count=2, security="psk", bootstrap="coap://bs.example", lifetime=90),
    )
    body = fleet.bootstrap_config("sim-00001")
    parsed = BootstrapConfig.from_json(body)
    (account,) = parsed.servers
    assert (account.uri, account.lifetime, account.security.mode) == ("coaps://lwm2m.example:5684", 90, "psk")
    assert account.security.identity == "sim-00001"
    assert account.security.key == fleet.server_keys()[1].key
    assert fleet.bootstrap_server_keys() == []  # a coap:// bootstrap server takes no key


@pytest.mark.parametrize(
    ("server", "options", "message"),
    [
        ("coap://127.0.0.1:5999", {"security": "psk"}, "the server coap://127.0.0.1:5999 is plain CoAP"),
        ("coaps://127.0.0.1:5999", {}, "server coaps://127.0.0.1:5999: coaps:// needs security 'psk'"),
        (None, {"bootstrap": "coaps://127.0.0.1:5998"}, "bootstrap coaps://127.0.0.1:5998: coaps://"),
        (None, {"security": "psk", "bootstrap": "coap://127.0.0.1:5998"}, "neither the server nor"),
        (None, {}, "give a server, a bootstrap server, or both"),
        ("coaps://127.0.0.1:5999", {"security": "tls"}, "security 'tls'"),
        ("coaps://127.0.0.1:5999", {"security": "psk", "keys": {"sim-00000": b""}}, "the key of 'sim-00000'"),
    ],
)
def test_bad_security_options_name_the_value(
    server: str | None, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Fleet(server, FleetConfig(count=1, **options))


async def test_an_oscore_fleet_registers_with_contexts_given_through_the_rest_api() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        served(create_app(server, api_token=TOKEN)) as base,
    ):
        fleet = Fleet(server.uri, FleetConfig(**fleet_options(count=5, prefix="osc", security="oscore")))
        entries = fleet.oscore_entries()
        assert [e.endpoint for e in entries] == [f"osc-{i:05d}" for i in range(5)]
        secrets = [e.oscore for e in entries]
        assert all(s is not None and s.id_context == b"osc" for s in secrets)
        assert len({s.master_secret for s in secrets if s is not None}) == 5  # one context each
        assert [s.sender_id for s in secrets if s is not None] == [
            b"\x00",
            b"\x01",
            b"\x02",
            b"\x03",
            b"\x04",
        ]
        done = await provision_api(fleet, JsonApi(base, TOKEN))
        assert done.oscore_contexts == 5 and "5 OSCORE contexts" in done.describe()
        stored = await server.security.get("osc-00003")
        assert stored is not None and stored.oscore is not None
        assert stored.oscore.same_context(entries[3].oscore)  # type: ignore[arg-type]
        async with fleet:
            await fleet.wait_registered(timeout=10)
            assert fleet.stats().errors == 0
            answer = await server.read("osc-00002", "/3/0/0", timeout=5)
            assert answer.code == Code.CONTENT and answer.records[0].value
            # Protected: the server answered the device with the device's own context.
            ctx = server.security.oscore.context("osc-00002")  # type: ignore[union-attr]
            assert ctx is not None and ctx.recipient_id == b"\x02" and ctx.id_context == b"osc"


async def test_an_oscore_fleet_written_into_the_store_of_a_running_server_registers() -> None:
    # The running server finds each device's entry by its OSCORE identity on its first request.
    store = MemoryStore.create()
    async with Server(ServerConfig(host="127.0.0.1", port=0), store) as server:
        fleet = Fleet(server.uri, FleetConfig(**fleet_options(count=3, security="oscore")))
        done = await provision_stores(fleet, store)
        assert done.oscore_contexts == 3
        async with fleet:
            await fleet.wait_registered(timeout=10)
            assert sorted(r.endpoint for r in await server.registrations()) == fleet.endpoint_names()
        # A new run, a new secret: the entries are replaced, and the devices register again.
        again = Fleet(server.uri, FleetConfig(**fleet_options(count=3, security="oscore")))
        await provision_stores(again, store)
        async with again:
            await again.wait_registered(timeout=10)
            assert again.stats().errors == 0


@pytest.mark.parametrize(
    ("server", "options", "message"),
    [
        ("coaps://127.0.0.1:5999", {"security": "oscore"}, "coaps:// needs security .psk."),
        ("coap+tcp://127.0.0.1:5999", {"security": "oscore"}, "must be coap://"),
        ("coap://127.0.0.1:5999", {"security": "oscore", "bootstrap": "coap://127.0.0.1:5"}, "bootstraps"),
        ("coap://127.0.0.1:5999", {"security": "oscore", "prefix": "p" * 65}, "at most 64"),
        ("coap://127.0.0.1:5999", {"security": "oscore", "oscore_secret": b""}, "oscore_secret"),
    ],
)
def test_bad_oscore_options_name_the_value(server: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fleet(server, FleetConfig(count=1, **options))
