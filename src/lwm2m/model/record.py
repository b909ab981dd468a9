"""Records: the flat form of LwM2M content that every codec reads and writes.

A list of :class:`Record` in path order stands for any LwM2M node: one record
per resource or resource instance with its value, and a record without value
for an object or instance that has no resources (or, in a Read-Composite or
Observe-Composite request, for a path asked for).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lwm2m.model.path import Path
from lwm2m.model.value import Value


@dataclass(frozen=True, slots=True)
class Record:
    path: Path
    value: Value | None = None
    time: float | None = None  # Unix seconds, for timestamped (historical) values

    @property
    def has_value(self) -> bool:
        return self.value is not None


def sort_records(records: Iterable[Record]) -> list[Record]:
    """Records in path order (the gateway's own first, then each end device's by prefix), then
    time order (stable for equal keys)."""
    return sorted(records, key=lambda r: (r.path.prefix, r.path.ids, -1e300 if r.time is None else r.time))
