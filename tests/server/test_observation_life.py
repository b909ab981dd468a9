"""What happens to live observations when the client's registration changes: an Update from a
new address keeps them (LwM2M-TS-Core 1.2 §6.2.2); a new Register, a De-register or an expiry
ends them (§6.4), in the running server as well as in the store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.helpers.devices import TEMPERATURE, Thermometer
from tests.helpers.relay import Nat
from tests.helpers.server import next_event, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientUpdated, NotificationReceived, ObservationEnded
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint


async def test_observation_follows_an_update_from_a_new_address() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        device = Thermometer()
        nat = await Nat(("127.0.0.1", server.port)).start()
        try:
            async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
                created = await client.request(register("mover"), nat.address, timeout=5)
                observation = await server.observe("mover", TEMPERATURE)
                (relation,) = device.relations
                fmt = relation.message.accept
                before = nat.public

                await nat.rebind()
                update = Message.build(Type.CON, Code.POST, uri_path="/".join(created.location_path))
                assert (await client.request(update, nat.address, timeout=5)).code == Code.CHANGED
                updated = await next_event(events, ClientUpdated)
                assert updated.registration.address == nat.public != before

                device.value = 30.5
                note = Message.build(Type.CON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
                assert client.notify(relation.relation, note)
                got = await observation.next(timeout=5)
                assert got.records == (Record(TEMPERATURE, 30.5),)
                assert (await next_event(events, NotificationReceived)).records == got.records
                # Acknowledged from the new address, not rejected: the device keeps the relation.
                await asyncio.sleep(0.05)
                assert client.endpoint.observations() == [relation.relation]

                read = await server.read("mover", TEMPERATURE, timeout=5)
                assert read.code == Code.CONTENT
                await observation.cancel(active=True)
                assert device.cancels == 1
                assert client.endpoint.observations() == []  # the cancel reached the relation
        finally:
            nat.close()


async def _observed(server: Server, client: Any, ep: str, lt: int = 300) -> tuple[Any, Message]:
    created = await client.request(register(ep, lt=lt), ("127.0.0.1", server.port))
    observation = await server.observe(ep, TEMPERATURE)
    assert len(await server.store.observations.for_endpoint(ep)) == 1
    return observation, created


async def _ended(server: Server, events: Any, observation: Any, reason: str) -> None:
    ended = await next_event(events, ObservationEnded)
    assert (ended.token, ended.reason) == (observation.token, reason)
    with pytest.raises(StopAsyncIteration):
        await observation.next(timeout=5)
    assert server.observations() == []
    assert server.observation_manager._by_endpoint == {}  # the index by endpoint lets go of it too
    assert await server.store.observations.for_endpoint(observation.endpoint) == []


async def test_a_new_register_ends_the_live_observations() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        device = Thermometer()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            old, _ = await _observed(server, client, "again")
            await client.request(register("again"), ("127.0.0.1", server.port))
            await _ended(server, events, old, "registered again")
            # The new registration observes afresh; the old relation's notifications get RST.
            new = await server.observe("again", TEMPERATURE)
            assert [o.token for o in server.observations()] == [new.token]
            (stale, fresh) = device.relations
            fmt = stale.message.accept
            note = Message.build(Type.CON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
            client.notify(stale.relation, note)
            for _ in range(50):
                if stale.relation not in client.endpoint.observations():
                    break
                await asyncio.sleep(0.02)
            assert client.endpoint.observations() == [fresh.relation]


async def test_a_deregister_ends_the_live_observations() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        async with open_udp_endpoint("127.0.0.1", 0, handler=Thermometer()) as client:
            observation, created = await _observed(server, client, "leaving")
            location = "/".join(created.location_path)
            gone = await client.request(
                Message.build(Type.CON, Code.DELETE, uri_path=location), ("127.0.0.1", server.port)
            )
            assert gone.code == Code.DELETED
            await _ended(server, events, observation, "de-registered")


async def test_an_expiry_ends_the_live_observations() -> None:
    async with Server(ServerConfig(port=0, expiry_interval=0.05)) as server:
        events = server.events()
        async with open_udp_endpoint("127.0.0.1", 0, handler=Thermometer()) as client:
            observation, _ = await _observed(server, client, "fading", lt=1)
            await _ended(server, events, observation, "registration expired")
