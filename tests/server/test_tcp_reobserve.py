"""Observations of a device over CoAP over TCP outlive its connections: a relation ends with its
connection (RFC 8323 §7.2) while the server's observation goes on with the registration
(LwM2M-TS-Core 1.2 §6.4), so the server observes again over the device's next connection."""

from __future__ import annotations

import asyncio

from tests.helpers.client import temperature, until
from tests.helpers.events import next_event
from tests.helpers.pki import make_pki
from tests.server.test_tcp import ObservedDevice, gone, register, value

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered, ClientSleeping, ClientUpdated, NotificationReceived
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.tcp import open_tcp_endpoint, tls_client_context


async def test_a_queue_mode_device_is_observed_again_when_it_wakes() -> None:
    config = ServerConfig(port=0, tcp_port=0, queue_timeout=10)
    async with Server(config) as server:
        events = server.events()
        assert server.tcp_uri is not None
        sensor = temperature()
        client_config = ClientConfig(lifetime=300, queue_mode=True, awake_time=0.5)
        async with Client("tcp-obs", server.tcp_uri, [sensor], config=client_config) as client:
            await next_event(events, ClientRegistered)
            observation = await server.observe("tcp-obs", "/3303/0/5700", timeout=5)
            assert observation.response is not None and value(observation.response) == 21.5
            await next_event(events, ClientSleeping)
            await until(lambda: server.tcp_connections() == 0)
            await until(lambda: observation.dormant)  # kept while the device sleeps
            assert server.observations() == [observation]
            assert await server.store.observations.get(observation.token) is not None
            sensor.set(5700, 30.0)  # while it sleeps: no relation on its side, nothing sent
            client.trigger_update()
            # Nobody calls observe: the server sends it again over the new connection and the
            # answer, the value of now, comes as a notification (event and history too).
            assert value(await observation.next(5)) == 30.0
            note = await next_event(events, NotificationReceived)
            assert note.token == observation.token and note.records[0].value == 30.0
            sensor.set(5700, 31.5)
            assert value(await observation.next(5)) == 31.5
            await server.store.history.flush()
            history = await server.history("tcp-obs", "/3303/0/5700")
            assert [entry.record.value for entry in history] == [31.5, 30.0]


def update(location: tuple[str, ...]) -> Message:
    return Message.build(Type.CON, Code.POST, uri_path=list(location))


async def test_an_always_on_device_that_reconnects_is_observed_again_with_the_same_token() -> None:
    config = ServerConfig(port=0, tcp_port=0)
    async with Server(config) as server:
        first = ObservedDevice()
        async with open_tcp_endpoint(None, handler=first) as ep:
            created = await ep.request(register("tcp-re"), ("127.0.0.1", server.tcp_port))
            observation = await server.observe("tcp-re", "/3/0/9", timeout=5)
        await gone(server)
        await until(lambda: observation.dormant)
        second = ObservedDevice()
        async with open_tcp_endpoint(None, handler=second) as ep:
            answer = await ep.request(update(created.location_path), ("127.0.0.1", server.tcp_port))
            assert answer.code == Code.CHANGED
            assert value(await observation.next(5)) == 85  # the answer to the Observe sent again
            (relation,) = second.relations
            assert relation[1] == observation.token
            assert [m.uri_path for m in second.requests] == [("3", "0", "9")]
            ep.notify(relation, Message.build(Type.CON, Code.CONTENT, content_format=CF.TEXT, payload=b"77"))
            assert value(await observation.next(5)) == 77
            assert not observation.dormant


async def test_cancelled_while_asleep_means_not_observed_again() -> None:
    config = ServerConfig(port=0, tcp_port=0, queue_timeout=5)
    async with Server(config) as server:
        events = server.events()
        async with open_tcp_endpoint(None, handler=ObservedDevice()) as ep:
            created = await ep.request(register("tcp-c", queue=True), ("127.0.0.1", server.tcp_port))
            observation = await server.observe("tcp-c", "/3/0/9", timeout=5)
        await gone(server)
        await until(lambda: observation.dormant)
        await observation.cancel()
        assert server.observations() == []
        assert await server.store.observations.get(observation.token) is None
        again = ObservedDevice()
        async with open_tcp_endpoint(None, handler=again) as ep:
            answer = await ep.request(update(created.location_path), ("127.0.0.1", server.tcp_port))
            assert answer.code == Code.CHANGED
            await next_event(events, ClientUpdated)
            assert value(await server.read("tcp-c", "/3/0/0", timeout=5)) == "Open Mobile Alliance"
            await asyncio.sleep(0.1)
            assert again.relations == []
            assert [m.uri_path for m in again.requests] == [("3", "0", "0")]


async def test_a_tls_device_is_observed_again_on_any_request_over_its_new_connection() -> None:
    # Over TLS the certificate names the endpoint: its first message over a new connection, a
    # Send here, is enough to know it is back (no Update needed).
    pki = make_pki()
    config = ServerConfig(port=0, tls_port=0, certificate=pki.issue("lwm2m-server"))
    async with Server(config) as server:
        await server.security.put(SecurityInfo("tls-obs", x509=True))
        device_ssl = tls_client_context(pki.issue("tls-obs"))
        async with open_tcp_endpoint(None, handler=ObservedDevice(), client_ssl=device_ssl) as ep:
            await ep.request(register("tls-obs"), ("127.0.0.1", server.tls_port))
            observation = await server.observe("tls-obs", "/3/0/9", timeout=5)
        await gone(server)
        await until(lambda: observation.dormant)
        again = ObservedDevice()
        async with open_tcp_endpoint(None, handler=again, client_ssl=device_ssl) as ep:
            send = Message.build(Type.CON, Code.POST, uri_path="/dp", content_format=CF.SENML_JSON,
                                 payload=b'[{"n":"/3/0/15","vs":"Europe/Paris"}]')  # fmt: skip
            assert (await ep.request(send, ("127.0.0.1", server.tls_port))).code == Code.CHANGED
            assert value(await observation.next(5)) == 85
            (relation,) = again.relations
            assert relation[1] == observation.token
            assert server.transport_of("tls-obs") == "tls"
        # Another certificate's connection is not taken for it.
        other_ssl = tls_client_context(pki.issue("someone-else"))
        async with open_tcp_endpoint(None, handler=ObservedDevice(), client_ssl=other_ssl) as ep:
            refused = await ep.request(send, ("127.0.0.1", server.tls_port))
            assert refused.code == Code.FORBIDDEN
