"""The Bootstrap Interface on CoAP (LwM2M-TS-Core 1.2 §6.1.7, LwM2M-TS-Transport 1.2 §6.1)."""

from __future__ import annotations

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import parse_links
from lwm2m.errors import BootstrapError, ResponseError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.bootstrap import (
    BootstrapDeleteRequest,
    BootstrapDiscoverRequest,
    BootstrapFinishRequest,
    BootstrapPackRequest,
    BootstrapReadRequest,
    BootstrapRequest,
    BootstrapWriteRequest,
    Discovery,
    decode_bootstrap_response,
    parse_downlink,
)

P = Path.parse
MODELS = load_catalogue()
SECURITY = (
    Record(P("/0/1/0"), "coaps://lwm2m.example:5684"),
    Record(P("/0/1/1"), False),
    Record(P("/0/1/2"), 0),
    Record(P("/0/1/3"), b"device-1"),
    Record(P("/0/1/5"), bytes.fromhex("00112233")),
    Record(P("/0/1/10"), 101),
)


def wire(msg: Message) -> Message:
    return Message.decode(msg.encode())


def test_bootstrap_request_round_trip_with_preferred_content_format() -> None:
    msg = wire(BootstrapRequest("dev-1", pct=CF.SENML_CBOR).to_message(mid=7, token=b"t"))
    assert (msg.type, msg.code, msg.uri_path) == (Type.CON, Code.POST, ("bs",))
    assert msg.uri_query == ("ep=dev-1", "pct=112")
    assert BootstrapRequest.from_message(msg) == BootstrapRequest("dev-1", 112)
    plain = BootstrapRequest.from_message(wire(BootstrapRequest("old").to_message()))
    assert plain.pct is None and plain.ep == "old"


def request(*query: str, code: Code = Code.POST, path: str = "/bs") -> Message:
    return Message.build(Type.CON, code, uri_path=path, uri_query=list(query))


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        (request(), Code.BAD_REQUEST, "missing"),
        (request("ep="), Code.BAD_REQUEST, "empty"),
        (request("ep=a", "ep=b"), Code.BAD_REQUEST, "twice"),
        (request("ep=a", "pct=x"), Code.BAD_REQUEST, "pct"),
        (request("ep=a", code=Code.GET), Code.METHOD_NOT_ALLOWED, "POST"),
        (request("ep=a", path="/rd"), Code.NOT_FOUND, "/bs"),
    ],
)
def test_bad_bootstrap_requests_name_the_problem(message: Message, code: Code, words: str) -> None:
    with pytest.raises(BootstrapError, match=words) as caught:
        BootstrapRequest.from_message(message)
    assert caught.value.code == code


def test_bootstrap_request_endpoint_from_credentials() -> None:
    msg = Message.build(Type.CON, Code.POST, uri_path="/bs")
    assert BootstrapRequest.from_message(msg, endpoint="from-psk").ep == "from-psk"


def test_pack_request_is_a_get_on_bspack_with_accept() -> None:
    msg = wire(BootstrapPackRequest("dev-2").to_message())
    assert (msg.code, msg.uri_path, msg.uri_query, msg.accept) == (Code.GET, ("bspack",), ("ep=dev-2",), 112)
    assert BootstrapPackRequest.from_message(msg) == BootstrapPackRequest("dev-2", CF.SENML_CBOR)
    tlv = Message.build(Type.CON, Code.GET, uri_path="/bspack", uri_query=["ep=x"], accept=CF.TLV)
    with pytest.raises(BootstrapError, match="SenML") as caught:
        BootstrapPackRequest.from_message(tlv)
    assert caught.value.code == Code.NOT_ACCEPTABLE


def test_finish_discover_read_write_delete_are_recognised_by_the_client() -> None:
    finish = wire(BootstrapFinishRequest().to_message())
    assert (finish.code, finish.uri_path, finish.payload) == (Code.POST, ("bs",), b"")
    assert parse_downlink(finish) == BootstrapFinishRequest()

    discover = wire(BootstrapDiscoverRequest().to_message())
    assert (discover.code, discover.uri_path, discover.accept) == (Code.GET, (), CF.LINK)
    assert parse_downlink(discover) == BootstrapDiscoverRequest(ROOT)
    on_security = wire(BootstrapDiscoverRequest(P("/0")).to_message())
    assert parse_downlink(on_security) == BootstrapDiscoverRequest(P("/0"))

    read = wire(BootstrapReadRequest(P("/1/0"), CF.SENML_CBOR).to_message())
    assert (read.code, read.uri_path, read.accept) == (Code.GET, ("1", "0"), 112)
    assert parse_downlink(read) == BootstrapReadRequest(P("/1/0"), CF.SENML_CBOR)

    delete = wire(BootstrapDeleteRequest().to_message())
    assert (delete.code, delete.uri_path) == (Code.DELETE, ())
    assert parse_downlink(delete) == BootstrapDeleteRequest(ROOT)
    assert parse_downlink(wire(BootstrapDeleteRequest(P("/0/1")).to_message())).path == P("/0/1")


@pytest.mark.parametrize("fmt", [CF.TLV, CF.SENML_CBOR, CF.SENML_JSON, CF.LWM2M_CBOR, CF.OMA_JSON])
def test_write_of_a_security_instance_in_every_format(fmt: CF) -> None:
    msg = wire(BootstrapWriteRequest(P("/0/1"), SECURITY, fmt).to_message(MODELS))
    assert (msg.code, msg.uri_path, msg.content_format) == (Code.PUT, ("0", "1"), fmt)
    parsed = parse_downlink(msg, MODELS)
    assert parsed == BootstrapWriteRequest(P("/0/1"), SECURITY, fmt)


def test_write_of_a_whole_object_carries_several_instances() -> None:
    records = (*SECURITY, Record(P("/0/2/0"), "coap://other"), Record(P("/0/2/10"), 102))
    msg = wire(BootstrapWriteRequest(P("/0"), records, CF.TLV).to_message(MODELS))
    assert get_codec(CF.TLV).decode(msg.payload, P("/0"), MODELS) == list(records)


def test_bad_downlink_requests() -> None:
    with pytest.raises(BootstrapError, match=r"/1 \(Server\)"):
        parse_downlink(Message.build(Type.CON, Code.GET, uri_path="/0/0"))  # keys are never read back
    with pytest.raises(BootstrapError, match=r"/1 \(Server\)"):
        parse_downlink(Message.build(Type.CON, Code.GET, uri_path="/3/0"))
    with pytest.raises(BootstrapError) as caught:
        parse_downlink(Message.build(Type.CON, Code.POST, uri_path="/1/0/8"))
    assert caught.value.code == Code.METHOD_NOT_ALLOWED
    with pytest.raises(BootstrapError, match="Observe"):
        parse_downlink(Message.build(Type.CON, Code.GET, uri_path="/1/0", observe=0))
    with pytest.raises(BootstrapError, match="decode"):
        truncated = Message.build(Type.CON, Code.PUT, uri_path="/0/1", content_format=CF.TLV, payload=b"\xc8")
        parse_downlink(truncated)
    with pytest.raises(BootstrapError) as caught:
        parse_downlink(Message.build(Type.CON, Code.PUT, uri_path="/0/1", content_format=9999, payload=b"x"))
    assert caught.value.code == Code.UNSUPPORTED_CONTENT_FORMAT
    with pytest.raises(BootstrapError) as caught:
        parse_downlink(Message.build(Type.CON, Code.DELETE, uri_path="/a/b"))
    assert caught.value.code == Code.NOT_FOUND
    with pytest.raises(BootstrapError, match="instance"):
        parse_downlink(Message.build(Type.CON, Code.DELETE, uri_path="/1/0/1"))


def test_requests_refuse_targets_outside_the_interface() -> None:
    with pytest.raises(BootstrapError):
        BootstrapReadRequest(P("/0/1"))
    with pytest.raises(BootstrapError):
        BootstrapDiscoverRequest(P("/0/1"))
    with pytest.raises(BootstrapError):
        BootstrapDeleteRequest(P("/1/0/1"))
    with pytest.raises(BootstrapError, match="not under"):
        BootstrapWriteRequest(P("/0/2"), SECURITY)
    with pytest.raises(BootstrapError, match="nothing"):
        BootstrapWriteRequest(P("/0/2"), ())


def test_discover_answer_decoded_and_bootstrap_account_found() -> None:
    payload = (
        b'</>;lwm2m="1.2",</0/0>;ssid=101;uri="coap://dm:5683",</0/1>,</1/0>;ssid=101,</3>;ver=1.1,</3/0>'
    )
    answer = Message.build(Type.ACK, Code.CONTENT, content_format=CF.LINK, payload=payload)
    response = decode_bootstrap_response(BootstrapDiscoverRequest(), answer)
    discovery = Discovery.from_links(response.links)
    assert discovery.version == "1.2"
    assert discovery.bootstrap_security_id == 1
    assert discovery.instance_ids(0) == (0, 1) and discovery.instance_ids(1) == (0,)
    assert discovery.instances[0].uri == "coap://dm:5683" and discovery.instances[0].ssid == 101
    assert (3, "1.1") in discovery.objects
    assert Discovery.from_links(parse_links("</>;lwm2m=1.0,</0/0>")).version == "1.0"
    with pytest.raises(ResponseError):
        bad = Message.build(Type.ACK, Code.CONTENT, content_format=CF.LINK, payload=b"<unterminated")
        decode_bootstrap_response(BootstrapDiscoverRequest(), bad)


def test_read_answer_and_errors_decoded() -> None:
    request = BootstrapReadRequest(P("/1/0"), CF.SENML_CBOR)
    records = [Record(P("/1/0/0"), 101), Record(P("/1/0/1"), 300)]
    payload = get_codec(CF.SENML_CBOR).encode(records, P("/1/0"), MODELS)
    ok = Message.build(Type.ACK, Code.CONTENT, content_format=CF.SENML_CBOR, payload=payload)
    assert list(decode_bootstrap_response(request, ok, MODELS).records) == records
    refused = Message.build(Type.ACK, Code.NOT_ACCEPTABLE, payload=b"no server account")
    answer = decode_bootstrap_response(BootstrapFinishRequest(), refused)
    assert (answer.code, answer.diagnostic) == (Code.NOT_ACCEPTABLE, "no server account")
    assert not answer.success
