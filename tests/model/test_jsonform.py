from __future__ import annotations

import math

import pytest

from lwm2m.errors import JsonFormError
from lwm2m.model import ObjectDefinition, ObjectRegistry, ObjLink, Path, Record, ResourceDefinition
from lwm2m.model.definition import Operations
from lwm2m.model.jsonform import records_from_json, records_to_json
from lwm2m.model.value import ResourceType as T

MODELS = ObjectRegistry(
    [
        ObjectDefinition(
            9999,
            "Test",
            {
                0: ResourceDefinition(0, "s", T.STRING, Operations.RW),
                1: ResourceDefinition(1, "i", T.INTEGER, Operations.RW, multiple=True),
                2: ResourceDefinition(2, "f", T.FLOAT, Operations.RW),
                3: ResourceDefinition(3, "o", T.OPAQUE, Operations.RW),
                4: ResourceDefinition(4, "l", T.OBJLNK, Operations.RW),
                5: ResourceDefinition(5, "b", T.BOOLEAN, Operations.RW),
                6: ResourceDefinition(6, "t", T.TIME, Operations.RW),
                7: ResourceDefinition(7, "u", T.UNSIGNED_INTEGER, Operations.RW),
            },
        )
    ]
)


def test_round_trip_every_type_in_path_order() -> None:
    records = [
        Record(Path.parse("/9999/0/7"), 2**64 - 1),
        Record(Path.parse("/9999/0/0"), "héllo"),
        Record(Path.parse("/9999/0/1/3"), -5),
        Record(Path.parse("/9999/0/2"), 1.5),
        Record(Path.parse("/9999/0/3"), b"\x00\xff"),
        Record(Path.parse("/9999/0/4"), ObjLink(3, 0)),
        Record(Path.parse("/9999/0/5"), True),
        Record(Path.parse("/9999/0/6"), 1700000000, time=1700000000.5),
        Record(Path.parse("/9999/1")),
    ]
    js = records_to_json(records)
    assert [j["path"] for j in js] == sorted((j["path"] for j in js), key=lambda p: Path.parse(p))
    assert {"path": "/9999/0/3", "value": "AP8="} in js
    assert {"path": "/9999/0/4", "value": "3:0"} in js
    assert {"path": "/9999/0/6", "value": 1700000000, "time": 1700000000.5} in js
    assert {"path": "/9999/1"} in js
    assert records_from_json(js, MODELS) == sorted(records, key=lambda r: r.path)


def test_values_are_typed_by_the_model() -> None:
    (r,) = records_from_json([{"path": "/9999/0/2", "value": 3}], MODELS)
    assert r.value == 3.0 and isinstance(r.value, float)
    (r,) = records_from_json({"path": "/9999/0/6", "value": 12.0}, MODELS)
    assert r.value == 12 and isinstance(r.value, int)


def test_non_finite_floats_survive_as_strings() -> None:
    js = records_to_json([Record(Path.parse("/9999/0/2"), math.inf)])
    assert js == [{"path": "/9999/0/2", "value": "inf"}]
    assert records_from_json(js, MODELS)[0].value == math.inf


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("x", "expected a list"),
        ([{"value": 1}], "without 'path'"),
        ([{"path": "/a/0", "value": 1}], "not a numeric ID"),
        ([{"path": "/9999/0/3", "value": "***"}], "not valid base64"),
        ([{"path": "/9999/0/4", "value": "3-0"}], "invalid object link"),
        ([{"path": "/9999/0/5", "value": 1}], "not a valid Boolean"),
        ([{"path": "/9999/0/7", "value": -1}], "not a valid Unsigned Integer"),
        ([{"path": "/9999/0/1/0", "value": True}], "not an integer"),
        ([{"path": "/9999/0/0", "value": [1]}], "not a resource value"),
        ([{"path": "/9999/0/0", "value": "x", "when": 1}], "unknown record keys"),
        ([{"path": "/9999/0/0", "value": "x", "time": "now"}], "time must be a number"),
    ],
)
def test_bad_json_is_refused_with_a_message(data: object, message: str) -> None:
    with pytest.raises(JsonFormError, match=message):
        records_from_json(data, MODELS)


def test_without_a_model_json_types_are_kept() -> None:
    (r,) = records_from_json([{"path": "/1234/0/1", "value": "AP8="}])
    assert r.value == "AP8="
