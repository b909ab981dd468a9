"""Records for sessions a layer does not hold (transport/dtls/hold.py, ``DtlsLayer.hold_unknown``):
a cluster node's layer holds them, announces them (``SessionSought``) and feeds them again once
the application hands it the session (``take_over``), or drops them (``let_go``, then refused
for a while: a negative cache). Bounded in keys, datagrams, bytes and time whatever arrives;
off by default, where such records are dropped as before."""

from __future__ import annotations

import os
import time

import pytest
from tests.helpers.pki import KEY, SERVER, Wire, ask, client_layer, events_of, server_layer

from lwm2m.transport.dtls import DtlsLayer, SessionLimits
from lwm2m.transport.dtls.events import SessionSought
from lwm2m.transport.dtls.hold import HoldConfig
from lwm2m.transport.dtls.records import ContentType
from lwm2m.transport.dtls.takeover import rebase, taker_range, write_base

PEER = ("192.0.2.10", 40610)
CID = int(ContentType.TLS12_CID)


def _limits(cid: bool) -> SessionLimits:
    return SessionLimits(node_id=1) if cid else SessionLimits(node_id=1, cid_length=0)


def _moved(cid: bool, hold: HoldConfig | None) -> tuple[Wire, DtlsLayer, bytes, bytes]:
    """A device with a session at node A, whose datagrams now reach node B (holding with
    ``hold``); answers the wire, B, A's saved session and its CID."""
    wire = Wire()
    a = wire.add(SERVER, server_layer({"dev-1": KEY}, _limits(cid)))
    wire.add(PEER, client_layer("dev-1", KEY))
    assert ask(wire, PEER) is not None
    state = a.session_state(PEER)
    assert state is not None
    session_cid, saved = state
    assert bool(session_cid) == cid
    b = wire.add(SERVER, server_layer({"dev-1": KEY}, _limits(cid)))
    b.hold_unknown(hold)
    return wire, b, saved, session_cid


def test_by_default_records_of_unknown_sessions_are_dropped_as_before() -> None:
    wire, b, _, _ = _moved(True, None)
    assert ask(wire, PEER) is None
    assert b.counters["dropped_unknown_peer"] >= 1 and b.counters["records_held"] == 0
    assert events_of(b, SessionSought) == [] and "dtls_held" not in b.state_sizes()


@pytest.mark.parametrize("cid", [True, False], ids=["cid", "address"])
def test_held_records_are_fed_again_once_the_session_is_taken_over(cid: bool) -> None:
    wire, b, saved, session_cid = _moved(cid, HoldConfig())
    now = time.monotonic()
    assert ask(wire, PEER, now) is None  # held, not answered yet
    assert events_of(b, SessionSought) == [SessionSought(PEER, session_cid)]
    assert b.state_sizes()["dtls_held"] == 1 and b.counters["dropped_unknown_peer"] == 0
    assert b.authenticates(session_cid, PEER, saved, now)
    start = taker_range(write_base(saved), 1).start
    assert b.take_over(session_cid, PEER, rebase(saved, start), now) == PEER
    wire.pump(now)
    client = wire.nodes[PEER]
    assert b.counters["sessions_taken_over"] == 1 and b.counters["handshakes_started"] == 0
    assert b.state_sizes()["dtls_held"] == 0 and b.state_sizes()["dtls_sessions"] == 1
    answered = [e for e in client.seen if getattr(e, "response", None) is not None]  # type: ignore[attr-defined]
    assert answered[-1].response.payload == b"psk:dev-1"  # the held request, answered by B
    assert ask(wire, PEER, now) is not None  # and the session goes on


def test_a_forged_record_does_not_authenticate_and_a_let_go_key_is_refused_for_a_while() -> None:
    _, b, saved, session_cid = _moved(True, HoldConfig(miss_time=5.0))
    now = time.monotonic()
    forged = _cid_record(session_cid, b"\x00" * 40)
    b.receive_datagram(forged, PEER, now)
    assert len(b.events) == 1 and isinstance(b.events[-1], SessionSought)
    b.events.clear()
    assert not b.authenticates(session_cid, PEER, saved, now)
    b.let_go(session_cid, PEER, now)
    assert b.state_sizes()["dtls_held"] == 0 and b.counters["dropped_unknown_peer"] == 1
    b.receive_datagram(forged, PEER, now + 1)  # within miss_time: refused, no new look-up
    assert b.events == [] and b.counters["held_refused"] == 1
    b.handle_timer(now + 6)
    b.receive_datagram(forged, PEER, now + 6)  # later: sought again
    assert [type(e) for e in b.events] == [SessionSought]


def test_take_over_refuses_state_that_is_not_the_sought_session() -> None:
    _, b, saved, session_cid = _moved(True, HoldConfig())
    now = time.monotonic()
    b.receive_datagram(_cid_record(session_cid, b"\x01" * 30), PEER, now)
    other = bytes([1]) + os.urandom(5)
    assert b.take_over(other, PEER, saved, now) is None  # another CID than the session's
    assert b.take_over(session_cid, PEER, b"junk", now) is None
    assert b.state_sizes()["dtls_held"] == 0 and b.state_sizes()["dtls_parked"] == 0
    assert b.counters["sessions_taken_over"] == 0


def _cid_record(cid: bytes, body: bytes, seq: int = 1) -> bytes:
    """A tls12_cid record (RFC 9146 §4): type, version, epoch 1, sequence number, CID, length."""
    return bytes([CID, 0xFE, 0xFD, 0, 1]) + seq.to_bytes(6, "big") + cid + len(body).to_bytes(2, "big") + body


def test_holding_is_bounded_in_keys_datagrams_bytes_and_time() -> None:
    config = HoldConfig(max_keys=8, max_per_key=3, max_bytes=4000, hold_time=2.0)
    b = server_layer({"dev-1": KEY}, _limits(True))
    b.hold_unknown(config)
    now = time.monotonic()
    small, big = b"\x00" * 100, b"\x00" * 1000  # records of 119 and 1019 bytes
    for i in range(10):  # many for one CID: three kept
        b.receive_datagram(_cid_record(b"\x09same!", small, i), PEER, now)
    assert b.counters["records_held"] == 3 and b.counters["held_refused"] == 7
    for _ in range(4):  # large ones: the fourth would pass max_bytes
        b.receive_datagram(_cid_record(bytes([9]) + os.urandom(5), big), PEER, now)
    assert b.state_sizes()["dtls_held_bytes"] == 3 * 119 + 3 * 1019 and b.counters["held_refused"] == 8
    for _ in range(50):  # forged records with made-up CIDs: four more keys, then no room
        b.receive_datagram(_cid_record(bytes([9]) + os.urandom(5), small), PEER, now)
    sizes = b.state_sizes()
    assert sizes["dtls_held"] == 8 and sizes["dtls_held_bytes"] <= config.max_bytes
    assert sum(isinstance(e, SessionSought) for e in b.events) == 8
    assert b.counters["records_held"] == 10 and b.counters["held_refused"] == 54
    assert b.counters["dropped_unknown_peer"] == 54  # a refused record is dropped as before
    when = b.get_timer()
    assert when is not None and when <= now + config.hold_time
    b.handle_timer(now + config.hold_time)
    assert b.state_sizes()["dtls_held"] == 0 and b.state_sizes()["dtls_held_bytes"] == 0
    assert b.counters["held_expired"] == 10
