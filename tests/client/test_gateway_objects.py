"""The objects of an end device behind our Gateway change (LwM2M-TS-Gateway 1.1, object 25): a
Create through the REST API answers the prefixed instance, the end device's IoT Device Objects
(/25/x/3) follow, the gateway sends an Update carrying its object list, and the server reads /25
again so that its listing follows; the same for an instance the application creates or deletes."""

from __future__ import annotations

from tests.helpers.polling import eventually
from tests.helpers.web import client_for

from lwm2m import Gateway
from lwm2m.client.core import access_control as acl
from lwm2m.client.core.access_control import AccessControl, AccessRight, Operation
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.instance import ObjectInstance
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.model.path import Path
from lwm2m.protocol.registration import EndDevice
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server


async def end_device(server: Server, endpoint: str, prefix: str) -> EndDevice | None:
    devices = (await server.registration(endpoint)).end_devices
    return next((d for d in devices if d.prefix == prefix), None)


def listed(device: EndDevice | None, object_id: int, instance_id: int) -> bool:
    return device is not None and any(
        o.object_id == object_id and o.instance_id == instance_id for o in device.objects
    )


async def test_create_on_an_end_device_answers_its_prefixed_instance_and_the_server_follows() -> None:
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-create", f"coap://127.0.0.1:{server.port}")
        dev1 = gateway.add("dev1", [ObjectInstance(0, {5700: 21.5}, object_id=3303)])
        async with gateway, client_for(server) as api:
            await gateway.wait_registered(5)
            await eventually(lambda: end_device(server, "gw-create", "dev1"), lambda d: listed(d, 3303, 0))
            updates = gateway.client.registration.updates

            created = await api.post(
                "/api/clients/gw-create/devices/dev1/3303",
                json={"records": [{"path": "/3303/1/5700", "value": 19.0}]},
            )
            assert created.status_code == 200, created.text
            assert created.json()["code"] == "2.01"
            assert created.json()["location"] == "/dev1/3303/1"
            assert dev1.instance(3303, 1) is not None and dev1.instance(3303, 1).get(5700) == 19.0
            assert gateway.client.tree.instance(3303, 1) is None  # not the gateway's own
            # /25/0/3 names it, the gateway sent an Update, and the server read /25 again.
            assert "</3303/1>" in gateway.client.tree.instance(25, 0).get(3)
            device = await eventually(
                lambda: end_device(server, "gw-create", "dev1"), lambda d: listed(d, 3303, 1)
            )
            assert gateway.client.registration.updates > updates
            devices = (await api.get("/api/clients/gw-create/devices")).json()["devices"]
            assert "</3303/1>" in devices[0]["objects"]
            read = await api.get("/api/clients/gw-create/devices/dev1/3303/1/5700")
            assert read.json()["records"] == [{"path": "/dev1/3303/1/5700", "value": 19.0}]

            # Deleted by the server: the listing follows too.
            deleted = await api.delete("/api/clients/gw-create/devices/dev1/3303/1")
            assert deleted.status_code == 200 and deleted.json()["code"] == "2.02"
            device = await eventually(
                lambda: end_device(server, "gw-create", "dev1"), lambda d: not listed(d, 3303, 1)
            )
            assert device is not None and listed(device, 3303, 0)


async def test_instances_the_application_creates_or_deletes_on_an_end_device_reach_the_server() -> None:
    async with Server(ServerConfig(port=0)) as server:
        gateway = Gateway("gw-app", f"coap://127.0.0.1:{server.port}")
        meter = gateway.add("meter", [ObjectInstance(0, {1: 12.5}, object_id=3424)])
        async with gateway:
            await gateway.wait_registered(5)
            await eventually(lambda: end_device(server, "gw-app", "meter"), lambda d: listed(d, 3424, 0))
            meter.add(ObjectInstance(1, {1: 3.0}, object_id=3424))
            await eventually(lambda: end_device(server, "gw-app", "meter"), lambda d: listed(d, 3424, 1))
            meter.remove(3424, 0)
            device = await eventually(
                lambda: end_device(server, "gw-app", "meter"), lambda d: not listed(d, 3424, 0)
            )
            assert device is not None and listed(device, 3424, 1)
            answer = await server.read("gw-app", Path((3424, 1, 1), "meter"))
            assert answer.success and answer.records[0].value == 3.0
            # Removed end devices change nothing more: its tree no longer makes Updates.
            gateway.remove("meter")
            await eventually(lambda: end_device(server, "gw-app", "meter"), lambda d: d is None)
            assert not gateway.client.registration.update_now
            meter.add(ObjectInstance(2, {1: 1.0}, object_id=3424))
            assert not gateway.client.registration.update_now


async def test_end_devices_objects_are_outside_the_gateways_access_control() -> None:
    """Object 2 names what it governs by Object ID and Object Instance ID only, no prefix, so the
    gateway's Access Control does not reach its end devices' objects (Anjay's gateway does the
    same): with two servers, one with no right on the gateway's /25/0 still reads, writes and
    creates on the end device, and no ACL instance appears among the end device's objects."""
    a, b = 101, 102
    gateway = Gateway(
        "gw-acl",
        objects=[
            ServerAccount(0, short_server_id=a),
            ServerAccount(1, short_server_id=b),
            AccessControl(0, target_object=25, target_instance=0, acl={b: AccessRight.NONE}, owner=a),
        ],
    )
    gateway.client.tree.declare(2)
    dev1 = gateway.add("dev1", [ObjectInstance(0, {5700: 21.5, 5750: "room"}, object_id=3303)])
    assert acl.enforced(gateway.client.tree)
    assert not acl.allowed(gateway.client.tree, b, "/25/0/1", Operation.READ)  # the gateway's own
    heard = [
        gateway.route(request(Code.GET, ("dev1", "3303", "0", "5700")), b),
        gateway.route(request(Code.PUT, ("dev1", "3303", "0", "5750"), b"attic"), b),
        gateway.route(request(Code.POST, ("dev1", "3303"), b""), b),
    ]
    assert [m.code for m in heard if isinstance(m, Message)] == [Code.CONTENT, Code.CHANGED, Code.CREATED]
    instance = dev1.instance(3303, 0)
    assert instance is not None and instance.get(5750) == "attic"
    assert dev1.instance(3303, 1) is not None and 2 not in dev1.objects


def request(code: Code, path: tuple[str, ...], payload: bytes = b"") -> RequestReceived:
    message = Message.build(Type.CON, code, uri_path="/".join(path), content_format=0, payload=payload)
    return RequestReceived(("127.0.0.1", 5683), message)
