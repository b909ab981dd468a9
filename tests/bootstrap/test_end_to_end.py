"""A client with only bootstrap credentials ends up registered with our Server using what the
BootstrapServer gave it, and the server reads it (LwM2M-TS-Core 1.2 §6.1, §6.2)."""

from __future__ import annotations

import pytest
from tests.helpers.events import next_event
from tests.helpers.ports import free_udp_port

from lwm2m.bootstrap import BootstrapConfig, BootstrapFailed, BootstrapFinished, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.bootstrap.server import security_info
from lwm2m.client import Client, ClientState, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.security import Security
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.memory import MemorySecurityStore
from lwm2m.transport.dtls.config import PskCredentials

FAST = EndpointConfig(ack_timeout=0.2, max_retransmit=1)


def plain_config(server: Server, ssid: int = 101, lifetime: int = 120) -> BootstrapConfig:
    return BootstrapConfig.from_json(
        {
            "servers": [{"uri": server.uri, "shortServerId": ssid, "lifetime": lifetime, "binding": "U"}],
            "deletePaths": ["/0", "/1"],
            "bootstrapDiscover": True,
        }
    )


def temperature() -> ObjectInstance:
    return ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)


@pytest.mark.parametrize(("version", "pack"), [("1.2", False), ("1.0", False), ("1.2", True)])
async def test_bootstrap_only_client_registers_with_the_server_it_was_given(version: str, pack: bool) -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        await bs.set_config("e2e", plain_config(server))
        bs_events, events = bs.events(), server.events()
        client = Client(
            "e2e",
            bootstrap=bs.uri,
            objects=[temperature()],
            config=ClientConfig(lwm2m_version=version, bootstrap_pack=pack),
        )
        assert client.server_uri is None and client.account is None
        async with client:
            registered = (await next_event(events, ClientRegistered)).registration
            finished = await next_event(bs_events, BootstrapFinished)
            assert finished.session.kind == ("pack" if pack else "session")
            assert (registered.endpoint, registered.lifetime, registered.lwm2m_version) == (
                "e2e",
                120,
                version,
            )
            paths = {o.path for o in registered.objects}
            assert "/3303/0" in paths and "/1/0" in paths
            assert not any(p.startswith("/0") for p in paths)  # Security is never listed (§6.2.1)
            read = await server.read("e2e", "/3303/0/5700")
            assert read.code == Code.CONTENT and read.records[0].value == 21.5
            ssid = await server.read("e2e", "/1/0/0")
            assert ssid.records[0].value == 101
            # Bootstrap-only objects stay hidden from the LwM2M server.
            assert (await server.read("e2e", "/0/0")).code == Code.NOT_FOUND
            assert (await server.read("e2e", "/0")).code == Code.NOT_FOUND
            assert client.bootstraps == 1 and client.state is ClientState.REGISTERED
            accounts = {s.id: s for s in client.tree.instances(0)}
            assert accounts[0].get(Security.BOOTSTRAP) is True  # the bootstrap account stays
            assert (
                accounts[1].get(Security.URI) == server.uri
                and accounts[1].get(Security.SHORT_SERVER_ID) == 101
            )
            if not pack:
                assert finished.session.steps[0].startswith("Bootstrap-Discover / -> 2.05")
                assert any("Bootstrap-Write /0/1 -> 2.04" in s for s in finished.session.steps)


async def test_bootstrap_request_trigger_moves_the_client_to_another_server() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as first,
        Server(ServerConfig(host="127.0.0.1", port=0)) as second,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        await bs.set_config("mover", plain_config(first))
        first_events, second_events = first.events(), second.events()
        async with Client("mover", bootstrap=bs.uri, objects=[temperature()]) as client:
            await next_event(first_events, ClientRegistered)
            await bs.set_config("mover", plain_config(second, ssid=202))
            # The server executes the Bootstrap-Request Trigger (§E.2, /1/x/9).
            assert (await first.execute("mover", "/1/0/9")).code == Code.CHANGED
            await next_event(first_events, ClientDeregistered)
            registration = (await next_event(second_events, ClientRegistered)).registration
            assert registration.endpoint == "mover"
            assert (await second.read("mover", "/1/0/0")).records[0].value == 202
            assert client.bootstraps == 2


async def test_client_that_cannot_register_anymore_bootstraps_again() -> None:
    dead = f"coap://127.0.0.1:{free_udp_port()}"  # nobody answers there
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        await bs.set_config("fallback", plain_config(server))
        events = server.events()
        client = Client(
            "fallback",
            dead,
            [temperature()],
            bootstrap=bs.uri,
            config=ClientConfig(coap_config=FAST, retry_initial=0.05, bootstrap_after_failures=2),
        )
        async with client:
            registration = (await next_event(events, ClientRegistered, timeout=10)).registration
            assert registration.endpoint == "fallback"
            assert client.errors >= 2 and client.bootstraps == 1
            assert client.server_uri is not None and client.server_uri.port == server.port


async def test_unknown_endpoint_is_refused_and_the_client_keeps_asking() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs:
        events = bs.events()
        client = Client("nobody", bootstrap=bs.uri, config=ClientConfig(retry_initial=0.05, retry_max=0.1))
        async with client:
            first = await next_event(events, BootstrapFailed)
            second = await next_event(events, BootstrapFailed)
            assert "no bootstrap configuration for 'nobody'" in first.reason
            assert second.reason == first.reason
            assert client.bootstrapper.last_error is not None
            assert "4.00" in client.bootstrapper.last_error
            assert client.account is None and client.tree.instances(1) == []


async def test_server_reads_what_it_needs_and_the_session_log_is_kept() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        config = BootstrapConfig.from_json(
            {
                "servers": [{"uri": server.uri, "shortServerId": 7, "lifetime": 60}],
                "objects": {"records": [{"path": "/3/0/14", "value": "+02:00"}]},
            }
        )
        await bs.set_config("logged", config)
        events = server.events()
        async with Client("logged", bootstrap=bs.uri):
            await next_event(events, ClientRegistered)
            assert (await server.read("logged", "/3/0/14")).records[0].value == "+02:00"
        (session,) = bs.sessions()
        assert session.to_json()["status"] == "finished"
        assert session.to_json()["steps"][-1] == "Bootstrap-Finish -> 2.04 Changed"


async def test_over_dtls_psk_the_client_registers_with_the_keys_it_was_given() -> None:
    """The issue's end-to-end case: bootstrap credentials only; the bootstrap server hands out a
    coaps:// account with a PSK it also gives the LwM2M server; the client registers over DTLS."""
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        assert server.coaps_uri is not None
        key = "5f3a9c0e11d24b7f8a6e2c4d9b0f7a13"
        config = BootstrapConfig.from_json(
            {
                "servers": [
                    {
                        "uri": server.coaps_uri,
                        "shortServerId": 101,
                        "lifetime": 60,
                        "security": {"mode": "psk", "identity": "secure-1-id", "key": key},
                    }
                ],
                "deletePaths": ["/0", "/1"],
            }
        )
        await bs.set_config("secure-1", config)
        await server.security.put(security_info("secure-1", config))
        events = server.events()
        async with Client("secure-1", bootstrap=bs.uri, objects=[temperature()]) as client:
            registration = (await next_event(events, ClientRegistered)).registration
            assert registration.endpoint == "secure-1"
            assert client.server_uri is not None and client.server_uri.scheme == "coaps"
            read = await server.read("secure-1", "/3303/0/5700")
            assert read.code == Code.CONTENT and read.records[0].value == 21.5
            # The registration came over DTLS, authenticated by the PSK the bootstrap gave.
            assert registration.address[1] == client.port


async def test_a_wrong_psk_never_registers_and_the_client_bootstraps_again() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        assert server.coaps_uri is not None
        handed_out = {"mode": "psk", "identity": "wrong-1-id", "key": "00" * 16}
        config = BootstrapConfig.from_json(
            {"servers": [{"uri": server.coaps_uri, "shortServerId": 1, "security": handed_out}]}
        )
        await bs.set_config("wrong-1", config)
        await server.security.put(SecurityInfo("wrong-1", "wrong-1-id", b"\x01" * 16))  # not that key
        bs_events = bs.events()
        config = ClientConfig(
            retry_initial=0.05,
            retry_max=0.2,
            bootstrap_after_failures=2,
            coap_config=FAST,
            request_timeout=1.0,
        )
        client = Client("wrong-1", bootstrap=bs.uri, config=config)
        async with client:
            await next_event(bs_events, BootstrapFinished)
            await next_event(bs_events, BootstrapFinished, timeout=15)  # asked again after failing
            assert not client.registered and client.bootstraps >= 2


async def test_everything_over_dtls_psk_bootstrap_server_included() -> None:
    """The bootstrap server's own PSK for the device, then the LwM2M server's PSK it hands out."""
    bootstrap_key, server_key = bytes(range(16)), bytes(range(16, 32))
    credentials = MemorySecurityStore()
    await credentials.put(SecurityInfo("full-1", "full-1-bs", bootstrap_key))
    await credentials.put(SecurityInfo("other-1", "other-1-bs", bootstrap_key))
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0, coaps_port=0), security=credentials) as bs,
    ):
        assert server.coaps_uri is not None and bs.coaps_uri is not None
        handed_out = {"mode": "psk", "identity": "full-1-dm", "key": server_key.hex()}
        config = BootstrapConfig.from_json(
            {
                "servers": [
                    {"uri": server.coaps_uri, "shortServerId": 9, "lifetime": 60, "security": handed_out}
                ]
            }
        )
        await bs.set_config("full-1", config)
        await server.security.put(security_info("full-1", config))
        events, bs_events = server.events(), bs.events()
        psk = PskCredentials("full-1-bs", bootstrap_key)
        async with Client("full-1", bootstrap=bs.coaps_uri, config=ClientConfig(psk=psk)) as client:
            registration = (await next_event(events, ClientRegistered)).registration
            assert registration.endpoint == "full-1"
            assert (await server.read("full-1", "/1/0/0")).records[0].value == 9
            finished = await next_event(bs_events, BootstrapFinished)
            assert finished.session.address.startswith("127.0.0.1:")
            assert client.server_uri is not None and client.server_uri.scheme == "coaps"

        # An endpoint with bootstrap credentials never bootstraps over plain CoAP, nor as another.
        async with Client("full-1", bootstrap=bs.uri, config=ClientConfig(retry_initial=10)):
            refused = await next_event(bs_events, BootstrapFailed)
            assert "bootstraps over DTLS" in refused.reason
        other = PskCredentials("other-1-bs", bootstrap_key)
        async with Client("full-1", bootstrap=bs.coaps_uri, config=ClientConfig(psk=other, retry_initial=10)):
            refused = await next_event(bs_events, BootstrapFailed)
            assert refused.reason == "these DTLS credentials are 'other-1''s, not 'full-1''s"
