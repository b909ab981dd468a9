"""Device-management requests to CoAP (LwM2M-TS-Transport 1.2 §6.4) and answers back."""

from __future__ import annotations

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.errors import OperationError, ResponseError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.attributes import AttributeChange
from lwm2m.protocol.management import (
    CreateRequest,
    DeleteRequest,
    DiscoverRequest,
    ExecuteRequest,
    ObserveRequest,
    ReadCompositeRequest,
    ReadRequest,
    WriteAttributesRequest,
    WriteCompositeRequest,
    WriteRequest,
    decode_response,
)

P = Path.parse
MODELS = load_catalogue()


def wire(msg: Message) -> Message:
    """The message as the client sees it, after encoding and decoding."""
    return Message.decode(msg.encode())


def test_read_is_a_get_with_accept() -> None:
    msg = wire(ReadRequest(P("/3/0/7"), CF.SENML_CBOR).to_message())
    assert (msg.type, msg.code, msg.uri_path, msg.accept) == (Type.CON, Code.GET, ("3", "0", "7"), 112)
    assert wire(ReadRequest(P("/3")).to_message()).accept is None


def test_discover_asks_for_link_format() -> None:
    msg = wire(DiscoverRequest(P("/3/0")).to_message())
    assert msg.code == Code.GET and msg.accept == CF.LINK
    with pytest.raises(OperationError, match="Discover"):
        DiscoverRequest(ROOT).to_message()


def test_write_replace_is_put_and_partial_update_is_post() -> None:
    records = (Record(P("/3/0/14"), "+01:00"), Record(P("/3/0/15"), "Europe/Paris"))
    put = wire(WriteRequest(P("/3/0"), records, CF.TLV).to_message(MODELS))
    assert put.code == Code.PUT and put.content_format == CF.TLV
    assert get_codec(CF.TLV).decode(put.payload, P("/3/0"), MODELS) == list(records)
    post = wire(WriteRequest(P("/3/0"), records, CF.SENML_CBOR, replace=False).to_message(MODELS))
    assert post.code == Code.POST and post.content_format == CF.SENML_CBOR
    assert get_codec(CF.SENML_CBOR).decode(post.payload, P("/3/0"), MODELS) == list(records)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (WriteRequest(P("/3"), (), CF.TLV), "must be an instance"),
        (WriteRequest(P("/3/0"), (Record(P("/4/0/1"), 1),), CF.TLV), "/4/0/1"),
        (WriteRequest(P("/3/0/7"), (Record(P("/3/0/7/0"), "x"),), CF.TLV), "Integer"),
        (ExecuteRequest(P("/3/0")), "must be a resource"),
        (CreateRequest(P("/3303/0"), (), CF.TLV), "must be an object"),
        (DeleteRequest(P("/3303/0/5700")), "object instance"),
        (ReadCompositeRequest(()), "at least one path"),
        (WriteCompositeRequest(()), "at least one record"),
    ],
)
def test_impossible_requests_are_refused(request_: object, message: str) -> None:
    with pytest.raises(OperationError, match=message):
        request_.to_message(MODELS)  # type: ignore[attr-defined]


def test_write_attributes_sends_queries_only() -> None:
    change = AttributeChange.parse_query(["pmin=10", "pmax=60", "gt=25.5", "lt"])
    msg = wire(WriteAttributesRequest(P("/3303/0/5700"), change).to_message())
    assert msg.code == Code.PUT and not msg.payload
    assert set(msg.uri_query) == {"pmin=10", "pmax=60", "gt=25.5", "lt"}
    with pytest.raises(ValueError, match="gt"):
        WriteAttributesRequest(P("/3303/0"), change).to_message()


def test_execute_carries_its_arguments_as_text() -> None:
    msg = wire(ExecuteRequest(P("/3/0/4"), "0='x',1").to_message())
    assert msg.code == Code.POST and msg.payload == b"0='x',1" and msg.content_format == CF.TEXT
    assert wire(ExecuteRequest(P("/3/0/4")).to_message()).content_format is None


def test_observe_and_cancel() -> None:
    assert wire(ObserveRequest(P("/3303/0/5700")).to_message()).observe == 0
    assert wire(ObserveRequest(P("/3303/0/5700"), cancel=True).to_message()).observe == 1


def test_composite_read_is_a_fetch_naming_the_paths() -> None:
    paths = (P("/3/0/9"), P("/3303/0/5700"))
    msg = wire(ReadCompositeRequest(paths, observe=0).to_message(MODELS))
    assert msg.code == Code.FETCH and msg.uri_path == () and msg.observe == 0
    assert msg.content_format == CF.SENML_CBOR and msg.accept == CF.SENML_CBOR
    assert [r.path for r in get_codec(CF.SENML_CBOR).decode(msg.payload, ROOT, MODELS)] == list(paths)


def test_composite_write_is_an_ipatch() -> None:
    records = (Record(P("/3/0/14"), "+02:00"), Record(P("/1/0/1"), 300))
    msg = wire(WriteCompositeRequest(records).to_message(MODELS))
    assert msg.code == Code.IPATCH and msg.uri_path == ()
    assert get_codec(CF.SENML_CBOR).decode(msg.payload, ROOT, MODELS) == sorted(records, key=lambda r: r.path)


def _answer(code: Code, payload: bytes = b"", fmt: int | None = None, **kw: object) -> Message:
    return wire(Message.build(Type.ACK, code, 1, b"t", content_format=fmt, payload=payload, **kw))  # type: ignore[arg-type]


def test_read_answer_is_decoded_with_its_content_format() -> None:
    records = [Record(P("/3/0/7/0"), 3800), Record(P("/3/0/7/1"), 5000)]
    for fmt in (CF.TLV, CF.SENML_JSON, CF.LWM2M_CBOR):
        payload = get_codec(fmt).encode(records, P("/3/0/7"), MODELS)
        response = decode_response(ReadRequest(P("/3/0/7")), _answer(Code.CONTENT, payload, fmt), MODELS)
        assert response.success and response.records == tuple(records) and response.content_format == fmt


def test_a_payload_without_content_format_is_text() -> None:
    response = decode_response(ReadRequest(P("/3/0/9")), _answer(Code.CONTENT, b"85"), MODELS)
    assert response.records == (Record(P("/3/0/9"), 85),)


def test_composite_answer_is_decoded_from_the_root() -> None:
    records = [Record(P("/3/0/9"), 85), Record(P("/3303/0/5700"), 21.5)]
    payload = get_codec(CF.SENML_CBOR).encode(records, ROOT, MODELS)
    request = ReadCompositeRequest((P("/3/0/9"), P("/3303/0/5700")))
    assert decode_response(request, _answer(Code.CONTENT, payload, CF.SENML_CBOR), MODELS).records == tuple(
        records
    )


def test_discover_answer_gives_links() -> None:
    payload = b"</3/0>;pmin=10,</3/0/7>;dim=2,</3/0/9>"
    response = decode_response(DiscoverRequest(P("/3/0")), _answer(Code.CONTENT, payload, CF.LINK))
    assert [link.target for link in response.links] == ["/3/0", "/3/0/7", "/3/0/9"]
    assert response.links[1].dim == 2


def test_create_answer_gives_the_new_instance() -> None:
    request = CreateRequest(P("/3303"), (Record(P("/3303/1/5700"), 20.0),), CF.TLV)
    created = _answer(
        Code.CREATED, options=[(OptionNumber.LOCATION_PATH, b"3303"), (OptionNumber.LOCATION_PATH, b"1")]
    )
    assert decode_response(request, created).location == P("/3303/1")
    with pytest.raises(ResponseError, match="outside"):
        decode_response(
            request,
            _answer(
                Code.CREATED, options=[(OptionNumber.LOCATION_PATH, b"3"), (OptionNumber.LOCATION_PATH, b"0")]
            ),
        )


def test_error_answers_carry_their_diagnostic() -> None:
    response = decode_response(ReadRequest(P("/3/0/99")), _answer(Code.NOT_FOUND, b"no such resource"))
    assert (
        not response.success and response.code == Code.NOT_FOUND and response.diagnostic == "no such resource"
    )


def test_an_undecodable_answer_is_a_response_error() -> None:
    with pytest.raises(ResponseError, match="cannot decode"):
        decode_response(ReadRequest(P("/3/0")), _answer(Code.CONTENT, b"\xff\x00", CF.SENML_JSON), MODELS)


def test_a_response_code_prints_as_the_spec_writes_it() -> None:
    answer = Message.build(Type.ACK, 69, payload=b"1", content_format=CF.TEXT)
    response = decode_response(ReadRequest(Path.parse("/3/0/9")), answer)
    assert str(response.code) == "2.05 Content" and response.code == 69 and response.code is Code.CONTENT
    refused = decode_response(ReadRequest(Path.parse("/3/0/9")), Message.build(Type.ACK, 132))
    assert f"{refused.code}" == "4.04 Not Found" and not refused.success
    odd = decode_response(ReadRequest(Path.parse("/3/0/9")), Message.build(Type.ACK, 71))
    assert odd.code == 71
