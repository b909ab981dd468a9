"""Notifications with a token the endpoint does not know, held for the application to adopt or
reject (``hold_unknown_notifications``: a server node that shares its store with others, whose
observations it may take over) instead of the RST of RFC 7641 §3.5; within a count, a byte budget
and a hold time."""

from __future__ import annotations

import random
from typing import Any

from tests.helpers.coap import C, S, content, notifications, register

from lwm2m.coap.endpoint import HOLD_TIME, Endpoint
from lwm2m.coap.events import CoapNotificationReceived, ObservationCancelled, UnknownNotification
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type


def other_node(net: Any) -> None:
    """The observing endpoint is now another one, which never saw the registration (a node of a
    shared store that the client's datagrams reach once its first node is gone)."""
    net.c = Endpoint(rng=random.Random(3))
    net.c.hold_unknown_notifications = True


def held(net: Any) -> UnknownNotification:
    (event,) = net.events(net.c)
    assert isinstance(event, UnknownNotification)
    return event


def test_off_an_unknown_token_gets_rst_at_once(net: Any) -> None:
    _, ev = register(net)
    net.c = Endpoint(rng=random.Random(3))  # the default: off
    net.now = 1.0
    net.s.notify(ev.relation, content(b"1"), net.now, confirmable=True)
    net.deliver()
    assert net.sent_by(C)[-1].type is Type.RST
    assert net.events(net.c) == []
    assert net.c.state_sizes()["held"] == 0


def test_held_then_adopted_is_acknowledged_and_delivered(net: Any) -> None:
    token, ev = register(net)
    other_node(net)
    net.now = 1.0
    net.s.notify(ev.relation, content(b"1"), net.now, confirmable=True)
    net.deliver()
    assert net.sent_by(C) == net.sent_by(C)[:1]  # only the registration: nothing answered yet
    event = held(net)
    assert (event.addr, event.token, event.message.payload) == (S, token, b"1")
    assert net.c.state_sizes()["held"] == 1

    assert net.c.adopt_notification(S, token, net.now)
    assert net.c.get_timer() == net.now  # the transport wakes to send it
    net.deliver()
    assert net.sent_by(C)[-1].type is Type.ACK
    ((note,),) = [notifications(net)]
    assert isinstance(note, CoapNotificationReceived)
    assert (note.token, note.response.payload, note.final) == (token, b"1", False)
    assert net.c.state_sizes()["held"] == 0
    assert net.s.observations() == [(C, token)]  # acknowledged: the client keeps it

    net.now = 2.0  # later ones go the plain way
    net.s.notify(ev.relation, content(b"2"), net.now)
    net.deliver()
    assert [n.response.payload for n in notifications(net)] == [b"2"]
    assert not net.c.adopt_notification(S, token, net.now)  # nothing held any more


def test_a_retransmission_of_an_adopted_one_gets_the_ack_again(net: Any) -> None:
    token, _ = register(net)
    other_node(net)
    note = Message.build(Type.CON, Code.CONTENT, 77, token, observe=5, payload=b"x")
    net.c.receive_datagram(note.encode(), S, 1.0)
    assert net.c.datagrams_to_send(1.0) == []
    held(net)
    net.c.receive_datagram(note.encode(), S, 1.1)  # a duplicate while held: still unanswered
    assert net.c.datagrams_to_send(1.1) == [] and net.events(net.c) == []
    net.c.adopt_notification(S, token, 1.2)
    ((ack, _),) = net.c.datagrams_to_send(1.2)
    assert len([e for e in net.events(net.c) if isinstance(e, CoapNotificationReceived)]) == 1
    net.c.receive_datagram(note.encode(), S, 1.3)
    assert net.c.datagrams_to_send(1.3) == [(ack, S)]  # replayed (RFC 7252 §4.5), not delivered
    assert net.events(net.c) == []


def test_rejected_gets_rst_and_ends_the_peers_observation(net: Any) -> None:
    token, ev = register(net)
    other_node(net)
    net.now = 1.0
    net.s.notify(ev.relation, content(b"1"), net.now, confirmable=True)
    net.deliver()
    held(net)
    assert net.c.reject_notification(S, token, net.now)
    net.deliver()
    assert net.sent_by(C)[-1].type is Type.RST
    assert [type(e) for e in net.events(net.s)] == [ObservationCancelled]  # RFC 7641 §3.6
    assert net.events(net.c) == [] and net.c.state_sizes()["held"] == 0
    assert not net.c.reject_notification(S, token, net.now)


def test_unanswered_gets_rst_when_its_hold_time_is_over(net: Any) -> None:
    token, ev = register(net)
    other_node(net)
    net.now = 1.0
    net.s.notify(ev.relation, content(b"1"), net.now)  # NON
    net.deliver()
    held(net)
    assert net.c.get_timer() == net.now + HOLD_TIME
    net.advance(net.now + HOLD_TIME - 0.01)
    assert net.sent_by(C)[-1].type is not Type.RST
    net.advance(net.now + 0.02)
    rst = net.sent_by(C)[-1]
    assert rst.type is Type.RST and rst.mid == net.sent_by(S)[-1].mid
    assert net.c.state_sizes()["held"] == 0
    assert not net.c.adopt_notification(S, token, net.now)  # too late


def test_a_flood_of_unknown_tokens_holds_a_bounded_number() -> None:
    ep = Endpoint(rng=random.Random(4))
    ep.hold_unknown_notifications = True
    limit = ep.held.limit
    for i in range(limit + 50):
        note = Message.build(Type.NON, Code.CONTENT, i, i.to_bytes(4, "big"), observe=1, payload=b"v")
        ep.receive_datagram(note.encode(), ("10.9.0.1", 1000 + i), 0.5)
    assert ep.state_sizes()["held"] == limit
    assert len([e for e in ep.events if isinstance(e, UnknownNotification)]) == limit
    out = [Message.decode(d) for d, _ in ep.datagrams_to_send(0.5)]
    assert len(out) == 50 and all(m.type is Type.RST for m in out)  # no room: RST at once
    ep.handle_timer(0.5 + HOLD_TIME)
    out = [Message.decode(d) for d, _ in ep.datagrams_to_send(0.5 + HOLD_TIME)]
    assert len(out) == limit and all(m.type is Type.RST for m in out)  # each gets its RST
    assert ep.state_sizes()["held"] == 0 and ep.held.bytes == 0 and ep.held.peers == 0


def test_held_bytes_are_bounded_too() -> None:
    ep = Endpoint(rng=random.Random(5))
    ep.hold_unknown_notifications = True
    big = b"x" * 2000
    room = ep.held.max_bytes // len(big)
    for i in range(room + 3):
        note = Message.build(Type.NON, Code.CONTENT, i, i.to_bytes(4, "big"), observe=1, payload=big)
        ep.receive_datagram(note.encode(), ("10.9.0.2", 2000 + i), 0.0)
    assert ep.state_sizes()["held"] == room <= ep.held.limit
    assert ep.held.bytes == room * len(big)
    assert len(ep.datagrams_to_send(0.0)) == 3


def test_only_notifications_are_held(net: Any) -> None:
    other_node(net)
    plain = Message.build(Type.CON, Code.CONTENT, 9, b"tk", payload=b"no observe")
    error = Message.build(Type.CON, Code.NOT_FOUND, 10, b"tk2")
    for msg in (plain, error):
        net.c.receive_datagram(msg.encode(), S, 0.0)
    out = [Message.decode(d) for d, _ in net.c.datagrams_to_send(0.0)]
    assert [(m.type, m.mid) for m in out] == [(Type.RST, 9), (Type.RST, 10)]
    assert net.events(net.c) == []


def test_one_peer_holds_a_bounded_share() -> None:
    ep = Endpoint(rng=random.Random(6))
    ep.hold_unknown_notifications = True
    flooder, device = ("10.9.0.3", 3000), ("10.9.0.4", 4000)
    share = ep.held.per_peer
    for i in range(share + 5):
        note = Message.build(Type.NON, Code.CONTENT, i, i.to_bytes(4, "big"), observe=1, payload=b"v")
        ep.receive_datagram(note.encode(), flooder, 0.0)
    assert ep.state_sizes()["held"] == share
    assert len(ep.datagrams_to_send(0.0)) == 5  # the rest: RST at once
    note = Message.build(Type.CON, Code.CONTENT, 1, b"mine", observe=9, payload=b"v")
    ep.receive_datagram(note.encode(), device, 0.1)
    assert ep.state_sizes()["held"] == share + 1  # room for the device that comes over
    assert ep.datagrams_to_send(0.1) == []
    assert ep.reject_notification(device, b"mine", 0.2)
    ep.handle_timer(0.0 + HOLD_TIME)
    assert ep.state_sizes()["held"] == 0 and ep.held.peers == 0  # nothing kept of the peers
    note = Message.build(Type.NON, Code.CONTENT, 99, b"again", observe=1, payload=b"v")
    ep.receive_datagram(note.encode(), flooder, 2.0)  # its share is free again
    assert ep.state_sizes()["held"] == 1


def test_dropped_gets_no_answer_and_its_retransmission_is_held_anew(net: Any) -> None:
    """A look-up that failed (the store away): no RST, which would end an observation the client
    has; the confirmable notification sent again is held and decided anew."""
    token, _ = register(net)
    other_node(net)
    note = Message.build(Type.CON, Code.CONTENT, 78, token, observe=6, payload=b"y")
    net.c.receive_datagram(note.encode(), S, 1.0)
    held(net)
    assert net.c.drop_notification(S, token)
    assert net.c.datagrams_to_send(1.0) == []  # neither ACK nor RST
    assert net.c.state_sizes()["held"] == 0
    assert not net.c.drop_notification(S, token)  # nothing held any more
    net.c.receive_datagram(note.encode(), S, 3.0)  # the client's retransmission (RFC 7252 §4.2)
    event = held(net)
    assert (event.token, event.message.mid) == (token, 78)
    net.c.adopt_notification(S, token, 3.1)
    ((ack, _),) = net.c.datagrams_to_send(3.1)
    assert Message.decode(ack).type is Type.ACK
    delivered = [n for n in net.events(net.c) if isinstance(n, CoapNotificationReceived)]
    assert [n.response.payload for n in delivered] == [b"y"]
