"""ObjectInstance.set_number: the same stored values, changes and errors as set."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from lwm2m.client.instance import ObjectInstance
from lwm2m.errors import LwM2MError

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
