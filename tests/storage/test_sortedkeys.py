"""The sorted index of the memory store: the same answers as a sorted list, under any changes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.storage.sortedkeys import SortedKeys


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
