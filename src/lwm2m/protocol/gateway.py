"""End devices behind an LwM2M Gateway: object 25 (LwM2M-TS-Gateway 1.1, object 25 version 2.0).

A gateway registers its own objects, object 25 among them (``</25>;ver=2.0,</25/0>,</25/1>``).
Each instance of object 25 stands for one end device: its Device ID (/25/x/0), the Prefix
under which the server reaches its objects (/25/x/1, ``dev1`` in ``/dev1/3303/0/5700``) and its
IoT Device Objects (/25/x/3), a CoRE link list in the Registration payload's form
(``</3/0>,</3303>;ver=1.1,</3303/0>``). The server learns the end devices by reading /25 after
a Register, and again after an Update whose object list changed (the gateway adds or removes
/25 instances as end devices come and go).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lwm2m.errors import GatewayError, RegistrationError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import EndDevice, ObjectList

GATEWAY_OBJECT = 25
DEVICE_ID = 0
PREFIX = 1
IOT_DEVICE_OBJECTS = 3
GATEWAY_PATH = Path((GATEWAY_OBJECT,))

MAX_END_DEVICES = 1000  # behind one gateway: bounds what one gateway's /25 can make the server keep
MAX_OBJECT_LINKS = 256  # in one end device's IoT Device Objects


def end_devices_from_records(
    records: Iterable[Record], *, max_devices: int = MAX_END_DEVICES
) -> tuple[EndDevice, ...]:
    """The end devices a Read of /25 tells (records in any content format's form), by prefix.

    GatewayError, naming the instance, if one lacks a mandatory resource (Device ID, Prefix,
    IoT Device Objects are all Mandatory in object 25 v2.0), has a bad prefix or object list,
    shares its prefix with another (a prefix names one device), or if there are more than
    ``max_devices``.
    """
    by_instance: dict[int, dict[int, object]] = {}
    for r in records:
        ids = r.path.ids
        if r.path.prefix or not ids or ids[0] != GATEWAY_OBJECT:
            raise GatewayError(f"{r.path} is not in the gateway's object 25")
        if len(ids) < 2:
            continue
        resources = by_instance.setdefault(ids[1], {})
        if len(by_instance) > max_devices:
            raise GatewayError(f"more than {max_devices} end devices behind one gateway")
        if len(ids) == 3 and r.value is not None:
            resources[ids[2]] = r.value
    out: list[EndDevice] = []
    seen: dict[str, int] = {}
    for iid in sorted(by_instance):
        res = by_instance[iid]
        values: list[str] = []
        for rid, name in (
            (DEVICE_ID, "Device ID"),
            (PREFIX, "Prefix"),
            (IOT_DEVICE_OBJECTS, "IoT Device Objects"),
        ):
            v = res.get(rid)
            if type(v) is not str:
                raise GatewayError(f"/25/{iid}/{rid} ({name}) is missing or not a string")
            values.append(v)
        device_id, prefix, links = values
        try:
            objects = ObjectList.parse(links, max_links=MAX_OBJECT_LINKS).objects if links else ()
        except RegistrationError as exc:
            raise GatewayError(f"/25/{iid}/3 (IoT Device Objects): {exc}") from None
        device = EndDevice(prefix, device_id, iid, objects)
        if prefix in seen:
            raise GatewayError(f"/25/{iid}/1: prefix {prefix!r} is also the prefix of /25/{seen[prefix]}")
        seen[prefix] = iid
        out.append(device)
    return tuple(sorted(out, key=lambda d: d.prefix))


def end_device_records(devices: Sequence[EndDevice]) -> list[Record]:
    """The records of /25 that stand for ``devices``: what a gateway answers to a Read of /25."""
    out: list[Record] = []
    for d in sorted(devices, key=lambda d: d.instance_id):
        base = GATEWAY_PATH.child(d.instance_id)
        out.append(Record(base.child(DEVICE_ID), d.device_id))
        out.append(Record(base.child(PREFIX), d.prefix))
        out.append(Record(base.child(IOT_DEVICE_OBJECTS), ObjectList(d.objects).to_payload().decode()))
    return out
