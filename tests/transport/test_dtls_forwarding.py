"""The router of DTLS Connection ID forwarding (:class:`~lwm2m.transport.dtls.forwarding.DtlsRouter`),
sans-IO: which datagrams go over the link and which to this node's DTLS layer, and the routes
back to devices reached through another node (bounded, idle expiry, cleared by a direct datagram
or by the other node's end). The layer is a stand-in that records what reaches it."""

from __future__ import annotations

from typing import Any

import pytest

from lwm2m.transport.dtls.forwarding import DtlsRouter, ForwardingConfig
from lwm2m.transport.dtls.link import NO_PEER, PING, TO_DEVICE, TO_OWNER, LinkMessage, LinkMessageCodec

KEY = b"k" * 32
CODEC = LinkMessageCodec(KEY)
ME, OTHER, DEAD = 1, 2, 3
OTHER_LINK = ("10.0.0.2", 5690)
DEVICE = ("192.0.2.7", 40123)
DEVICE6 = ("2001:db8::7", 40123, 0, 0)


def cid_record(node: int, *, kind: int = 25) -> bytes:
    """A record header of ``kind`` with a 6-byte CID beginning with ``node``, and a payload."""
    return bytes([kind, 0xFE, 0xFD, 0, 1]) + bytes(6) + bytes([node, 9, 9, 9, 9, 9]) + b"\x00\x04abcd"


class Layer:
    """What the router uses of a DtlsLayer, recording what reaches it."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self.out: list[tuple[bytes, Any]] = []
        self.events: list[Any] = []
        self.at: set[Any] = set()  # addresses with a session
        self.inner: Any = None
        self.released = 0

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.received.append((data, addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out, self.out = self.out, []
        return out

    def established(self, addr: Any) -> bool:
        return addr in self.at

    def state_sizes(self) -> dict[str, int]:
        return {}

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Any: ...
    def respond(self, *args: Any) -> None: ...
    def request(self, *args: Any) -> bytes:
        return b""

    def notify(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def cancel(self, *args: Any) -> None: ...
    def resume_observation(self, *args: Any) -> None: ...
    def move_observation(self, *args: Any) -> bool:
        return True

    def observations(self) -> list[Any]:
        return []

    def handles(self) -> list[Any]:
        return []


def router(config: ForwardingConfig | None = None) -> tuple[DtlsRouter, Layer, list[tuple[bytes, Any]]]:
    layer = Layer()
    sent: list[tuple[bytes, Any]] = []
    r = DtlsRouter(layer, CODEC, ME, lambda data, addr: sent.append((data, addr)), config)  # type: ignore[arg-type]
    r.set_nodes({ME: ("10.0.0.1", 5690), OTHER: OTHER_LINK})
    return r, layer, sent


@pytest.mark.parametrize("peer", [DEVICE, DEVICE6])
def test_a_record_of_a_live_other_nodes_cid_goes_to_it_unchanged(peer: Any) -> None:
    r, layer, sent = router()
    record = cid_record(OTHER)
    r.receive_datagram(record, peer, 0.0)
    assert layer.received == []
    [(wire, to)] = sent
    assert to == OTHER_LINK
    assert CODEC.decode(wire) == LinkMessage(TO_OWNER, ME, peer, record)
    assert r.counters["forwarded"] == 1


@pytest.mark.parametrize(
    "datagram",
    [
        cid_record(ME),  # this node's own CID
        cid_record(DEAD),  # a node that is not alive (or publishes no link): the layer, for a takeover
        cid_record(OTHER, kind=23),  # application_data without a CID
        cid_record(OTHER, kind=22),  # a handshake record
        cid_record(OTHER)[:11],  # too short to hold a CID byte
        b"",
    ],
)
def test_everything_else_goes_to_this_nodes_layer(datagram: bytes) -> None:
    r, layer, sent = router()
    r.receive_datagram(datagram, DEVICE, 0.0)
    assert layer.received == [(datagram, DEVICE)] and sent == []
    assert r.counters["forwarded"] == 0


def test_the_own_byte_is_never_a_route_even_when_listed() -> None:
    r, _, _ = router()
    assert ME not in r.nodes and r.nodes == {OTHER: OTHER_LINK}


def test_a_forwarded_record_is_fed_under_the_devices_address_and_answers_go_back_through_its_node() -> None:
    r, layer, sent = router()
    layer.at.add(DEVICE)  # the record authenticated: the layer has a session there
    r.from_link(LinkMessage(TO_OWNER, OTHER, DEVICE, b"record"), ("10.9.9.9", 1), 5.0)
    assert layer.received == [(b"record", DEVICE)] and r.counters["forwarded_in"] == 1
    assert r.route(DEVICE) == OTHER_LINK  # the sender's published link, not the datagram's source
    layer.out = [(b"answer", DEVICE), (b"to-another", ("192.0.2.8", 1))]
    assert r.datagrams_to_send(6.0) == [(b"to-another", ("192.0.2.8", 1))]
    [(wire, to)] = sent
    assert to == OTHER_LINK and CODEC.decode(wire) == LinkMessage(TO_DEVICE, ME, DEVICE, b"answer")
    assert r.counters["sent_via"] == 1
    # The device comes straight to this node again: its route ends.
    r.receive_datagram(b"\x17direct", DEVICE, 7.0)
    assert r.route(DEVICE) is None
    layer.out = [(b"answer", DEVICE)]
    assert r.datagrams_to_send(8.0) == [(b"answer", DEVICE)]


def test_a_record_that_did_not_authenticate_leaves_no_route() -> None:
    r, layer, _ = router()
    r.from_link(LinkMessage(TO_OWNER, OTHER, DEVICE, b"garbage"), OTHER_LINK, 0.0)
    assert layer.received == [(b"garbage", DEVICE)] and r.route(DEVICE) is None


def test_a_datagram_for_a_device_is_sent_from_this_nodes_socket() -> None:
    r, layer, sent = router()
    r.from_link(LinkMessage(TO_DEVICE, OTHER, DEVICE6, b"answer"), OTHER_LINK, 0.0)
    assert layer.received == [] and sent == []
    layer.out = [(b"own", DEVICE)]
    assert r.datagrams_to_send(0.0) == [(b"own", DEVICE), (b"answer", DEVICE6)]
    assert r.datagrams_to_send(0.0) == [] and r.counters["relayed"] == 1


def test_routes_are_bounded_and_expire_when_idle() -> None:
    r, layer, sent = router(ForwardingConfig(max_routes=3, route_idle=10.0))
    peers = [("192.0.2.1", p) for p in range(1, 6)]
    layer.at.update(peers)
    for i, peer in enumerate(peers):
        r.from_link(LinkMessage(TO_OWNER, OTHER, peer, b"r"), OTHER_LINK, float(i))
    assert [r.route(p) for p in peers] == [None, None, OTHER_LINK, OTHER_LINK, OTHER_LINK]
    # The least recently heard goes first; idle ones are not used.
    layer.out = [(b"a", peers[2]), (b"b", peers[4])]
    assert r.datagrams_to_send(13.5) == [(b"a", peers[2])]  # heard at 2.0: idle for 11.5 s
    assert r.route(peers[2]) is None and len(sent) == 1


def test_routes_through_a_node_that_is_gone_end() -> None:
    r, layer, _ = router()
    layer.at.add(DEVICE)
    r.from_link(LinkMessage(TO_OWNER, OTHER, DEVICE, b"r"), OTHER_LINK, 0.0)
    r.set_nodes({ME: ("10.0.0.1", 5690)})
    assert r.route(DEVICE) is None and r.nodes == {}
    r.receive_datagram(cid_record(OTHER), DEVICE, 1.0)  # its CIDs reach the layer now
    assert layer.received[-1] == (cid_record(OTHER), DEVICE)


async def test_a_layer_wrapped_again_keeps_the_counters_and_the_nodes() -> None:
    from lwm2m.transport.dtls.forwarding import DtlsForwarding

    class Directory:
        async def link_addresses(self) -> dict[int, Any]:
            return {OTHER: OTHER_LINK}

    forwarding = await DtlsForwarding.open("127.0.0.1", 0, key=KEY, node=ME, directory=Directory())
    try:
        first = forwarding.wrap(Layer())  # type: ignore[arg-type]
        await forwarding.refresh()
        first.receive_datagram(cid_record(OTHER), DEVICE, 0.0)
        second = forwarding.wrap(Layer())  # type: ignore[arg-type]
        assert second is forwarding.router and second is not first
        assert second.nodes == {OTHER: OTHER_LINK} and forwarding.counters["forwarded"] == 1
    finally:
        await forwarding.close()


def test_a_node_not_heard_over_the_link_for_a_moment_gets_no_records_until_it_is_heard_again() -> None:
    r, layer, sent = router(ForwardingConfig(silent_after=2.0))  # listed at 0.0: heard then
    r.tick(1.5)
    r.receive_datagram(cid_record(OTHER), DEVICE, 1.5)
    assert len(sent) == 1 and layer.received == []
    # No ping since: killed, say, while its heartbeat in Redis still lives. Its devices' records
    # go to this node's layer (a takeover), not into a dead socket.
    r.tick(2.5)
    assert r.nodes == {OTHER: OTHER_LINK} and r.reachable == {}
    record = cid_record(OTHER)
    r.receive_datagram(record, DEVICE, 2.5)
    assert layer.received == [(record, DEVICE)] and len(sent) == 1
    # A ping (any authenticated link message) from it makes it reachable at once.
    r.from_link(LinkMessage(PING, OTHER, NO_PEER, b""), OTHER_LINK, 3.0)
    assert r.reachable == {OTHER: OTHER_LINK} and layer.received == [(record, DEVICE)]
    r.receive_datagram(cid_record(OTHER), DEVICE, 3.0)
    assert len(sent) == 2


def test_pings_go_to_every_listed_node_and_a_ping_from_an_unlisted_one_is_ignored() -> None:
    r, _, _ = router()
    [(wire, to)] = r.pings()
    assert to == OTHER_LINK and CODEC.decode(wire) == LinkMessage(PING, ME, NO_PEER, b"")
    r.from_link(LinkMessage(PING, DEAD, NO_PEER, b""), ("10.0.0.3", 5690), 1.0)
    assert DEAD not in r.reachable and DEAD not in r.nodes
