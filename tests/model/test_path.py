"""Path: parsing, rejection, ordering, prefixes, parent and child (LwM2M-TS-Core 1.2 §7.1)."""

from __future__ import annotations

import pytest

from lwm2m.errors import InvalidPath
from lwm2m.model.path import MAX_ID, ROOT, Path


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("/", ()),
        ("", ()),
        ("/3", (3,)),
        ("/3/0", (3, 0)),
        ("/3/0/7", (3, 0, 7)),
        ("/3/0/7/1", (3, 0, 7, 1)),
        ("3/0/1", (3, 0, 1)),  # the leading slash is optional
        ("/3/0/", (3, 0)),  # so is a trailing one
        (" /3/0 ", (3, 0)),
        ("/0", (0,)),
        (f"/{MAX_ID}/{MAX_ID}/{MAX_ID}/{MAX_ID}", (MAX_ID,) * 4),
    ],
)
def test_parse(text: str, ids: tuple[int, ...]) -> None:
    p = Path.parse(text)
    assert p.ids == ids
    assert Path.parse(str(p)) == p


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/3//0", "empty ID"),
        ("//", "empty ID"),
        ("/a", "'a' is not a numeric ID"),
        ("/3/x/1", "'x' is not a numeric ID"),
        ("/-1", "'-1' is not a numeric ID"),
        ("/3/0/1/2/3", "at most 4 levels"),
        ("/65535", "65535 is over 65534"),
        ("/3/99999", "99999 is over 65534"),
        ("/03", "leading zero"),
        ("/3.0", "not a numeric ID"),
        ("/٣", "not a numeric ID"),  # Arabic-Indic digit: isdigit() but not ASCII
    ],
)
def test_parse_rejects_with_a_clear_message(text: str, says: str) -> None:
    with pytest.raises(InvalidPath) as err:
        Path.parse(text)
    assert says in str(err.value)
    assert repr(text) in str(err.value)  # the message names the bad path


def test_invalid_path_is_a_value_error() -> None:
    assert issubclass(InvalidPath, ValueError)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidPath, match="expected a string"):
        Path.parse(3)  # type: ignore[arg-type]


def test_parse_passes_a_path_through() -> None:
    p = Path.of(3, 0)
    assert Path.parse(p) is p


@pytest.mark.parametrize("ids", [(1, 2, 3, 4, 5), (-1,), (65535,), (True,), ("3",), (1.0,)])
def test_constructor_checks_ids(ids: tuple) -> None:
    with pytest.raises(InvalidPath):
        Path(ids)


def test_str_and_repr() -> None:
    assert str(ROOT) == "/"
    assert str(Path.of(3, 0, 7, 1)) == "/3/0/7/1"
    assert repr(Path.of(3, 0)) == "Path('/3/0')"


def test_levels_and_ids() -> None:
    p = Path.parse("/3/0/7/1")
    assert (p.object_id, p.instance_id, p.resource_id, p.resource_instance_id) == (3, 0, 7, 1)
    assert p.level == len(p) == 4 and p.is_resource_instance
    assert ROOT.is_root and ROOT.level == 0 and ROOT.object_id is None
    assert Path.of(3).is_object and Path.of(3, 0).is_instance and Path.of(3, 0, 1).is_resource
    assert Path.of(3, 0).resource_id is None


def test_ordering_is_by_ids_parents_first() -> None:
    paths = [Path.parse(s) for s in ["/4", "/3/0/1", "/3/1", "/3", "/", "/3/0", "/3/0/1/0", "/10"]]
    assert [str(p) for p in sorted(paths)] == ["/", "/3", "/3/0", "/3/0/1", "/3/0/1/0", "/3/1", "/4", "/10"]
    assert Path.of(3) < Path.of(3, 0) <= Path.of(3, 0) < Path.of(4)
    assert Path.of(10) > Path.of(9, 9)


def test_compare_with_other_types_is_not_supported() -> None:
    with pytest.raises(TypeError):
        _ = Path.of(3) < "/4"  # type: ignore[operator]


def test_equality_and_hash() -> None:
    assert Path.parse("/3/0") == Path.of(3, 0) == Path((3, 0))
    assert len({Path.parse("/3/0"), Path.of(3, 0), Path.of(3)}) == 2


def test_prefixes() -> None:
    p = Path.parse("/3/0/7")
    assert p.startswith(ROOT)
    assert p.startswith(Path.of(3))
    assert p.startswith(Path.of(3, 0))
    assert p.startswith(p)
    assert not p.startswith(Path.of(3, 1))
    assert not p.startswith(Path.of(3, 0, 7, 0))
    assert not Path.parse("/30").startswith(Path.of(3))  # IDs, not characters
    assert Path.of(3, 0).is_prefix_of(p)
    assert not p.is_prefix_of(Path.of(3, 0))


def test_parent_and_child() -> None:
    p = Path.parse("/3/0/7")
    assert p.parent == Path.of(3, 0)
    assert p.parent.parent.parent == ROOT
    assert ROOT.child(3).child(0).child(7) == p
    assert p.child(1) == Path.of(3, 0, 7, 1)
    with pytest.raises(InvalidPath, match="no parent"):
        _ = ROOT.parent
    with pytest.raises(InvalidPath):
        p.child(1).child(0)  # a fifth level
    with pytest.raises(InvalidPath):
        p.child(65535)


def test_resource_path() -> None:
    assert Path.parse("/3/0/7/1").resource_path() == Path.of(3, 0, 7)
    assert Path.parse("/3/0/7").resource_path() == Path.of(3, 0, 7)
    with pytest.raises(InvalidPath, match="not a resource path"):
        Path.of(3, 0).resource_path()


def test_paths_are_immutable() -> None:
    p = Path.of(3)
    with pytest.raises(AttributeError):
        p.ids = (4,)  # type: ignore[misc]
