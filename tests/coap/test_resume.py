"""Resuming a client-side observation after a restart (the registration was made by an endpoint
that no longer exists): notifications are delivered again, fresh from the first (RFC 7641 §3.4)."""

from __future__ import annotations

import random
from typing import Any

from tests.helpers.coap import BIG, C, S, content, notifications, register

from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.events import CoapNotificationReceived, ObservationCancelled
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type


def restart_client(net: Any) -> None:
    """The observing endpoint loses all its state, as a process killed and started again would."""
    net.c = Endpoint(rng=random.Random(3))


def test_without_resume_a_notification_gets_rst(net: Any) -> None:
    _, ev = register(net)
    restart_client(net)
    net.now = 1.0
    net.s.notify(ev.relation, content(b"1"), net.now, confirmable=True)
    net.deliver()
    assert net.sent_by(C)[-1].type is Type.RST
    assert net.events(net.c) == []
    assert [type(e) for e in net.events(net.s)] == [ObservationCancelled]


def test_resumed_observation_delivers_con_and_non_notifications(net: Any) -> None:
    token, ev = register(net)
    restart_client(net)
    net.now = 1.0
    net.c.resume_observation(S, token, net.now)
    assert net.c.state_sizes()["requests"] == 1
    net.s.notify(ev.relation, content(b"1"), net.now, confirmable=True)
    net.now = 2.0
    net.s.notify(ev.relation, content(b"2"), net.now)
    net.deliver()
    notes = notifications(net)
    assert [(n.token, n.addr, n.response.payload) for n in notes] == [(token, S, b"1"), (token, S, b"2")]
    assert all(n.sequence is not None for n in notes)
    assert net.sent_by(C)[-1].type is Type.ACK  # the CON one is acknowledged
    assert net.s.observations() == [(C, token)]
    assert net.c.datagrams_to_send(net.now) == [] and net.idle(net.c)  # nothing sent by us


def test_first_notification_is_fresh_whatever_its_sequence(net: Any) -> None:
    net.c.resume_observation(S, b"tk", 0.0)
    high = (1 << 23) + 5  # older than 0 by the wrap-around rule, were 0 the last one seen
    for mid, seq, payload in ((10, high, b"a"), (11, high - 1, b"stale"), (12, high + 1, b"b")):
        msg = Message.build(Type.NON, Code.CONTENT, mid, b"tk", observe=seq, payload=payload)
        net.c.receive_datagram(msg.encode(), S, 1.0)
    assert [n.response.payload for n in notifications(net)] == [b"a", b"b"]


def test_notification_from_another_address_gets_rst(net: Any) -> None:
    net.c.resume_observation(S, b"tk", 0.0)
    msg = Message.build(Type.CON, Code.CONTENT, 10, b"tk", observe=3, payload=b"x")
    net.c.receive_datagram(msg.encode(), ("10.0.0.9", 5683), 1.0)
    ((data, _),) = net.c.datagrams_to_send(1.0)
    assert Message.decode(data).type is Type.RST
    assert net.events(net.c) == []


def test_cancel_ends_a_resumed_observation(net: Any) -> None:
    token, ev = register(net)
    restart_client(net)
    net.c.resume_observation(S, token, 1.0)
    net.c.cancel(token)
    assert net.c.state_sizes()["requests"] == 0
    net.now = 2.0
    net.s.notify(ev.relation, content(b"late"), net.now, confirmable=True)
    net.deliver()
    assert net.events(net.c) == []
    assert net.sent_by(C)[-1].type is Type.RST  # RFC 7641 §3.6: the server forgets the relation
    assert net.s.observations() == []


def test_error_notification_ends_a_resumed_observation(net: Any) -> None:
    token, ev = register(net)
    restart_client(net)
    net.c.resume_observation(S, token, 1.0)
    net.s.notify(ev.relation, Message.build(Type.ACK, Code.NOT_FOUND), 1.0)
    net.deliver()
    (note,) = notifications(net)
    assert note.final and note.response.code == Code.NOT_FOUND
    assert net.c.state_sizes()["requests"] == 0


def test_block2_notification_is_completed_with_the_registration(net: Any) -> None:
    registration = Message.build(Type.CON, Code.GET, uri_path="/3303/0/5700", observe=0)
    token, ev = register(net)
    restart_client(net)
    net.c.resume_observation(S, token, 1.0, registration)
    net.s.notify(ev.relation, content(BIG, content_format=60), 1.0)
    net.deliver()
    (note,) = notifications(net)
    assert note.token == token and note.response.payload == BIG and note.response.block2 is None
    fetches = [m for m in net.sent_by(C) if m.code == Code.GET][1:]
    assert fetches and all(m.uri_path == ("3303", "0", "5700") and m.observe is None for m in fetches)
    assert net.c.state_sizes()["requests"] == 1


def test_block2_notification_without_the_registration_is_its_first_block(net: Any) -> None:
    token, ev = register(net)
    restart_client(net)
    net.c.resume_observation(S, token, 1.0)
    sent = len(net.sent_by(C))
    net.s.notify(ev.relation, content(BIG), 1.0)
    net.deliver()
    (note,) = notifications(net)
    assert note.response.payload == BIG[:1024]
    assert note.response.block2 is not None and note.response.block2.more
    assert len(net.sent_by(C)) == sent  # no fetch of an unknown resource
    assert isinstance(note, CoapNotificationReceived)


def test_moved_observation_takes_notifications_from_the_new_address(net: Any) -> None:
    token, _ = register(net)
    moved = ("10.0.0.7", 40000)  # the same client behind a NAT that picked a new port
    assert net.c.move_observation(token, S, moved)
    for mid, seq, payload in ((20, 7, b"a"), (21, 6, b"stale"), (22, 8, b"b")):
        msg = Message.build(Type.CON, Code.CONTENT, mid, token, observe=seq, payload=payload)
        net.c.receive_datagram(msg.encode(), moved, 1.0)
    notes = notifications(net)
    assert [(n.addr, n.response.payload) for n in notes] == [(moved, b"a"), (moved, b"b")]
    sent = [Message.decode(d) for d, _ in net.c.datagrams_to_send(1.0)]
    assert [m.type for m in sent] == [Type.ACK] * 3  # the stale one too, never RST
    old = Message.build(Type.CON, Code.CONTENT, 23, token, observe=9, payload=b"old")
    net.c.receive_datagram(old.encode(), S, 1.0)
    ((data, _),) = net.c.datagrams_to_send(1.0)
    assert Message.decode(data).type is Type.RST  # nothing is matched at the old address
    net.c.cancel(token, moved)
    assert net.c.state_sizes()["requests"] == 0


def test_moving_what_is_not_an_observation_answers_false(net: Any) -> None:
    assert not net.c.move_observation(b"none", S, C)
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/3/0"), S, 0.0)
    assert not net.c.move_observation(token, S, C)  # a plain request in flight stays where it is
    net.c.resume_observation(S, b"tk", 0.0)
    assert net.c.move_observation(b"tk", S, S)
