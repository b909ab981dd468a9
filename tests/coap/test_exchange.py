"""Our outgoing exchanges alone (RFC 7252 §4.2-§4.7), on a virtual clock: no endpoint, no sockets."""

from __future__ import annotations

import random

import pytest

from lwm2m.coap.exchange import EMPTY_ACK, EMPTY_RST, Exchanges, OutgoingRequest, Transmission, empty
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type

A = ("10.0.0.1", 5683)


def make(**kw: object) -> Exchanges:
    return Exchanges(random.Random(3), **kw)  # type: ignore[arg-type]


def request(token: bytes = b"t", mtype: Type = Type.CON) -> OutgoingRequest:
    return OutgoingRequest(A, token, Message(mtype, Code.GET, 0, token))


def test_empty_messages() -> None:
    assert empty(EMPTY_ACK, 0x1234) == bytes((0x60, 0, 0x12, 0x34))
    assert empty(EMPTY_RST, 1) == bytes((0x70, 0, 0, 1))


def test_message_ids_count_up_from_a_random_start_and_wrap() -> None:
    ex = make()
    first = ex.alloc_mid()
    assert ex.alloc_mid() == (first + 1) & 0xFFFF
    ids = {ex.alloc_mid() for _ in range(0x10000)}
    assert len(ids) == 0x10000


def test_tokens_are_random_and_unique_among_all_peers() -> None:
    ex = make(token_length=1)
    seen = set()
    for i in range(200):
        peer = (f"10.0.0.{i % 3}", 5683)  # a token made for one peer is in use with none
        token = ex.new_token(peer)
        assert len(token) == 1 and token not in seen
        seen.add(token)
        ex.put(OutgoingRequest(peer, token, Message(Type.CON, Code.GET, 0, token)))
    assert make(token_length=0).new_token(A) == b""


def test_requests_are_found_by_token_and_peer_whatever_they_are_kept_under() -> None:
    ex = make()
    b = ("10.0.0.2", 5683)
    mine = request(b"tk")  # kept by its token alone
    theirs = OutgoingRequest(b, b"tk", Message(Type.CON, Code.GET, 0, b"tk"))  # the same token
    empty_a, empty_b = request(b""), OutgoingRequest(b, b"", Message(Type.CON, Code.GET))
    for req in (mine, theirs, empty_a, empty_b):
        ex.put(req)
    assert set(ex.requests) == {b"tk", (b, b"tk"), (A, b""), (b, b"")}
    assert ex.find(A, b"tk") is mine and ex.find(b, b"tk") is theirs
    assert ex.find(A, b"") is empty_a and ex.find(b, b"") is empty_b
    assert ex.find(("10.0.0.9", 5683), b"tk") is None  # §5.3.2: the token and the peer
    ex.take(mine)
    assert ex.find(A, b"tk") is None and ex.find(b, b"tk") is theirs
    ex.take(mine)  # not kept: nothing happens
    for req in (theirs, empty_a, empty_b):
        ex.take(req)
    assert ex.requests == {}


def test_retransmission_backs_off_exponentially_then_gives_up() -> None:
    ex = make(ack_timeout=2.0, ack_random_factor=1.5, max_retransmit=2)
    tx = ex.add_tx(A, 5, b"t", b"data", None, 0.0)
    assert 2.0 <= tx.deadline <= 3.0  # §4.2: random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR]
    first = tx.timeout
    assert ex.next_deadline() == tx.deadline
    assert ex.pop_due(tx.deadline - 0.01) is None
    now = tx.deadline
    assert ex.pop_due(now) is tx
    assert ex.back_off(tx, now) and tx.timeout == 2 * first and tx.deadline == now + 2 * first
    now = tx.deadline
    assert ex.pop_due(now) is tx and ex.back_off(tx, now) and tx.timeout == 4 * first
    now = tx.deadline
    assert ex.pop_due(now) is tx
    assert not ex.back_off(tx, now)  # MAX_RETRANSMIT reached
    assert not tx.live and (A, 5) not in ex.tx
    assert ex.next_deadline() == float("inf")


def test_an_ack_ends_a_transmission_and_its_heap_entry_goes_lazily() -> None:
    ex = make()
    tx = ex.add_tx(A, 5, b"t", b"data", None, 0.0)
    assert ex.pop_tx(A, 5) is tx and not tx.live
    assert ex.pop_tx(A, 5) is None
    assert ex.pop_due(100.0) is None and not ex.heap


def test_a_replacing_transmission_keeps_the_back_off() -> None:
    ex = make()
    old = ex.add_tx(A, 1, b"t", b"one", None, 0.0)
    ex.back_off(old, old.deadline)
    new = ex.add_tx(A, 2, b"t", b"two", None, 10.0)
    ex.replace_tx(old, new, 10.0)
    assert not old.live and new.retries == 1 and new.timeout == old.timeout
    assert ex.next_deadline() == 10.0 + old.timeout


def test_the_heap_sheds_finished_entries() -> None:
    ex = make()
    for mid in range(3000):
        ex.kill_tx(ex.add_tx(A, mid, b"t", b"x", None, 0.0))
    assert len(ex.heap) <= 1100


def test_non_messages_are_remembered_for_their_lifetime_within_a_cap() -> None:
    ex = make(non_lifetime=145.0, max_non_sent=2)
    owner = request()
    assert ex.remember_non(A, 1, None, 0.0) is None  # no owner: nothing an RST could reach
    assert ex.remember_non(A, 1, owner, 0.0) == 145.0
    ex.remember_non(A, 2, owner, 1.0)
    ex.remember_non(A, 3, owner, 2.0)  # over the cap: the oldest goes
    assert ex.pop_non(A, 1) is None
    assert ex.pop_non(A, 2) is owner
    assert ex.next_expiry() == 147.0
    ex.expire(146.0)
    assert ex.next_expiry() == 147.0
    ex.expire(147.0)
    assert ex.next_expiry() == float("inf") and not ex.non_sent


@pytest.mark.parametrize("nstart", [1, 2])
def test_nstart_slots_and_the_queue(nstart: int) -> None:
    ex = make(nstart=nstart)
    running = [request(bytes([i])) for i in range(nstart)]
    for req in running:
        ex.take_slot(req)
        ex.take_slot(req)  # counted once
    peer = ex.peer(A)
    assert peer.inflight == nstart
    waiting, dropped = request(b"w"), request(b"d")
    peer.queue.extend([dropped, waiting])
    dropped.live = False
    assert ex.next_queued(peer) is None  # no room yet
    assert ex.release_slot(running[0]) is peer and peer.inflight == nstart - 1
    assert ex.release_slot(running[0]) is None  # released already
    assert ex.next_queued(peer) is waiting  # the dead one is skipped
    ex.forget_idle(A, peer)
    assert (A in ex.peers) == (nstart == 2)


def test_a_queued_request_can_leave_the_queue() -> None:
    ex = make()
    ex.take_slot(request(b"a"))
    queued = request(b"b")
    ex.peer(A).queue.append(queued)
    ex.unqueue(queued)
    assert not ex.peer(A).queue


def test_request_and_transmission_records() -> None:
    req = request(mtype=Type.NON)
    assert not req.con and not req.observe and req.deadline == float("inf")
    observe = OutgoingRequest(A, b"o", Message(Type.CON, Code.GET, 0, b"o").with_option(6, b""))
    assert observe.observe
    tx = Transmission(A, 1, b"t", b"d", req, 2.0, 10.0)
    assert tx.deadline == 12.0 and tx.live and tx.retries == 0
