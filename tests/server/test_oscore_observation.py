"""Observations over OSCORE across a restart of the server (SQLite) and a takeover by another
node (Redis): the observation is stored with its request's binding (kid, Partial IV, kid
context: RFC 8613 §8.4, §4.1.3.5), so the restarted server, or the node the device's next
notification reaches, verifies the notifications against it and accepts them."""

from __future__ import annotations

from pathlib import Path as FsPath

import pytest
from tests.helpers.oscore import CLIENT
from tests.helpers.relay import Nat
from tests.helpers.server import next_event

from lwm2m.client import Client, ClientConfig, ObjectInstance
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived
from lwm2m.server.role import Server
from lwm2m.storage.base import OscoreSecrets, SecurityInfo
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)

ENTRY = SecurityInfo(
    "thermo-r",
    oscore=OscoreSecrets(CLIENT.master_secret, CLIENT.sender_id, CLIENT.recipient_id, CLIENT.master_salt),
)
TEMPERATURE = Path.parse("/3303/0/5700")


async def test_a_restarted_server_accepts_the_notifications_of_an_observation_over_oscore(
    tmp_path: FsPath,
) -> None:
    sensor = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        server = Server(ServerConfig(port=0), store)
        await server.start()
        port = server.port
        await server.security.put(ENTRY)
        client = Client("thermo-r", f"coap://127.0.0.1:{port}", [sensor], config=ClientConfig(oscore=CLIENT))
        async with client:
            try:
                await client.wait_registered(10)
                observation = await server.observe("thermo-r", str(TEMPERATURE), timeout=5)
                sensor.set(5700, 22.0)
                assert (await observation.next(timeout=5)).records == (Record(TEMPERATURE, 22.0),)
                (record,) = await store.observations.all()
                assert record.oscore is not None and record.oscore.kid == CLIENT.recipient_id
            finally:
                await server.stop()  # the observation stays stored; the device keeps it
            async with Server(ServerConfig(port=port), store) as again:
                events = again.events()
                await again.resumed()
                (resumed,) = again.observations()
                for value in (23.0, 23.5):
                    sensor.set(5700, value)
                    got = await resumed.next(timeout=5)
                    assert got.records == (Record(TEMPERATURE, value),)
                    event = await next_event(events, NotificationReceived)
                    assert event.records == (Record(TEMPERATURE, value),)


async def test_another_node_takes_an_observation_over_oscore_over(redis_url: str) -> None:
    # Node A observed the device and is gone; the device's next notification reaches node B,
    # which holds no context for it yet: it reads the entry, verifies the notification against
    # the stored binding, and takes the device over (LwM2M-TS-Core 1.2 §6.4).
    config = ServerConfig(port=0, shared_store=True)
    sensor = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
    with RedisStore(redis_url) as store_a, RedisStore(redis_url) as store_b:
        a = Server(config, store_a)
        await a.start()
        nat = await Nat(("127.0.0.1", a.port)).start()
        b = Server(config, store_b)
        try:
            await b.start()  # before the entry is put at node A: it knows nothing of it
            await a.security.put(ENTRY)
            host, port = nat.address
            client = Client("thermo-r", f"coap://{host}:{port}", [sensor], config=ClientConfig(oscore=CLIENT))
            async with client:
                await client.wait_registered(10)
                await a.observe("thermo-r", str(TEMPERATURE), timeout=5)
                assert b.security.oscore is not None and b.security.oscore.context("thermo-r") is None
                await a.stop()
                nat.server = ("127.0.0.1", b.port)
                events = b.events()
                sensor.set(5700, 24.0)
                event = await next_event(events, NotificationReceived)
                assert event.endpoint == "thermo-r" and event.records == (Record(TEMPERATURE, 24.0),)
                assert b.security.oscore.context("thermo-r") is not None
        finally:
            nat.close()
            await a.stop()
            await b.stop()
