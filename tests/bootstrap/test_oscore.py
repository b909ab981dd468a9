"""A bootstrap configuration with an OSCORE account (RFC 8613; LwM2M-TS-Core 1.2 §E.5): the
bootstrap server writes the OSCORE instance (/21/x) and the Security instance that links it
(/0/x/17); the server's security store is given the same parameters; the client then registers
over OSCORE with our Server and is read."""

from __future__ import annotations

import pytest
from tests.helpers.events import next_event

from lwm2m.bootstrap import BootstrapConfig, BootstrapFinished, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.bootstrap.server import security_info
from lwm2m.client import Client
from lwm2m.client.core.security import Security
from lwm2m.errors import ConfigError
from lwm2m.model.value import ObjLink
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server

pytestmark = pytest.mark.timeout(60)

SECRET = "0102030405060708090a0b0c0d0e0f10"


def oscore_config(uri: str, **security: str) -> BootstrapConfig:
    fields = {
        "mode": "oscore",
        "masterSecret": SECRET,
        "masterSalt": "9e7c",
        "senderId": "01",
        "recipientId": "",
        **security,
    }
    return BootstrapConfig.from_json(
        {
            "servers": [{"uri": uri, "shortServerId": 101, "lifetime": 120, "security": fields}],
            "deletePaths": ["/0", "/1"],
        }
    )


async def test_a_bootstrapped_client_registers_over_oscore() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        config = oscore_config(server.uri)
        info = security_info("osc-bs", config)
        assert info is not None and info.mode == "oscore" and info.oscore.sender_id == b"\x01"
        await server.security.put(info)
        await bs.set_config("osc-bs", config)
        bs_events, events = bs.events(), server.events()
        async with Client("osc-bs", bootstrap=bs.uri) as client:
            await next_event(bs_events, BootstrapFinished)
            assert (await next_event(events, ClientRegistered)).registration.endpoint == "osc-bs"
            read = await server.read("osc-bs", "/3/0/0", timeout=5)
            assert read.records[0].value == "lwm2m"
            account = next(s for s in client.tree.instances(0) if not s.get(Security.BOOTSTRAP))
            link = account.get(Security.OSCORE)
            assert isinstance(link, ObjLink) and link.object_id == 21
            oscore = client.tree.instance(21, link.instance_id)
            assert oscore is not None and oscore.get(1) == b"\x01" and oscore.get(0) == bytes.fromhex(SECRET)


def test_the_oscore_section_is_checked_and_never_shows_the_secret() -> None:
    config = oscore_config("coap://127.0.0.1:5683")
    shown = config.to_json(secrets=False)["servers"][0]["security"]
    assert shown == {"mode": "oscore", "senderId": "01", "recipientId": ""}
    assert BootstrapConfig.from_json(config.to_json()) == config
    writes = config.writes()
    assert [str(w.path) for w in writes[:2]] == ["/21/1", "/0/1"]  # /0/0: the bootstrap account
    for bad, why in (
        ({"recipientId": "01"}, "must differ"),
        ({"masterSecret": ""}, "masterSecret"),
        ({"senderId": "0102030405060708"}, "senderId"),
    ):
        with pytest.raises(ConfigError, match=why):
            oscore_config("coap://127.0.0.1:5683", **bad)
    with pytest.raises(ConfigError, match="is coaps"):
        oscore_config("coaps://127.0.0.1:5684")


async def test_a_client_bootstrapped_over_tcp_registers_over_oscore_over_tcp() -> None:
    # RFC 8613 over RFC 8323: the connection to the bootstrap server gives way to one whose
    # OSCORE layer protects what goes to the coap+tcp:// server account.
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, tcp_port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0, tcp_port=0)) as bs,
    ):
        assert server.tcp_uri is not None and bs.tcp_uri is not None
        config = oscore_config(server.tcp_uri)
        info = security_info("osc-tcp", config)
        assert info is not None
        await server.security.put(info)
        await bs.set_config("osc-tcp", config)
        bs_events, events = bs.events(), server.events()
        async with Client("osc-tcp", bootstrap=bs.tcp_uri):
            await next_event(bs_events, BootstrapFinished)
            assert (await next_event(events, ClientRegistered)).registration.endpoint == "osc-tcp"
            assert server.transport_of("osc-tcp") == "tcp"
            read = await server.read("osc-tcp", "/3/0/0", timeout=5)
            assert read.records[0].value == "lwm2m"
