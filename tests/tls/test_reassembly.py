"""Handshake fragmentation and reassembly (RFC 6347 §4.2.3): fragments in every order,
duplicated and overlapping; messages out in message_seq order; memory bounded."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.errors import HandshakeFormatError, ProtocolError
from lwm2m.tls.messages import HANDSHAKE_HEADER_LENGTH, HandshakeHeader, split_handshake_fragments
from lwm2m.tls.reassembly import HandshakeReassembler, ReassembledMessage, fragment_handshake


def _parts(fragments: list[bytes]) -> list[tuple[HandshakeHeader, bytes]]:
    return [part for raw in fragments for part in split_handshake_fragments(raw)]


def test_fragments_fit_the_size_and_carry_the_whole_header() -> None:
    body = bytes(range(250))
    fragments = fragment_handshake(11, 3, body, 100)
    assert all(len(f) <= 100 for f in fragments)
    headers = [h for h, _ in _parts(fragments)]
    assert [(h.fragment_offset, h.fragment_length) for h in headers] == [(0, 88), (88, 88), (176, 74)]
    assert {(h.msg_type, h.length, h.message_seq) for h in headers} == {(11, 250, 3)}


def test_an_empty_message_is_one_fragment() -> None:
    [fragment] = fragment_handshake(14, 0, b"", 50)
    reassembler = HandshakeReassembler()
    [(header, data)] = split_handshake_fragments(fragment)
    assert reassembler.add(header, data) == [ReassembledMessage(14, 0, b"")]


def test_a_fragment_size_without_room_for_data_is_refused() -> None:
    with pytest.raises(HandshakeFormatError):
        fragment_handshake(1, 0, b"x", HANDSHAKE_HEADER_LENGTH)


def test_a_reassembled_message_is_hashed_as_if_never_fragmented() -> None:
    message = ReassembledMessage(2, 1, b"abc")
    assert message.to_bytes() == bytes.fromhex("02 000003 0001 000000 000003") + b"abc"


@st.composite
def _flights(draw: st.DrawFn) -> tuple[list[tuple[int, bytes]], list[tuple[HandshakeHeader, bytes]]]:
    # Several messages, each fragmented at its own size, some fragments sent twice, all shuffled.
    bodies = draw(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
    messages = [(seq, body) for seq, body in enumerate(bodies)]
    parts: list[tuple[HandshakeHeader, bytes]] = []
    for seq, body in messages:
        size = draw(st.integers(HANDSHAKE_HEADER_LENGTH + 1, 200))
        parts += _parts(fragment_handshake(20 + seq, seq, body, size))
    parts += draw(st.lists(st.sampled_from(parts), max_size=5))
    return messages, draw(st.permutations(parts))


@given(_flights())
def test_any_order_with_duplicates_gives_the_messages_in_order(
    flight: tuple[list[tuple[int, bytes]], list[tuple[HandshakeHeader, bytes]]],
) -> None:
    messages, parts = flight
    reassembler = HandshakeReassembler()
    out: list[ReassembledMessage] = []
    for header, data in parts:
        out += reassembler.add(header, data)
    assert [(m.message_seq, m.body) for m in out] == messages
    assert [m.msg_type for m in out] == [20 + seq for seq, _ in messages]
    assert reassembler.next_seq == len(messages)
    assert reassembler.buffered_bytes == 0


@given(st.binary(min_size=1, max_size=200), st.data())
def test_overlapping_fragments_reassemble(body: bytes, data: st.DataObject) -> None:
    # Arbitrary [start, end) pieces that together cover the message, sent in any order.
    cuts = sorted(set([*data.draw(st.lists(st.integers(0, len(body)), max_size=6)), 0, len(body)]))
    pieces = [(a, b) for a, b in itertools.pairwise(cuts)]
    extra = data.draw(st.lists(st.tuples(st.integers(0, len(body)), st.integers(0, len(body))), max_size=4))
    pieces += [(min(a, b), max(a, b)) for a, b in extra]
    reassembler = HandshakeReassembler()
    out: list[ReassembledMessage] = []
    for a, b in data.draw(st.permutations(pieces)):
        out += reassembler.add(HandshakeHeader(1, len(body), 0, a, b - a), body[a:b])
    assert out == [ReassembledMessage(1, 0, body)]


def test_a_later_message_waits_for_the_earlier_one() -> None:
    reassembler = HandshakeReassembler()
    [(h1, d1)] = _parts(fragment_handshake(14, 1, b"", 100))
    [(h0, d0)] = _parts(fragment_handshake(2, 0, b"hello", 100))
    assert reassembler.add(h1, d1) == []
    assert reassembler.add(h0, d0) == [ReassembledMessage(2, 0, b"hello"), ReassembledMessage(14, 1, b"")]


def test_a_retransmitted_message_is_counted_not_delivered_again() -> None:
    reassembler = HandshakeReassembler()
    [(header, data)] = _parts(fragment_handshake(1, 0, b"hi", 100))
    assert len(reassembler.add(header, data)) == 1
    assert reassembler.add(header, data) == []
    assert reassembler.retransmissions == 1


def test_a_message_far_ahead_is_dropped() -> None:
    reassembler = HandshakeReassembler(window=2)
    [(header, data)] = _parts(fragment_handshake(1, 2, b"hi", 100))
    assert reassembler.add(header, data) == []
    assert reassembler.buffered_bytes == 0


def test_a_message_longer_than_the_limit_is_refused_before_buffering() -> None:
    reassembler = HandshakeReassembler()
    with pytest.raises(HandshakeFormatError, match="limit"):
        reassembler.add(HandshakeHeader(11, 64 * 1024 + 1, 0, 0, 1), b"x")
    assert reassembler.buffered_bytes == 0
    small = HandshakeReassembler(max_message_length=10)
    with pytest.raises(HandshakeFormatError):
        small.add(HandshakeHeader(11, 11, 0, 0, 0), b"")


def test_fragments_that_disagree_about_their_message_are_refused() -> None:
    reassembler = HandshakeReassembler()
    reassembler.add(HandshakeHeader(11, 100, 0, 0, 10), bytes(10))
    with pytest.raises(HandshakeFormatError, match="disagree"):
        reassembler.add(HandshakeHeader(11, 101, 0, 10, 10), bytes(10))
    with pytest.raises(HandshakeFormatError, match="disagree"):
        reassembler.add(HandshakeHeader(12, 100, 0, 10, 10), bytes(10))
    with pytest.raises(HandshakeFormatError, match="holds"):
        reassembler.add(HandshakeHeader(11, 100, 0, 10, 10), bytes(9))


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_fuzz_any_record_payloads(payloads: list[bytes]) -> None:
    # Whatever arrives: messages, or a ProtocolError, and never more buffered than the bound.
    reassembler = HandshakeReassembler(max_message_length=1000, window=4)
    for payload in payloads:
        try:
            for header, data in split_handshake_fragments(payload):
                for message in reassembler.add(header, data):
                    assert message.to_bytes()[HANDSHAKE_HEADER_LENGTH:] == message.body
        except ProtocolError:
            pass
        assert reassembler.buffered_bytes <= 4 * 1000


def test_a_message_cut_into_too_many_separate_pieces_is_refused() -> None:
    reassembler = HandshakeReassembler()
    with pytest.raises(HandshakeFormatError, match="pieces"):
        for offset in range(0, 1000, 2):  # 1-byte fragments with a gap after each
            reassembler.add(HandshakeHeader(11, 1000, 0, offset, 1), b"x")


@st.composite
def _hostile_fragments(draw: st.DrawFn) -> tuple[HandshakeHeader, bytes]:
    # Well-formed headers with hostile values: lengths near the limit, offsets anywhere in the
    # message, sequence numbers behind, at and beyond the window, types that change.
    length = draw(st.integers(0, 1200))
    offset = draw(st.integers(0, length))
    fragment_length = draw(st.integers(0, min(length - offset, 50)))
    header = HandshakeHeader(
        draw(st.integers(0, 3)), length, draw(st.integers(0, 8)), offset, fragment_length
    )
    return header, draw(st.binary(min_size=fragment_length, max_size=fragment_length))


@given(st.lists(_hostile_fragments(), max_size=60))
def test_fuzz_hostile_fragments(fragments: list[tuple[HandshakeHeader, bytes]]) -> None:
    reassembler = HandshakeReassembler(max_message_length=1000, window=4)
    delivered: list[int] = []
    for header, data in fragments:
        with contextlib.suppress(ProtocolError):
            delivered += [m.message_seq for m in reassembler.add(header, data)]
        assert reassembler.buffered_bytes <= 4 * 1000
    assert delivered == list(range(len(delivered)))  # in order, none twice, none skipped
