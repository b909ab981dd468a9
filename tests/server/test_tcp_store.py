"""The transport of a registration is kept with it (store: memory, SQLite, Redis): a restarted
server serves a TCP device again when it reconnects, observations included; the registrar tells
a UDP client and a TCP client at one host and port apart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.client import until
from tests.helpers.events import next_event
from tests.server.test_tcp import ObservedDevice, register, value

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import ConnectionAborted
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import SendReceived
from lwm2m.server.registrar import Registrar, RegistrationLimits
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.tcp import open_tcp_endpoint


def update(location: tuple[str, ...]) -> Message:
    return Message.build(Type.CON, Code.POST, uri_path=list(location))


async def test_a_restarted_server_serves_a_tcp_device_when_it_reconnects(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        config = ServerConfig(port=0, tcp_port=0)
        async with Server(config, store) as server:
            tcp_port = server.tcp_port
            async with open_tcp_endpoint(None, handler=ObservedDevice()) as ep:
                created = await ep.request(register("tcp-r"), ("127.0.0.1", tcp_port))
                assert (await store.registrations.get("tcp-r")).transport == "tcp"  # type: ignore[union-attr]
                observation = await server.observe("tcp-r", "/3/0/9", timeout=5)
                token = observation.token
        # The same port again: the device comes back where it was.
        async with Server(ServerConfig(port=0, tcp_port=tcp_port), store) as server:
            assert server.transport_of("tcp-r") == "tcp"
            await server.resumed()
            (resumed,) = server.observations()
            assert resumed.token == token
            await until(lambda: resumed.dormant)
            # Its old connection is gone: a clear error, not a datagram to a TCP address.
            try:
                await server.read("tcp-r", "/3/0/0", timeout=2)
            except ConnectionAborted as exc:
                assert "no connection" in str(exc)
            else:
                raise AssertionError("a read over a connection that is gone must fail")
            device = ObservedDevice()
            # Read from now on (taken up after the restart, it keeps no notification unread).
            first = asyncio.ensure_future(resumed.next(10))
            async with open_tcp_endpoint(None, handler=device) as ep:
                answer = await ep.request(update(created.location_path), ("127.0.0.1", tcp_port))
                assert answer.code == Code.CHANGED
                assert value(await server.read("tcp-r", "/3/0/0", timeout=5)) == "Open Mobile Alliance"
                assert value(await first) == 85  # observed again over the new connection
                (relation,) = device.relations
                assert relation[1] == token
                note = Message.build(Type.CON, Code.CONTENT, content_format=CF.TEXT, payload=b"66")
                ep.notify(relation, note)
                assert value(await resumed.next(5)) == 66


async def test_a_restarted_server_holds_requests_for_a_sleeping_tcp_device(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        async with Server(ServerConfig(port=0, tcp_port=0), store) as server:
            tcp_port = server.tcp_port
            async with open_tcp_endpoint(None, handler=ObservedDevice()) as ep:
                created = await ep.request(register("tcp-s", queue=True), ("127.0.0.1", tcp_port))
        async with Server(ServerConfig(port=0, tcp_port=tcp_port, queue_timeout=5), store) as server:
            task = asyncio.ensure_future(server.read("tcp-s", "/3/0/0", timeout=5))
            await asyncio.sleep(0.2)
            assert not task.done()  # waits for the device to wake (queue mode, §6.5)
            async with open_tcp_endpoint(None, handler=ObservedDevice()) as ep:
                await ep.request(update(created.location_path), ("127.0.0.1", tcp_port))
                assert value(await asyncio.wait_for(task, 5)) == "Open Mobile Alliance"


async def test_a_udp_and_a_tcp_client_at_one_host_and_port_are_told_apart() -> None:
    store = MemoryStore.create()
    registrar = Registrar(
        store.registrations, store.observations, lambda event: None, limits=RegistrationLimits()
    )
    addr = ("192.0.2.7", 40000)
    assert (await registrar.handle(register("over-udp"), addr)).code == Code.CREATED
    assert (await registrar.handle(register("over-tcp"), addr, "tcp")).code == Code.CREATED
    assert registrar.endpoint_at(addr) == "over-udp"
    assert registrar.endpoint_at(addr, "tcp") == "over-tcp"
    assert registrar.endpoint_at(addr, "tls") is None
    assert registrar.peers == {"over-udp": addr, "over-tcp": addr}
    assert (await store.registrations.get("over-tcp")).transport == "tcp"  # type: ignore[union-attr]
    # The TCP client leaves: the UDP one is still found at that address.
    tcp = await store.registrations.get("over-tcp")
    assert tcp is not None
    gone = Message.build(Type.CON, Code.DELETE, uri_path=["rd", tcp.registration_id])
    assert (await registrar.handle(gone, addr, "tcp")).code == Code.DELETED
    assert registrar.endpoint_at(addr) == "over-udp" and registrar.endpoint_at(addr, "tcp") is None


async def test_a_send_over_tcp_is_the_tcp_clients_not_the_udp_clients_at_that_address() -> None:
    async with (
        Server(ServerConfig(port=0, tcp_port=0)) as server,
        open_tcp_endpoint(None, handler=ObservedDevice()) as ep,
    ):
        await ep.request(register("tcp-send"), ("127.0.0.1", server.tcp_port))
        addr = server.registrar.peers["tcp-send"]
        # A UDP client registered from the same host and port as the TCP connection.
        server.registrar.remember("udp-twin", addr)
        events = server.events()
        send = Message.build(Type.CON, Code.POST, uri_path="/dp", content_format=CF.SENML_JSON,
                             payload=b'[{"n":"/3/0/15","vs":"Europe/Paris"}]')  # fmt: skip
        answer = await ep.request(send, ("127.0.0.1", server.tcp_port))
        assert answer.code == Code.CHANGED, answer.payload
        received = await next_event(events, SendReceived)
        assert received.endpoint == "tcp-send"


def test_the_event_json_carries_the_registrations_transport() -> None:
    from lwm2m.protocol.registration import Registration
    from lwm2m.server.events import ClientRegistered
    from lwm2m.server.jsonform import event_view, registration_view

    registration = Registration("ev", "r1", ("192.0.2.1", 40000), transport="tls")
    name, data = event_view(ClientRegistered(registration, None))
    assert name == "REGISTRATION" and data["registration"]["transport"] == "tls"
    assert registration_view(registration, transport="tcp")["transport"] == "tcp"  # the caller knows better
