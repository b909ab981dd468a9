"""Client against our server and a scripted one, over real loopback sockets:
registration life cycle (LwM2M-TS-Core 1.2 §6.2), queue mode (§6.5), Send (§6.4.6), block-wise."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.helpers.client import temperature, until
from tests.helpers.events import next_event
from tests.helpers.ports import free_udp_port

from lwm2m.client import Client, ClientState, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import RegisterRequest, UpdateRequest
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import (
    ClientDeregistered,
    ClientRegistered,
    ClientSleeping,
    ClientUpdated,
    NotificationReceived,
    SendReceived,
)
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint

FAST = EndpointConfig(ack_timeout=0.2, max_retransmit=1)  # a lost exchange times out within 0.9 s


async def test_register_update_on_lifetime_and_deregister() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        events = server.events()
        client = Client("life", server.uri, [temperature()], config=ClientConfig(lifetime=2))
        await client.start()
        reg = (await next_event(events, ClientRegistered)).registration
        assert (reg.endpoint, reg.lifetime, reg.lwm2m_version) == ("life", 2, "1.2")
        assert {o.path for o in reg.objects} >= {"/1/0", "/3/0", "/3303/0"}
        assert "/0/0" not in {o.path for o in reg.objects}  # Security is never listed (§6.2.1)
        # lt=2: the Update comes before the lifetime runs out.
        updated = await next_event(events, ClientUpdated, timeout=2.5)
        assert updated.registration.registration_id == reg.registration_id
        await client.stop()
        await next_event(events, ClientDeregistered)
        assert client.state is ClientState.STOPPED


async def test_object_lifetime_and_trigger_changes_send_updates() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        events = server.events()
        async with Client(
            "changes", server.uri, [temperature()], config=ClientConfig(lifetime=300)
        ) as client:
            await client.wait_registered(5)
            await next_event(events, ClientRegistered)
            client.tree.add(ObjectInstance(1, {5700: 5.0}, object_id=3303))
            update = await next_event(events, ClientUpdated)
            assert "/3303/1" in {o.path for o in update.registration.objects}
            # The server creates an instance: the client tells it the new list too.
            created = await server.create("changes", "/3303", [Record(Path.parse("/3303/7/5700"), 1.0)])
            assert created.location == Path.parse("/3303/7")
            update = await next_event(events, ClientUpdated)
            assert "/3303/7" in {o.path for o in update.registration.objects}
            # Writing the lifetime makes an Update carrying it.
            assert (
                await server.write("changes", "/1/0/1", [Record(Path.parse("/1/0/1"), 120)])
            ).code == Code.CHANGED
            update = await next_event(events, ClientUpdated)
            assert update.registration.lifetime == 120
            # Registration Update Trigger (/1/0/8).
            assert (await server.execute("changes", "/1/0/8")).code == Code.CHANGED
            await next_event(events, ClientUpdated)
            assert client.updates >= 3


class ScriptedServer:
    """A registration interface that answers Update with ``update_code``."""

    def __init__(self, update_code: Code = Code.CHANGED) -> None:
        self.update_code = update_code
        self.registers: list[RegisterRequest] = []
        self.updates: list[UpdateRequest] = []
        self.deregisters = 0
        self.changed = asyncio.Event()

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        self.changed.set()
        if msg.uri_path == ("rd",):
            self.registers.append(RegisterRequest.from_message(msg))
            return Message.build(Type.ACK, Code.CREATED, location_path=["rd", f"r{len(self.registers)}"])
        if msg.code == Code.DELETE:
            self.deregisters += 1
            return Message(Type.ACK, Code.DELETED)
        self.updates.append(UpdateRequest.from_message(msg))
        return Message(Type.ACK, self.update_code)

    async def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def test_update_answered_4_04_registers_again() -> None:
    script = ScriptedServer(Code.NOT_FOUND)
    async with open_udp_endpoint("127.0.0.1", 0, handler=script) as rd:
        async with Client(
            "forgotten", rd.uri(), [temperature()], config=ClientConfig(lifetime=300)
        ) as client:
            await client.wait_registered(5)
            client.trigger_update()
            await script.wait(lambda: len(script.registers) == 2)
            assert script.updates[0].location == "r1"
            await client.wait_registered(5)
            assert client.location == "r2"
        assert script.deregisters == 1


async def test_unreachable_server_is_retried_with_back_off() -> None:
    port = free_udp_port()
    client = Client(
        "patient",
        f"coap://127.0.0.1:{port}",
        [temperature()],
        config=ClientConfig(coap_config=FAST, retry_initial=0.2, retry_max=0.4),
    )
    await client.start()
    try:
        await until(lambda: client.errors >= 2)
        assert not client.registered and client.errors >= 2
        assert client.state in (ClientState.RETRYING, ClientState.REGISTERING)
        script = ScriptedServer()
        async with open_udp_endpoint("127.0.0.1", port, handler=script):
            await client.wait_registered(3)
            assert script.registers[-1].ep == "patient"
            await client.stop()
            assert script.deregisters == 1
    finally:
        await client.stop()


async def test_register_refused_is_retried_and_reported() -> None:
    def refuse(event: RequestReceived) -> Message:
        return Message(Type.ACK, Code.FORBIDDEN, payload=b"not on the list")

    async with (
        open_udp_endpoint("127.0.0.1", 0, handler=refuse) as rd,
        Client("refused", rd.uri(), config=ClientConfig(retry_initial=0.1, retry_max=0.2)) as client,
    ):
        await until(lambda: client.errors >= 2)
        assert not client.registered and client.errors >= 2


async def test_queue_mode_sleeps_holds_notifications_and_wakes_with_an_update() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0, awake_time=0.3)) as server:
        events = server.events()
        temp = temperature()
        async with Client(
            "dozy", server.uri, [temp], config=ClientConfig(queue_mode=True, awake_time=0.4, lifetime=300)
        ) as client:
            await client.wait_registered(5)
            reg = (await next_event(events, ClientRegistered)).registration
            assert reg.queue_mode
            observation = await server.observe("dozy", "/3303/0/5700")
            await next_event(events, ClientSleeping)
            await until(lambda: client.state is ClientState.SLEEPING)
            assert client.state is ClientState.SLEEPING
            temp.set(5700, 30.0)  # due while asleep: the client wakes with an Update
            await next_event(events, ClientUpdated)
            notification = await next_event(events, NotificationReceived)
            assert notification.records[0].value == 30.0
            assert (await observation.next(2)).records[0].value == 30.0
            # Awake again for awake_time: a read goes through at once.
            assert (await server.read("dozy", "/3303/0/5700")).records[0].value == 30.0


async def test_send_and_block_wise_read_and_write() -> None:
    display = ObjectInstance(0, {5527: "x" * 3000}, object_id=3341)  # Addressable Text Display
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        events = server.events()
        async with Client("big", server.uri, [temperature(), display]) as client:
            await client.wait_registered(5)
            answer = await client.send(["/3303/0/5700"])
            assert answer.code == Code.CHANGED
            sent = await next_event(events, SendReceived)
            assert sent.records[0].value == 21.5 and sent.records[0].time is not None
            # 3000 bytes do not fit one 1024-byte block: Block2 on the way back.
            read = await server.read("big", "/3341/0/5527", format="text")
            assert read.records[0].value == "x" * 3000
            # ... and Block1 on the way in.
            text = "".join(chr(65 + i % 26) for i in range(5000))
            written = await server.write("big", "/3341/0/5527", [Record(Path.parse("/3341/0/5527"), text)])
            assert written.code == Code.CHANGED
            assert display.get(5527) == text


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_older_versions_register_and_answer_in_their_default_format(version: str) -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        Client(
            "v" + version, server.uri, [temperature()], config=ClientConfig(lwm2m_version=version)
        ) as client,
    ):
        await client.wait_registered(5)
        reg = await server.registration("v" + version)
        assert reg.lwm2m_version == version
        read = await server.read("v" + version, "/3303/0")
        assert read.code == Code.CONTENT
        assert read.content_format == (11542 if version == "1.0" else 112)
        assert [r.value for r in read.records] == [21.5, "Cel"]


async def test_observe_composite_and_active_cancel_end_to_end() -> None:
    temp = temperature()
    switch = ObjectInstance(0, {5500: False}, object_id=3200)
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        Client("combo", server.uri, [temp, switch]) as client,
    ):
        await client.wait_registered(5)
        observation = await server.observe_composite("combo", ["/3303/0/5700", "/3200/0/5500"])
        assert observation.response is not None
        assert {str(r.path) for r in observation.response.records} == {"/3303/0/5700", "/3200/0/5500"}
        switch.set(5500, True)
        notified = await observation.next(2)
        assert {str(r.path): r.value for r in notified.records} == {
            "/3303/0/5700": 21.5,
            "/3200/0/5500": True,
        }
        assert client.observer is not None and len(client.observer) == 1
        await observation.cancel(active=True)
        await until(lambda: len(client.observer) == 0)
        assert len(client.observer) == 0
