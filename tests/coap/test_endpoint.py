"""RFC 7252 reliability on two in-memory endpoints: retransmission, dedup, separate responses, NSTART."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest

from lwm2m.coap.endpoint import Endpoint, EndpointConfig
from lwm2m.coap.events import (
    RequestAcknowledged,
    RequestReceived,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
)
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import BlockOption, encode_uint

C, S = ("10.0.0.1", 5683), ("10.0.0.2", 5683)


def get(path: str = "/3/0/0", mtype: Type = Type.CON, **kw: Any) -> Message:
    return Message.build(mtype, Code.GET, uri_path=path, **kw)


def content(payload: bytes = b"v", **kw: Any) -> Message:
    return Message.build(Type.ACK, Code.CONTENT, payload=payload, **kw)


def served_request(net: Any) -> RequestReceived:
    (ev,) = net.events(net.s)
    assert isinstance(ev, RequestReceived)
    return ev


# --- configuration -----------------------------------------------------------------------------


def test_derived_transmission_parameters() -> None:
    cfg = EndpointConfig()
    assert cfg.max_transmit_span == pytest.approx(45.0)
    assert cfg.max_transmit_wait == pytest.approx(93.0)
    assert cfg.exchange_lifetime == pytest.approx(247.0)  # RFC 7252 §4.8.2
    assert cfg.non_lifetime == pytest.approx(145.0)
    assert cfg.response_timeout == cfg.exchange_lifetime
    assert EndpointConfig(exchange_lifetime=10.0).exchange_lifetime == 10.0
    with pytest.raises(ValueError):
        EndpointConfig(block_szx=7)
    with pytest.raises(ValueError):
        EndpointConfig(nstart=0)


# --- piggybacked and separate responses --------------------------------------------------------


def test_piggybacked_response(net: Any) -> None:
    token = net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    assert ev.addr == C and ev.message.uri_path == ("3", "0", "0") and ev.message.token == token
    assert ev.observe is None and ev.block1 is None
    net.s.respond(ev, content(b"42"), 0.0)
    net.deliver()
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived)
    assert resp.token == token and resp.addr == S
    assert resp.response.payload == b"42" and resp.response.type is Type.ACK
    assert resp.response.mid == resp.request.mid == ev.message.mid
    assert resp.request.uri_path == ("3", "0", "0")
    assert len(net.log) == 2
    assert net.idle(net.c) and net.idle(net.s)


def test_request_keeps_a_given_token(net: Any) -> None:
    assert net.c.request(get().replace(token=b"\x01\x02"), S, 0.0) == b"\x01\x02"
    net.deliver()
    assert served_request(net).message.token == b"\x01\x02"


def test_generated_tokens_are_distinct(net: Any) -> None:
    tokens = {net.c.request(get(mtype=Type.NON), S, 0.0) for _ in range(200)}
    assert len(tokens) == 200 and all(len(t) == 8 for t in tokens)


def test_separate_response_after_empty_ack(net: Any) -> None:
    token = net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    assert net.s.get_timer() == pytest.approx(1.0)  # empty_ack_delay
    net.advance(1.5)
    empty_ack = net.sent_by(S)[-1]
    assert empty_ack.type is Type.ACK and empty_ack.is_empty and empty_ack.mid == ev.message.mid
    # The client stops retransmitting: nothing more from C until the answer.
    net.advance(20.0)
    assert len(net.sent_by(C)) == 1
    net.s.respond(ev, content(b"late"), net.now)
    net.deliver()
    separate = net.sent_by(S)[-1]
    assert separate.type is Type.CON and separate.token == token and separate.mid != ev.message.mid
    ack = net.sent_by(C)[-1]
    assert ack.type is Type.ACK and ack.is_empty and ack.mid == separate.mid  # §5.2.2
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived) and resp.response.payload == b"late"
    net.advance(300.0)
    assert len(net.sent_by(S)) == 2  # acknowledged: no retransmission
    assert net.events(net.c) == []


def test_an_empty_ack_is_reported_for_a_request_that_asked(net: Any) -> None:
    """§5.2.2: the peer took the request and answers later; an application that asked hears it
    (a gateway holding a request for a class A end device), once, before the response."""
    token = net.c.request(get(), S, 0.0)
    assert net.c.report_empty_ack(S, token)
    assert not net.c.report_empty_ack(S, b"unknown")
    assert not net.c.report_empty_ack(C, token)  # another peer's
    net.deliver()
    ev = served_request(net)
    net.advance(1.5)  # empty_ack_delay
    assert net.events(net.c) == [RequestAcknowledged(S, token)]
    assert net.c.report_empty_ack(S, token)  # still waiting for its answer
    net.s.respond(ev, content(b"late"), net.now)
    net.deliver()
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived) and resp.token == token
    assert not net.c.report_empty_ack(S, token)  # answered
    # One that did not ask: its empty ACK raises nothing.
    quiet = net.c.request(get("/3/0/1"), S, net.now)
    net.deliver()
    ev = served_request(net)
    net.advance(1.5)
    assert net.events(net.c) == []
    net.s.respond(ev, content(b"later"), net.now)
    net.deliver()
    (resp,) = net.events(net.c)
    assert resp.token == quiet
    non = net.c.request(get(mtype=Type.NON), S, net.now)
    assert not net.c.report_empty_ack(S, non)  # a NON request gets no ACK at all


def test_requests_that_asked_for_their_empty_ack_leave_nothing_once_answered_or_dropped(net: Any) -> None:
    """What a request asked for (``report_empty_ack``) goes with its answer, its empty ACK, its
    cancel or its timeout: a client that asks for every request holds nothing for them after."""
    answered = net.c.request(get("/3/0/0"), S, net.now)
    assert net.c.report_empty_ack(S, answered)
    net.deliver()
    net.s.respond(served_request(net), content(b"at once"), net.now)  # piggybacked
    net.deliver()
    (resp,) = net.events(net.c)
    assert resp.token == answered
    cancelled = net.c.request(get("/3/0/1"), S, net.now)
    assert net.c.report_empty_ack(S, cancelled)
    net.c.cancel(cancelled)
    net.drop = lambda sender, msg: sender == C  # nothing reaches the server any more
    lost = net.c.request(get("/3/0/2"), S, net.now)
    assert net.c.report_empty_ack(S, lost)
    net.advance(net.now + 300.0)
    assert [type(e) for e in net.events(net.c)] == [RequestTimedOut]
    assert not net.c._acks_wanted


def test_separate_response_is_retransmitted_until_acknowledged(net: Any) -> None:
    net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    net.advance(1.0)
    acks_from_client = [0]

    def drop_first_ack(sender: Any, msg: Message) -> bool:
        if sender == C and msg.type is Type.ACK:
            acks_from_client[0] += 1
            return acks_from_client[0] == 1
        return False

    net.drop = drop_first_ack
    net.s.respond(ev, content(b"x"), net.now)
    net.advance(10.0)
    cons = [m for m in net.sent_by(S) if m.type is Type.CON]
    assert len(cons) == 2 and cons[0].mid == cons[1].mid
    # The duplicate CON response gets the cached ACK again, and one event only.
    assert [type(e) for e in net.events(net.c)] == [ResponseReceived]


def test_separate_response_overtaking_a_lost_empty_ack(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(empty_ack_delay=0.1))
    net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    net.drop = lambda sender, msg: sender == S and msg.is_empty
    net.advance(0.5)
    net.drop = None
    net.s.respond(ev, content(b"x"), net.now)
    net.deliver()
    assert [type(e) for e in net.events(net.c)] == [ResponseReceived]
    net.advance(100.0)
    assert len(net.sent_by(C)) == 2  # the request and the ACK of the response: no retransmission


def test_respond_without_empty_ack_delay_always_piggybacks(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(empty_ack_delay=None))
    net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    assert net.idle(net.s)
    net.now = 1.9
    net.s.respond(ev, content(), net.now)
    net.deliver()
    assert net.sent_by(S)[-1].type is Type.ACK and net.sent_by(S)[-1].code == Code.CONTENT


def test_non_request_gets_non_response(net: Any) -> None:
    token = net.c.request(get(mtype=Type.NON), S, 0.0)
    net.deliver()
    ev = served_request(net)
    assert ev.message.type is Type.NON
    assert net.idle(net.s)  # nothing to acknowledge
    net.s.respond(ev, content(b"n"), 0.0)
    net.deliver()
    resp = net.sent_by(S)[-1]
    assert resp.type is Type.NON and resp.token == token
    (got,) = net.events(net.c)
    assert isinstance(got, ResponseReceived) and got.response.payload == b"n"


def test_non_request_times_out(make_net: Any) -> None:
    net = make_net(client=EndpointConfig(response_timeout=30.0))
    token = net.c.request(get(mtype=Type.NON), S, 0.0)
    net.drop = lambda sender, msg: True
    net.advance(29.0)
    assert net.events(net.c) == []
    net.advance(31.0)
    (ev,) = net.events(net.c)
    assert isinstance(ev, RequestTimedOut) and ev.token == token
    assert len(net.sent_by(C)) == 1  # NON is sent once


# --- retransmission ------------------------------------------------------------------------------


def test_retransmission_back_off_then_timeout(net: Any) -> None:
    net.drop = lambda sender, msg: True
    token = net.c.request(get(), S, 0.0)
    net.advance(200.0)
    times = [t for sender, _, t in net.log if sender == C]
    assert len(times) == 5  # the first transmission and MAX_RETRANSMIT = 4 retransmissions
    mids = {m.mid for m in net.sent_by(C)}
    assert len(mids) == 1
    initial = times[1] - times[0]
    assert 2.0 <= initial <= 3.0  # ACK_TIMEOUT * [1, ACK_RANDOM_FACTOR] (§4.2)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for i, gap in enumerate(gaps):
        assert gap == pytest.approx(initial * 2**i)
    (ev,) = net.events(net.c)
    assert isinstance(ev, RequestTimedOut) and ev.token == token and ev.addr == S
    # Given up after the last timeout: 31 initial timeouts after the first send.
    assert net.c.state_sizes()["requests"] == 0 and net.idle(net.c)


def test_retransmission_timing_is_seeded() -> None:
    def first_timeout(seed: int) -> float:
        ep = Endpoint(rng=random.Random(seed))
        ep.request(get(), S, 0.0)
        timer = ep.get_timer()
        assert timer is not None
        return timer

    assert first_timeout(7) == first_timeout(7)
    assert {first_timeout(s) for s in range(10)} != {first_timeout(0)}


def test_retransmission_stops_when_acknowledged(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(empty_ack_delay=None))
    drops = [0]

    def drop_first_request(sender: Any, msg: Message) -> bool:
        if sender == C and drops[0] == 0:
            drops[0] += 1
            return True
        return False

    net.drop = drop_first_request
    net.c.request(get(), S, 0.0)
    net.advance(5.0)
    ev = served_request(net)
    net.s.respond(ev, content(), net.now)
    net.advance(100.0)
    assert len(net.sent_by(C)) == 2
    assert [type(e) for e in net.events(net.c)] == [ResponseReceived]


def test_duplicate_con_gets_cached_ack_replayed(net: Any) -> None:
    # The piggybacked response is lost once: the retransmitted request is a duplicate, answered
    # from the cache without a second RequestReceived (§4.5).
    drops = [0]

    def drop_first_answer(sender: Any, msg: Message) -> bool:
        if sender == S and drops[0] == 0:
            drops[0] += 1
            return True
        return False

    net.drop = drop_first_answer
    net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    net.s.respond(ev, content(b"once"), 0.0)
    net.advance(5.0)
    answers = net.sent_by(S)
    assert len(answers) == 2 and answers[0] == answers[1]
    assert net.events(net.s) == []
    (resp,) = net.events(net.c)
    assert resp.response.payload == b"once"


def test_duplicate_con_before_the_answer_is_dropped(net: Any) -> None:
    data = get().replace(mid=10, token=b"t").encode()
    net.s.receive_datagram(data, C, 0.0)
    net.s.receive_datagram(data, C, 0.5)
    assert len(net.events(net.s)) == 1
    assert net.s.datagrams_to_send(0.5) == []
    net.s.handle_timer(1.0)
    empty = net.s.datagrams_to_send(1.0)
    net.s.receive_datagram(data, C, 1.5)
    assert net.s.datagrams_to_send(1.5) == empty  # the empty ACK replayed


def test_duplicate_non_is_dropped(net: Any) -> None:
    data = get(mtype=Type.NON).replace(mid=10, token=b"t").encode()
    net.s.receive_datagram(data, C, 0.0)
    net.s.receive_datagram(data, C, 1.0)
    assert len(net.events(net.s)) == 1


def test_same_mid_from_another_peer_is_not_a_duplicate(net: Any) -> None:
    data = get().replace(mid=10, token=b"t").encode()
    net.s.receive_datagram(data, C, 0.0)
    net.s.receive_datagram(data, ("10.0.0.3", 5683), 0.0)
    assert len(net.events(net.s)) == 2


def test_mid_is_new_again_after_exchange_lifetime(net: Any) -> None:
    data = get().replace(mid=10, token=b"t").encode()
    net.s.receive_datagram(data, C, 0.0)
    net.s.receive_datagram(data, C, 248.0)
    assert len(net.events(net.s)) == 2


def test_reply_to_an_expired_message_is_not_replayed_for_a_new_one(net: Any) -> None:
    first = get().replace(mid=10, token=b"a").encode()
    net.s.receive_datagram(first, C, 0.0)
    net.s.respond(served_request(net), content(b"old"), 0.0)
    net.s.datagrams_to_send(0.0)
    # After EXCHANGE_LIFETIME the peer may use the ID again; a duplicate of the new message
    # must wait for its own answer, not get the old one.
    second = get().replace(mid=10, token=b"b").encode()
    net.s.receive_datagram(second, C, 300.0)
    assert served_request(net).message.token == b"b"
    net.s.receive_datagram(second, C, 300.5)
    assert net.s.datagrams_to_send(300.5) == []


def test_dedup_keeps_the_newest_half_when_full_and_stays_bounded(make_net: Any) -> None:
    cfg = EndpointConfig(max_dedup_entries=10, empty_ack_delay=None)
    net = make_net(server=cfg)
    answers = {}
    for mid in range(23):
        net.s.receive_datagram(get().replace(mid=mid, token=b"t").encode(), C, 0.0)
        net.s.respond(served_request(net), content(b"%d" % mid), 0.0)
        ((answers[mid], _),) = net.s.datagrams_to_send(0.0)
        assert net.s.state_sizes()["dedup"] <= cfg.max_dedup_entries
    # The latest max_dedup_entries / 2 are always remembered: duplicates get their answer again.
    for mid in range(23 - 5, 23):
        net.s.receive_datagram(get().replace(mid=mid, token=b"t").encode(), C, 1.0)
        assert net.s.datagrams_to_send(1.0) == [(answers[mid], C)]
    assert net.events(net.s) == []
    # The oldest went with their generation: the same IDs are new requests again.
    net.s.receive_datagram(get().replace(mid=0, token=b"t").encode(), C, 1.0)
    assert len(net.events(net.s)) == 1


def test_cached_answer_survives_a_generation_change(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_dedup_entries=4))
    data = get().replace(mid=100, token=b"x").encode()
    net.s.receive_datagram(data, C, 0.0)
    ev = served_request(net)
    # Two more requests fill the current generation: the next one starts a new generation
    # and the first request's entry (still unanswered) is now in the older one.
    for mid in (101, 102):
        net.s.receive_datagram(get().replace(mid=mid).encode(), C, 0.0)
    net.events(net.s)
    net.s.respond(ev, content(b"late"), 0.1)
    ((ack, _),) = net.s.datagrams_to_send(0.1)
    assert Message.decode(ack).type is Type.ACK
    net.s.receive_datagram(data, C, 0.2)
    assert net.s.datagrams_to_send(0.2) == [(ack, C)]


def test_request_answered_after_the_timer_was_consulted_is_still_piggybacked(net: Any) -> None:
    net.s.receive_datagram(get().replace(mid=7, token=b"t").encode(), C, 0.0)
    ev = served_request(net)
    assert net.s.get_timer() == pytest.approx(1.0)  # the empty-ACK deadline
    assert net.s.state_sizes()["unacked"] == 1
    net.s.handle_timer(0.5)  # nothing due yet
    net.s.respond(ev, content(), 0.6)
    ((data, _),) = net.s.datagrams_to_send(0.6)
    assert Message.decode(data).type is Type.ACK
    assert net.idle(net.s) and net.s.state_sizes()["unacked"] == 0


def test_empty_acks_follow_arrival_order(net: Any) -> None:
    for mid, t in ((1, 0.0), (2, 0.25), (3, 0.5)):
        net.s.receive_datagram(get().replace(mid=mid, token=b"t%d" % mid).encode(), C, t)
        if mid == 2:
            net.s.get_timer()  # the first two move on to the timer's queue; the third comes later
    events = net.events(net.s)
    net.s.respond(events[1], content(), 0.6)  # answered in time: piggybacked
    net.s.datagrams_to_send(0.6)
    acked = []
    while (t := net.s.get_timer()) is not None:
        net.s.handle_timer(t)
        acked += [(Message.decode(d).mid, t) for d, _ in net.s.datagrams_to_send(t)]
    assert acked == [(1, pytest.approx(1.0)), (3, pytest.approx(1.5))]


def test_requests_from_one_peer_share_one_address_object(net: Any) -> None:
    for mid in range(3):
        addr = ("10.0.0.1", 5683)  # a fresh tuple each time, as a socket gives it
        net.s.receive_datagram(get().replace(mid=mid).encode(), addr, 0.0)
    events = net.events(net.s)
    assert all(ev.addr == C for ev in events)
    assert len({id(ev.addr) for ev in events}) == 1


def test_fast_path_events_are_plain_request_events(net: Any) -> None:
    import dataclasses

    net.s.receive_datagram(get().replace(mid=1, token=b"t").encode(), C, 0.0)
    ev = served_request(net)
    assert type(ev) is RequestReceived and type(ev.message) is Message
    assert ev == RequestReceived(C, ev.message) and hash(ev) == hash(RequestReceived(C, ev.message))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.addr = S  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.message.mid = 2  # type: ignore[misc]


# --- NSTART ----------------------------------------------------------------------------------------


def test_nstart_queues_requests(net: Any) -> None:
    tokens = [net.c.request(get(f"/{i}"), S, 0.0) for i in range(3)]
    net.deliver()
    first = served_request(net)
    assert first.message.token == tokens[0]
    assert len(net.sent_by(C)) == 1
    net.s.respond(first, content(), 0.0)
    net.deliver()
    second = served_request(net)
    assert second.message.token == tokens[1]
    # An empty ACK also ends the outstanding interaction (§4.7): the third starts.
    net.advance(1.0)
    third = served_request(net)
    assert third.message.token == tokens[2]
    net.s.respond(second, content(), net.now)
    net.s.respond(third, content(), net.now)
    net.deliver()
    assert sorted(e.token for e in net.events(net.c)) == sorted(tokens)


def test_nstart_is_per_peer_and_configurable(make_net: Any) -> None:
    net = make_net(client=EndpointConfig(nstart=2))
    for i in range(3):
        net.c.request(get(f"/{i}"), S, 0.0)
    net.c.request(get("/x"), ("10.0.0.9", 5683), 0.0)
    out = net.c.datagrams_to_send(0.0)
    assert [a for _, a in out].count(S) == 2 and len(out) == 3


def test_non_requests_are_not_queued(net: Any) -> None:
    for i in range(3):
        net.c.request(get(f"/{i}", mtype=Type.NON), S, 0.0)
    assert len(net.c.datagrams_to_send(0.0)) == 3


def test_cancel_a_queued_request(net: Any) -> None:
    net.c.request(get("/0"), S, 0.0)
    second = net.c.request(get("/1"), S, 0.0)
    third = net.c.request(get("/2"), S, 0.0)
    net.c.cancel(second)
    net.deliver()
    net.s.respond(served_request(net), content(), 0.0)
    net.deliver()
    assert served_request(net).message.token == third


def test_a_cancel_near_an_address_looks_there_first() -> None:
    # The same token at two peers (a token is ours to choose): near one, only that one goes; the
    # look through every request (what a server with a million observations cannot afford per
    # cancel) is left for a token not found there.
    ep = Endpoint()
    other = ("10.0.0.3", 5683)
    for peer in (S, other):
        ep.request(get(token=b"tk"), peer, 0.0)
    ep.cancel(b"tk", near=other)
    assert [r.addr for r in ep._exchanges.requests.values()] == [S]
    ep.cancel(b"tk", near=other)  # not there any more: found by its token alone
    assert not ep._exchanges.requests


# --- token matching, RST, malformed input -------------------------------------------------------


def test_response_for_unknown_token_gets_rst(net: Any) -> None:
    for mid, mtype in ((77, Type.CON), (78, Type.NON)):
        net.c.receive_datagram(Message(mtype, Code.CONTENT, mid, b"zz").encode(), S, 0.0)
        (out,) = net.c.datagrams_to_send(0.0)
        rst = Message.decode(out[0])
        assert rst.type is Type.RST and rst.mid == mid and rst.is_empty
    assert net.events(net.c) == []


def test_piggybacked_response_with_wrong_token_is_ignored(net: Any) -> None:
    net.c.request(get(), S, 0.0)
    ((data, _),) = net.c.datagrams_to_send(0.0)
    req = Message.decode(data)
    net.c.receive_datagram(Message(Type.ACK, Code.CONTENT, req.mid, b"other").encode(), S, 0.1)
    assert net.events(net.c) == []
    assert net.c.state_sizes()["tx"] == 1


def test_response_from_another_address_does_not_match(net: Any) -> None:
    net.c.request(get(mtype=Type.NON), S, 0.0)
    ((data, _),) = net.c.datagrams_to_send(0.0)
    req = Message.decode(data)
    net.c.receive_datagram(Message(Type.NON, Code.CONTENT, 5, req.token).encode(), ("10.9.9.9", 1), 0.1)
    assert net.events(net.c) == []


def test_cancelled_request_answers_late_response_with_rst(net: Any) -> None:
    token = net.c.request(get(mtype=Type.NON), S, 0.0)
    net.deliver()
    ev = served_request(net)
    net.c.cancel(token)
    net.s.respond(ev, content(), 0.0)
    net.deliver()
    assert net.sent_by(C)[-1].type is Type.RST
    assert net.events(net.c) == []


def test_rst_to_a_request(net: Any) -> None:
    token = net.c.request(get(), S, 0.0)
    ((data, _),) = net.c.datagrams_to_send(0.0)
    mid = Message.decode(data).mid
    net.c.receive_datagram(Message(Type.RST, Code.EMPTY, mid).encode(), S, 0.1)
    (ev,) = net.events(net.c)
    assert isinstance(ev, ResetReceived) and ev.token == token and ev.mid == mid
    assert net.idle(net.c)


def test_rst_to_a_separate_response(net: Any) -> None:
    net.c.request(get(), S, 0.0)
    net.deliver()
    ev = served_request(net)
    net.advance(1.0)
    net.c.cancel(ev.message.token)
    net.s.respond(ev, content(), net.now)
    net.deliver()
    (reset,) = net.events(net.s)
    assert isinstance(reset, ResetReceived) and reset.token == ev.message.token


def test_ping_is_answered_with_rst(net: Any) -> None:
    net.s.receive_datagram(Message(Type.CON, Code.EMPTY, 0x42).encode(), C, 0.0)
    (out,) = net.s.datagrams_to_send(0.0)
    assert out == (bytes((0x70, 0, 0, 0x42)), C)


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (bytes((0x49, 1, 0, 5)) + bytes(9), True),  # CON, token length 9
        (bytes((0x40, 1, 0, 5, 0xF1)), True),  # CON, reserved nibble
        (bytes((0x40, 0x45, 0, 5, 0xFF)), True),  # CON, payload marker, no payload
        (bytes((0x59, 1, 0, 5)) + bytes(9), False),  # NON
        (bytes((0x69, 0x45, 0, 5)) + bytes(9), False),  # ACK
        (bytes((0x70, 0, 0, 5, 1)), False),  # RST with content
        (bytes((0x80, 1, 0, 5)), False),  # version 2
        (bytes((0x00, 1, 0, 5)), False),  # version 0
        (b"\x40\x01", False),  # truncated header
        (b"", False),
    ],
)
def test_malformed_datagrams(net: Any, data: bytes, answer: bool) -> None:
    net.s.receive_datagram(data, C, 0.0)
    out = net.s.datagrams_to_send(0.0)
    if answer:
        assert out == [(bytes((0x70, 0, 0, 5)), C)]  # §4.2: RST
    else:
        assert out == []
    assert net.events(net.s) == []


def test_ack_carrying_a_request_code_is_ignored(net: Any) -> None:
    net.s.receive_datagram(Message(Type.ACK, Code.GET, 5, b"t").encode(), C, 0.0)
    assert net.s.datagrams_to_send(0.0) == [] and net.events(net.s) == []


def test_reserved_code_class_in_con_gets_rst(net: Any) -> None:
    net.s.receive_datagram(Message(Type.CON, 0x21, 5, b"t").encode(), C, 0.0)  # class 1
    assert net.s.datagrams_to_send(0.0) == [(bytes((0x70, 0, 0, 5)), C)]


def test_unknown_critical_option_gets_4_02(net: Any) -> None:
    msg = get().replace(mid=3, token=b"k", options=((9, b"x"), (11, b"a")))
    net.s.receive_datagram(msg.encode(), C, 0.0)
    ((data, _),) = net.s.datagrams_to_send(0.0)
    resp = Message.decode(data)
    assert resp.type is Type.ACK and resp.code == Code.BAD_OPTION and resp.token == b"k" and resp.mid == 3
    assert net.events(net.s) == []


def test_unknown_elective_option_is_passed_on(net: Any) -> None:
    msg = get().replace(mid=3, token=b"k", options=((11, b"a"), (2048, b"x")))
    net.s.receive_datagram(msg.encode(), C, 0.0)
    assert isinstance(net.s.next_event(), RequestReceived)


def test_extra_critical_options_can_be_declared(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(extra_critical_options=frozenset({2049})))
    msg = get().replace(mid=3, token=b"k", options=((11, b"a"), (2049, b"x")))
    net.s.receive_datagram(msg.encode(), C, 0.0)
    assert isinstance(net.s.next_event(), RequestReceived)


def test_bad_block_option_gets_4_00(net: Any) -> None:
    msg = get().replace(mid=3, token=b"k", options=((OptionNumber.BLOCK2, b"\x0f"),))  # szx 7
    net.s.receive_datagram(msg.encode(), C, 0.0)
    ((data, _),) = net.s.datagrams_to_send(0.0)
    assert Message.decode(data).code == Code.BAD_REQUEST


def test_pending_requests_are_bounded(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_pending_requests=2, empty_ack_delay=None))
    for mid in range(3):
        net.s.receive_datagram(get().replace(mid=mid, token=b"t%d" % mid).encode(), C, 0.0)
    events = net.events(net.s)
    # The oldest got its empty ACK early; its answer will go as a separate response.
    assert net.s.datagrams_to_send(0.0) == [(bytes((0x60, 0, 0, 0)), C)]
    net.s.respond(events[0], content(), 0.0)
    ((data, _),) = net.s.datagrams_to_send(0.0)
    assert Message.decode(data).type is Type.CON
    net.s.respond(events[2], content(), 0.0)
    ((data, _),) = net.s.datagrams_to_send(0.0)
    assert Message.decode(data).type is Type.ACK


def test_block_option_in_request_is_reported(net: Any) -> None:
    net.s.receive_datagram(get(block2=BlockOption(0, False, 2)).replace(mid=1, token=b"a").encode(), C, 0.0)
    ev = net.s.next_event()
    assert isinstance(ev, RequestReceived) and ev.block2 == BlockOption(0, False, 2)


# --- hostile input ---------------------------------------------------------------------------------


class _Hostile:
    """Datagrams from many peers: random bytes, mutations, and plausible messages that refer
    to what the endpoint sent recently (its tokens and message IDs), so that every path runs."""

    def __init__(self, rng: random.Random, peers: list[Any]) -> None:
        self.rng = rng
        self.peers = peers
        self.seen: list[tuple[Message, Any]] = []  # recent datagrams of the endpoint, decoded

    def observe(self, out: list[tuple[bytes, Any]]) -> None:
        for data, addr in out:
            self.seen.append((Message.decode(data), addr))
        del self.seen[:-200]

    def datagram(self) -> tuple[bytes, Any]:
        rng = self.rng
        kind = rng.random()
        if kind < 0.15:
            return rng.randbytes(rng.randrange(0, 40)), rng.choice(self.peers)
        if kind < 0.45 and self.seen:
            msg, addr = self.answer()
        else:
            msg, addr = self.request(), rng.choice(self.peers)
        data = bytearray(msg.encode())
        if rng.random() < 0.1:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data), addr

    def request(self) -> Message:
        rng = self.rng
        code = rng.choice([Code.GET, Code.GET, Code.PUT, Code.POST, Code.FETCH, Code.DELETE, 9])
        opts: list[tuple[int, bytes]] = [(OptionNumber.URI_PATH, rng.choice([b"a", b"b", b"c"]))]
        payload = b""
        r = rng.random()
        if r < 0.25:
            opts.append((OptionNumber.OBSERVE, encode_uint(rng.choice([0, 0, 1, 7]))))
        elif r < 0.55:
            szx = rng.randrange(0, 7)
            num, more = rng.randrange(0, 4), rng.random() < 0.7
            opts.append((OptionNumber.BLOCK1, BlockOption(num, more, szx).encode()))
            size = 1 << (szx + 4)
            payload = rng.randbytes(size if more and rng.random() < 0.9 else rng.randrange(1, size + 1))
            if rng.random() < 0.2:
                opts.append((OptionNumber.SIZE1, encode_uint(rng.randrange(0, 1 << 22))))
        elif r < 0.7:
            opts.append(
                (OptionNumber.BLOCK2, BlockOption(rng.randrange(0, 6), False, rng.randrange(0, 7)).encode())
            )
        elif r < 0.75:
            opts.append((rng.randrange(1, 3000), rng.randbytes(rng.randrange(0, 4))))
        opts.sort(key=lambda o: o[0])
        mtype = rng.choice([Type.CON, Type.CON, Type.NON])
        token = rng.randbytes(rng.randrange(0, 9))
        return Message(mtype, code, rng.randrange(0x10000), token, tuple(opts), payload)

    def answer(self) -> tuple[Message, Any]:
        rng = self.rng
        sent, addr = rng.choice(self.seen)
        r = rng.random()
        if r < 0.25:  # empty ACK or RST for one of its messages
            return Message(rng.choice([Type.ACK, Type.RST]), Code.EMPTY, sent.mid), addr
        mtype = rng.choice([Type.ACK, Type.CON, Type.NON])
        code = rng.choice([Code.CONTENT, Code.CONTENT, Code.CHANGED, Code.CONTINUE, Code.NOT_FOUND])
        opts: list[tuple[int, bytes]] = []
        if rng.random() < 0.4:
            opts.append((OptionNumber.OBSERVE, encode_uint(rng.randrange(0, 1 << 24))))
        if rng.random() < 0.4:
            opts.append(
                (OptionNumber.BLOCK2, BlockOption(rng.randrange(0, 4), rng.random() < 0.6, 6).encode())
            )
        if code == Code.CONTINUE or rng.random() < 0.2:
            opts.append(
                (OptionNumber.BLOCK1, BlockOption(rng.randrange(0, 4), True, rng.randrange(0, 7)).encode())
            )
        if rng.random() < 0.1:
            opts.append((OptionNumber.ETAG, rng.randbytes(2)))
        opts.sort(key=lambda o: o[0])
        mid = sent.mid if mtype is Type.ACK else rng.randrange(0x10000)
        token = sent.token if rng.random() < 0.9 else rng.randbytes(4)
        return Message(mtype, code, mid, token, tuple(opts), rng.randbytes(rng.choice([0, 3, 1024]))), addr


def test_hostile_input_never_raises_and_state_stays_bounded() -> None:
    cfg = EndpointConfig(
        max_dedup_entries=500,
        max_pending_requests=100,
        max_reassembly_buffers=20,
        max_reassembly_per_peer=2,
        max_block_cache=20,
        max_observations=30,
        max_observations_per_peer=2,
        max_peers=50,
        max_body_size=4096,
    )
    ep = Endpoint(cfg, rng=random.Random(3))
    rng = random.Random(4)
    peers = [(f"192.0.2.{i}", 5683 + i) for i in range(300)]
    hostile = _Hostile(rng, peers)
    kinds: Counter[str] = Counter()
    now = 0.0
    for i in range(10_000):
        now += rng.random() * 0.05
        data, addr = hostile.datagram()
        ep.receive_datagram(data, addr, now)
        if i % 20 == 0:
            # Requests of our own, so that responses, notifications and RSTs match something.
            big = rng.random() < 0.3
            req = Message.build(
                rng.choice([Type.CON, Type.NON]),
                rng.choice([Code.GET, Code.PUT]),
                uri_path="/x",
                observe=0 if rng.random() < 0.3 else None,
                payload=bytes(3000) if big else b"",
            )
            ep.request(req, rng.choice(peers[:20]), now)
        timer = ep.get_timer()
        if timer is not None and timer <= now:
            ep.handle_timer(now)
        while (ev := ep.next_event()) is not None:
            kinds[type(ev).__name__] += 1
            if isinstance(ev, RequestReceived) and rng.random() < 0.8:
                big = rng.random() < 0.1
                response = content(bytes(3000) if big else b"x", observe=0 if ev.observe == 0 else None)
                ep.respond(ev, response, now)
        for relation in ep.observations()[:3]:
            ep.notify(relation, content(bytes(rng.choice([1, 2000]))), now, confirmable=rng.random() < 0.5)
        hostile.observe(ep.datagrams_to_send(now))
        sizes = ep.state_sizes()
        assert sizes["dedup"] <= cfg.max_dedup_entries
        assert sizes["unacked"] <= cfg.max_pending_requests
        assert sizes["reassembly"] <= cfg.max_reassembly_buffers
        assert sizes["served"] <= cfg.max_block_cache
        assert sizes["relations"] <= cfg.max_observations
        assert sizes["non_sent"] <= cfg.max_dedup_entries
        assert sizes["heap"] <= 4 * (sizes["tx"] + sizes["requests"]) + 1100
    # The endpoint went through its paths, not just the error exits.
    assert ep.rejected_after_decode == 0
    for kind in ("RequestReceived", "ResponseReceived", "ObservationCancelled", "ResetReceived"):
        assert kinds[kind] > 0, kinds
    # Time passes: everything transient drains.
    for _ in range(10_000):  # queued requests (NSTART) take several timer steps each
        timer = ep.get_timer()
        if timer is None:
            break
        now = max(now, timer) + 1000.0
        ep.handle_timer(now)
        ep.datagrams_to_send(now)
        while ep.next_event() is not None:
            pass
    sizes = ep.state_sizes()
    assert sizes["dedup"] == 0 and sizes["unacked"] == 0 and sizes["reassembly"] == 0 and sizes["served"] == 0
    assert sizes["tx"] == 0


def test_an_endpoint_is_freed_without_the_garbage_collector() -> None:
    # No reference cycle between the endpoint and its parts: the simulator makes and drops
    # many endpoints, and cycles would wait for a full collection.
    import gc
    import weakref

    gc.disable()
    try:
        endpoint = Endpoint(EndpointConfig())
        ref = weakref.ref(endpoint)
        del endpoint
        assert ref() is None
    finally:
        gc.enable()


def test_parts_an_exchange_does_not_use_are_made_when_first_needed(net: Any) -> None:
    # A simulated fleet holds one endpoint per device: answers pending, relations, block-wise
    # transfers, held notifications and the refusal log are made only for an endpoint using them.
    lazy = ("_un", "_rel", "_blk", "_held", "_refusals")  # None until made
    net.c.request(get(), S, 0.0)
    net.deliver()
    net.s.respond(served_request(net), content(b"42"), 0.0)
    net.deliver()
    assert [type(ev).__name__ for ev in net.events(net.c)] == ["ResponseReceived"]
    net.c.handle_timer(300.0)
    assert net.c.get_timer() is None and net.c.observations() == []
    assert net.c.state_sizes()["relations"] == 0
    assert [part for part in lazy if getattr(net.c, part) is not None] == []
    # A CON request served makes the pending answers; an Observe registration, the relations.
    assert net.s._un is not None and net.s._rel is None
    net.c.request(get(observe=0).replace(token=b"obs"), S, 301.0)
    net.deliver()
    net.s.respond(served_request(net), content(b"43", observe=1), 301.0)
    assert net.s.observations() == [(C, b"obs")]
    assert net.s._rel is not None


def test_a_new_generation_of_duplicate_detection_arms_the_timer(net: Any) -> None:
    net.s.receive_datagram(get().replace(mid=1, token=b"t").encode(), C, 10.0)
    net.s.respond(served_request(net), content(), 10.0)
    net.s.datagrams_to_send(10.0)
    assert net.s.get_timer() == pytest.approx(10.0 + EndpointConfig().exchange_lifetime)
    net.s.handle_timer(10.0 + EndpointConfig().exchange_lifetime)
    assert net.s.state_sizes()["dedup"] == 0 and net.s.get_timer() is None


def test_tables_emptied_by_an_exchange_give_their_memory_back(net: Any) -> None:
    # A dict keeps the table it grew until cleared: for every endpoint of a simulated fleet,
    # 160 bytes each for the requests, transmissions, peers and answers pending of one exchange.
    import sys

    empty_size = sys.getsizeof({})
    net.c.request(get(), S, 0.0)
    net.deliver()
    net.s.respond(served_request(net), content(b"42"), 0.0)
    net.deliver()
    assert [type(ev).__name__ for ev in net.events(net.c)] == ["ResponseReceived"]
    exchanges = net.c._exchanges
    for table in (exchanges.requests, exchanges.tx, exchanges.peers, net.s._un.fresh):
        assert not table and sys.getsizeof(table) == empty_size
