"""A transport's per-peer message limit (``Endpoint.payload_limit``, e.g. what one DTLS record
may carry to that peer, RFC 8449 §4): responses, their later blocks, notifications (RFC 7959
§2.6) and our own Block1 requests are cut into blocks that fit, only towards limited peers."""

from __future__ import annotations

from typing import Any

from tests.helpers.coap import BIG, C, S, content, notifications, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.option import BlockOption


def limit_to(endpoint: Any, limits: dict[Any, int]) -> None:
    endpoint.payload_limit = limits.get


def test_a_response_to_a_limited_peer_goes_in_blocks_that_fit(net: Any) -> None:
    limit_to(net.s, {C: 255})
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/5/0/0"), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, content(BIG), 0.0)
    net.deliver()
    (resp,) = net.events(net.c)
    assert resp.response.payload == BIG
    answers = net.sent_by(S)
    assert {m.block2.szx for m in answers} == {3}  # type: ignore[union-attr]
    assert max(len(m.encode()) for m in answers) <= 255
    assert len(answers) == -(-len(BIG) // 128)


def test_an_unlimited_peer_keeps_the_endpoint_block_size(net: Any) -> None:
    limit_to(net.s, {("192.0.2.99", 5684): 255})  # some other peer
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/5/0/0"), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, content(BIG), 0.0)
    net.deliver()
    assert net.sent_by(S)[0].block2 == BlockOption(0, True, 6)


def test_a_notification_to_a_limited_peer_carries_a_block_that_fits(net: Any) -> None:
    token, ev = register(net)
    limit_to(net.s, {C: 600})
    net.now = 5.0
    net.s.notify(ev.relation, content(BIG), net.now)
    net.deliver()
    (note,) = notifications(net)
    assert note.token == token and note.response.payload == BIG
    sent = net.sent_by(S)[1:]
    assert sent[0].block2 == BlockOption(0, True, 5)
    assert max(len(m.encode()) for m in sent) <= 600


def test_our_block1_request_to_a_limited_peer_fits(net: Any) -> None:
    limit_to(net.c, {S: 300})
    net.c.request(Message.build(Type.CON, Code.PUT, uri_path="/5/0/0", payload=BIG), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    assert ev.message.payload == BIG
    sent = net.sent_by(C)
    assert {m.block1.szx for m in sent} == {3}  # type: ignore[union-attr]
    assert max(len(m.encode()) for m in sent) <= 300
