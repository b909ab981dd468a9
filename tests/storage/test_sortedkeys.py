"""The sorted index of the memory store: the same answers as a sorted list, under any changes."""

from __future__ import annotations

import random
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.storage.sortedkeys import SortedKeys, TimedKeys


@given(st.lists(st.tuples(st.booleans(), st.text(max_size=4)), max_size=300), st.text(max_size=4))
def test_matches_a_sorted_list(operations: list[tuple[bool, str]], probe: str) -> None:
    keys = SortedKeys(load=2)  # tiny chunks: every split and removal path runs
    model: set[str] = set()
    for adding, key in operations:
        if adding:
            assert keys.add(key) is (key not in model)
            model.add(key)
        else:
            assert keys.discard(key) is (key in model)
            model.discard(key)
        assert len(keys) == len(model)
    ordered = sorted(model)
    assert list(keys.after()) == ordered
    assert list(keys.after(probe)) == [k for k in ordered if k > probe]
    assert list(keys.after(start=probe)) == [k for k in ordered if k >= probe]
    assert list(keys.after(probe, start="b")) == [k for k in ordered if k > probe and k >= "b"]
    assert (probe in keys) is (probe in model)


def test_a_large_set_stays_in_chunks() -> None:
    keys = SortedKeys()
    names = [f"dev-{i:07d}" for i in range(50_000)]
    random.Random(3).shuffle(names)
    for name in names:
        keys.add(name)
    for name in names[:25_000]:
        keys.discard(name)
    rest = sorted(names[25_000:])
    assert list(keys.after()) == rest
    assert max(len(c) for c in keys._chunks) <= 2 * 512
    assert next(keys.after(rest[100])) == rest[101]
    assert 1 not in keys


def test_load_is_checked() -> None:
    with pytest.raises(ValueError):
        SortedKeys(load=1)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20), st.sampled_from("abc")), max_size=200))
def test_tuple_keys_as_the_expiry_index_uses_them(operations: list[tuple[bool, int, str]]) -> None:
    keys: SortedKeys[tuple[float, str]] = SortedKeys(load=2)
    model: set[tuple[float, str]] = set()
    for adding, t, name in operations:
        key = (float(t), name)
        if adding:
            assert keys.add(key) is (key not in model)
            model.add(key)
        else:
            assert keys.discard(key) is (key in model)
            model.discard(key)
    assert list(keys) == sorted(model)
    assert list(keys.after()) == sorted(model)
    assert list(keys.after((10.0, "b"))) == [k for k in sorted(model) if k > (10.0, "b")]
    assert "a" not in keys  # another type: not a key, not an error


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 20), st.sampled_from("abcd")), max_size=300),
    st.integers(-1, 21),
    st.sampled_from("abcde"),
)
def test_timed_keys_match_sorted_tuples(operations: list[tuple[bool, int, str]], t: int, name: str) -> None:
    keys = TimedKeys(load=2)  # tiny chunks: every split and removal path runs
    model: set[tuple[float, str]] = set()
    for adding, when, key in operations:
        pair = (when / 2, key)  # equal times with several names, and times between them
        if adding:
            assert keys.add(*pair) is (pair not in model)
            model.add(pair)
        else:
            assert keys.discard(*pair) is (pair in model)
            model.discard(pair)
        assert len(keys) == len(model)
        assert all(len(c) <= 4 for c in keys._names)
    assert list(keys) == sorted(model)
    probe = (t / 2, name)
    assert (probe in keys) is (probe in model)


def test_timed_keys_hold_a_storm_of_one_time_and_large_int_times() -> None:
    keys = TimedKeys()
    names = [f"dev-{i:07d}" for i in range(20_000)]
    random.Random(4).shuffle(names)
    for name in names:  # a Register storm: one expiry for every one
        assert keys.add(1000.0, name)
    assert not keys.add(1000.0, names[0])
    huge = 100 + (2**63 - 1)  # last_update + LIFETIME_CEILING, as ints: compared as their float
    assert keys.add(huge, "forever") and (huge, "forever") in keys
    for name in names[:10_000]:
        assert keys.discard(1000.0, name)
    assert keys.discard(huge, "forever") and not keys.discard(huge, "forever")
    assert list(keys) == [(1000.0, n) for n in sorted(names[10_000:])]
    assert max(len(c) for c in keys._names) <= 2 * 512
    assert "dev" not in keys and (1000.0, 1) not in keys
    with pytest.raises(ValueError):
        TimedKeys(load=1)


def test_timed_keys_hold_a_pair_in_16_bytes() -> None:
    # A float in an array and a name's pointer in a list, not a tuple and a float object each
    # (what the memory store's expiry index costs per registration at a million).
    keys = TimedKeys()
    names = [f"dev-{i:07d}" for i in range(50_000)]
    for i, name in enumerate(names):
        keys.add(1000.0 + i, name)
    held = sum(sys.getsizeof(t) + sys.getsizeof(n) for t, n in zip(keys._times, keys._names, strict=True))
    assert held / len(names) < 24
