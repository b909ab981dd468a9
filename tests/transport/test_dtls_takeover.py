"""The write sequence ranges of a session taken over between nodes (transport/dtls/takeover.py):
every holder sends in a range of its own, so that no two nodes ever seal a record with the same
keys and sequence number (RFC 6347 §4.1, an AEAD nonce used twice); ``rebase`` moves a saved
session's write sequence number into the taker's range and changes nothing else."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from tests.helpers.pki import KEY, SERVER, Wire, ask, client_layer, server_layer

from lwm2m.errors import TakeoverRefused
from lwm2m.tls.state import ConnectionState
from lwm2m.transport.dtls.saved import SavedState, decode_saved, encode_saved
from lwm2m.transport.dtls.takeover import MAX_SEQUENCE, TAKER_STRIDE, rebase, taker_range, write_base


def test_the_ranges_of_successive_holders_are_disjoint_and_ordered() -> None:
    base = (1 << 20) + 5
    ranges = [taker_range(base, n) for n in range(5)]
    assert ranges[0] == range(0, base + TAKER_STRIDE)
    for before, after in itertools.pairwise(ranges):
        assert before.stop == after.start and len(after) == TAKER_STRIDE


def test_a_takeover_beyond_the_48_bit_space_is_refused() -> None:
    base = 1 << 20
    last = (MAX_SEQUENCE + 1 - base) // TAKER_STRIDE - 1
    assert taker_range(base, last).stop - 1 <= MAX_SEQUENCE
    with pytest.raises(TakeoverRefused):
        taker_range(base, last + 1)
    with pytest.raises(TakeoverRefused):
        taker_range(MAX_SEQUENCE - 10, 1)


def _saved_session() -> bytes:
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}))
    peer = ("192.0.2.7", 40607)
    wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer) is not None
    state = server.session_state(peer)
    assert state is not None
    return state[1]


def test_rebase_sets_the_write_sequence_number_and_nothing_else() -> None:
    saved = _saved_session()
    base = write_base(saved)
    assert base >= 1 << 20  # the engine's export margin above what was sent
    moved = rebase(saved, taker_range(base, 3).start)
    assert write_base(moved) == base + 3 * TAKER_STRIDE
    before, after = decode_saved(saved), decode_saved(moved)
    assert dataclasses.replace(after, state=before.state) == before
    old, new = ConnectionState.from_bytes(before.state), ConnectionState.from_bytes(after.state)
    assert dataclasses.replace(new, write_sequence=old.write_sequence) == old


def test_only_server_sessions_are_rebased() -> None:
    entry = decode_saved(_saved_session())
    client = encode_saved(dataclasses.replace(entry, role="client"))
    with pytest.raises(TakeoverRefused):
        rebase(client, 1 << 36)
    with pytest.raises(TakeoverRefused):
        rebase(encode_saved(SavedState("server", None, None, b"", b"junk")), 1 << 36)
