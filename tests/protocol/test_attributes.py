from __future__ import annotations

import pytest

from lwm2m.errors import InvalidAttributes
from lwm2m.protocol.attributes import AttributeChange, Attributes


def test_query_round_trip_and_removal() -> None:
    change = AttributeChange.parse_query(["pmin=10", "pmax=60", "gt=25.5", "st=0.5", "lt", "con=1"])
    assert change.set == Attributes(pmin=10, pmax=60, gt=25.5, st=0.5, con=1)
    assert change.unset == {"lt"}
    assert AttributeChange.parse_query(change.to_query()) == change
    assert Attributes(gt=25.0).to_query() == ["gt=25"]


def test_apply_sets_and_removes() -> None:
    current = Attributes(pmin=5, lt=1.0)
    updated = current.apply(AttributeChange.parse_query(["pmin=10", "lt", "pmax=30"]))
    assert updated == Attributes(pmin=10, pmax=30)


def test_inheritance_more_specific_level_wins() -> None:
    obj = Attributes(pmin=10, pmax=60)
    res = Attributes(pmax=30, gt=5.0)
    assert res.merged_over(obj) == Attributes(pmin=10, pmax=30, gt=5.0)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (["foo=1"], "unknown attribute 'foo'"),
        (["pmin=x"], "must be an integer"),
        (["gt=abc"], "must be a number"),
        (["gt=nan"], "must be a number"),
        (["pmin=-1"], "must not be negative"),
        (["st=-0.5"], "must not be negative"),
        (["edge=2"], "must be 0 or 1"),
        (["pmin=1", "pmin=2"], "given twice"),
    ],
)
def test_bad_attributes_are_named(query: list[str], message: str) -> None:
    with pytest.raises(InvalidAttributes, match=message):
        AttributeChange.parse_query(query)


def test_thresholds_may_be_below_zero() -> None:
    # A temperature's thresholds (LwM2M-TS-Core 1.2 §5.1.2): only the step must not be negative.
    change = AttributeChange.parse_query(["lt=-10.5", "gt=-2"])
    assert (change.set.lt, change.set.gt) == (-10.5, -2.0)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (Attributes(pmin=10, pmax=5), "pmax"),
        (Attributes(epmin=10, epmax=10), "epmax"),
        (Attributes(lt=10.0, gt=12.0, st=1.0), "lt"),
        (Attributes(lt=10.0, gt=9.0), "lt"),
    ],
)
def test_inconsistent_combinations(attrs: Attributes, message: str) -> None:
    with pytest.raises(InvalidAttributes, match=message):
        attrs.check()


def test_consistent_combination_passes() -> None:
    assert Attributes(pmin=1, pmax=2, lt=1.0, gt=5.0, st=1.0).check()


def test_thresholds_only_on_resources() -> None:
    change = AttributeChange.from_mapping({"gt": 3, "pmin": None})
    assert change.check_level(3) is change
    with pytest.raises(InvalidAttributes, match="gt"):
        change.check_level(2)
