"""RFC 7641 observe between two in-memory endpoints: registration, notifications, freshness, cancel."""

from __future__ import annotations

import random
from typing import Any

import pytest
from tests.helpers.coap import BIG, C, S, content, notifications, register

from lwm2m.coap.endpoint import Endpoint, EndpointConfig
from lwm2m.coap.events import (
    CoapNotificationReceived,
    ObservationCancelled,
    RequestReceived,
    ResponseReceived,
)
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.observe import is_fresh

# --- freshness (§3.4) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v1", "v2", "dt", "fresh"),
    [
        (1, 2, 0.0, True),
        (2, 1, 0.0, False),
        (5, 5, 0.0, False),
        (0xFFFFFF, 0, 0.0, True),  # wrapped
        (0xFFFFF0, 3, 0.0, True),
        (3, 0xFFFFF0, 0.0, False),
        (0, (1 << 23) - 1, 0.0, True),
        (0, 1 << 23, 0.0, False),
        (2, 1, 128.5, True),  # after 128 s anything is newer
        (2, 1, 127.0, False),
    ],
)
def test_freshness_rule(v1: int, v2: int, dt: float, fresh: bool) -> None:
    assert is_fresh(v1, 100.0, v2, 100.0 + dt) is fresh


# --- registration and notifications ----------------------------------------------------------------


def test_registration_and_non_notifications(net: Any) -> None:
    token, ev = register(net)
    assert net.s.observations() == [(C, token)]
    first_seq = net.sent_by(S)[0].observe
    for i in range(1, 4):
        net.now += 1.0
        assert net.s.notify(ev.relation, content(b"%d" % i), net.now)
    net.deliver()
    got = notifications(net)
    assert [n.response.payload for n in got] == [b"1", b"2", b"3"]
    assert [n.sequence for n in got] == [first_seq + 1, first_seq + 2, first_seq + 3]
    assert all(n.token == token and n.addr == S and not n.final for n in got)
    assert {m.type for m in net.sent_by(S)[1:]} == {Type.NON}
    assert net.idle(net.c)  # an observation has no timeout


def test_an_observation_s_request_holds_no_block_state(net: Any) -> None:
    # The client keeps the request of each observation as long as it runs (a server at a
    # million observations): the block-wise fields are made only for a request with a transfer.
    net.c._exchanges.alloc_mid = lambda: 4321  # (the Message ID, an int object of its own)
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/3303/0/5700", observe=0), S, net.now)
    net.deliver()
    (ev,) = net.events(net.s)
    assert isinstance(ev, RequestReceived) and ev.message.mid == 4321
    net.s.respond(ev, content(b"0", observe=0), net.now)
    net.deliver()
    (answered,) = net.events(net.c)
    assert isinstance(answered, ResponseReceived) and answered.request.mid == 4321  # as it was sent
    (req,) = net.c._exchanges.requests.values()
    assert req.observing and req.token == token and req.blocks is None
    # Kept from then on without Message ID and token (the relation's own: ``req.token``)...
    assert req.request.mid == 0 and req.request.token == b""
    assert req.request.options == answered.request.options and req.request.code == Code.GET
    net.s.notify(ev.relation, content(b"1"), net.now)
    net.deliver()
    assert [n.response.payload for n in notifications(net)] == [b"1"] and req.blocks is None
    # ... and shared with another observation made with an equal request.
    del net.c._exchanges.alloc_mid
    other = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/3303/0/5700", observe=0), S, net.now)
    net.deliver()
    (ev2,) = net.events(net.s)
    net.s.respond(ev2, content(b"0", observe=0), net.now)
    net.deliver()
    net.events(net.c)
    second = net.c._exchanges.find(S, other)
    assert second is not None
    assert second.observing and other != token and second.request is req.request
    net.s.notify(ev2.relation, content(b"2"), net.now)
    net.deliver()
    assert [(n.token, n.response.payload) for n in notifications(net)] == [(other, b"2")]


def test_con_notifications_are_acknowledged(net: Any) -> None:
    _, ev = register(net)
    net.s.notify(ev.relation, content(b"c"), net.now, confirmable=True)
    net.deliver()
    assert [n.response.payload for n in notifications(net)] == [b"c"]
    note = net.sent_by(S)[-1]
    ack = net.sent_by(C)[-1]
    assert note.type is Type.CON and ack.type is Type.ACK and ack.mid == note.mid
    net.advance(100.0)
    assert net.sent_by(S)[-1] is note  # not retransmitted
    # A CON message type asks for a confirmable notification too.
    net.s.notify(ev.relation, content(b"d").replace(type=Type.CON), net.now)
    net.deliver()
    assert net.sent_by(S)[-1].type is Type.CON


def test_unacknowledged_con_notification_ends_the_observation(net: Any) -> None:
    token, ev = register(net)
    net.drop = lambda sender, msg: True
    net.s.notify(ev.relation, content(b"c"), net.now, confirmable=True)
    net.advance(200.0)
    (cancelled,) = net.events(net.s)
    assert cancelled == ObservationCancelled(C, token, "timeout")
    assert net.s.observations() == []
    assert not net.s.notify(ev.relation, content(b"x"), net.now)


def test_new_con_notification_replaces_the_one_in_flight(net: Any) -> None:
    _, ev = register(net)
    net.drop = lambda sender, msg: True
    net.s.notify(ev.relation, content(b"old"), net.now, confirmable=True)
    net.advance(net.now + 5.0)  # one retransmission of "old"
    net.s.notify(ev.relation, content(b"new"), net.now, confirmable=True)
    assert net.s.state_sizes()["tx"] == 1
    net.drop = None
    net.advance(net.now + 100.0)
    payloads = [m.payload for m in net.sent_by(S)[1:]]
    assert payloads == [b"old", b"old", b"new"]
    assert [n.response.payload for n in notifications(net)] == [b"new"]


def test_reordered_notifications_are_dropped(net: Any) -> None:
    token, _ = register(net)

    def note(seq: int, mid: int) -> bytes:
        return Message.build(Type.NON, Code.CONTENT, mid, token, observe=seq, payload=b"%d" % seq).encode()

    net.c.receive_datagram(note(10, 100), S, 1.0)
    net.c.receive_datagram(note(9, 101), S, 2.0)  # older: dropped
    net.c.receive_datagram(note(11, 102), S, 3.0)
    net.c.receive_datagram(note(5, 103), S, 200.0)  # more than 128 s later: taken
    assert [n.sequence for n in notifications(net)] == [10, 11, 5]


def test_sequence_wraps_at_2_24(net: Any) -> None:
    token, _ = register(net)
    seqs = [0xFFFFFE, 0xFFFFFF, 0, 1]
    for i, seq in enumerate(seqs):
        msg = Message.build(Type.NON, Code.CONTENT, 200 + i, token, observe=seq, payload=b"x")
        net.c.receive_datagram(msg.encode(), S, 200.0 + i)  # the first after the 128 s window
    assert [n.sequence for n in notifications(net)] == seqs


def test_server_sequence_wraps(net: Any) -> None:
    _, ev = register(net)
    net.s._relations.table[ev.relation].seq = 0xFFFFFF - 1
    net.now = 200.0  # past the 128 s window since the registration response (seq 1)
    for _ in range(3):
        net.s.notify(ev.relation, content(b"x"), net.now)
    net.deliver()
    assert [n.sequence for n in notifications(net)] == [0xFFFFFF, 0, 1]


def test_error_notification_ends_the_observation(net: Any) -> None:
    _token, ev = register(net)
    assert net.s.notify(ev.relation, Message(Type.ACK, Code.NOT_FOUND), net.now)
    net.deliver()
    assert net.sent_by(S)[-1].observe is None
    (last,) = notifications(net)
    assert last.final and last.response.code == Code.NOT_FOUND
    assert net.s.observations() == []
    assert net.c.state_sizes()["requests"] == 0


def test_registration_refused_is_a_plain_response(net: Any) -> None:
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x", observe=0), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, content(b"v"), 0.0)  # no Observe option: not registered (§4.1)
    net.deliver()
    (resp,) = net.events(net.c)
    assert resp.response.observe is None and resp.token == token
    assert net.s.observations() == [] and net.c.state_sizes()["requests"] == 0
    assert not net.s.notify(ev.relation, content(b"w"), 0.0)


def test_observations_per_peer_are_limited(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_observations_per_peer=1))
    register(net, path="/a")
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/b", observe=0), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, content(b"v", observe=0), 0.0)
    net.deliver()
    (resp,) = net.events(net.c)
    assert resp.token == token and resp.response.observe is None
    assert len(net.s.observations()) == 1


def test_the_daily_notification_is_confirmable(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(notification_con_interval=60.0))
    _, ev = register(net)
    net.now = 30.0
    net.s.notify(ev.relation, content(b"a"), net.now)
    net.now = 61.0
    net.s.notify(ev.relation, content(b"b"), net.now)
    net.now = 62.0
    net.s.notify(ev.relation, content(b"c"), net.now)
    net.deliver()
    assert [m.type for m in net.sent_by(S)[1:4]] == [Type.NON, Type.CON, Type.NON]


# --- cancellation (§3.6) ------------------------------------------------------------------------------


@pytest.mark.parametrize("confirmable", [False, True])
def test_reactive_cancel_by_rst(net: Any, confirmable: bool) -> None:
    token, ev = register(net)
    net.c.cancel(token)
    assert net.s.notify(ev.relation, content(b"x"), net.now, confirmable=confirmable)
    net.deliver()
    rst = net.sent_by(C)[-1]
    assert rst.type is Type.RST and rst.mid == net.sent_by(S)[-1].mid
    assert net.events(net.s) == [ObservationCancelled(C, token, "reset")]
    assert net.s.observations() == []
    assert not net.s.notify(ev.relation, content(b"y"), net.now)
    assert net.events(net.c) == []


def test_deregistration_by_get_with_observe_1(net: Any) -> None:
    token, _ev = register(net)
    dereg = Message.build(Type.CON, Code.GET, uri_path="/3303/0/5700", observe=1).replace(token=token)
    net.c.request(dereg, S, net.now)
    net.deliver()
    cancelled, request = net.events(net.s)
    assert cancelled == ObservationCancelled(C, token, "deregistered")
    assert isinstance(request, RequestReceived) and request.is_observe_deregistration
    net.s.respond(request, content(b"last"), net.now)
    net.deliver()
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived) and resp.response.payload == b"last"
    assert net.s.observations() == [] and net.c.state_sizes()["requests"] == 0


def test_reregistration_with_the_same_token_keeps_one_relation(net: Any) -> None:
    token, _ev = register(net)
    again = Message.build(Type.CON, Code.GET, uri_path="/3303/0/5700", observe=0).replace(token=token)
    net.c.request(again, S, net.now)
    net.deliver()
    (ev2,) = net.events(net.s)
    net.s.respond(ev2, content(b"1", observe=0), net.now)
    net.deliver()
    assert net.s.observations() == [(C, token)]
    assert isinstance(net.c.next_event(), ResponseReceived)


# --- block-wise notifications (RFC 7959 §2.6) -------------------------------------------------------


def test_block2_notification_is_completed_by_get(net: Any) -> None:
    token, ev = register(net)
    net.now = 5.0
    net.s.notify(ev.relation, content(BIG, content_format=60), net.now)
    net.deliver()
    (note,) = notifications(net)
    assert note.token == token and note.response.payload == BIG and note.response.content_format == 60
    assert note.sequence == net.sent_by(S)[1].observe
    first = net.sent_by(S)[1]
    assert first.block2 is not None and first.block2.num == 0 and first.block2.more
    assert first.observe is not None and len(first.payload) == 1024
    fetches = net.sent_by(C)[1:]
    assert all(m.code == Code.GET and m.observe is None and m.token != token for m in fetches)
    assert [m.block2.num for m in fetches] == [1, 2]  # type: ignore[union-attr]
    assert net.events(net.s) == []  # served from the kept representation
    assert net.c.state_sizes()["requests"] == 1  # only the observation stays


def test_block2_registration_response(net: Any) -> None:
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/big", observe=0), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, content(BIG, observe=0), 0.0)
    net.deliver()
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived) and resp.token == token and resp.response.payload == BIG
    assert resp.response.observe is not None
    assert not resp.response.has_option(OptionNumber.BLOCK2)
    net.s.notify(ev.relation, content(b"small"), 1.0)
    net.deliver()
    assert [n.response.payload for n in notifications(net)] == [b"small"]


def test_stale_con_notification_is_still_acknowledged(net: Any) -> None:
    token, _ = register(net)
    fresh = Message.build(Type.CON, Code.CONTENT, 300, token, observe=50, payload=b"new")
    stale = Message.build(Type.CON, Code.CONTENT, 301, token, observe=40, payload=b"old")
    net.c.receive_datagram(fresh.encode(), S, 1.0)
    net.c.receive_datagram(stale.encode(), S, 2.0)
    acks = [Message.decode(d) for d, _ in net.c.datagrams_to_send(2.0)]
    assert [(m.type, m.mid) for m in acks] == [(Type.ACK, 300), (Type.ACK, 301)]
    assert [n.response.payload for n in notifications(net)] == [b"new"]


def test_non_registration_and_cancel_then_new_observation(net: Any) -> None:
    token = net.c.request(Message.build(Type.NON, Code.GET, uri_path="/x", observe=0), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, content(b"0", observe=0), 0.0)
    net.deliver()
    assert net.sent_by(S)[-1].type is Type.NON
    assert isinstance(net.c.next_event(), ResponseReceived)
    net.c.cancel(token, S)
    assert net.c.state_sizes()["requests"] == 0
    token2, _ = register(net, path="/x")
    assert token2 != token and len(net.s.observations()) == 2


def test_rst_to_a_replaced_con_notification_still_cancels(net: Any) -> None:
    token, ev = register(net)
    net.drop = lambda sender, msg: True
    net.s.notify(ev.relation, content(b"old"), net.now, confirmable=True)
    net.deliver()
    old = net.sent_by(S)[-1]
    net.s.notify(ev.relation, content(b"new"), net.now, confirmable=True)
    net.deliver()
    net.s.receive_datagram(Message(Type.RST, Code.EMPTY, old.mid).encode(), C, net.now)
    assert net.events(net.s) == [ObservationCancelled(C, token, "reset")]
    assert net.s.state_sizes()["tx"] == 0


# --- the relations table alone (§4.1), without endpoints ------------------------------------------------


def test_relations_register_within_the_caps_and_evict_the_oldest() -> None:
    from lwm2m.coap.observe import Relations

    rels = Relations(max_observations=3, max_per_peer=2, max_peers=2)
    a, b, c = ("a", 1), ("b", 1), ("c", 1)
    r1, evicted = rels.add(a, b"1", (1, ()), 0.0)
    assert r1 is not None and evicted is None and rels.get((a, b"1")) is r1
    rels.add(a, b"2", (1, ()), 0.0)
    assert rels.add(a, b"3", (1, ()), 0.0) == (None, None)  # per peer
    rels.add(b, b"1", (1, ()), 0.0)
    assert rels.add(c, b"1", (1, ()), 0.0) == (None, None)  # peers with relations
    r4, evicted = rels.add(b, b"2", (1, ()), 0.0)  # over max_observations: the oldest goes
    assert r4 is not None and evicted is r1
    assert len(rels) == 3 and not rels.current(r1) and rels.current(r4)
    assert rels.per_peer == {a: 1, b: 2}


def test_relations_remove_only_the_registered_record() -> None:
    from lwm2m.coap.observe import Relations

    rels = Relations(max_observations=10, max_per_peer=10, max_peers=10)
    old, _ = rels.add("a", b"t", (1, ()), 0.0)
    assert old is not None and rels.remove(old)
    new, _ = rels.add("a", b"t", (1, ()), 1.0)
    assert new is not None
    assert not rels.remove(old)  # a stale record leaves the new registration alone
    assert rels.current(new) and rels.per_peer == {"a": 1}
    assert rels.remove(new) and rels.per_peer == {} and len(rels) == 0


def test_relation_sequence_numbers_wrap_at_24_bits() -> None:
    from lwm2m.coap.observe import Relation

    rel = Relation("a", b"t", (1, ()), 0.0)
    rel.seq = 0xFFFFFF
    assert rel.next_seq() == 0 and rel.next_seq() == 1


def test_observations_with_the_same_token_at_two_peers_each_take_their_own_notifications() -> None:
    # A token the application chose may be in use with several peers: one relation is kept by
    # its token, the other by (peer, token); a notification matches the token and its sender
    # (RFC 7252 §5.3.2), also after one relation moved to a new address.
    ep = Endpoint(EndpointConfig(), rng=random.Random(4))
    p1, p2, p3, p4 = ((f"10.0.0.{i}", 5683) for i in (1, 2, 3, 4))
    for peer in (p1, p2):
        ep.request(Message.build(Type.CON, Code.GET, token=b"tk", uri_path="/3/0/9", observe=0), peer, 0.0)
    sent = {addr: Message.decode(data) for data, addr in ep.datagrams_to_send(0.0)}
    for peer in (p1, p2):
        ack = Message(Type.ACK, Code.CONTENT, sent[peer].mid, b"tk", ((OptionNumber.OBSERVE, b"\x01"),), b"9")
        ep.receive_datagram(ack.encode(), peer, 0.1)
    while ep.next_event() is not None:
        pass

    def notify(sender: tuple[str, int], seq: int, value: bytes) -> list[Any]:
        observe = ((OptionNumber.OBSERVE, bytes((seq,))),)
        note = Message(Type.NON, Code.CONTENT, 100 + seq, b"tk", observe, value)
        ep.receive_datagram(note.encode(), sender, 0.2 + seq)
        events = []
        while (e := ep.next_event()) is not None:
            events.append(e)
        return [(e.addr, e.response.payload) for e in events if isinstance(e, CoapNotificationReceived)]

    assert notify(p1, 2, b"1") == [(p1, b"1")]
    assert notify(p2, 3, b"2") == [(p2, b"2")]
    assert notify(p3, 4, b"3") == []  # nobody observes there with that token
    assert ep.move_observation(b"tk", p1, p4)
    assert notify(p4, 5, b"4") == [(p4, b"4")]
    assert notify(p1, 6, b"5") == []
    assert notify(p2, 7, b"6") == [(p2, b"6")]
