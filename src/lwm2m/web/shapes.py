"""The JSON shapes of the REST API: registrations, device answers, history, events (the forms
of what the server tells are :mod:`lwm2m.server.jsonform`'s, shared with the MQTT export).

Records always take the one JSON form of :mod:`lwm2m.model.jsonform`
(``{"path", "value", "time"}``), so the CLI and the API show values alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lwm2m.model.jsonform import record_to_json
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.server.jsonform import (
    EVENT_NAMES,
    address,
    coap_code,
    event_endpoint,
    event_view,
    registration_view,
    response_view,
)
from lwm2m.storage.base import HistoryEntry

__all__ = [
    "ADD_MODEL",
    "EVENT_NAMES",
    "address",
    "coap_code",
    "event_endpoint",
    "event_view",
    "history_view",
    "model_hint",
    "registration_view",
    "response_view",
]


# How a user adds a model the server lacks, for the answers that concern one.
ADD_MODEL = (
    "give its DDF XML file, or a folder of them, to `lwm2m server --models PATH` "
    "(the OMA LwM2M registry publishes the DDF of every registered object)"
)


def model_hint(models: ObjectRegistry, path: Path, records: Iterable[Record] = ()) -> str | None:
    """For an answer about objects without a model: what that means and how to add one."""
    ids = {r.path.object_id for r in records} | {path.object_id}
    missing = sorted(i for i in ids if i is not None and models.get(i) is None)
    if not missing:
        return None
    which = ", ".join(str(i) for i in missing)
    noun = "object" if len(missing) == 1 else "objects"
    return (
        f"{noun} {which} {'has' if len(missing) == 1 else 'have'} no model on this server: TLV values show "
        f'as raw bytes with the readings that fit, and writes need a "type"; to see typed values, {ADD_MODEL}'
    )


def history_view(entry: HistoryEntry) -> dict[str, Any]:
    # The entry's time is the measurement time when the device gave one, else arrival.
    out = record_to_json(entry.record)
    t = entry.time
    out["time"] = int(t) if float(t).is_integer() else t
    return out
