"""One client, two of our servers (LwM2M-TS-Core 1.2 §6.2, §7.3): it registers with both, each
request is its server's, and Access Control (object 2) decides what each server may do."""

from __future__ import annotations

import pytest
from tests.helpers.client import until
from tests.helpers.events import next_event
from tests.helpers.pki import KEY
from tests.helpers.ports import free_udp_port

from lwm2m.bootstrap import BootstrapConfig, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.client import Client, ClientState, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import credentials
from lwm2m.client.core import AccessControl, AccessRight, Security, ServerAccount
from lwm2m.client.core.access_control import CREATE_INSTANCE
from lwm2m.client.handler import RequestHandler
from lwm2m.client.objects import ObjectTree
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.errors import ObserveRefused
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered, ClientUpdated, NotificationReceived
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import PskCredentials

FAST = EndpointConfig(ack_timeout=0.5, max_retransmit=2)
R, W, C = AccessRight.READ, AccessRight.WRITE, AccessRight.CREATE


def accounts(*servers: tuple[int, Server], lifetime: int = 120) -> list[ObjectInstance]:
    out: list[ObjectInstance] = []
    for n, (ssid, server) in enumerate(servers):
        out.append(Security(n, uri=server.uri, short_server_id=ssid))
        out.append(ServerAccount(n, short_server_id=ssid, lifetime=lifetime + n, default_pmax=30 + n))
    return out


def temperature() -> ObjectInstance:
    return ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)


def acl_for_102() -> list[ObjectInstance]:
    """/3/0: owned by 101, server 102 may only read; /3303: 102 may create; /3303/0: 101's."""
    return [
        AccessControl(0, target_object=3, target_instance=0, acl={102: R}, owner=101),
        AccessControl(1, target_object=3303, target_instance=CREATE_INSTANCE, acl={102: C}),
        AccessControl(2, target_object=3303, target_instance=0, owner=101),
    ]


async def test_two_servers_each_a_registration_and_access_control_decides() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as s101,
        Server(ServerConfig(host="127.0.0.1", port=0)) as s102,
    ):
        events101, events102 = s101.events(), s102.events()
        objects = [*accounts((101, s101), (102, s102)), *acl_for_102(), temperature()]
        client = Client("multi", objects=objects, config=ClientConfig(coap_config=FAST, retry_initial=0.2))
        async with client:
            reg101 = (await next_event(events101, ClientRegistered)).registration
            reg102 = (await next_event(events102, ClientRegistered)).registration
            # One registration per server, with that server's own lifetime; one socket for both.
            assert (reg101.endpoint, reg101.lifetime) == ("multi", 120)
            assert (reg102.endpoint, reg102.lifetime) == ("multi", 121)
            assert reg101.address[1] == reg102.address[1] == client.port
            [other] = client.others
            assert other.short_server_id == 102
            await other.wait_registered(5)
            await client.wait_registered(5)
            assert client.account is not None and client.account.short_server_id == 101

            # Server 102 may read /3/0 but not write it: 4.01.
            assert (await s102.read("multi", "/3/0/0")).code == Code.CONTENT
            write = await s102.write("multi", "/3/0/13", [Record(Path.parse("/3/0/13"), 1000)])
            assert write.code == Code.UNAUTHORIZED, write
            # Server 101 owns /3/0: both.
            assert (await s101.read("multi", "/3/0/0")).code == Code.CONTENT
            write = await s101.write("multi", "/3/0/14", [Record(Path.parse("/3/0/14"), "+02:00")])
            assert write.code == Code.CHANGED, write
            # /3303/0 is 101's alone: 102 neither reads nor observes it; a Read of the whole object
            # shows 102 only what it may read (nothing yet), 101 everything.
            assert (await s102.read("multi", "/3303/0/5700")).code == Code.UNAUTHORIZED
            assert (await s102.execute("multi", "/3/0/4")).code == Code.UNAUTHORIZED
            # Discover is not governed by the ACL (object 2's R bit: Read, Observe, Write-Attributes).
            assert (await s102.discover("multi", "/3/0")).code == Code.CONTENT
            wa = await s102.write_attributes("multi", "/3303/0/5700", {"pmin": 5})
            assert wa.code == Code.UNAUTHORIZED

            # A Create by 102 (C right on /2 for (3303, 65535)) gives an ACL instance owned by 102.
            created = await s102.create("multi", "/3303", [Record(Path.parse("/3303/1/5700"), 3.5)])
            assert created.code == Code.CREATED, created
            [aco] = [
                a
                for a in client.tree.instances(2)
                if a.get(AccessControl.OBJECT_ID) == 3303 and a.get(AccessControl.OBJECT_INSTANCE_ID) == 1
            ]
            assert aco.get(AccessControl.OWNER) == 102
            assert (await s102.read("multi", "/3303/1/5700")).code == Code.CONTENT
            assert (await s101.read("multi", "/3303/1/5700")).code == Code.UNAUTHORIZED
            whole = await s102.read("multi", "/3303")
            assert whole.code == Code.CONTENT
            assert {r.path.ids[1] for r in whole.records} == {1}
            # 101 has no C right on 3303.
            refused = await s101.create("multi", "/3303", [Record(Path.parse("/3303/2/5700"), 1.0)])
            assert refused.code == Code.UNAUTHORIZED
            # The owner writes its ACL instance; another server may read it but not write it.
            grant = Record(Path.parse(f"/2/{aco.id}/2/101"), int(R))
            assert (await s101.write("multi", f"/2/{aco.id}/2", [grant], replace=False)).code == (
                Code.UNAUTHORIZED
            )
            assert (await s102.write("multi", f"/2/{aco.id}/2", [grant], replace=False)).code == Code.CHANGED
            assert (await s101.read("multi", "/3303/1/5700")).code == Code.CONTENT
            # 102 deletes what it owns; its ACL instance goes with it.
            assert (await s102.delete("multi", "/3303/1")).code == Code.DELETED
            assert all(a.get(AccessControl.OBJECT_INSTANCE_ID) != 1 for a in client.tree.instances(2))

            # Observations are per server: each relation takes its own server's default pmax.
            await s101.observe("multi", "/3/0/0")
            await s102.observe("multi", "/3/0/0")
            assert client.observer is not None
            pmax = {
                client.server_id_of(key[0]): client.observer._attributes(r).pmax
                for key, r in client.observer._relations.items()
            }
            assert pmax == {101: 30, 102: 31}
            # A change reaches each observing server.
            device = client.tree.instance(3, 0)
            assert device is not None
            device.set(0, "changed")
            for events in (events101, events102):
                note = await next_event(events, NotificationReceived)
                assert note.records[0].value == "changed", note
            # A server without the R right on an instance cannot observe it.
            with pytest.raises(ObserveRefused):
                await s102.observe("multi", "/3303/0/5700")

            # Send goes to the first server unless another is named.
            assert (await client.send(["/3/0/0"])).code == Code.CHANGED
            assert (await client.send(["/3/0/0"], server=102)).code == Code.CHANGED
            with pytest.raises(ValueError, match="no registration with server 7"):
                await client.send(["/3/0/0"], server=7)

            # An Update trigger on /1/1/8 (server 102's account) updates that registration.
            before = other.updates
            assert (await s102.execute("multi", "/1/1/8")).code == Code.CHANGED
            await until(lambda: other.updates != before)
        # Stop de-registers from both.
        assert (await next_event(events101, ClientDeregistered)).registration.endpoint == "multi"
        assert (await next_event(events102, ClientDeregistered)).registration.endpoint == "multi"


async def test_a_single_server_has_every_right() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as s102:
        events = s102.events()
        objects = [*accounts((102, s102)), *acl_for_102(), temperature()]
        async with Client("single", objects=objects, config=ClientConfig(coap_config=FAST)) as client:
            await next_event(events, ClientRegistered)
            assert client.others == []
            write = await s102.write("single", "/3/0/13", [Record(Path.parse("/3/0/13"), 1000)])
            assert write.code == Code.CHANGED, write
            assert (await s102.read("single", "/3303/0/5700")).code == Code.CONTENT
            created = await s102.create("single", "/3303", [Record(Path.parse("/3303/1/5700"), 3.5)])
            assert created.code == Code.CREATED
            assert len(client.tree.instances(2)) == 3  # no ACL instance made: no access control


async def test_a_bootstrap_with_two_servers_gives_two_registrations_and_its_acl_holds() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as s101,
        Server(ServerConfig(host="127.0.0.1", port=0)) as s102,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        config = BootstrapConfig.from_json(
            {
                "servers": [
                    {"uri": s101.uri, "shortServerId": 101, "lifetime": 120, "binding": "U"},
                    {"uri": s102.uri, "shortServerId": 102, "lifetime": 130, "binding": "U"},
                ],
                "accessControl": [
                    {"objectId": 3, "objectInstanceId": 0, "acl": {"102": 1}, "owner": 101},
                ],
                "deletePaths": ["/0", "/1"],
                "bootstrapDiscover": True,
            }
        )
        await bs.set_config("bs-multi", config)
        events101, events102 = s101.events(), s102.events()
        client = Client(
            "bs-multi",
            bootstrap=bs.uri,
            objects=[temperature()],
            config=ClientConfig(coap_config=FAST, retry_initial=0.2),
        )
        async with client:
            reg101 = (await next_event(events101, ClientRegistered)).registration
            reg102 = (await next_event(events102, ClientRegistered)).registration
            assert (reg101.lifetime, reg102.lifetime) == (120, 130)
            # The bootstrap server's ACL: 102 reads /3/0 but may not write it; 101 owns it.
            assert (await s102.read("bs-multi", "/3/0/0")).code == Code.CONTENT
            write = await s102.write("bs-multi", "/3/0/13", [Record(Path.parse("/3/0/13"), 1000)])
            assert write.code == Code.UNAUTHORIZED
            write = await s101.write("bs-multi", "/3/0/13", [Record(Path.parse("/3/0/13"), 1000)])
            assert write.code == Code.CHANGED


def _handler_with_two_accounts() -> tuple[RequestHandler, ObjectTree]:
    tree = ObjectTree(load_catalogue())
    for n, ssid in enumerate((101, 102)):
        tree.add(Security(n, uri=f"coap://127.0.0.{n + 1}", short_server_id=ssid))
        tree.add(ServerAccount(n, short_server_id=ssid))
    for inst in acl_for_102():
        tree.add(inst)
    tree.add(temperature())
    tree.add(ObjectInstance(0, {0: "ACME", 11: {0: 0}, 16: "U"}, object_id=3))
    return RequestHandler(tree), tree


def _request(code: Code, path: str, **kw: object) -> RequestReceived:
    msg = Message.build(Type.CON, code, 1, b"tk", uri_path=path, **kw)  # type: ignore[arg-type]
    return RequestReceived(("127.0.0.1", 5683), msg)


def _code(handler: RequestHandler, event: RequestReceived, server: int | None) -> Code:
    out = handler(event, server)
    assert isinstance(out, Message)
    return Code(out.code)


def test_composite_operations_are_decided_path_by_path() -> None:
    h, tree = _handler_with_two_accounts()
    senml = get_codec(CF.SENML_CBOR)
    both = senml.encode([Record(Path.parse("/3/0/0")), Record(Path.parse("/3303/0/5700"))], ROOT, h.models)
    fetch = _request(Code.FETCH, "", content_format=CF.SENML_CBOR, payload=both)
    assert _code(h, fetch, 101) == Code.CONTENT
    assert _code(h, fetch, 102) == Code.UNAUTHORIZED  # /3303/0 is not 102's to read
    one = senml.encode([Record(Path.parse("/3/0/0")), Record(Path.parse("/3304/0"))], ROOT, h.models)
    fetch = _request(Code.FETCH, "", content_format=CF.SENML_CBOR, payload=one)
    assert _code(h, fetch, 102) == Code.CONTENT  # /3304 does not exist: left out, as without ACL
    write = senml.encode([Record(Path.parse("/3/0/14"), "+01:00")], ROOT, h.models)
    ipatch = _request(Code.IPATCH, "", content_format=CF.SENML_CBOR, payload=write)
    assert _code(h, ipatch, 102) == Code.UNAUTHORIZED
    assert _code(h, ipatch, 101) == Code.CHANGED
    # A request from no server of the client has no rights once there are several.
    assert _code(h, _request(Code.GET, "/3/0/0"), None) == Code.UNAUTHORIZED
    # Write-Attributes belong to the server that wrote them.
    attrs = _request(Code.PUT, "/3/0/0", uri_query=["pmin=7"])
    assert _code(h, attrs, 102) == Code.CHANGED
    assert h.effective_attributes(Path.parse("/3/0/0"), server_id=102).pmin == 7
    assert h.effective_attributes(Path.parse("/3/0/0"), server_id=101).pmin is None
    # Discover: governed by the R bit in LwM2M 1.0 only (object 2's definition from 1.1 on).
    discover = _request(Code.GET, "/3303/0", accept=CF.LINK)
    assert _code(h, discover, 102) == Code.CONTENT
    h.lwm2m_version = "1.0"
    assert _code(h, discover, 102) == Code.UNAUTHORIZED
    assert _code(h, _request(Code.GET, "/3/0", accept=CF.LINK), 102) == Code.CONTENT
    # The bootstrap server is not subject to Access Control.
    h.bootstrap = True
    assert _code(h, _request(Code.GET, "/3303/0/5700"), None) == Code.CONTENT
    assert len(tree.instances(2)) == 3


async def test_a_coaps_server_beside_a_plain_one_gets_its_own_dtls_endpoint() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as s101,
        Server(ServerConfig(port=0, coaps_port=0)) as s102,
    ):
        await s102.security.put(SecurityInfo("mixed", "mixed-id", KEY))
        assert s102.coaps_uri is not None
        events101, events102 = s101.events(), s102.events()
        secure = Security(
            1, uri=s102.coaps_uri, short_server_id=102, **credentials(PskCredentials("mixed-id", KEY), None)
        )
        objects = [
            Security(0, uri=s101.uri, short_server_id=101),
            ServerAccount(0, short_server_id=101, lifetime=120),
            secure,
            ServerAccount(1, short_server_id=102, lifetime=140),
            *acl_for_102(),
            temperature(),
        ]
        async with Client("mixed", objects=objects, config=ClientConfig(coap_config=FAST)) as client:
            await next_event(events101, ClientRegistered)
            reg102 = (await next_event(events102, ClientRegistered)).registration
            assert reg102.lifetime == 140
            [other] = client.others
            assert other.coap is not None and other.coap is not client._coap  # a DTLS endpoint of its own
            # Requests over the DTLS session are server 102's: the ACL applies to them.
            assert (await s102.read("mixed", "/3/0/0", timeout=5)).code == Code.CONTENT
            write = await s102.write("mixed", "/3/0/13", [Record(Path.parse("/3/0/13"), 1000)], timeout=5)
            assert write.code == Code.UNAUTHORIZED
            assert (await client.send(["/3/0/0"], server=102)).code == Code.CHANGED
        await next_event(events102, ClientDeregistered)


async def test_an_unreachable_server_backs_off_alone() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as s101:
        events = s101.events()
        silent = f"coap://127.0.0.1:{free_udp_port()}"  # nothing answers there
        objects = [
            Security(0, uri=s101.uri, short_server_id=101),
            ServerAccount(0, short_server_id=101, lifetime=120),
            Security(1, uri=silent, short_server_id=102),
            ServerAccount(1, short_server_id=102, lifetime=120),
            temperature(),
        ]
        quick = EndpointConfig(ack_timeout=0.1, max_retransmit=0)
        async with Client(
            "lonely-2", objects=objects, config=ClientConfig(coap_config=quick, retry_initial=0.05)
        ) as client:
            await next_event(events, ClientRegistered)
            await client.wait_registered(5)
            [other] = client.others
            await until(lambda: other.errors >= 2)
            assert other.state is ClientState.RETRYING and not other.registered
            assert client.state is ClientState.REGISTERED  # the first server's registration stands


async def test_queue_mode_sleeps_and_wakes_towards_every_server() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as s101,
        Server(ServerConfig(host="127.0.0.1", port=0)) as s102,
    ):
        events101, events102 = s101.events(), s102.events()
        objects = [*accounts((101, s101), (102, s102)), *acl_for_102(), temperature()]
        client = Client(
            "queued", objects=objects, config=ClientConfig(queue_mode=True, awake_time=0.3, coap_config=FAST)
        )
        async with client:
            assert (await next_event(events101, ClientRegistered)).registration.queue_mode
            assert (await next_event(events102, ClientRegistered)).registration.queue_mode
            [other] = client.others
            await until(lambda: client.sleeping and other.state is ClientState.SLEEPING)
            client.trigger_update()  # waking: each server hears an Update
            await next_event(events101, ClientUpdated)
            await next_event(events102, ClientUpdated)
            assert (await s102.read("queued", "/3/0/0", timeout=5)).code == Code.CONTENT
