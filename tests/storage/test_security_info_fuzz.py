"""SecurityInfo.from_dict fuzzed: any JSON value gives an entry or a ValueError (its class), and a
ValueError never shows the key."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.errors import ConfigError
from lwm2m.storage.base import SecurityInfo

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "endpoint": json_values | st.just("dev-1"),
        "pskIdentity": json_values | st.just("id"),
        "pskKey": json_values | st.sampled_from(["00", "0011", "zz", "0", "00" * 65, "c0ffee" * 3]),
        "x509": json_values,
        "mode": json_values,
        "rpk": json_values
        | st.sampled_from(
            ["", "30", "3003020100", "3059301306072a8648ce3d020106082a8648ce3d0301070342000411"]
        ),
    },
)


def from_dict_or_config_error(data: object) -> None:
    try:
        info = SecurityInfo.from_dict(data)  # type: ignore[arg-type]
    except ConfigError as exc:
        assert type(exc) is ConfigError
        key = data.get("pskKey") if isinstance(data, dict) else None
        if isinstance(key, str) and len(key) >= 6:
            assert key not in str(exc)
        return
    assert SecurityInfo.from_dict(info.to_dict(with_key=True)) == info


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"endpoint": None},
        {"endpoint": {}, "x509": True},
        {"endpoint": "e", "pskIdentity": {}, "pskKey": "00"},
        {"endpoint": "e", "pskIdentity": "i", "pskKey": 1},
        {"endpoint": "e", "pskIdentity": "i", "pskKey": "c0ffeezz"},
        {"endpoint": "e", "x509": "yes"},
        {"endpoint": "e", "rpk": 1},
        {"endpoint": "e", "rpk": "3003020100"},
        [],
        "x",
    ],
)
def test_wrong_kinds_are_value_errors(data: object) -> None:
    with pytest.raises(ValueError):
        SecurityInfo.from_dict(data)  # type: ignore[arg-type]


@FUZZ
@given(fields)
def test_any_fields(data: dict[str, object]) -> None:
    from_dict_or_config_error(data)


@FUZZ
@given(json_values)
def test_any_json_value(data: object) -> None:
    from_dict_or_config_error(data)
