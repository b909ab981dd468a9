"""The 64-record anti-replay window of RFC 6347 §4.1.2.6: in order, out of order, duplicates,
far ahead, far behind, and against a plain set of everything accepted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import RecordError
from lwm2m.tls.replay import ReplayWindow


def test_a_fresh_window_takes_any_sequence_number() -> None:
    window = ReplayWindow()
    assert window.highest is None
    assert window.check(0)
    assert window.check(2**48 - 1)


def test_in_order_records_are_new_once() -> None:
    window = ReplayWindow(epoch=1)
    for sequence in range(200):
        assert window.check(sequence)
        window.accept(sequence)
        assert not window.check(sequence)
    assert window.highest == 199
    assert window.epoch == 1


def test_out_of_order_records_inside_the_window_are_taken_once() -> None:
    window = ReplayWindow()
    window.accept(10)
    for sequence in (7, 9, 3, 8):
        assert window.check(sequence)
        window.accept(sequence)
    for sequence in (10, 7, 9, 3, 8):
        assert not window.check(sequence), sequence
    for sequence in (0, 1, 2, 4, 5, 6, 11):
        assert window.check(sequence), sequence
    assert window.highest == 10


def test_check_changes_nothing_only_accept_does() -> None:
    # A record is accepted only after it authenticates: a forged one must not move the window.
    window = ReplayWindow()
    window.accept(5)
    assert window.check(1000)
    assert window.highest == 5
    assert window.check(4)


def test_the_window_holds_64_records() -> None:
    window = ReplayWindow()
    window.accept(100)
    assert window.check(100 - 63)  # the lowest number still inside the window
    assert not window.check(100 - 64)  # left of the window: refused, too old to tell
    window.accept(37)
    assert not window.check(37)


def test_far_ahead_slides_the_whole_window() -> None:
    window = ReplayWindow()
    for sequence in range(64):
        window.accept(sequence)
    window.accept(1000)
    assert window.highest == 1000
    # Nothing of the old bitmap survives the jump: the numbers just below are new.
    assert all(window.check(s) for s in range(1000 - 63, 1000))
    assert not window.check(1000)
    assert not window.check(63)  # now far behind


def test_a_jump_inside_the_window_keeps_the_bits_that_stay_inside() -> None:
    window = ReplayWindow()
    window.accept(0)
    window.accept(1)
    window.accept(60)
    assert not window.check(0)
    assert not window.check(1)
    assert window.check(2)
    window.accept(64)  # 0 leaves the window; 1 is at its left edge
    assert not window.check(0)
    assert not window.check(1)
    assert window.check(2)


def test_far_behind_is_refused_and_accepting_it_changes_nothing() -> None:
    window = ReplayWindow()
    window.accept(10_000)
    assert not window.check(5)
    window.accept(5)
    assert window.highest == 10_000
    assert window.check(10_000 - 1)


def test_sequence_numbers_outside_48_bits() -> None:
    window = ReplayWindow()
    assert not window.check(-1)
    assert not window.check(2**48)
    with pytest.raises(RecordError):
        window.accept(2**48)
    with pytest.raises(RecordError):
        ReplayWindow(size=0)


def test_a_new_epoch_is_a_new_window() -> None:
    # Sequence numbers restart at 0 in each epoch (RFC 6347 §4.1): one window per epoch.
    old, new = ReplayWindow(epoch=0), ReplayWindow(epoch=1)
    old.accept(0)
    assert new.check(0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=120))
def test_the_window_agrees_with_a_set_of_everything_accepted(sequences: list[int]) -> None:
    window = ReplayWindow()
    seen: set[int] = set()
    for sequence in sequences:
        highest = max(seen, default=None)
        if highest is None or sequence > highest:
            expected = True
        elif highest - sequence >= 64:
            expected = False
        else:
            expected = sequence not in seen
        assert window.check(sequence) is expected
        if expected:
            window.accept(sequence)
            seen.add(sequence)


@given(st.lists(st.integers(0, 300), max_size=60))
def test_accept_says_whether_the_number_was_above_every_one_before(sequences: list[int]) -> None:
    # RFC 9146 §6: only such a record may move a CID connection to a new address.
    window = ReplayWindow(1)
    highest: int | None = None
    for sequence in sequences:
        assert window.accept(sequence) is (highest is None or sequence > highest)
        highest = sequence if highest is None else max(highest, sequence)
        assert window.highest == highest
