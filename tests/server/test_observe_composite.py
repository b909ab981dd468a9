"""Observe-Composite through the server (LwM2M-TS-Core 1.2 §6.4.4): a FETCH on the root with
Observe 0 and a SenML list of paths; notifications carry the values of all of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.composite import BATTERY, TEMPERATURE, Composite
from tests.helpers.server import next_event, register

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.model.record import Record
from lwm2m.server import observation as observation_module
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived, ObservationEnded
from lwm2m.server.role import Server
from lwm2m.storage.base import Observation
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint


async def test_observe_composite_notifications_history_and_active_cancel() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        device = Composite()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            await client.request(register("multi"), ("127.0.0.1", server.port))
            observation = await server.observe_composite("multi", ["/3303/0/5700", "/3/0/9"])
            assert observation.response is not None
            assert set(observation.response.records) == {Record(BATTERY, 85), Record(TEMPERATURE, 20.0)}
            (relation,) = device.relations
            msg = relation.message
            assert (msg.code, msg.uri_path, msg.observe) == (Code.FETCH, (), 0)
            assert msg.content_format == CF.SENML_CBOR and msg.accept == CF.SENML_CBOR
            assert sorted(device.paths(relation)) == [BATTERY, TEMPERATURE]
            (stored,) = await server.store.observations.for_endpoint("multi")
            assert stored.composite and stored.paths == (TEMPERATURE, BATTERY)
            assert stored.token == observation.token

            device.values[TEMPERATURE] = 22.5
            assert client.notify(relation.relation, device.notification(relation))
            got = await observation.next(timeout=5)
            assert set(got.records) == {Record(BATTERY, 85), Record(TEMPERATURE, 22.5)}
            event = await next_event(events, NotificationReceived)
            assert event.paths == (TEMPERATURE, BATTERY) and event.token == observation.token
            history = await server.history("multi", "/3303")
            assert [e.record.value for e in history] == [22.5]

            await observation.cancel(active=True)
            assert (await next_event(events, ObservationEnded)).reason == "cancelled"
            (cancel,) = device.cancels
            # RFC 7641 §3.6: the cancel carries the observation's token, so the device drops it.
            assert cancel.message.token == observation.token and cancel.message.code == Code.FETCH
            assert sorted(device.paths(cancel)) == [BATTERY, TEMPERATURE]
            assert client.endpoint.observations() == []
            assert await server.store.observations.for_endpoint("multi") == []


@contextlib.asynccontextmanager
async def device_and_file(tmp_path: FsPath) -> AsyncIterator[tuple[Composite, SqliteStore, CoapUdpEndpoint]]:
    """A device on loopback and a SQLite store that outlives the servers a test starts on it."""
    device = Composite()
    store = SqliteStore(tmp_path / "lwm2m.db")
    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            yield device, store, client
    finally:
        store.close()


async def test_observe_composite_resumes_after_a_restart(tmp_path: FsPath) -> None:
    async with device_and_file(tmp_path) as (device, store, client):
        async with Server(ServerConfig(port=0), store) as server:
            port = server.port
            await client.request(register("multi-2"), ("127.0.0.1", port))
            first = await server.observe_composite("multi-2", [BATTERY, TEMPERATURE], format="senml-json")
            assert first.response is not None and first.response.content_format == CF.SENML_JSON
        assert len(await store.observations.all()) == 1  # a clean stop keeps the record

        async with Server(ServerConfig(port=port), store) as server:
            await server.resumed()
            (resumed,) = server.observations()
            assert resumed.token == first.token and resumed.record.composite
            (relation,) = device.relations
            device.values[BATTERY] = 50
            assert client.notify(relation.relation, device.notification(relation))
            got = await resumed.next(timeout=5)
            assert set(got.records) == {Record(BATTERY, 50), Record(TEMPERATURE, 20.0)}
            await resumed.cancel(active=True)
            assert device.cancels[0].message.accept == CF.SENML_JSON
            assert client.endpoint.observations() == []


async def test_a_restarted_server_serves_coap_and_takes_notifications_while_it_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Taking up a million stored observations takes most of a restart: CoAP is served meanwhile,
    # and a notification whose observation the resume has not reached yet is taken, not RST
    # (its client's observations are taken up at once).
    monkeypatch.setattr(observation_module, "RESUME_SLICE", 1)  # one record per turn of the loop
    store, device = MemoryStore.create(), Composite()
    async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
        async with Server(ServerConfig(port=0), store) as server:
            port = server.port
            await client.request(register("slow-1"), ("127.0.0.1", port))
            registration = await store.registrations.get("slow-1")
            assert registration is not None
            rid = registration.registration_id
            for n in range(500):  # stored before the one the device holds: the resume reaches it last
                token = b"\xee" + n.to_bytes(2, "big")
                await store.observations.add(Observation(token, "slow-1", rid, (BATTERY,)))
            real = await server.observe_composite("slow-1", [BATTERY, TEMPERATURE])

        async with Server(ServerConfig(port=port), store) as server:
            events = server.events()
            answer = await client.request(register("slow-2"), ("127.0.0.1", port))
            assert answer.code == Code.CREATED and server.observation_manager.resuming
            (relation,) = device.relations
            device.values[BATTERY] = 50
            assert client.notify(relation.relation, device.notification(relation))
            event = await next_event(events, NotificationReceived)
            assert event.token == real.token and server.observation_manager.resuming
            await server.resumed()
            assert len(server.observations()) == 501
            assert [o.token for o in server.observations()].count(real.token) == 1


async def test_a_refused_observe_composite_raises_and_keeps_nothing() -> None:
    from lwm2m.errors import ObserveRefused

    def refuse(event: RequestReceived) -> Message:
        return Message.build(Type.ACK, Code.NOT_ACCEPTABLE)

    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=refuse) as client,
    ):
        await client.request(register("picky"), ("127.0.0.1", server.port))
        try:
            await server.observe_composite("picky", [BATTERY])
        except ObserveRefused as exc:
            assert exc.response.code == Code.NOT_ACCEPTABLE
        else:
            raise AssertionError("the refusal was not raised")
        await asyncio.sleep(0)
        assert server.observations() == [] and await server.store.observations.all() == []


async def test_a_restart_takes_up_the_stored_observations_reading_no_registration_whole(
    tmp_path: FsPath,
) -> None:
    # A start on a million registrations with an observation each read every registration whole
    # to resume its observations (most of a 49-s start): what they need comes with the light
    # list the start reads anyway (``Reachable``: the registration ID, the root path).
    async with device_and_file(tmp_path) as (device, store, client):
        async with Server(ServerConfig(port=0), store) as server:
            port = server.port
            for ep in ("lite-1", "lite-2"):
                await client.request(register(ep), ("127.0.0.1", port))
                await server.observe_composite(ep, [BATTERY, TEMPERATURE])
        read: list[str] = []
        whole = store.registrations.get

        async def counted(endpoint: str) -> object:
            read.append(endpoint)
            return await whole(endpoint)

        store.registrations.get = counted  # type: ignore[method-assign]
        async with Server(ServerConfig(port=port), store) as server:
            await server.resumed()
            assert sorted(o.endpoint for o in server.observations()) == ["lite-1", "lite-2"]
            assert read == []
            (relation, _) = device.relations
            device.values[BATTERY] = 42
            assert client.notify(relation.relation, device.notification(relation))
            resumed = next(o for o in server.observations() if o.token == relation.message.token)
            got = await resumed.next(timeout=5)
            assert Record(BATTERY, 42) in got.records
