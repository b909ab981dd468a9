"""Bootstrap over CoAP over TCP and TLS (RFC 8323): the bootstrap server listens on TCP beside
UDP, a client whose bootstrap server URI is coap+tcp:// sends its Bootstrap-Request over its
connection and the session's writes and Bootstrap-Finish come back over it
(LwM2M-TS-Transport 1.2 §6), then it registers where the written Server URI says."""

from __future__ import annotations

import pytest
from tests.helpers.events import next_event
from tests.helpers.pki import make_pki

from lwm2m.bootstrap import BootstrapConfig, BootstrapFailed, BootstrapFinished, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.errors import ConfigError
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server


def temperature() -> ObjectInstance:
    return ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)


def config_for(uri: str, binding: str) -> BootstrapConfig:
    return BootstrapConfig.from_json(
        {
            "servers": [{"uri": uri, "shortServerId": 101, "lifetime": 120, "binding": binding}],
            "deletePaths": ["/0", "/1"],
        }
    )


@pytest.mark.parametrize("over", ["tcp", "udp"])
async def test_bootstrap_over_tcp_then_register_where_the_server_uri_says(over: str) -> None:
    async with (
        Server(ServerConfig(port=0, tcp_port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0, tcp_port=0)) as bs,
    ):
        assert bs.tcp_uri is not None and bs.tcp_uri.startswith("coap+tcp://127.0.0.1:")
        assert server.tcp_uri is not None
        uri, binding = (server.tcp_uri, "T") if over == "tcp" else (server.uri, "U")
        await bs.set_config("bs-tcp", config_for(uri, binding))
        bs_events, events = bs.events(), server.events()
        async with Client("bs-tcp", bootstrap=bs.tcp_uri, objects=[temperature()]) as client:
            finished = await next_event(bs_events, BootstrapFinished)
            assert finished.session.endpoint == "bs-tcp"
            assert any("Bootstrap-Finish" in step for step in finished.session.steps)
            registered = (await next_event(events, ClientRegistered)).registration
            assert registered.binding == binding
            assert server.transport_of("bs-tcp") == over
            assert (await server.read("bs-tcp", "/3303/0/5700")).records[0].value == 21.5
            assert client.bootstraps == 1


async def test_bootstrap_over_tls_binds_the_certificate_cn() -> None:
    pki = make_pki()
    certificate = pki.issue("bootstrap-server")
    async with (
        Server(ServerConfig(port=0, tcp_port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0, tls_port=0, certificate=certificate)) as bs,
    ):
        assert bs.tls_uri is not None and bs.tls_uri.startswith("coaps+tcp://")
        assert server.tcp_uri is not None
        await bs.set_config("bs-tls", config_for(server.tcp_uri, "T"))
        await bs.set_config("other", config_for(server.tcp_uri, "T"))
        bs_events, events = bs.events(), server.events()
        device = ClientConfig(certificate=pki.issue("bs-tls"))
        async with Client("bs-tls", bootstrap=bs.tls_uri, objects=[temperature()], config=device):
            await next_event(bs_events, BootstrapFinished)
            await next_event(events, ClientRegistered)
            assert server.transport_of("bs-tls") == "tcp"
        # A certificate of bs-tls does not bootstrap as another endpoint (4.03, as over DTLS).
        async with Client(
            "other", bootstrap=bs.tls_uri, config=ClientConfig(certificate=pki.issue("bs-tls"))
        ):
            failed = await next_event(bs_events, BootstrapFailed)
            assert failed.session.endpoint == "other" and "bs-tls" in failed.session.reason


def test_tls_port_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="tls_port needs certificate"):
        BootstrapServerConfig(port=0, tls_port=0)
    with pytest.raises(ConfigError, match="tcp_port"):
        BootstrapServerConfig(port=0, tcp_port=70000)
