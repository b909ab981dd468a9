"""Device labels: keys and values an operator gives a device to pick it out of the fleet.

``PUT /api/clients/{ep}/labels`` takes ``{"site": "north", "hw": "rev2"}``; a listing takes
``?label=site=north`` (repeated: every one must hold) and a campaign targets devices the same
way. Labels belong to the endpoint name and live in the store's ``labels`` role
(:mod:`lwm2m.storage.labels`): they outlast a re-registration and a restart.

The rules (as Kubernetes labels, simpler): a key is 1 to 63 letters, digits and ``. _ / -``,
starting with a letter or digit; a value is at most 255 characters with no control character;
at most ``LabelConfig.max_labels`` labels per device. A selector is ``key=value`` pairs, every
one of which must hold (AND).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lwm2m.errors import ConfigError, InvalidLabels
from lwm2m.storage.labels import LabelStore

__all__ = ["KEY_PATTERN", "DeviceLabels", "LabelConfig", "check_labels", "labels_match", "parse_selector"]

KEY_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._/-]{0,62}$"
MAX_VALUE = 255
_KEY = re.compile(KEY_PATTERN.strip("^$"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class LabelConfig:
    """``max_labels``: labels one device holds at most."""

    max_labels: int = 32

    def __post_init__(self) -> None:
        if self.max_labels < 1:
            raise ConfigError(f"max_labels must be at least 1, got {self.max_labels}")


def _check_pair(key: Any, value: Any) -> tuple[str, str]:
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise InvalidLabels(
            f"label key {str(key)[:80]!r}: 1 to 63 letters, digits and . _ / -,"
            " starting with a letter or digit"
        )
    if not isinstance(value, str):
        raise InvalidLabels(f"label {key!r}: the value must be a string, not {type(value).__name__}")
    if len(value) > MAX_VALUE or _CONTROL.search(value):
        raise InvalidLabels(f"label {key!r}: a value is at most {MAX_VALUE} characters, none a control one")
    return key, value


def check_labels(labels: Any, config: LabelConfig | None = None) -> dict[str, str]:
    """``labels`` (decoded JSON) as a label set, or InvalidLabels naming the rule it breaks."""
    config = config or LabelConfig()
    if not isinstance(labels, dict):
        raise InvalidLabels("labels are a JSON object of string keys to string values")
    if len(labels) > config.max_labels:
        raise InvalidLabels(f"{len(labels)} labels: a device holds at most {config.max_labels}")
    return dict(_check_pair(k, v) for k, v in labels.items())


def parse_selector(terms: Iterable[str]) -> dict[str, str]:
    """``key=value`` terms (the repeated ``label`` query parameter) as a selector; InvalidLabels
    for a term without ``=`` or with a bad key or value, or two values for one key."""
    selector: dict[str, str] = {}
    for term in terms:
        key, eq, value = term.partition("=")
        if not eq:
            raise InvalidLabels(f"label selector {term[:80]!r} is not key=value")
        _check_pair(key, value)
        if selector.get(key, value) != value:
            raise InvalidLabels(f"label selector: {key!r} cannot be both {selector[key]!r} and {value!r}")
        selector[key] = value
    return selector


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """True when ``labels`` hold every key of ``selector`` with its value (an empty selector
    matches every device)."""
    return all(labels.get(k) == v for k, v in selector.items())


class DeviceLabels:
    """The labels of the fleet, on the store's ``labels`` role: checked on the way in."""

    def __init__(self, store: LabelStore, config: LabelConfig | None = None) -> None:
        self.store = store
        self.config = config or LabelConfig()

    async def get(self, endpoint: str) -> dict[str, str]:
        return await self.store.get(endpoint)

    async def put(self, endpoint: str, labels: Any) -> dict[str, str]:
        """Replace the endpoint's labels by ``labels`` (decoded JSON), checked; answers them."""
        checked = check_labels(labels, self.config)
        await self.store.put(endpoint, checked)
        return checked

    async def matching(self, selector: Mapping[str, str]) -> set[str]:
        """The endpoints whose labels match ``selector`` (not empty)."""
        return await self.store.matching(selector)
