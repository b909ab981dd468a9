"""Failover between two server nodes on one shared store (``ServerConfig.shared_store``): a device
observed through node A is served by node B as soon as its next datagram arrives there, once A is
gone, whether that datagram is an Update (LwM2M-TS-Core 1.2 §6.2.2) or a notification of an
observation A made (§6.4: the client keeps it until a new Register; RFC 7641 §3.5 would have it
rejected by a node that does not know its token). A token the store does not know still gets RST.

The nodes are two ``Server`` objects in this process on different ports, sharing one
``MemoryStore`` or one SQLite file opened twice; the device is our CoAP endpoint behind a relay
whose server end moves from A to B, so B sees it at the address A saw."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.devices import TEMPERATURE, Thermometer
from tests.helpers.relay import Nat
from tests.helpers.server import next_event, register

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.model.record import Record
from lwm2m.server import role
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientUpdated, NotificationReceived, ServerEvent
from lwm2m.server.role import Server
from lwm2m.storage.base import Observation, Store
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

SHARED = ServerConfig(port=0, shared_store=True)
EP = "roamer"


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """The store of node A and that of node B: one object, or one SQLite file opened twice."""
    if request.param == "memory":
        shared = MemoryStore.create()
        yield shared, shared
        return
    path = tmp_path / "lwm2m.db"
    with SqliteStore(path) as a, SqliteStore(path) as b:
        yield a, b


@dataclass
class Failover:
    """Node B running, node A gone; the device observed through A, its relay pointing at B."""

    b: Server
    events: Any  # B's event stream, subscribed before A went
    device: Thermometer
    client: CoapUdpEndpoint
    nat: Nat
    relation: RequestReceived  # the device's side of the observation A made
    token: bytes
    location: tuple[str, ...]

    def notify(self, value: float) -> None:
        """The device notifies a new value (CON) on the observation A made."""
        self.device.value = value
        fmt = self.relation.message.accept
        assert fmt is not None
        note = Message.build(Type.CON, Code.CONTENT, content_format=fmt, payload=self.device.payload(fmt))
        assert self.client.notify(self.relation.relation, note)

    async def notified(self, value: float) -> None:
        """B evented the notification of ``value`` under A's token and stored it in its history."""
        event = await next_event(self.events, NotificationReceived)
        assert (event.endpoint, event.token, event.records) == (EP, self.token, (Record(TEMPERATURE, value),))
        await self.b.store.history.flush()
        (newest, *_) = await self.b.history(EP, TEMPERATURE)
        assert (newest.record, newest.source) == (Record(TEMPERATURE, value), "notify")

    async def kept(self) -> None:
        """The device still holds its observation: B acknowledged, not rejected, the notification."""
        await asyncio.sleep(0.05)
        assert self.client.endpoint.observations() == [self.relation.relation]


@contextlib.asynccontextmanager
async def failed_over(stores: tuple[Store, Store]) -> AsyncIterator[Failover]:
    store_a, store_b = stores
    device = Thermometer()
    a = Server(SHARED, store_a)
    await a.start()
    nat = await Nat(("127.0.0.1", a.port)).start()
    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            created = await client.request(register(EP), nat.address, timeout=5)
            observation = await a.observe(EP, TEMPERATURE)
            (relation,) = device.relations
            async with Server(SHARED, store_b) as b:
                # B, started on a store that holds A's observation, took up none of it: the
                # other nodes' observations are theirs (lazy adoption).
                assert b.observations() == []
                assert b.registrar.endpoint_at(nat.public) is None
                events = b.events()
                failover = Failover(b, events, device, client, nat, relation, observation.token, ())
                failover.notify(21.0)
                assert (await observation.next(timeout=5)).records == (Record(TEMPERATURE, 21.0),)

                await a.stop()  # gone; what it stored stays, as after a kill
                nat.server = ("127.0.0.1", b.port)  # the balancer sends the device to B
                failover.location = tuple(created.location_path)
                yield failover
    finally:
        nat.close()
        await a.stop()


async def test_an_update_at_another_node_adopts_the_device(stores: tuple[Store, Store]) -> None:
    async with failed_over(stores) as f:
        update = Message.build(Type.CON, Code.POST, uri_path="/".join(f.location))
        assert (await f.client.request(update, f.nat.address, timeout=5)).code == Code.CHANGED
        updated = await next_event(f.events, ClientUpdated)
        assert updated.registration.address == f.nat.public
        assert [o.token for o in f.b.observations()] == [f.token]  # resumed with the Update

        read = await f.b.read(EP, TEMPERATURE, timeout=5)
        assert (read.code, read.records) == (Code.CONTENT, (Record(TEMPERATURE, 21.0),))
        for value in (30.5, 31.5):
            f.notify(value)
            await f.notified(value)
        await f.kept()


async def test_a_notification_at_another_node_is_accepted(stores: tuple[Store, Store]) -> None:
    async with failed_over(stores) as f:
        f.notify(30.5)  # before any Update: B finds the token in the store
        await f.notified(30.5)
        await f.kept()
        assert [o.token for o in f.b.observations()] == [f.token]
        f.notify(31.5)  # later ones go the plain way
        await f.notified(31.5)
        await f.kept()
        # Adopted: requests reach the device at the address its notification came from.
        read = await f.b.read(EP, TEMPERATURE, timeout=5)
        assert (read.code, read.records) == (Code.CONTENT, (Record(TEMPERATURE, 31.5),))
        assert await f.b.adopt(EP, f.nat.public)  # again: nothing changes
        assert [o.token for o in f.b.observations()] == [f.token]


class Probe(asyncio.DatagramProtocol):
    """A bare UDP socket that sends datagrams and queues what comes back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[Message] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(Message.decode(data))


async def _answer_to(server: Server, token: bytes, mid: int) -> Message:
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
    try:
        note = Message.build(Type.CON, Code.CONTENT, mid, token, observe=7, payload=b"21.5")
        transport.sendto(note.encode(), ("127.0.0.1", server.port))
        return await asyncio.wait_for(probe.received.get(), 5)
    finally:
        transport.close()


@pytest.mark.parametrize("shared", [True, False])
async def test_a_token_the_store_does_not_hold_gets_rst(stores: tuple[Store, Store], shared: bool) -> None:
    store_a, store_b = stores
    async with Server(ServerConfig(port=0, shared_store=shared), store_b) as b:
        events = b.events()
        answer = await _answer_to(b, os.urandom(8), 4321)
        assert (answer.type, answer.mid) == (Type.RST, 4321)  # RFC 7641 §3.5

        # A stored token of a registration since replaced is no more the device's.
        async with open_udp_endpoint("127.0.0.1", 0, handler=Thermometer()) as client:
            await client.request(register(EP), ("127.0.0.1", b.port), timeout=5)
        stale = Observation(b"old-tk01", EP, "gone", (TEMPERATURE,))
        await store_a.observations.add(stale)
        answer = await _answer_to(b, stale.token, 4322)
        assert (answer.type, answer.mid) == (Type.RST, 4322)
        assert b.observations() == []
        assert b._endpoint is not None and b._endpoint.endpoint.state_sizes()["held"] == 0
        seen: list[ServerEvent] = [await events.__anext__() for _ in range(events.pending)]
        assert not any(isinstance(e, NotificationReceived) for e in seen)


async def test_look_ups_that_do_not_end_do_not_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that never answers: beyond the look-ups the CoAP endpoint may hold notifications
    for, one more is rejected at once; the held ones get their RST when their time is over."""
    store = MemoryStore.create()

    async def never(token: bytes) -> Observation | None:
        await asyncio.Event().wait()
        return None

    monkeypatch.setattr(store.observations, "get", never)
    monkeypatch.setattr(role, "HELD_NOTIFICATIONS", 2)
    async with Server(SHARED, store) as b:
        loop = asyncio.get_running_loop()
        transport, probe = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
        try:
            for mid in (1, 2, 3):
                note = Message.build(Type.CON, Code.CONTENT, mid, os.urandom(8), observe=7, payload=b"1")
                transport.sendto(note.encode(), ("127.0.0.1", b.port))
                await asyncio.sleep(0.02)
            answers = [await asyncio.wait_for(probe.received.get(), 5) for _ in range(3)]
            assert [(m.type, m.mid) for m in answers] == [(Type.RST, 3), (Type.RST, 1), (Type.RST, 2)]
            assert len(b._takeovers) == 2  # still waiting for the store; cancelled at stop
        finally:
            transport.close()
