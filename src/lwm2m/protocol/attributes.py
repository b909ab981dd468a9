"""Notification attributes (LwM2M-TS-Core 1.2 §5.1.2) and their query form.

Write-Attributes carries them as URI queries (``?pmin=10&gt=25.5``); a name
without a value removes that attribute (``?pmin``). Discover shows them in
link format. Attributes set at object or instance level are inherited by the
resources below unless set there too (§5.1.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from lwm2m.errors import InvalidAttributes

INT_ATTRIBUTES = ("pmin", "pmax", "epmin", "epmax", "hqmax")
FLOAT_ATTRIBUTES = ("gt", "lt", "st")
FLAG_ATTRIBUTES = ("edge", "con")  # 0 or 1 (LwM2M 1.2)
ATTRIBUTE_NAMES = INT_ATTRIBUTES[:2] + FLOAT_ATTRIBUTES + INT_ATTRIBUTES[2:4] + FLAG_ATTRIBUTES + ("hqmax",)
# gt, lt and st only make sense on a numeric resource (§5.1.2, Table 5.1.2.-1).
RESOURCE_ONLY = frozenset(FLOAT_ATTRIBUTES) | {"edge"}


def _number(name: str, text: str) -> int | float:
    try:
        if name in FLOAT_ATTRIBUTES:
            v: int | float = float(text)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError
        else:
            v = int(text)
    except ValueError:
        kind = "a number" if name in FLOAT_ATTRIBUTES else "an integer"
        raise InvalidAttributes(f"attribute {name}={text!r}: value must be {kind}") from None
    if name in FLAG_ATTRIBUTES and v not in (0, 1):
        raise InvalidAttributes(f"attribute {name}={text!r}: value must be 0 or 1")
    # gt and lt are thresholds on the value, which may be below zero (§5.1.2); a step (st), a
    # period or a count may not.
    if v < 0 and name not in ("gt", "lt"):
        raise InvalidAttributes(f"attribute {name}={text!r}: value must not be negative")
    return v


def _fmt(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class Attributes:
    """A set of notification attributes; ``None`` means not set at this level."""

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None
    edge: int | None = None
    con: int | None = None
    hqmax: int | None = None

    def items(self) -> list[tuple[str, int | float]]:
        return [(f.name, v) for f in fields(self) if (v := getattr(self, f.name)) is not None]

    def __bool__(self) -> bool:
        return bool(self.items())

    def to_query(self) -> list[str]:
        return [f"{k}={_fmt(v)}" for k, v in self.items()]

    def merged_over(self, inherited: Attributes) -> Attributes:
        """These attributes, with ``inherited`` (from a higher level) filling the gaps."""
        values: dict[str, Any] = dict(self.items())  # each a field of its own type
        return replace(inherited, **values)

    def apply(self, change: AttributeChange) -> Attributes:
        values: dict[str, Any] = dict(self.items())
        for name in change.unset:
            values.pop(name, None)
        values.update(change.set.items())
        return Attributes(**values)

    def check(self) -> Attributes:
        """Raise InvalidAttributes if the combination is inconsistent (§5.1.2)."""
        if self.pmin is not None and self.pmax is not None and self.pmax < self.pmin:
            raise InvalidAttributes(f"pmax ({self.pmax}) must not be less than pmin ({self.pmin})")
        if self.epmin is not None and self.epmax is not None and self.epmax <= self.epmin:
            raise InvalidAttributes(f"epmax ({self.epmax}) must be greater than epmin ({self.epmin})")
        if self.lt is not None and self.gt is not None:
            st = self.st or 0.0
            # "lt" + 2*"st" < "gt" keeps the two thresholds' bands apart (§5.1.2).
            if not self.lt + 2 * st < self.gt:
                raise InvalidAttributes(f"lt ({self.lt}) + 2*st ({st}) must be less than gt ({self.gt})")
        return self


@dataclass(frozen=True, slots=True)
class AttributeChange:
    """What one Write-Attributes asks: attributes to set and names to remove."""

    set: Attributes = Attributes()
    unset: frozenset[str] = frozenset()

    @classmethod
    def parse_query(cls, query: Iterable[str]) -> AttributeChange:
        values: dict[str, Any] = {}  # int or float, as the attribute's field
        unset: set[str] = set()
        for item in query:
            name, sep, text = item.partition("=")
            if name not in ATTRIBUTE_NAMES:
                raise InvalidAttributes(
                    f"unknown attribute {name!r}: expected one of {', '.join(ATTRIBUTE_NAMES)}"
                )
            if name in values or name in unset:
                raise InvalidAttributes(f"attribute {name!r} given twice")
            if not sep:
                unset.add(name)
            else:
                values[name] = _number(name, text)
        return cls(Attributes(**values), frozenset(unset))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object]) -> AttributeChange:
        """From ``{"pmin": 10, "gt": None}`` (None removes); values may be numbers or strings."""
        query = [name if v is None else f"{name}={v}" for name, v in mapping.items()]
        return cls.parse_query(query)

    def to_query(self) -> list[str]:
        return self.set.to_query() + sorted(self.unset)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.set.items()) | self.unset

    def check_level(self, level: int) -> AttributeChange:
        """gt, lt, st and edge belong on a resource (level 3 or 4), not higher (§5.1.2)."""
        misplaced = sorted(self.names & RESOURCE_ONLY)
        if misplaced and level < 3:
            raise InvalidAttributes(f"attributes {', '.join(misplaced)} can only be set on a resource")
        return self
