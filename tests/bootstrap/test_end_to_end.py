"""A client with only bootstrap credentials ends up registered with our LwM2MServer using what the
BootstrapServer gave it, and the server reads it (LwM2M-TS-Core 1.2 §6.1, §6.2)."""

from __future__ import annotations

import pytest
from tests.bootstrap.test_server import next_event
from tests.conftest import free_udp_port

from lwm2m.bootstrap import BootstrapConfig, BootstrapFailed, BootstrapFinished, BootstrapServer
from lwm2m.client import ClientState, LwM2MClient, ObjectInstance
from lwm2m.client.core.security import Security
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.numbers import Code
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.server import LwM2MServer

FAST = EndpointConfig(ack_timeout=0.2, max_retransmit=1)


def plain_config(server: LwM2MServer, ssid: int = 101, lifetime: int = 120) -> BootstrapConfig:
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
    async with LwM2MServer("127.0.0.1", 0) as server, BootstrapServer(port=0) as bs:
        await bs.set_config("e2e", plain_config(server))
        bs_events, events = bs.events(), server.events()
        client = LwM2MClient(
            "e2e", bootstrap=bs.uri, objects=[temperature()], lwm2m_version=version, bootstrap_pack=pack
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
        LwM2MServer("127.0.0.1", 0) as first,
        LwM2MServer("127.0.0.1", 0) as second,
        BootstrapServer(port=0) as bs,
    ):
        await bs.set_config("mover", plain_config(first))
        first_events, second_events = first.events(), second.events()
        async with LwM2MClient("mover", bootstrap=bs.uri, objects=[temperature()]) as client:
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
    async with LwM2MServer("127.0.0.1", 0) as server, BootstrapServer(port=0) as bs:
        await bs.set_config("fallback", plain_config(server))
        events = server.events()
        client = LwM2MClient(
            "fallback",
            dead,
            [temperature()],
            bootstrap=bs.uri,
            coap_config=FAST,
            retry_initial=0.05,
            bootstrap_after_failures=2,
        )
        async with client:
            registration = (await next_event(events, ClientRegistered, timeout=10)).registration
            assert registration.endpoint == "fallback"
            assert client.errors >= 2 and client.bootstraps == 1
            assert client.server_uri is not None and client.server_uri.port == server.port


async def test_unknown_endpoint_is_refused_and_the_client_keeps_asking() -> None:
    async with BootstrapServer(port=0) as bs:
        events = bs.events()
        client = LwM2MClient("nobody", bootstrap=bs.uri, retry_initial=0.05, retry_max=0.1)
        async with client:
            first = await next_event(events, BootstrapFailed)
            second = await next_event(events, BootstrapFailed)
            assert "no bootstrap configuration for 'nobody'" in first.reason
            assert second.reason == first.reason
            assert client.bootstrapper.last_error is not None
            assert "4.00" in client.bootstrapper.last_error
            assert client.account is None and client.tree.instances(1) == []


async def test_server_reads_what_it_needs_and_the_session_log_is_kept() -> None:
    async with LwM2MServer("127.0.0.1", 0) as server, BootstrapServer(port=0) as bs:
        config = BootstrapConfig.from_json(
            {
                "servers": [{"uri": server.uri, "shortServerId": 7, "lifetime": 60}],
                "objects": {"records": [{"path": "/3/0/14", "value": "+02:00"}]},
            }
        )
        await bs.set_config("logged", config)
        events = server.events()
        async with LwM2MClient("logged", bootstrap=bs.uri):
            await next_event(events, ClientRegistered)
            assert (await server.read("logged", "/3/0/14")).records[0].value == "+02:00"
        (session,) = bs.sessions()
        assert session.to_json()["status"] == "finished"
        assert session.to_json()["steps"][-1] == "Bootstrap-Finish -> 2.04 Changed"
