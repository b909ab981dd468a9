"""Observe through the server: current value, notifications decoded, history kept, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath

import pytest
from tests.helpers.devices import TEMPERATURE, Thermometer
from tests.helpers.server import next_event, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import ObserveRefused
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived, ObservationEnded
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint


async def test_observe_notifications_history_and_passive_cancel() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        device = Thermometer()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            await client.request(register("thermo"), ("127.0.0.1", server.port))
            observation = await server.observe("thermo", TEMPERATURE)
            assert observation.response.records == (Record(TEMPERATURE, 20.0),)
            (relation,) = device.relations
            fmt = relation.message.accept
            assert fmt == CF.SENML_CBOR
            for value in (21.5, 22.0):
                device.value = value
                note = Message.build(Type.NON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
                assert client.notify(relation.relation, note)
                got = await observation.next(timeout=5)
                assert got.records == (Record(TEMPERATURE, value),)
                event = await next_event(events, NotificationReceived)
                assert event.endpoint == "thermo" and event.records == (Record(TEMPERATURE, value),)
            history = await server.history("thermo", "/3303")
            assert [e.record.value for e in history] == [22.0, 21.5]

            await observation.cancel()
            ended = await next_event(events, ObservationEnded)
            assert ended.reason == "cancelled"
            assert await server.store.observations.for_endpoint("thermo") == []
            # The next notification is answered with RST, which ends the relation on the device.
            device.value = 23.0
            note = Message.build(Type.CON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
            client.notify(relation.relation, note)
            for _ in range(50):
                if not client.notify(relation.relation, note):
                    break
                await asyncio.sleep(0.05)
            assert not client.notify(relation.relation, note)


async def test_active_cancel_sends_observe_1() -> None:
    async with Server(ServerConfig(port=0)) as server:
        device = Thermometer()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            await client.request(register("thermo-2"), ("127.0.0.1", server.port))
            observation = await server.observe("thermo-2", TEMPERATURE, format="senml-json")
            assert device.relations[0].message.accept == CF.SENML_JSON
            await observation.cancel(active=True)
            assert device.cancels == 1


async def test_observe_of_a_missing_resource_is_refused() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=Thermometer()) as client,
    ):
        await client.request(register("thermo-3"), ("127.0.0.1", server.port))
        with pytest.raises(ObserveRefused, match=r"4\.04"):
            await server.observe("thermo-3", "/3303/0/5701")


async def test_unread_notifications_are_bounded_but_all_reach_the_history() -> None:
    from lwm2m.server.observation import BACKLOG

    async with Server(ServerConfig(port=0)) as server:
        device = Thermometer()
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            await client.request(register("chatty"), ("127.0.0.1", server.port))
            observation = await server.observe("chatty", TEMPERATURE)
            (relation,) = device.relations
            fmt = relation.message.accept
            count = BACKLOG + 44
            for i in range(count):
                device.value = float(i)
                note = Message.build(Type.NON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
                client.notify(relation.relation, note)
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
            for _ in range(100):
                if len(await server.history("chatty", limit=1000)) == count:
                    break
                await asyncio.sleep(0.05)
            assert len(await server.history("chatty", limit=1000)) == count
            first_unread = await observation.next(timeout=1)
            assert first_unread.records[0].value == float(count - BACKLOG)


async def test_notifications_reach_a_sqlite_history_in_batches_and_all_by_stop(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lwm2m.server import role as server_module
    from lwm2m.storage.sqlite import SqliteStore

    db = tmp_path / "server.db"
    store = SqliteStore(db)
    reader = SqliteStore(db)  # another connection: sees what is committed
    try:
        async with Server(ServerConfig(port=0), store) as server:
            device = Thermometer()
            async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
                await client.request(register("batched"), ("127.0.0.1", server.port))
                observation = await server.observe("batched", TEMPERATURE)
                (relation,) = device.relations
                fmt = relation.message.accept
                for i in range(20):
                    device.value = float(i)
                    note = Message.build(
                        Type.NON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt)
                    )
                    client.notify(relation.relation, note)
                got = [(await observation.next(timeout=5)).records[0].value for _ in range(20)]
                assert got == [float(i) for i in range(20)]
                # The server's own queries see every value at once; the file has them a
                # moment later (HISTORY_FLUSH_DELAY), without any further notification.
                assert len(await server.history("batched", limit=100)) == 20
                for _ in range(100):
                    if len(await reader.history.query("batched")) == 20:
                        break
                    await asyncio.sleep(0.02)
                assert len(await reader.history.query("batched")) == 20
                monkeypatch.setattr(server_module, "HISTORY_FLUSH_DELAY", 3600.0)
                device.value = 99.0
                note = Message.build(Type.NON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
                client.notify(relation.relation, note)
                assert (await observation.next(timeout=5)).records[0].value == 99.0
                assert len(await reader.history.query("batched")) == 20  # not written yet
        # stop() wrote the last one, without waiting for the delay
        values = [e.record.value for e in await reader.history.query("batched", limit=1)]
        assert values == [99.0]
    finally:
        reader.close()
        store.close()
