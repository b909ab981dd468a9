"""Bootstrap test helpers: an event waiter and a SenML-CBOR reader."""

from __future__ import annotations

from typing import Any

import cbor2


def senml(payload: bytes) -> dict[str, Any]:
    """A SenML-CBOR pack decoded with cbor2 alone: {full name: value}."""
    out: dict[str, Any] = {}
    base = ""
    for record in cbor2.loads(payload):
        base = record.get(-2, base)
        value = next(record[k] for k in (2, 3, 4, 8) if k in record)
        out[base + record.get(0, "")] = value
    return out
