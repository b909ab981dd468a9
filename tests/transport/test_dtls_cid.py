"""Connection IDs (RFC 9146) through the session layer on our engine: the server gives CIDs that
start with its node id, finds a session by the CID of a ``tls12_cid`` record, and moves the
session to a new address only for a record that authenticates and is newer than any before
(§6); end to end, an LwM2M registration follows its client through a NAT rebinding without a
new handshake."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.helpers.client import temperature
from tests.helpers.events import next_event
from tests.helpers.pki import KEY, SERVER, Wire, answer_requests, ask, client_layer, get, server_layer

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered, ClientUpdated
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import (
    DtlsLayer,
    PeerIdentity,
    PskCredentials,
    SessionEnded,
    SessionLimits,
    SessionMoved,
)
from lwm2m.transport.dtls.records import is_client_hello

TLS12_CID = 25
CID_AT = 11  # after type, version, epoch and sequence number (RFC 9146 §4)


def moves(layer: DtlsLayer) -> list[SessionMoved]:
    return [e for e in getattr(layer, "seen", []) if isinstance(e, SessionMoved)]


def connected(limits: SessionLimits | None = None) -> tuple[Wire, DtlsLayer, DtlsLayer, Any]:
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, limits))
    peer = ("192.0.2.10", 40300)
    client = wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer) is not None
    return wire, server, client, peer


def rebind(wire: Wire, old: Any, new: Any) -> None:
    """The client's NAT gives it a new source address."""
    wire.nodes[new] = wire.nodes.pop(old)


def test_the_server_gives_cids_led_by_its_node_id_and_the_client_sends_them() -> None:
    wire, server, _client, peer = connected(SessionLimits(node_id=0xA7))
    to_server = [d for d, src, dst in wire.sent if src == peer and d[0] == TLS12_CID]
    assert to_server, "the client's records after the handshake carry the server's CID"
    cids = {d[CID_AT : CID_AT + 6] for d in to_server}
    assert len(cids) == 1
    (cid,) = cids
    assert cid[0] == 0xA7 and len(cid) == 6
    assert server.state_sizes()["dtls_cids"] == 1
    # The client asked for an empty CID: the server's records to it are plain ones.
    assert all(d[0] != TLS12_CID for d, src, _ in wire.sent if src == SERVER)


def test_a_session_follows_its_client_to_a_new_address_without_a_handshake() -> None:
    wire, server, _client, peer = connected()
    new = ("198.51.100.7", 61000)
    rebind(wire, peer, new)
    sent_before = len(wire.sent)
    assert ask(wire, new).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert not any(is_client_hello(d) for d, _, _ in wire.sent[sent_before:])
    (moved,) = moves(server)
    assert (moved.old, moved.addr, moved.identity) == (peer, new, PeerIdentity("psk", "dev-1"))
    assert server.peer_identity(new) == PeerIdentity("psk", "dev-1") and server.peer_identity(peer) is None
    assert server.counters["handshakes_done"] == 1 and server.counters["sessions_moved"] == 1
    # The server's own requests go to the new address.
    server.request(get("/3/0"), new, time.monotonic())
    ((_, dst),) = server.datagrams_to_send(time.monotonic())
    assert dst == new


def test_a_parked_session_is_found_by_its_cid_from_a_new_address() -> None:
    """Idle, the session is parked as bytes; the NAT rebinds meanwhile: its next record finds it
    by CID, it is taken up without a handshake, and it moves (RFC 9146 §6)."""
    wire = Wire()
    now = time.monotonic()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, SessionLimits(idle_timeout=30.0)))
    peer = ("192.0.2.10", 40301)
    wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer, now) is not None
    wire.tick(now + 31)
    sizes = server.state_sizes()
    assert sizes["dtls_parked"] == 1 and sizes["dtls_parked_cids"] == 1 and sizes["dtls_cids"] == 0
    new = ("198.51.100.7", 61001)
    rebind(wire, peer, new)
    sent_before = len(wire.sent)
    assert ask(wire, new, now + 32).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert not any(is_client_hello(d) for d, _, _ in wire.sent[sent_before:])
    (moved,) = moves(server)
    assert (moved.old, moved.addr) == (peer, new)
    sizes = server.state_sizes()
    assert sizes["dtls_parked"] == 0 and sizes["dtls_parked_cids"] == 0 and sizes["dtls_cids"] == 1
    assert server.counters["sessions_resumed"] == 1 and server.counters["handshakes_done"] == 1


def test_spoofed_cid_records_do_not_take_up_a_parked_session() -> None:
    """Records that carry a parked session's CID but do not authenticate (a replay, forged ones,
    garbage behind the CID) leave it parked where it was, from any address; the client's next
    real record takes it up."""
    wire = Wire()
    now = time.monotonic()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}, SessionLimits(idle_timeout=30.0)))
    peer = ("192.0.2.10", 40302)
    client = wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer, now) is not None
    record = client._sessions[SERVER].conn.write(Message.build(Type.NON, Code.GET, uri_path="/a").encode())
    server.receive_datagram(record, peer, now)
    answer_requests(server, now)
    wire.pump(now)  # the answer
    wire.tick(now + 31)
    assert server.state_sizes()["dtls_parked_cids"] == 1
    header = record[: CID_AT + 6]  # up to the length field: the CID is 6 bytes by default
    spoofed = [record, record[:-1] + bytes([record[-1] ^ 1]), header + bytes(40), header + b"\x17" * 3]
    elsewhere = ("203.0.113.9", 5000)
    for source in (peer, elsewhere):
        for datagram in spoofed:
            server.receive_datagram(datagram, source, now + 32)
    assert [info.addr for info in server.parked()] == [peer] and list(server.sessions()) == []
    assert server.state_sizes()["dtls_parked_cids"] == 1 and server.state_sizes()["dtls_cids"] == 0
    assert server.counters["sessions_resumed"] == 0 and moves(server) == []
    assert ask(wire, peer, now + 33).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert server.counters["sessions_resumed"] == 1 and server.counters["handshakes_done"] == 1


def test_replayed_older_and_forged_records_from_another_address_do_not_move_a_session() -> None:
    wire, server, client, peer = connected()
    now = time.monotonic()
    # Two records of the client's session, numbered in order (CoAP NON requests inside).
    conn = client._sessions[SERVER].conn
    first = conn.write(Message.build(Type.NON, Code.GET, uri_path="/a").encode())
    second = conn.write(Message.build(Type.NON, Code.GET, uri_path="/b").encode())
    assert first[0] == second[0] == TLS12_CID
    server.receive_datagram(second, peer, now)
    elsewhere = ("203.0.113.9", 5000)
    server.receive_datagram(second, elsewhere, now)  # a replay from elsewhere
    server.receive_datagram(first, elsewhere, now)  # authentic, but older than `second`
    forged = bytearray(second)
    forged[-1] ^= 1
    server.receive_datagram(bytes(forged), elsewhere, now)  # does not authenticate
    wire.pump(now)
    assert moves(server) == [] and server.counters["sessions_moved"] == 0
    assert server.peer_identity(peer) is not None and server.peer_identity(elsewhere) is None
    # An unknown CID finds nothing.
    unknown = bytearray(second)
    unknown[CID_AT + 1] ^= 0xFF
    server.receive_datagram(bytes(unknown), elsewhere, now)
    assert server.counters["errors"] == 0


def test_a_move_onto_the_address_of_another_session_ends_that_session() -> None:
    wire, server, _client, peer = connected()
    other = ("192.0.2.11", 40301)
    wire.add(other, client_layer("dev-1", KEY))
    assert ask(wire, other) is not None
    del wire.nodes[other]  # its peer lost the address: the NAT gives it to the first client
    rebind(wire, peer, other)
    assert ask(wire, other) is not None
    assert [e.reason for e in getattr(server, "seen", []) if isinstance(e, SessionEnded)] == ["replaced"]
    assert server.state_sizes()["dtls_sessions"] == 1 and server.state_sizes()["dtls_cids"] == 1


def test_without_cids_records_from_a_new_address_are_dropped() -> None:
    wire, server, _client, peer = connected(SessionLimits(cid_length=0))
    assert all(d[0] != TLS12_CID for d, _, _ in wire.sent)
    new = ("198.51.100.7", 61001)
    rebind(wire, peer, new)
    wire.nodes[new].request(get("/x"), SERVER, time.monotonic())
    wire.pump()
    assert server.counters["dropped_unknown_peer"] >= 1 and moves(server) == []


# --- end to end: an LwM2M client behind a NAT that rebinds -------------------------------------------


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, receive: Any) -> None:
        self.receive = receive

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receive(data, addr)


class Relay:
    """A NAT in the test: the client talks to ``port``; the relay forwards to the server from its
    current outside socket, and ``rebind`` replaces that socket (a new source port)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.client: Any = None
        self.hellos = 0
        self.front: Any = None
        self.back: Any = None

    async def start(self) -> Relay:
        loop = asyncio.get_running_loop()
        self.front, _ = await loop.create_datagram_endpoint(
            lambda: _Socket(self._from_client), local_addr=("127.0.0.1", 0)
        )
        await self.rebind()
        return self

    @property
    def port(self) -> int:
        return int(self.front.get_extra_info("sockname")[1])

    @property
    def outside(self) -> Any:
        return self.back.get_extra_info("sockname")[:2]

    async def rebind(self) -> None:
        old = self.back
        self.back, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Socket(self._from_server), local_addr=("127.0.0.1", 0)
        )
        if old is not None:
            old.close()  # what the server still sends to the old port is lost, as at a NAT

    def _from_client(self, data: bytes, addr: Any) -> None:
        self.client = addr
        if is_client_hello(data):
            self.hellos += 1
        self.back.sendto(data, self.target)

    def _from_server(self, data: bytes, addr: Any) -> None:
        if self.client is not None:
            self.front.sendto(data, self.client)

    def close(self) -> None:
        for transport in (self.front, self.back):
            if transport is not None:
                transport.close()


@pytest.mark.parametrize("first_word", ["update", "send"])
async def test_a_registration_follows_its_client_through_a_nat_rebinding(first_word: str) -> None:
    """After the rebinding the client's first record is an Update, or a Send (which the server
    takes only from a registered client's address: the move made it so)."""
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("cid-dev", "cid-id", KEY))
        assert server.coaps_port and server.dtls is not None
        relay = await Relay(("127.0.0.1", server.coaps_port)).start()
        try:
            events = server.events()
            config = ClientConfig(psk=PskCredentials("cid-id", KEY))
            client = Client("cid-dev", f"coaps://127.0.0.1:{relay.port}", [temperature()], config=config)
            async with client:
                await next_event(events, ClientRegistered, timeout=10)
                first = relay.outside
                (registration,) = await server.registrations()
                assert tuple(registration.address) == first
                assert (await server.read("cid-dev", "/3303/0/5700", timeout=5)).success
                assert relay.hellos == 2  # the first and the one with the cookie

                await relay.rebind()
                second = relay.outside
                assert second != first
                # The client's next record comes from the new port.
                if first_word == "update":
                    client.trigger_update()
                    await next_event(events, ClientUpdated, timeout=10)
                else:
                    answer = await client.send(["/3303/0/5700"], timeout=5)
                    assert answer.code == Code.CHANGED
                    await asyncio.sleep(0.05)  # the stored address is written by a task
                (registration,) = await server.registrations()
                assert tuple(registration.address) == second
                assert server.registrar.peers["cid-dev"] == second
                read = await server.read("cid-dev", "/3303/0/5700", timeout=5)
                assert read.success  # the server's request reached the device at its new address
                layer = server.dtls.dtls
                assert layer.counters["sessions_moved"] == 1 and layer.counters["handshakes_done"] == 1
                assert relay.hellos == 2  # no new handshake
                assert [s.addr for s in server.dtls.sessions()] == [second]
        finally:
            relay.close()
