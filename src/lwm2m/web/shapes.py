"""The JSON shapes of the REST API: registrations, device answers, history, events.

Records always take the one JSON form of :mod:`lwm2m.model.jsonform`
(``{"path", "value", "time"}``), so the CLI and the API show values alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lwm2m.model.jsonform import record_to_json, records_to_json
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.management import Response
from lwm2m.protocol.registration import Registration
from lwm2m.server.events import (
    ClientAwake,
    ClientDeregistered,
    ClientRegistered,
    ClientSleeping,
    ClientUpdated,
    NotificationReceived,
    ObservationEnded,
    RegistrationExpired,
    SendReceived,
    ServerEvent,
)
from lwm2m.storage.base import HistoryEntry


def coap_code(code: int) -> str:
    """``2.05`` style, as the CoAP spec writes codes (RFC 7252 §3)."""
    return f"{code >> 5}.{code & 31:02d}"


def address(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def registration_view(registration: Registration, *, sleeping: bool = False) -> dict[str, Any]:
    stored = registration.to_dict()
    return {
        "endpoint": registration.endpoint,
        "registrationId": registration.registration_id,
        "address": address(registration.address),
        "lifetime": registration.lifetime,
        "lwm2mVersion": registration.lwm2m_version,
        "binding": registration.binding,
        "queueMode": registration.queue_mode,
        "objects": stored["objects"],
        "registeredAt": registration.registered_at,
        "lastUpdate": registration.last_update,
        "sleeping": sleeping,
    }


def response_view(response: Response) -> dict[str, Any]:
    """A device's answer: its CoAP code and whatever it carried."""
    out: dict[str, Any] = {"code": coap_code(response.code)}
    if response.content_format is not None:
        out["contentFormat"] = response.content_format
    if response.records or (response.success and response.content_format is not None):
        out["records"] = records_to_json(response.records)
    if response.location is not None:
        out["location"] = str(response.location)
    if response.links:
        out["links"] = [str(link) for link in response.links]
    if response.diagnostic:
        out["diagnostic"] = response.diagnostic
    return out


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


EVENT_NAMES: dict[type, str] = {
    ClientRegistered: "REGISTRATION",
    ClientUpdated: "UPDATE",
    ClientDeregistered: "DEREGISTRATION",
    RegistrationExpired: "EXPIRED",
    NotificationReceived: "NOTIFICATION",
    ObservationEnded: "OBSERVATION_ENDED",
    SendReceived: "SEND",
    ClientSleeping: "SLEEPING",
    ClientAwake: "AWAKE",
}

_BY_NAME = (NotificationReceived, ObservationEnded, SendReceived, ClientSleeping, ClientAwake)


def event_endpoint(event: ServerEvent) -> str:
    if isinstance(event, _BY_NAME):
        return event.endpoint
    return event.registration.endpoint


def event_view(event: ServerEvent) -> tuple[str, dict[str, Any]]:
    """The SSE event name and its JSON data."""
    name = EVENT_NAMES[type(event)]
    data: dict[str, Any] = {"endpoint": event_endpoint(event)}
    if isinstance(event, NotificationReceived):
        data["token"] = event.token.hex()
        data["paths"] = [str(p) for p in event.paths]
        data["records"] = records_to_json(event.records)
    elif isinstance(event, ObservationEnded):
        data["token"] = event.token.hex()
        data["reason"] = event.reason
    elif isinstance(event, SendReceived):
        data["records"] = records_to_json(event.records)
    elif not isinstance(event, ClientSleeping | ClientAwake):
        data["registration"] = registration_view(event.registration)
    return name, data
