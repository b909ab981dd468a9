"""DTLS session takeover between the nodes of a cluster (docs/cluster.md, "DTLS session
takeover"): two or three ``Server`` nodes on one Redis store, a device (our DTLS client) behind a
relay whose server end moves from node to node once the node it used is gone. The next node
takes the session over from the store, without a handshake, in a write sequence range of its
own (RFC 6347 §4.1: no nonce twice), and the Update it gets moves the registration there."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.helpers.devices import TEMPERATURE, Thermometer
from tests.helpers.pki import KEY
from tests.helpers.polling import eventually
from tests.helpers.relay import Nat
from tests.helpers.security import count_hellos, deregister, psk, update
from tests.helpers.server import Device, next_event, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.redis import RedisStore
from lwm2m.transport.dtls import SessionLimits, open_dtls_endpoint
from lwm2m.transport.dtls.layer import DtlsLayer
from lwm2m.transport.dtls.records import ContentType
from lwm2m.transport.dtls.takeover import taker_range

EP = "dev-1"
MODELS = load_catalogue()


class Wiretap(Nat):
    """The relay, keeping what the servers send to the device."""

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server)
        self.to_device: list[bytes] = []
        self.senders: list[Any] = []

    def _from_server(self, data: bytes, addr: Any) -> None:
        self.to_device.append(data)
        self.senders.append(addr[:2])
        super()._from_server(data, addr)

    def first_sequence(self) -> int:
        """The sequence number of the first protected record sent to the device since the
        last ``clear`` (RFC 6347 §4.1: bytes 5..10 of the record header)."""
        protected = (ContentType.APPLICATION_DATA, ContentType.TLS12_CID)
        record = next(d for d in self.to_device if d[0] in protected)
        return int.from_bytes(record[5:11], "big")


def node(byte: int, cid: bool) -> ServerConfig:
    """Node ``byte``; without ``cid`` it gives no Connection IDs (RFC 9146), so that the
    device's records carry none and its session is found by its address."""
    limits = SessionLimits(node_id=byte) if cid else SessionLimits(node_id=byte, cid_length=0)
    return ServerConfig(port=0, coaps_port=0, shared_store=True, dtls_limits=limits)


def layer(server: Server) -> DtlsLayer:
    assert server.dtls is not None
    return server.dtls.dtls


async def shared_entries(url: str) -> dict[str, dict[bytes, bytes]]:
    r = aioredis.from_url(url)
    try:
        keys = [k.decode() async for k in r.scan_iter("lwm2m:dtls:s:*")]
        return {k: await r.hgetall(k) for k in keys}
    finally:
        await r.aclose()


async def started(byte: int, url: str, cid: bool = True) -> Server:
    server = Server(node(byte, cid), RedisStore(url))
    await server.start()
    return server


async def stopped(server: Server) -> None:
    """The node goes as after kill -9, as far as the store sees: its stop writes no session
    (asserted by the callers: the shared entries are the same before and after)."""
    await server.stop()
    server.store.close()


@pytest.fixture
async def secured(redis_url: str) -> AsyncIterator[str]:
    store = RedisStore(redis_url)
    await store.security.put(SecurityInfo(EP, "dev-1-id", KEY))
    store.close()
    yield redis_url


@pytest.mark.parametrize("cid", [True, False], ids=["cid", "address"])
async def test_a_device_goes_on_at_the_next_node_without_a_handshake(secured: str, cid: bool) -> None:
    url = secured
    a = await started(1, url, cid)
    assert a.coaps_port is not None
    nat = await Wiretap(("127.0.0.1", a.coaps_port)).start()
    nodes = [a]
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as client:
            created = await client.request(register(EP), nat.address, timeout=5)
            assert created.code == Code.CREATED
            entries = await eventually(lambda: shared_entries(url))
            ((key, entry),) = entries.items()
            assert key.startswith("lwm2m:dtls:s:c:" if cid else "lwm2m:dtls:s:a:")
            base = int(entry[b"b"])
            hellos = count_hellos(client)

            b = await started(2, url, cid)
            nodes.append(b)
            await stopped(a)
            assert await shared_entries(url) == entries  # a's stop wrote nothing
            assert b.coaps_port is not None
            nat.server = ("127.0.0.1", b.coaps_port)
            nat.to_device.clear()
            nat.senders.clear()
            changed = await client.request(update(created.location_path), nat.address, timeout=5)
            assert changed.code == Code.CHANGED
            assert hellos == []
            assert layer(b).counters["handshakes_started"] == 0
            assert layer(b).counters["sessions_taken_over"] == 1
            first = nat.first_sequence()
            assert first in taker_range(base, 1)
            assert first >= base + (1 << 36)  # above every number the first node may use
            read = await b.read(EP, "/3/0/0", timeout=5)
            assert read.success  # adopted: requests reach the device from b

            # Once more: b goes, c takes the session over in the next range.
            c = await started(3, url, cid)
            nodes.append(c)
            await stopped(b)
            assert c.coaps_port is not None
            nat.server = ("127.0.0.1", c.coaps_port)
            nat.to_device.clear()
            nat.senders.clear()
            changed = await client.request(update(created.location_path), nat.address, timeout=5)
            assert changed.code == Code.CHANGED
            assert hellos == [] and layer(c).counters["handshakes_started"] == 0
            assert nat.first_sequence() in taker_range(base, 2)
            (entry,) = (await shared_entries(url)).values()
            assert int(entry[b"t"]) == 2 and int(entry[b"b"]) == base
    finally:
        nat.close()
        for server in nodes:
            await server.stop()
            server.store.close()


async def test_a_live_node_that_lost_its_session_ends_it_without_close_notify(secured: str) -> None:
    """The balancer moved the device while its node lives: the next node takes the session
    over; the first learns it at its next refresh and ends its copy silently (a close_notify
    under the shared keys would end the device's session at the new node too)."""
    url = secured
    a, b = await started(1, url), await started(2, url)
    assert a.coaps_port is not None and b.coaps_port is not None
    nat = await Wiretap(("127.0.0.1", a.coaps_port)).start()
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as client:
            created = await client.request(register(EP), nat.address, timeout=5)
            await eventually(lambda: shared_entries(url))
            hellos = count_hellos(client)
            nat.server = ("127.0.0.1", b.coaps_port)
            changed = await client.request(update(created.location_path), nat.address, timeout=5)
            assert changed.code == Code.CHANGED and hellos == []
            share_a = a._dtls_share
            assert share_a is not None
            nat.senders.clear()
            assert await share_a.refresh(0.0) == 0
            assert share_a.counters["lost"] == 1 and list(layer(a).sessions()) == []
            await asyncio.sleep(0.05)
            assert ("127.0.0.1", a.coaps_port) not in nat.senders  # no close_notify
            changed = await client.request(update(created.location_path), nat.address, timeout=5)
            assert changed.code == Code.CHANGED and hellos == []
    finally:
        nat.close()
        for server in (a, b):
            await server.stop()
            server.store.close()


async def test_a_forged_record_claims_nothing_and_an_ended_session_leaves_the_store(secured: str) -> None:
    url = secured
    a, b = await started(1, url), await started(2, url)
    assert a.coaps_port is not None and b.coaps_port is not None
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as client:
            created = await client.request(register(EP), ("127.0.0.1", a.coaps_port), timeout=5)
            entries = await eventually(lambda: shared_entries(url))
            (key,) = entries
            cid = bytes.fromhex(key.rsplit(":", 1)[1])
            # A record with the session's CID (seen on the wire) that does not authenticate.
            forged = bytes([25, 0xFE, 0xFD, 0, 1]) + bytes(5) + b"\x07" + cid + bytes([0, 30]) + bytes(30)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", b.coaps_port)
            )
            transport.sendto(forged)
            transport.close()
            share_b = b._dtls_share
            assert share_b is not None
            await eventually(lambda: _value(share_b.counters["forged"]))
            assert await shared_entries(url) == entries  # nothing claimed: a keeps it
            assert layer(b).counters["sessions_taken_over"] == 0

            # De-registration: the session leaves the store.
            gone = await client.request(
                deregister(created.location_path), ("127.0.0.1", a.coaps_port), timeout=5
            )
            assert gone.code == Code.DELETED
            await eventually(lambda: _value(not _keys_left(url)))
            # Registered again over that session: published again; ended by the device's
            # close_notify: it leaves the store too.
            await client.request(register(EP), ("127.0.0.1", a.coaps_port), timeout=5)
            await eventually(lambda: shared_entries(url))
            client.close_session(("127.0.0.1", a.coaps_port))
            await eventually(lambda: _value(not _keys_left(url)))
    finally:
        for server in (a, b):
            await server.stop()
            server.store.close()


async def _value(value: Any) -> Any:
    return value


def _keys_left(url: str) -> bool:
    import redis as redis_sync

    r = redis_sync.Redis.from_url(url)
    try:
        return any(True for _ in r.scan_iter("lwm2m:dtls:s:*"))
    finally:
        r.close()


async def test_a_ticket_made_at_one_node_resumes_at_another(secured: str) -> None:
    """The nodes share their ticket keys (RFC 5077) through the store: a device whose session
    ended makes an abbreviated handshake at the next node with the ticket the first gave."""
    url = secured
    a = await started(1, url)
    b = await started(2, url)  # started after a: it took up the keys a wrote
    assert a.coaps_port is not None and b.coaps_port is not None
    nat = await Wiretap(("127.0.0.1", a.coaps_port)).start()
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as client:
            created = await client.request(register(EP), nat.address, timeout=5)
            assert created.code == Code.CREATED
            client.close_session(nat.address)
            await eventually(lambda: _value(not _keys_left(url)))
            nat.server = ("127.0.0.1", b.coaps_port)
            changed = await client.request(update(created.location_path), nat.address, timeout=5)
            assert changed.code == Code.CHANGED
            assert layer(b).counters["handshakes_done"] == 1
            assert layer(b).counters["handshakes_resumed"] == 1
    finally:
        nat.close()
        for server in (a, b):
            await server.stop()
            server.store.close()


async def test_the_ticket_keys_rotated_last_are_shared(secured: str) -> None:
    """Each node rotates its ticket keys once a day: the keys rotated last go to the store and
    the other nodes take them up, so that their tickets open everywhere again."""
    url = secured
    a = await started(1, url)
    try:
        share = a._dtls_share
        assert share is not None
        mine = layer(a).ticket_state()
        assert mine is not None
        assert await share.sync_tickets() is False  # the same keys: nothing to do
        newer = bytes([1]) + struct.pack(">d", time.time() + 60) + os.urandom(32)
        await a.store.dtls_sessions.put_ticket_keys(newer)
        assert await share.sync_tickets() is True
        assert layer(a).ticket_state() == newer
        older = bytes([1]) + struct.pack(">d", 1000.0) + os.urandom(32)
        await a.store.dtls_sessions.put_ticket_keys(older)
        assert await share.sync_tickets() is False
        assert await a.store.dtls_sessions.ticket_keys() == newer  # ours, the later, written back
    finally:
        await a.stop()
        a.store.close()


async def test_a_notification_at_the_next_node_takes_the_session_and_the_observation_over(
    secured: str,
) -> None:
    """The device's first datagram after its node died is a notification (RFC 7641) of an
    observation that node made: the next node takes the DTLS session over, finds the token in
    the store, adopts the device and acknowledges the notification (no RST)."""
    url = secured
    a = await started(1, url)
    assert a.coaps_port is not None
    nat = await Wiretap(("127.0.0.1", a.coaps_port)).start()
    device = Thermometer()
    nodes = [a]
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=device) as client:
            created = await client.request(register(EP), nat.address, timeout=5)
            assert created.code == Code.CREATED
            observation = await a.observe(EP, TEMPERATURE)
            (relation,) = device.relations
            await eventually(lambda: shared_entries(url))
            hellos = count_hellos(client)
            b = await started(2, url)
            nodes.append(b)
            events = b.events()
            await stopped(a)
            assert b.coaps_port is not None
            nat.server = ("127.0.0.1", b.coaps_port)

            device.value = 30.5
            fmt = relation.message.accept
            assert fmt is not None
            note = Message.build(Type.CON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
            assert client.notify(relation.relation, note)
            event = await next_event(events, NotificationReceived)
            assert (event.endpoint, event.token, event.records) == (
                EP,
                observation.token,
                (Record(TEMPERATURE, 30.5),),
            )
            await asyncio.sleep(0.05)
            assert client.endpoint.observations() == [relation.relation]  # acknowledged, kept
            assert hellos == [] and layer(b).counters["sessions_taken_over"] == 1
    finally:
        nat.close()
        for server in nodes:
            await server.stop()
            server.store.close()


async def test_a_refresh_keeps_an_unshared_session_and_ends_one_at_its_range_end(secured: str) -> None:
    """A session whose entry expired goes on at its node, unshared (published anew, its base
    could fall in a range a taker held); one whose write sequence numbers reach the end of its
    node's range is ended (close_notify: the device handshakes anew, with new keys)."""
    url = secured
    a = await started(1, url)
    assert a.coaps_port is not None
    at_a = ("127.0.0.1", a.coaps_port)
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as client:
            created = await client.request(register(EP), at_a, timeout=5)
            ((key, entry),) = (await eventually(lambda: shared_entries(url))).items()
            share = a._dtls_share
            assert share is not None
            (device,) = share.keys
            held = share.keys[device]
            assert held.end == taker_range(int(entry[b"b"]), 0).stop  # the maker's range
            assert await share.refresh(0.0) == 1  # ours: written anew

            r = aioredis.from_url(url)
            await r.delete(key)
            await r.aclose()
            assert await share.refresh(0.0) == 0
            assert share.counters["unshared"] == 1 and share.keys == {}
            assert [s.addr for s in layer(a).sessions()] == [device]  # goes on here
            changed = await client.request(update(created.location_path), at_a, timeout=5)
            assert changed.code == Code.CHANGED

            await client.request(register(EP), at_a, timeout=5)  # published again
            await eventually(lambda: shared_entries(url))
            share.keys[device] = held._replace(end=1 << 20)  # a range nearly used up
            assert await share.refresh(0.0) == 0
            assert share.counters["range_used"] == 1 and list(layer(a).sessions()) == []
            await eventually(lambda: _value(not _keys_left(url)))  # ended: forgotten
    finally:
        await a.stop()
        a.store.close()


async def test_a_send_first_at_the_next_node_is_served_and_adopts_the_device(secured: str) -> None:
    """The device's first datagram at the node that takes its session over is a Send (LwM2M-TS-
    Core 1.2 §6.4.6), not an Update: the session's identity names the endpoint, so the node
    adopts the registration and stores the values, where over plain CoAP it could only refuse."""
    url = secured
    a = await started(1, url)
    assert a.coaps_port is not None
    nat = await Wiretap(("127.0.0.1", a.coaps_port)).start()
    nodes = [a]
    try:
        async with open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as client:
            created = await client.request(register(EP), nat.address, timeout=5)
            assert created.code == Code.CREATED
            await eventually(lambda: shared_entries(url))
            hellos = count_hellos(client)
            b = await started(2, url)
            nodes.append(b)
            await stopped(a)
            assert b.coaps_port is not None
            nat.server = ("127.0.0.1", b.coaps_port)
            payload = get_codec(CF.SENML_CBOR).encode([Record(TEMPERATURE, 21.5)], ROOT, MODELS)
            send = Message.build(
                Type.CON, Code.POST, uri_path="/dp", content_format=CF.SENML_CBOR, payload=payload
            )
            answer = await client.request(send, nat.address, timeout=5)
            assert answer.code == Code.CHANGED, answer.payload
            assert hellos == [] and layer(b).counters["sessions_taken_over"] == 1
            await b.store.history.flush()
            (entry,) = await b.store.history.query(EP)
            assert entry.record == Record(TEMPERATURE, 21.5) and entry.source == "send"
            read = await b.read(EP, "/3/0/0", timeout=5)
            assert read.success  # adopted: requests reach the device from b
    finally:
        nat.close()
        for server in nodes:
            await server.stop()
            server.store.close()
