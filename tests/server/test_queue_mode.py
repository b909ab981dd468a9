"""Queue mode: requests for a sleeping client wait for its next Update (LwM2M-TS-Transport 1.2 §6.5)."""

from __future__ import annotations

import asyncio

import pytest
from tests.helpers.server import Device, next_event, register_queued

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import QueueTimeout
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientAwake, ClientRegistered, ClientSleeping, RegistrationExpired
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint


async def test_a_request_for_a_sleeping_client_waits_for_its_update() -> None:
    async with Server(ServerConfig(port=0, awake_time=0.3)) as server:
        events = server.events()
        device = Device()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            peer = ("127.0.0.1", server.port)
            created = await client.request(register_queued("sleepy"), peer)
            assert (await next_event(events, ClientRegistered)).registration.queue_mode
            await next_event(events, ClientAwake)
            await next_event(events, ClientSleeping)

            read = asyncio.create_task(server.read("sleepy", "/3/0/9"))
            await asyncio.sleep(0.3)
            assert not read.done() and device.requests == []  # held while the client sleeps

            location = "/".join(created.location_path)
            await client.request(Message.build(Type.CON, Code.POST, uri_path=location), peer)
            await next_event(events, ClientAwake)
            response = await asyncio.wait_for(read, 5)
            assert response.code == Code.CONTENT and response.records[0].value == 85
            await next_event(events, ClientSleeping)


async def test_a_queued_request_expires() -> None:
    async with Server(ServerConfig(port=0, awake_time=0.1, queue_timeout=0.3)) as server:
        events = server.events()
        async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as client:
            await client.request(register_queued("sleepy-2"), ("127.0.0.1", server.port))
            await next_event(events, ClientSleeping)
            with pytest.raises(QueueTimeout, match="sleepy-2"):
                await server.read("sleepy-2", "/3/0/9")


async def test_the_late_expiry_of_a_replaced_registration_leaves_the_new_one_queued() -> None:
    # An expiry sweep that took a client's registration reports it after the client registered
    # again (tests/server/test_expiry_sweep.py makes the race): the report is about the old one.
    async with Server(ServerConfig(port=0, awake_time=60)) as server:
        events = server.events()
        async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as client:
            peer = ("127.0.0.1", server.port)
            await client.request(register_queued("sleepy"), peer)
            old = (await next_event(events, ClientRegistered)).registration
            await client.request(register_queued("sleepy"), peer)
            assert (
                await next_event(events, ClientRegistered)
            ).registration.registration_id != old.registration_id
            assert server.registration_counts() == {"registered": 1, "awake": 1, "sleeping": 0}
            server._emit(RegistrationExpired(old))
            assert server.registration_counts() == {"registered": 1, "awake": 1, "sleeping": 0}
