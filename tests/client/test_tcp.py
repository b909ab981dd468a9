"""Our client and our server over CoAP over TCP and TLS (RFC 8323): every device operation goes
over the connection the client opened (LwM2M-TS-Transport 1.2 §6)."""

from __future__ import annotations

import asyncio

import pytest
from tests.helpers.client import temperature, until
from tests.helpers.events import next_event
from tests.helpers.pki import make_pki

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import ServerUri
from lwm2m.coap.connection import TcpConfig
from lwm2m.coap.numbers import Code
from lwm2m.errors import ConfigError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered, ClientSleeping, ClientUpdated
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo

P = Path.parse


def test_tcp_uris_and_their_default_ports() -> None:
    assert ServerUri.parse("coap+tcp://example.org") == ServerUri("coap+tcp", "example.org", 5683)
    assert ServerUri.parse("coaps+tcp://example.org").port == 5684
    assert ServerUri.parse("coaps+tcp://h:1").secure and ServerUri.parse("coap+tcp://h:1").tcp
    with pytest.raises(ConfigError, match="coap\\+tcp"):
        ServerUri.parse("http://h")


async def test_every_operation_over_the_clients_connection() -> None:
    # A small Max-Message-Size at the server: a body over it goes block-wise (RFC 7959 over
    # RFC 8323 §6), both ways.
    config = ServerConfig(port=0, tcp_port=0, tcp=TcpConfig(max_message_size=1152, block_wise=False))
    async with Server(config) as server:
        events = server.events()
        long_text = "x" * 3000
        sensor = ObjectInstance(0, {5700: 21.5, 5701: "Cel", 5750: "app"}, object_id=3303)
        objects = [sensor, ObjectInstance(0, {0: "lwm2m", 1: long_text}, object_id=3)]
        assert server.tcp_uri is not None
        small = TcpConfig(max_message_size=1152, block_wise=False)
        client_config = ClientConfig(lifetime=300, tcp=small)
        async with Client("tcp-dev", server.tcp_uri, objects, config=client_config) as client:
            registered = (await next_event(events, ClientRegistered)).registration
            assert registered.binding == "T"
            assert server.transport_of("tcp-dev") == "tcp"
            assert (await server.read("tcp-dev", "/3303/0/5700")).records[0].value == 21.5
            # Block2: the long model number comes in blocks to the server.
            assert (await server.read("tcp-dev", "/3/0/1")).records[0].value == long_text
            # Block1: a long value goes in blocks to the client.
            written = await server.write("tcp-dev", "/3303/0/5750", [Record(P("/3303/0/5750"), "y" * 3000)])
            assert written.code == Code.CHANGED
            assert client.tree.read(P("/3303/0/5750"))[0].value == "y" * 3000
            assert (await server.execute("tcp-dev", "/1/0/8")).code == Code.CHANGED  # Update trigger
            await next_event(events, ClientUpdated)
            composite = await server.read_composite("tcp-dev", ["/3303/0/5700", "/3/0/0"])
            values = {r.path: r.value for r in composite.records}
            assert values == {P("/3303/0/5700"): 21.5, P("/3/0/0"): "lwm2m"}
            changed = await server.write_composite("tcp-dev", [Record(P("/3303/0/5750"), "z")])
            assert changed.code == Code.CHANGED
            assert client.tree.read(P("/3303/0/5750"))[0].value == "z"
            observation = await server.observe("tcp-dev", "/3303/0/5700")
            assert observation.response is not None and observation.response.records[0].value == 21.5
            sensor.set(5700, 31.5)
            note = await observation.next(5)
            assert note.records[0].value == 31.5
            sent = await client.send(["/3303/0/5700"])
            assert sent.code == Code.CHANGED


async def test_queue_mode_over_tcp_closes_and_reopens() -> None:
    config = ServerConfig(port=0, tcp_port=0, queue_timeout=10)
    async with Server(config) as server:
        events = server.events()
        assert server.tcp_uri is not None
        client_config = ClientConfig(lifetime=300, queue_mode=True, awake_time=0.3)
        async with Client("tcp-q", server.tcp_uri, [temperature()], config=client_config) as client:
            await next_event(events, ClientRegistered)
            await next_event(events, ClientSleeping)  # the client closed its connection
            await until(lambda: server.tcp_connections() == 0)
            read = asyncio.create_task(server.read("tcp-q", "/3303/0/5700"))
            await asyncio.sleep(0.2)
            assert not read.done()  # queued until the client comes back
            client.trigger_update()
            assert (await asyncio.wait_for(read, 5)).records[0].value == 21.5


async def test_tls_with_a_certificate() -> None:
    pki = make_pki()
    config = ServerConfig(port=0, tls_port=0, certificate=pki.issue("lwm2m-server"))
    async with Server(config) as server:
        await server.security.put(SecurityInfo("tls-client", x509=True))
        events = server.events()
        assert server.tls_uri is not None and server.tls_uri.startswith("coaps+tcp://")
        client_config = ClientConfig(lifetime=300, certificate=pki.issue("tls-client"))
        async with Client("tls-client", server.tls_uri, [temperature()], config=client_config):
            await next_event(events, ClientRegistered)
            assert server.transport_of("tls-client") == "tls"
            assert (await server.read("tls-client", "/3303/0/5700")).records[0].value == 21.5


async def test_tls_with_a_psk() -> None:
    from lwm2m.transport.dtls.config import PskCredentials

    key = b"k" * 16
    async with Server(ServerConfig(port=0, tls_port=0)) as server:
        await server.security.put(SecurityInfo("tls-psk", psk_identity="tls-psk-id", psk_key=key))
        events = server.events()
        assert server.tls_uri is not None
        client_config = ClientConfig(lifetime=300, psk=PskCredentials("tls-psk-id", key))
        async with Client("tls-psk", server.tls_uri, [temperature()], config=client_config):
            await next_event(events, ClientRegistered)
            assert server.transport_of("tls-psk") == "tls"
            assert (await server.read("tls-psk", "/3303/0/5700")).records[0].value == 21.5


def test_coaps_tcp_takes_credentials() -> None:
    with pytest.raises(ConfigError, match="coaps"):
        Client("x", "coaps+tcp://127.0.0.1:5684", config=ClientConfig())
