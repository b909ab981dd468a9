"""ObjectInstance: set_number does what set does; where the values are kept (layouts, sharing)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lwm2m.client.instance import ObjectInstance
from lwm2m.errors import LwM2MError
from lwm2m.model.catalogue import catalogue_definition
from lwm2m.model.value import ResourceType, check_value

# Temperature (3303): 5700 Float, 5601 Float, 5701 String. Device (3): 9 Integer,
# 13 Time, 6 a multiple Integer, 11 a multiple Integer.
RESOURCES = {3303: (5700, 5601, 5701, 9999), 3: (9, 13, 6, 17)}

numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 0.0, 1.0, -0.0, 2**63 - 1, 2**63, float("nan")]),
)


def outcome(inst: ObjectInstance, heard: list[int], call: Any) -> tuple[str, list[Any], list[int]]:
    try:
        call()
        error = ""
    except (LwM2MError, ValueError) as exc:
        error = type(exc).__name__
    return error, sorted((rid, repr(v)) for rid, v in inst.values()), list(heard)


@settings(max_examples=300, deadline=None)
@example(object_id=3303, steps=[(0, float("nan")), (0, float("nan"))])  # NaN equals NaN: no change
@example(object_id=3303, steps=[(0, 1), (0, 1.0)])  # an int stored as a float: the same value
@example(object_id=3, steps=[(0, 2**63), (1, 2**63 - 1), (2, 5)])  # out of range; Time; multiple
@given(
    object_id=st.sampled_from(sorted(RESOURCES)),
    steps=st.lists(st.tuples(st.integers(0, 3), numbers), max_size=8),
)
def test_set_number_does_what_set_does(object_id: int, steps: list[tuple[int, Any]]) -> None:
    plain, quick = ObjectInstance(0, object_id=object_id), ObjectInstance(0, object_id=object_id)
    heard_plain: list[int] = []
    heard_quick: list[int] = []
    plain.attach(lambda _inst, rid: heard_plain.append(rid))
    quick.attach(lambda _inst, rid: heard_quick.append(rid))
    for index, value in steps:
        rid = RESOURCES[object_id][index]
        a = outcome(plain, heard_plain, lambda rid=rid, value=value: plain.set(rid, value))
        b = outcome(quick, heard_quick, lambda rid=rid, value=value: quick.set_number(rid, value))
        assert a == b, (rid, value)


def test_set_number_tells_a_change_once() -> None:
    inst = ObjectInstance(0, object_id=3303)
    heard: list[int] = []
    inst.attach(lambda _inst, rid: heard.append(rid))
    inst.set_number(5700, 21.5)
    inst.set_number(5700, 21.5)  # the same: no change
    inst.set_number(5700, 22.0)
    assert heard == [5700, 5700] and inst.get(5700) == 22.0


# --- where the values are kept: layouts shared by instances, multiple resources shared -------------

# Location (6): 0, 1, 5 mandatory (Float, Float, Time); 2, 3, 6 optional Floats, 4 Opaque. Device (3):
# 6 and 7 multiple Integers, 14, 15 and 17 optional Strings.
OPTIONAL = {6: (2, 3, 4, 6), 3: (15, 14, 17)}
VALUES = {2: 1.5, 3: 10.0, 4: b"\x01", 6: 2.5, 15: "Europe/Paris", 14: "+01", 17: "kind"}
ops = st.lists(
    st.tuples(st.sampled_from(["set", "remove", "store", "restore", "snapshot"]), st.integers(0, 3)),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(object_id=st.sampled_from(sorted(OPTIONAL)), steps=ops)
def test_instances_keep_what_a_dict_of_values_would(object_id: int, steps: list[tuple[str, int]]) -> None:
    """Values set, removed, stored and restored in any order read back as from a plain dict, in
    resource order, whatever layout each instance moved through; another instance built alike
    keeps its own values."""
    inst = ObjectInstance(0, object_id=object_id)
    twin = ObjectInstance(0, object_id=object_id)
    model = dict(inst.values())
    untouched = dict(twin.values())
    saved = inst.snapshot()
    saved_model = dict(model)
    for op, i in steps:
        optional = OPTIONAL[object_id]
        rid = optional[i % len(optional)]
        if op == "set":
            inst.set(rid, VALUES[rid])
            model[rid] = VALUES[rid]
        elif op == "remove":
            inst.remove(rid)
            model.pop(rid, None)
        elif op == "store":
            inst.store(rid, VALUES[rid])
            model[rid] = VALUES[rid]
        elif op == "snapshot":
            saved, saved_model = inst.snapshot(), dict(model)
        else:
            inst.restore(saved)
            model = dict(saved_model)
        assert list(inst.values()) == sorted(model.items())
        for r in OPTIONAL[object_id]:
            assert inst.get(r) == model.get(r) and inst.stored(r) == model.get(r)
            assert inst.has_resource(r) == (r in model)
        acting = {r.id for r in inst.definition.resources.values() if r.operations.executable and r.mandatory}
        ids = set(model) | acting  # a generic instance: the mandatory executable ones
        assert inst.resource_ids() == sorted(ids)
    assert dict(twin.values()) == untouched


def test_a_resource_of_another_object_has_no_place() -> None:
    inst = ObjectInstance(0, object_id=3303)
    with pytest.raises(KeyError):
        inst.store(1, 2.0)
    assert inst.stored(1) is None and not inst.has_resource(1)


def test_instances_share_the_same_multiple_resource_until_one_changes_it() -> None:
    a = ObjectInstance(0, {6: [1, 5], 7: [3600]}, object_id=3)
    b = ObjectInstance(0, {6: [1, 5], 7: [3600]}, object_id=3)
    assert a.get(6) is b.get(6) and a.get(6) == {0: 1, 1: 5}
    a.set(6, 2, instance=2)
    b.write(7, {1: 12000}, replace=False)
    assert a.get(6) == {0: 1, 1: 5, 2: 2} and b.get(6) == {0: 1, 1: 5}
    assert a.get(7) == {0: 3600} and b.get(7) == {0: 3600, 1: 12000}


def test_shared_keeps_apart_values_that_compare_equal() -> None:
    from lwm2m.client.instance import shared

    assert shared({0: 0.0}) is shared({0: 0.0})
    negative = shared({0: -0.0})
    assert math.copysign(1.0, negative[0]) == -1.0
    assert type(shared({0: True})[0]) is bool and type(shared({0: 1})[0]) is int
    assert shared({0: 1}) is not shared({0: 1.0})


def test_an_instance_has_no_dict_of_attributes() -> None:
    inst = ObjectInstance(0, object_id=3303)
    with pytest.raises(AttributeError):
        inst.__dict__  # noqa: B018


def _one_single_resource_per_type() -> list[tuple[int, int]]:
    """(object, resource) of a single, valued resource of each type in the catalogue."""
    found: dict[ResourceType, tuple[int, int]] = {}
    for oid in (0, 1, 3, 4, 5, 6, 7, 3303, 3306, 3311, 3323, 3340):
        definition = catalogue_definition(oid)
        if definition is None:
            continue
        for rid, r in sorted(definition.resources.items()):
            if not r.multiple and r.type is not ResourceType.NONE:
                found.setdefault(r.type, (oid, rid))
    return sorted(found.values())


SINGLE_PER_TYPE = _one_single_resource_per_type()
values = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, True, False, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.binary(max_size=4),
)


@settings(max_examples=400, deadline=None)
@given(place=st.sampled_from(SINGLE_PER_TYPE), value=values)
def test_a_starting_value_is_checked_as_check_value_checks_it(place: tuple[int, int], value: Any) -> None:
    """The start's short way for a value of the resource's own Python type gives what
    check_value gives (the same object), and every other value takes the long way."""
    oid, rid = place
    kind = catalogue_definition(oid).resources[rid].type  # type: ignore[union-attr]
    try:
        expected: Any = check_value(value, kind)
    except (LwM2MError, ValueError):
        expected = LwM2MError
    try:
        got: Any = ObjectInstance(0, {rid: value}, object_id=oid).get(rid)
    except (LwM2MError, ValueError):
        got = LwM2MError
    assert type(got) is type(expected) and repr(got) == repr(expected), (kind, value)


def test_every_value_type_has_a_resource_to_try() -> None:
    kinds = {catalogue_definition(o).resources[r].type for o, r in SINGLE_PER_TYPE}  # type: ignore[union-attr]
    assert {ResourceType.STRING, ResourceType.INTEGER, ResourceType.FLOAT, ResourceType.BOOLEAN} <= kinds
    assert {ResourceType.OPAQUE, ResourceType.TIME, ResourceType.UNSIGNED_INTEGER} <= kinds
