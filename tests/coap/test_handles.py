"""A request's handle (``Endpoint.request(..., handle)``) comes back with every event of it:
the transport finds its observation without a table of its own."""

from __future__ import annotations

from typing import Any

from tests.helpers.coap import C, S, content

from lwm2m.coap.endpoint import EndpointConfig
from lwm2m.coap.events import (
    CoapNotificationReceived,
    RequestFailed,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
)
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type


def observe(net: Any, handle: object) -> Any:
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/3/0/9", observe=0), S, net.now, handle)
    net.deliver()
    (ev,) = net.events(net.s)
    return token, ev


def test_the_answer_and_every_notification_carry_the_observations_handle(net: Any) -> None:
    handle = object()
    token, ev = observe(net, handle)
    net.s.respond(ev, content(b"90", observe=0), net.now)
    net.deliver()
    (answer,) = net.events(net.c)
    assert type(answer) is ResponseReceived and answer.handle is handle
    assert net.c.handles() == [handle]
    net.now = 1.0
    net.s.notify(ev.relation, content(b"80"), net.now)
    net.s.notify(ev.relation, Message.build(Type.ACK, Code.NOT_FOUND), net.now)  # the last
    net.deliver()
    notes = net.events(net.c)
    assert [type(n) for n in notes] == [CoapNotificationReceived] * 2
    assert [n.handle for n in notes] == [handle, handle] and notes[1].final
    assert net.c.handles() == []  # the observation ended: its request is gone with it
    # Events compare without their handles (a handle is the application's, not the message's).
    assert notes[0] == CoapNotificationReceived(S, token, notes[0].response, notes[0].sequence)


def test_a_timeout_a_reset_and_a_resumed_observation_carry_theirs(net: Any) -> None:
    lost, reset, resumed = object(), object(), object()
    net.drop = lambda sender, msg: sender == C  # nothing reaches the server
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/3/0/0"), S, net.now, lost)
    net.advance(300.0)
    (timed_out,) = net.events(net.c)
    assert type(timed_out) is RequestTimedOut and timed_out.handle is lost
    net.drop = None
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/3/0/1"), S, net.now, reset)
    ((sent, _),) = net.c.datagrams_to_send(net.now)  # sent; the server answers it with RST
    net.c.receive_datagram(Message(Type.RST, Code.EMPTY, Message.decode(sent).mid).encode(), S, net.now)
    (rst,) = net.events(net.c)
    assert type(rst) is ResetReceived and rst.handle is reset
    net.c.resume_observation(S, b"tk", net.now, None, resumed)
    note = Message.build(Type.NON, Code.CONTENT, 7, b"tk", observe=3, payload=b"1")
    net.c.receive_datagram(note.encode(), S, net.now)
    (ev,) = net.events(net.c)
    assert type(ev) is CoapNotificationReceived and ev.handle is resumed
    assert net.c.handles() == [resumed]


def test_a_request_refused_for_a_full_queue_carries_its_handle(make_net: Any) -> None:
    net = make_net(client=EndpointConfig(nstart=1, max_queued_requests_per_peer=1))
    handles = [object() for _ in range(3)]
    for i, handle in enumerate(handles):
        net.c.request(Message.build(Type.CON, Code.GET, uri_path=f"/3/0/{i}"), S, net.now, handle)
    (failed,) = net.events(net.c)
    assert type(failed) is RequestFailed and failed.handle is handles[2]
