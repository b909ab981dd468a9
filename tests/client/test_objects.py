"""LwM2MObject and ObjectTree: instances held one alone or in a dict, always in ID order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import ObjectTree
from lwm2m.errors import NotFound
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.protocol.registration import ObjectLink


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=30))
def test_instances_added_and_removed_in_any_order_read_as_sorted(steps: list[tuple[bool, int]]) -> None:
    tree = ObjectTree(load_catalogue())
    obj = tree.declare(3303)
    model: dict[int, ObjectInstance] = {}
    for add, iid in steps:
        if add and iid not in model:
            model[iid] = tree.add(ObjectInstance(iid, object_id=3303))
        elif not add and iid in model:
            assert tree.remove(3303, iid) is model.pop(iid)
        elif not add:
            with pytest.raises(NotFound):
                tree.remove(3303, iid)
        expected = dict(sorted(model.items()))
        assert dict(obj.instances) == expected and list(obj.instances) == list(expected)
        assert list(obj.each()) == list(expected.values()) and obj.empty == (not model)
        for i in range(7):
            assert obj.instance(i) is model.get(i) and tree.instance(3303, i) is model.get(i)
            assert tree.exists(Path.of(3303, i)) == (i in model)
        assert obj.free_id() == next(i for i in range(8) if i not in model)
        links = tree.object_links()  # Temperature 1.1: the object with its version, then each instance
        assert links == (ObjectLink(3303, None, "1.1"), *(ObjectLink(3303, i) for i in expected))


def test_the_instances_view_is_read_only() -> None:
    tree = ObjectTree(load_catalogue())
    tree.add(ObjectInstance(0, object_id=3303))
    obj = tree.objects[3303]
    with pytest.raises(TypeError):
        obj.instances[1] = ObjectInstance(1, object_id=3303)  # type: ignore[index]
    assert list(obj.instances) == [0]


def test_a_single_instance_object_takes_no_second_one() -> None:
    tree = ObjectTree(load_catalogue())
    tree.add(ObjectInstance(0, object_id=3))
    with pytest.raises(ValueError, match="single-instance"):
        tree.add(ObjectInstance(1, object_id=3))
    tree.remove(3, 0)
    tree.add(ObjectInstance(1, object_id=3))
    assert list(tree.objects[3].instances) == [1]
