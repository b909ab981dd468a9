"""Bootstrap configuration JSON fuzzed: any JSON value, and valid configurations with any field
replaced by a value of the wrong kind, give a BootstrapConfig or a ConfigError, nothing else."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.errors import ConfigError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.protocol.bootstrap_config import BootstrapConfig

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = load_catalogue()

VALID: dict[str, Any] = {
    "servers": [
        {
            "uri": "coaps://lwm2m.example:5684",
            "shortServerId": 101,
            "lifetime": 300,
            "binding": "U",
            "security": {"mode": "psk", "identity": "dev-1", "key": "000102030405060708090a0b0c0d0e0f"},
            "defaultMinPeriod": 1,
            "defaultMaxPeriod": 60,
            "notificationStoring": True,
            "securityInstanceId": 1,
            "serverInstanceId": 0,
        },
        {
            "uri": "coaps://rpk.example",
            "shortServerId": 102,
            "security": {"mode": "rpk", "publicKey": "01", "privateKey": "02", "serverPublicKey": "03"},
        },
        {"uri": "coap://plain.example", "shortServerId": 103, "security": {"mode": "nosec"}},
    ],
    "deletePaths": ["/0", "/1"],
    "bootstrapDiscover": True,
    "accessControl": [{"objectId": 3, "objectInstanceId": 0, "acl": {"101": 31, "0": 1}, "owner": 101}],
    "objects": {
        "records": [{"path": "/3/0/14", "value": "+01:00"}, {"path": "/3/0/15", "value": "Europe/Paris"}]
    },
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["psk", "rpk", "x509", "nosec", "coaps://[::1", "coap://h:99999", "9" * 5000, "/3/0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


def parse_or_config_error(data: object) -> None:
    try:
        config = BootstrapConfig.from_json(data, MODELS)
    except ConfigError as exc:
        assert str(exc)
        return
    # Whatever parses can be written and read back.
    assert BootstrapConfig.from_json(config.to_json(), MODELS) == config


def test_the_valid_document_parses() -> None:
    BootstrapConfig.from_json(VALID, MODELS)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("servers", 0, "security", "mode"), {}),
        (("servers", 0, "security", "mode"), []),
        (("servers", 0, "security"), {"mode": {}}),
        (("servers", 0, "uri"), "coaps://[::1"),
        (("servers", 0, "uri"), "coaps://[::1]:99999"),
        (("accessControl", 0, "acl"), {"9" * 5000: 1}),
        (("deletePaths",), ["/" + "9" * 5000]),
        (("objects", "records"), [{"path": "/3/0/" + "9" * 5000, "value": 1}]),
        (("objects", "records"), [{"path": "/3/0/1", "value": {"a": 1}}]),
        (("objects",), []),
    ],
)
def test_the_wrong_kind_of_value_is_a_config_error(where: tuple[Any, ...], value: object) -> None:
    doc = copy.deepcopy(VALID)
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(ConfigError):
        BootstrapConfig.from_json(doc, MODELS)


@FUZZ
@given(json_values)
def test_any_json_value(data: object) -> None:
    parse_or_config_error(data)
    parse_or_config_error({"servers": [data]})
    parse_or_config_error({"servers": [{"uri": "coap://h", "shortServerId": 1, "security": data}]})


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


FIELD_PATHS = _paths(VALID)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FIELD_PATHS), json_values), min_size=1, max_size=3))
def test_valid_document_with_fields_replaced(changes: list[tuple[tuple[Any, ...], object]]) -> None:
    doc = copy.deepcopy(VALID)
    for where, value in changes:
        node: Any = doc
        try:
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced a parent
    parse_or_config_error(doc)
