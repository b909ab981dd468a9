"""OSCORE (RFC 8613) over CoAP over TCP (RFC 8323): a client whose coap+tcp:// Security instance
links object 21 registers protected over its connection, the server reads and observes it
protected, and a plain request over TCP for that endpoint is refused."""

from __future__ import annotations

import pytest
from tests.helpers.oscore import CLIENT
from tests.helpers.server import next_event

from lwm2m.client import Client, ClientConfig, ObjectInstance
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import OscoreSecrets, SecurityInfo
from lwm2m.transport.tcp import CoapTcpEndpoint, open_tcp_endpoint

pytestmark = pytest.mark.timeout(60)


def entry(endpoint: str) -> SecurityInfo:
    return SecurityInfo(
        endpoint,
        oscore=OscoreSecrets(CLIENT.master_secret, CLIENT.sender_id, CLIENT.recipient_id, CLIENT.master_salt),
    )


async def test_a_client_registers_is_read_and_observed_over_oscore_over_tcp() -> None:
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        await server.security.put(entry("valve-t"))
        assert server.tcp_uri is not None
        events = server.events()
        sensor = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
        client = Client("valve-t", server.tcp_uri, [sensor], config=ClientConfig(oscore=CLIENT))
        async with client:
            await client.wait_registered(10)
            registered = await next_event(events, ClientRegistered)
            assert registered.registration.endpoint == "valve-t"
            assert server.transport_of("valve-t") == "tcp"
            read = await server.read("valve-t", "/3/0/0", timeout=5)
            assert read.records == (Record(Path.parse("/3/0/0"), "lwm2m"),)
            observation = await server.observe("valve-t", "/3303/0/5700", timeout=5)
            assert observation.response.records == (Record(Path.parse("/3303/0/5700"), 21.5),)
            for value in (22.0, 22.5):
                sensor.set(5700, value)
                got = await observation.next(timeout=5)
                assert got.records == (Record(Path.parse("/3303/0/5700"), value),)
            # Both ends went protected: the client's layer verified the server's requests, the
            # server's layer holds the observation's binding (notifications checked against it).
            coap = client.registration.coap
            assert isinstance(coap, CoapTcpEndpoint) and coap.oscore is not None
            context = coap.oscore.contexts[0]
            assert context.window.seen(0)
            tcp = server._tcp
            assert tcp is not None and tcp.oscore is not None and len(tcp.oscore.pending) == 1


async def test_plain_coap_over_tcp_for_an_oscore_endpoint_gets_forbidden() -> None:
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        await server.security.put(entry("valve-p"))
        register = Message(
            Type.CON,
            Code.POST,
            options=((OptionNumber.URI_PATH, b"rd"), (OptionNumber.URI_QUERY, b"ep=valve-p")),
            payload=b"</1/0>,</3/0>",
        )
        async with open_tcp_endpoint(None) as plain:
            answer = await plain.request(register, ("127.0.0.1", server.tcp_port), timeout=5)
        assert answer.code == Code.FORBIDDEN, answer
        assert await server.registrations() == []
