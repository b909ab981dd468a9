"""JSON content (SenML-JSON, OMA-JSON) with repeated member names, fuzzed.

A repeated name would keep only its last value once parsed into a dict: a lost
record in SenML, a lost entry array in OMA-JSON. ``json_loads`` refuses it
with a CodecError, and accepts exactly what it accepted before otherwise.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.oma_json import OMA_JSON
from lwm2m.codec.senml_json import SENML_JSON, json_loads
from lwm2m.errors import CodecError
from lwm2m.model import Path, Record

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names and strings with and without colons: a colon in a string is what sends a payload
# down the slower check.
names = st.sampled_from(["bn", "n", "v", "vs", "e", "sv", "a:b", ":", "x"])
scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.sampled_from(["3:0", "a", "", "::"])


class Obj(list):  # type: ignore[type-arg]
    """A JSON object as its members in order, repeats kept."""


def to_text(doc: object) -> str:
    if isinstance(doc, Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{to_text(v)}" for k, v in doc) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(to_text(x) for x in doc) + "]"
    return json.dumps(doc)


def has_repeat(doc: object) -> bool:
    if isinstance(doc, Obj):
        keys = [k for k, _ in doc]
        return len(keys) != len(set(keys)) or any(has_repeat(v) for _, v in doc)
    if isinstance(doc, list):
        return any(has_repeat(x) for x in doc)
    return False


docs = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(names, inner), max_size=4).map(Obj),
    max_leaves=16,
)


@FUZZ
@given(docs)
def test_json_with_repeated_names_is_refused_and_the_rest_parses_as_before(doc: object) -> None:
    text = to_text(doc).encode()
    if has_repeat(doc):
        with pytest.raises(CodecError, match="repeated"):
            json_loads(text)
    else:
        assert json_loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"n":"/3/0/1","vs":"a","n":"/3/0/2","vs":"b"}]',
        b'[{"bn":"/3/0/","n":"1","vs":"a:b"},{"n":"2","vs":"c","vs":"d"}]',
        b'[{"n":"/3/0/1","vs":"a","x":{"y":1,"y":2}}]',
    ],
)
def test_senml_json_record_with_a_repeated_label(payload: bytes) -> None:
    with pytest.raises(CodecError, match="repeated"):
        SENML_JSON.decode(payload, Path(()))


def test_oma_json_repeated_entry_array() -> None:
    payload = b'{"bn":"/3/0/","e":[{"n":"1","sv":"a"}],"e":[{"n":"2","sv":"b"}]}'
    with pytest.raises(CodecError, match="'e' is repeated"):
        OMA_JSON.decode(payload, Path(()))


def test_colons_in_values_still_decode() -> None:
    payload = b'[{"bn":"/3/0/","n":"1","vs":"coap://a:5683"},{"n":"2","vlo":"3:0"}]'
    assert [r.path for r in SENML_JSON.decode(payload, Path(()))] == [Path((3, 0, 1)), Path((3, 0, 2))]
    oma = b'{"bn":"/3/0/","e":[{"n":"1","sv":"a:b"},{"n":"2","ov":"3:0"}]}'
    assert OMA_JSON.decode(oma, Path(()))[0] == Record(Path((3, 0, 1)), "a:b")
