"""Prefixed paths: an end device behind an LwM2M Gateway (LwM2M-TS-Gateway 1.1, object 25)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import InvalidPath
from lwm2m.model.path import MAX_PREFIX_LENGTH, PREFIX_PATTERN, ROOT, Path, check_prefix


@pytest.mark.parametrize(
    ("text", "prefix", "ids"),
    [
        ("/dev1/3303/0/5700", "dev1", (3303, 0, 5700)),
        ("/dev1", "dev1", ()),
        ("/dev1/", "dev1", ()),
        ("dev-2/3/0", "dev-2", (3, 0)),
        ("/a_b.c~d/3/0/7/1", "a_b.c~d", (3, 0, 7, 1)),
        ("/1dev/3", "1dev", (3,)),
        ("/3/0", "", (3, 0)),
        ("/", "", ()),
    ],
)
def test_parse_prefixed(text: str, prefix: str, ids: tuple[int, ...]) -> None:
    p = Path.parse(text, prefixed=True)
    assert (p.prefix, p.ids) == (prefix, ids)
    assert Path.parse(str(p), prefixed=True) == p


def test_a_prefix_is_refused_unless_asked_for() -> None:
    with pytest.raises(InvalidPath, match="'dev1' is not a numeric ID"):
        Path.parse("/dev1/3303/0")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/dev1/dev2/3", "'dev2' is not a numeric ID"),
        ("/dev1/3/0/1/2/3", "at most 4 levels"),
        ("/.hidden/3", "not starting with ."),
        ("/../3", "not starting with ."),
        ("/d%20v/3", "letters, digits"),
        ("/" + "d" * (MAX_PREFIX_LENGTH + 1) + "/3", "1..64 characters"),
        ("/dev1/65535", "over 65534"),
    ],
)
def test_parse_prefixed_rejects_with_a_clear_message(text: str, says: str) -> None:
    with pytest.raises(InvalidPath) as err:
        Path.parse(text, prefixed=True)
    assert says in str(err.value)


@pytest.mark.parametrize("bad", ["", "123", "a/b", "a b", ".x", "é", None, 5])
def test_check_prefix_refuses(bad: object) -> None:
    with pytest.raises(InvalidPath):
        check_prefix(bad)
    if isinstance(bad, str) and bad:  # "" is a path without a prefix
        with pytest.raises(InvalidPath):
            Path((3,), bad)


def test_prefix_is_part_of_identity_order_and_family() -> None:
    p = Path((3303, 0, 5700), "dev1")
    assert p != Path((3303, 0, 5700))
    assert hash(p) != hash(Path((3303, 0, 5700), "dev2")) or p != Path((3303, 0, 5700), "dev2")
    assert str(p) == "/dev1/3303/0/5700"
    assert p.segments == ("dev1", "3303", "0", "5700")
    assert Path((3, 0)).segments == ("3", "0")
    assert p.parent == Path((3303, 0), "dev1")
    assert Path((3303,), "dev1").child(0) == Path((3303, 0), "dev1")
    assert p.resource_path() == Path((3303, 0, 5700), "dev1")
    assert p.without_prefix() == Path((3303, 0, 5700))
    assert Path((3,)).with_prefix("dev9") == Path((3,), "dev9")
    assert Path((), "dev1").is_root
    # the gateway's own paths first, then each end device's
    assert sorted([Path((1,), "b"), Path((5,)), Path((0,), "a")]) == [
        Path((5,)),
        Path((0,), "a"),
        Path((1,), "b"),
    ]


def test_startswith_stays_on_one_device_within_lets_the_root_hold_end_devices() -> None:
    p = Path((3303, 0), "dev1")
    assert p.startswith(Path((3303,), "dev1"))
    assert not p.startswith(Path((3303,)))
    assert not p.startswith(ROOT)
    assert p.within(ROOT)  # a Send at the root carries end devices' paths
    assert p.within(Path((), "dev1"))
    assert not p.within(Path((), "dev2"))
    assert not p.within(Path((3303,)))
    assert not Path((3303, 0)).within(Path((3303,), "dev1"))


prefixes = st.from_regex(r"[a-z][a-z0-9._~-]{0,10}", fullmatch=True)
ids = st.lists(st.integers(0, 65534), max_size=4).map(tuple)


@settings(max_examples=200, deadline=None)
@given(prefixes, ids)
def test_str_parse_round_trip(prefix: str, path_ids: tuple[int, ...]) -> None:
    p = Path(path_ids, prefix)
    assert Path.parse(str(p), prefixed=True) == p


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_parse_prefixed_raises_only_invalid_path(text: str) -> None:
    try:
        p = Path.parse(text, prefixed=True)
    except InvalidPath:
        return
    assert Path.parse(str(p), prefixed=True) == p


@settings(max_examples=500)
@given(st.text(alphabet="aZ09._~-/ é", min_size=1, max_size=70))
def test_the_documented_pattern_says_what_check_prefix_takes(prefix: str) -> None:
    # PREFIX_PATTERN is the REST API's {prefix} in the OpenAPI document: no look-arounds there.
    taken = re.fullmatch(PREFIX_PATTERN, prefix) is not None and len(prefix) <= MAX_PREFIX_LENGTH
    try:
        check_prefix(prefix)
    except InvalidPath:
        assert not taken, prefix
    else:
        assert taken, prefix
