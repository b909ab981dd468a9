"""The JSON forms of what the server tells: registrations, device answers and its events (the
REST API's and its event stream's, and those the MQTT export publishes: one form for all).

Records always take the one JSON form of :mod:`lwm2m.model.jsonform`
(``{"path", "value", "time"}``).
"""

from __future__ import annotations

from typing import Any

from lwm2m.model.jsonform import records_to_json
from lwm2m.protocol.management import Response
from lwm2m.protocol.registration import EndDevice, Registration
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

__all__ = [
    "EVENT_NAMES",
    "address",
    "coap_code",
    "event_endpoint",
    "event_view",
    "registration_view",
    "response_view",
]


def coap_code(code: int) -> str:
    """``2.05`` style, as the CoAP spec writes codes (RFC 7252 §3)."""
    return f"{code >> 5}.{code & 31:02d}"


def address(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def registration_view(
    registration: Registration, *, sleeping: bool = False, transport: str | None = None
) -> dict[str, Any]:
    """The registration's JSON form; ``transport`` ("udp", "dtls", "tcp", "tls"): how the client
    reaches the server, when the caller knows it better than the registration's own (the one its
    last Register or Update came over)."""
    view = {
        "endpoint": registration.endpoint,
        "registrationId": registration.registration_id,
        "address": address(registration.address),
        "lifetime": registration.lifetime,
        "lwm2mVersion": registration.lwm2m_version,
        "binding": registration.binding,
        "queueMode": registration.queue_mode,
        "objects": registration.objects_json(),
        "registeredAt": registration.registered_at,
        "lastUpdate": registration.last_update,
        "sleeping": sleeping,
    }
    view["transport"] = transport if transport is not None else registration.transport
    if registration.end_devices:  # a gateway's (LwM2M-TS-Gateway 1.1, object 25)
        view["endDevices"] = [end_device_view(d) for d in registration.end_devices]
    return view


def end_device_view(device: EndDevice) -> dict[str, Any]:
    """An end device's JSON form: its prefix, Device ID, /25 instance and objects (CoRE links)."""
    return {
        "prefix": device.prefix,
        "deviceId": device.device_id,
        "instanceId": device.instance_id,
        "objects": device.to_dict()["objects"],
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
