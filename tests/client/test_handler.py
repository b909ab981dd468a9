"""The client's answers to every server operation, fed as CoAP requests (no sockets).

Response codes follow LwM2M-TS-Core 1.2 §6.3; methods LwM2M-TS-Transport 1.2 §6.4.
"""

from __future__ import annotations

import cbor2
import pytest

from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import ObjectTree
from lwm2m.client.observer import Observer
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import parse_links
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record

PEER = ("127.0.0.1", 40000)
MODELS = load_catalogue()


class Lamp(ObjectInstance):
    object_id = 3311

    def __init__(self, instance_id: int = 0) -> None:
        super().__init__(instance_id, {5850: False, 5851: 0})
        self.toggled = 0

    def execute(self, resource_id: int, arguments: str) -> None:
        self.toggled += 1


def make(version: str = "1.2") -> tuple[RequestHandler, ObjectTree]:
    tree = ObjectTree(MODELS)
    tree.add(ObjectInstance(0, {0: "ACME", 1: "X1", 11: {0: 0}, 16: "U"}, object_id=3, models=MODELS))
    tree.add(ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303, models=MODELS))
    tree.add(Lamp(0))
    return RequestHandler(tree, lwm2m_version=version), tree


def request(code: Code, path: str, **kw: object) -> RequestReceived:
    observe = kw.pop("observe_value", None)
    msg = Message.build(Type.CON, code, 1, b"tk", uri_path=path, **kw)  # type: ignore[arg-type]
    return RequestReceived(PEER, msg, observe=observe)


def answer(handler: RequestHandler, event: RequestReceived) -> Message:
    out = handler(event)
    assert isinstance(out, Message)
    return out


def decode(msg: Message, base: str) -> list[Record]:
    return get_codec(msg.content_format or 0).decode(msg.payload, Path.parse(base), MODELS)


def test_read_defaults_to_senml_cbor_from_1_1_and_tlv_for_1_0() -> None:
    h, _ = make("1.2")
    out = answer(h, request(Code.GET, "/3303/0"))
    assert (out.code, out.content_format) == (Code.CONTENT, CF.SENML_CBOR)
    assert len(cbor2.loads(out.payload)) == 2  # a SenML pack of two records
    assert [(r.path, r.value) for r in decode(out, "/3303/0")] == [
        (Path.parse("/3303/0/5700"), 21.5),
        (Path.parse("/3303/0/5701"), "Cel"),
    ]
    h10, _ = make("1.0")
    out = answer(h10, request(Code.GET, "/3303/0"))
    assert out.content_format == CF.TLV
    assert decode(out, "/3303/0")[0].value == 21.5
    # A 1.0 Read of one value without Accept: plain text, as 1.0 servers expect; a multiple
    # resource stays TLV.
    out = answer(h10, request(Code.GET, "/3303/0/5700"))
    assert (out.content_format, out.payload) == (CF.TEXT, b"21.5")
    assert answer(h10, request(Code.GET, "/3/0/11")).content_format == CF.TLV


@pytest.mark.parametrize("fmt", [CF.TLV, CF.SENML_JSON, CF.SENML_CBOR, CF.OMA_JSON, CF.LWM2M_CBOR])
def test_read_honours_accept_at_every_level(fmt: CF) -> None:
    h, _ = make()
    for path in ("/3303", "/3303/0", "/3303/0/5700", "/3/0/11", "/3/0/11/0"):
        out = answer(h, request(Code.GET, path, accept=fmt))
        assert (out.code, out.content_format) == (Code.CONTENT, fmt), path
        assert decode(out, path), path


def test_single_value_formats_and_not_acceptable() -> None:
    h, _ = make()
    out = answer(h, request(Code.GET, "/3303/0/5700", accept=CF.TEXT))
    assert (out.code, out.payload) == (Code.CONTENT, b"21.5")
    assert answer(h, request(Code.GET, "/3303/0/5700", accept=CF.CBOR)).code == Code.CONTENT
    # A whole instance has no text form; 9999 is no format at all.
    assert answer(h, request(Code.GET, "/3303/0", accept=CF.TEXT)).code == Code.NOT_ACCEPTABLE
    assert answer(h, request(Code.GET, "/3303/0", accept=9999)).code == Code.NOT_ACCEPTABLE


def test_not_found_and_not_allowed() -> None:
    h, _ = make()
    assert answer(h, request(Code.GET, "/3304/0")).code == Code.NOT_FOUND
    assert answer(h, request(Code.GET, "/3303/7")).code == Code.NOT_FOUND
    assert answer(h, request(Code.GET, "/3303/0/5601")).code == Code.NOT_FOUND  # defined, absent
    assert answer(h, request(Code.GET, "/3303/0/99999")).code == Code.NOT_FOUND
    assert answer(h, request(Code.GET, "/abc")).code == Code.NOT_FOUND
    assert answer(h, request(Code.GET, "/")).code == Code.METHOD_NOT_ALLOWED
    assert answer(h, request(Code.GET, "/3/0/4")).code == Code.METHOD_NOT_ALLOWED  # executable
    assert answer(h, request(Code.FETCH, "/3/0")).code == Code.METHOD_NOT_ALLOWED
    # The Security object is for the bootstrap server only (LwM2M-TS-Core 1.2 §6.2.1).
    assert answer(h, request(Code.GET, "/0/0")).code == Code.NOT_FOUND


def test_write_replace_partial_and_resource_instance() -> None:
    h, tree = make()
    text = request(Code.PUT, "/3303/0/5750", content_format=CF.TEXT, payload=b"boiler")
    assert answer(h, text).code == Code.CHANGED
    assert tree.instance(3303, 0).get(5750) == "boiler"  # type: ignore[union-attr]
    # Write to a read-only resource: 4.05; type mismatch: 4.00; unknown format: 4.15.
    ro = request(Code.PUT, "/3303/0/5700", content_format=CF.TEXT, payload=b"1")
    assert answer(h, ro).code == Code.METHOD_NOT_ALLOWED
    bad = request(Code.PUT, "/3311/0/5851", content_format=CF.TEXT, payload=b"bright")
    assert answer(h, bad).code == Code.BAD_REQUEST
    odd = request(Code.PUT, "/3311/0/5851", content_format=1234, payload=b"1")
    assert answer(h, odd).code == Code.UNSUPPORTED_CONTENT_FORMAT
    link = request(Code.PUT, "/3311/0/5851", content_format=CF.LINK, payload=b"</1>")
    assert answer(h, link).code == Code.UNSUPPORTED_CONTENT_FORMAT
    # Partial update of an instance keeps what it does not carry.
    recs = [Record(Path.parse("/3311/0/5851"), 40)]
    payload = get_codec(CF.SENML_CBOR).encode(recs, Path.parse("/3311/0"), MODELS)
    post = request(Code.POST, "/3311/0", content_format=CF.SENML_CBOR, payload=payload)
    assert answer(h, post).code == Code.CHANGED
    lamp = tree.instance(3311, 0)
    assert lamp is not None and (lamp.get(5851), lamp.get(5850)) == (40, False)
    # Replace of the instance drops the optional writable resources it does not carry.
    recs = [Record(Path.parse("/3311/0/5850"), True)]
    payload = get_codec(CF.TLV).encode(recs, Path.parse("/3311/0"), MODELS)
    put = request(Code.PUT, "/3311/0", content_format=CF.TLV, payload=payload)
    assert answer(h, put).code == Code.CHANGED
    assert (lamp.get(5850), lamp.get(5851)) == (True, None)
    # A resource instance (1.1+), and a write to a missing instance.
    ri = request(Code.PUT, "/3/0/11/1", content_format=CF.TEXT, payload=b"3")
    assert answer(h, ri).code == Code.METHOD_NOT_ALLOWED  # Error Code is read-only
    missing = request(Code.PUT, "/3311/5/5850", content_format=CF.TEXT, payload=b"1")
    assert answer(h, missing).code == Code.NOT_FOUND
    empty = request(Code.PUT, "/3311/0/5851", content_format=CF.TEXT, payload=b"")
    assert answer(h, empty).code == Code.BAD_REQUEST
    # A resource instance whose payload carries no value for it: 4.00, not a failing handler.
    none = request(Code.PUT, "/3311/0/5851/0", content_format=CF.SENML_CBOR, payload=b"\x80")
    assert answer(h, none).code == Code.BAD_REQUEST


def test_execute_with_arguments() -> None:
    h, tree = make()
    lamp = tree.instance(3311, 0)
    assert isinstance(lamp, Lamp)
    # 3311 has no executable resource: 5850 is RW, so POST on it without payload is 4.05.
    assert answer(h, request(Code.POST, "/3311/0/5850")).code == Code.METHOD_NOT_ALLOWED
    reboot = request(Code.POST, "/3/0/4", content_format=CF.TEXT, payload=b"0='now',1")
    assert answer(h, reboot).code == Code.CHANGED
    bad = request(Code.POST, "/3/0/4", content_format=CF.TEXT, payload=b"0=now")
    assert answer(h, bad).code == Code.BAD_REQUEST


def test_create_with_and_without_instance_id_and_delete() -> None:
    h, tree = make()
    recs = [Record(Path.parse("/3303/4/5700"), 3.5)]
    payload = get_codec(CF.SENML_CBOR).encode(recs, Path.parse("/3303"), MODELS)
    out = answer(h, request(Code.POST, "/3303", content_format=CF.SENML_CBOR, payload=payload))
    assert (out.code, out.location_path) == (Code.CREATED, ("3303", "4"))
    assert tree.instance(3303, 4).get(5700) == 3.5  # type: ignore[union-attr]
    again = answer(h, request(Code.POST, "/3303", content_format=CF.SENML_CBOR, payload=payload))
    assert again.code == Code.BAD_REQUEST  # exists already
    # LwM2M 1.0 TLV: bare resources, the client picks the ID.
    bare = get_codec(CF.TLV).encode([Record(Path.parse("/3303/1/5700"), 9.0)], Path.parse("/3303/1"), MODELS)
    out = answer(h, request(Code.POST, "/3303", content_format=CF.TLV, payload=bare))
    assert (out.code, out.location_path) == (Code.CREATED, ("3303", "1"))
    assert answer(h, request(Code.POST, "/3304", content_format=CF.TLV, payload=bare)).code == Code.NOT_FOUND
    # Device is single-instance and mandatory: no second instance, no delete.
    assert answer(h, request(Code.POST, "/3", content_format=CF.TLV, payload=b"")).code == Code.BAD_REQUEST
    assert answer(h, request(Code.DELETE, "/3/0")).code == Code.METHOD_NOT_ALLOWED
    assert answer(h, request(Code.DELETE, "/3303/4")).code == Code.DELETED
    assert tree.instance(3303, 4) is None
    assert answer(h, request(Code.DELETE, "/3303/4")).code == Code.NOT_FOUND
    assert answer(h, request(Code.DELETE, "/3303")).code == Code.METHOD_NOT_ALLOWED


def test_discover_and_write_attributes() -> None:
    h, _ = make()
    put = request(Code.PUT, "/3303/0/5700", uri_query=["pmin=5", "pmax=60", "gt=30.5"])
    assert answer(h, put).code == Code.CHANGED
    assert answer(h, request(Code.PUT, "/3303/0", uri_query=["pmin=2"])).code == Code.CHANGED
    out = answer(h, request(Code.GET, "/3303", accept=CF.LINK))
    assert out.content_format == CF.LINK
    links = {link.target: dict(link.attributes) for link in parse_links(out.payload)}
    assert links["/3303"] == {"ver": "1.1"}
    assert links["/3303/0"] == {"pmin": "2"}
    assert links["/3303/0/5700"] == {"pmin": "5", "pmax": "60", "gt": "30.5"}
    assert "/3303/0/5701" in links
    out = answer(h, request(Code.GET, "/3/0", accept=CF.LINK))
    links = {link.target: dict(link.attributes) for link in parse_links(out.payload)}
    assert links["/3/0/11"] == {"dim": "1"}
    assert "/3/0/4" in links  # executables are listed
    # Bad attributes: unknown name, gt on an instance, gt on a string, pmax < pmin, a missing path.
    for path, query in [
        ("/3303/0/5700", ["foo=1"]),
        ("/3303/0", ["gt=1"]),
        ("/3303/0/5701", ["gt=1"]),
        ("/3303/0/5700", ["pmax=1"]),
        ("/3303/0/5700", ["lt=40"]),
    ]:
        assert answer(h, request(Code.PUT, path, uri_query=query)).code == Code.BAD_REQUEST, query
    assert answer(h, request(Code.PUT, "/3303/9", uri_query=["pmin=1"])).code == Code.NOT_FOUND
    # Removing an attribute: a name without value (§5.1.2).
    assert answer(h, request(Code.PUT, "/3303/0/5700", uri_query=["gt"])).code == Code.CHANGED
    assert h.effective_attributes(Path.parse("/3303/0/5700")).gt is None
    assert h.effective_attributes(Path.parse("/3303/0/5701")).pmin == 2  # inherited from the instance


def test_composite_read_and_write() -> None:
    h, tree = make()
    paths = [Record(Path.parse("/3303/0/5700")), Record(Path.parse("/3/0/0")), Record(Path.parse("/3304"))]
    body = get_codec(CF.SENML_CBOR).encode(paths, ROOT, MODELS)
    out = answer(h, request(Code.FETCH, "", content_format=CF.SENML_CBOR, accept=CF.SENML_JSON, payload=body))
    assert (out.code, out.content_format) == (Code.CONTENT, CF.SENML_JSON)
    got = {str(r.path): r.value for r in get_codec(CF.SENML_JSON).decode(out.payload, ROOT, MODELS)}
    assert got == {"/3303/0/5700": 21.5, "/3/0/0": "ACME"}  # the missing object is left out
    tlv = request(Code.FETCH, "", content_format=CF.TLV, payload=b"")
    assert answer(h, tlv).code == Code.UNSUPPORTED_CONTENT_FORMAT
    wrong_accept = request(Code.FETCH, "", content_format=CF.SENML_CBOR, accept=CF.TLV, payload=body)
    assert answer(h, wrong_accept).code == Code.NOT_ACCEPTABLE
    writes = [Record(Path.parse("/3311/0/5850"), True), Record(Path.parse("/3303/0/5750"), "K")]
    body = get_codec(CF.SENML_CBOR).encode(writes, ROOT, MODELS)
    assert (
        answer(h, request(Code.IPATCH, "", content_format=CF.SENML_CBOR, payload=body)).code == Code.CHANGED
    )
    assert tree.instance(3311, 0).get(5850) is True  # type: ignore[union-attr]
    # All or nothing: a read-only target refuses the whole write.
    writes = [Record(Path.parse("/3311/0/5850"), False), Record(Path.parse("/3303/0/5700"), 1.0)]
    body = get_codec(CF.SENML_CBOR).encode(writes, ROOT, MODELS)
    out = answer(h, request(Code.IPATCH, "", content_format=CF.SENML_CBOR, payload=body))
    assert out.code == Code.METHOD_NOT_ALLOWED
    assert tree.instance(3311, 0).get(5850) is True  # type: ignore[union-attr]


def test_a_failing_handler_answers_5_00_and_the_client_goes_on() -> None:
    class Broken(ObjectInstance):
        object_id = 3304

        def read(self, resource_id: int) -> object:  # type: ignore[override]
            raise RuntimeError("sensor unplugged")

    h, tree = make()
    tree.add(Broken(0, {5700: 50.0}))
    out = answer(h, request(Code.GET, "/3304/0/5700"))
    assert out.code == Code.INTERNAL_SERVER_ERROR
    assert answer(h, request(Code.GET, "/3303/0/5700")).code == Code.CONTENT


async def test_observe_registration_carries_the_observe_option() -> None:
    h, _ = make()
    h.observer = Observer(h, lambda key, msg, con: True)
    out = answer(h, request(Code.GET, "/3303/0/5700", observe=0, observe_value=0))
    assert out.code == Code.CONTENT and out.observe == 0
    assert len(h.observer) == 1
    # Observe 1 deregisters and still reads (RFC 7641 §3.6).
    out = answer(h, request(Code.GET, "/3303/0/5700", observe=1, observe_value=1))
    assert out.code == Code.CONTENT and len(h.observer) == 0
