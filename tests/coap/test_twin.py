"""The unfrozen twins of frozen dataclasses (lwm2m.coap.twin), and both ways their users build
instances: through the twin, and through the slot descriptors where a Python refuses the twin."""

from __future__ import annotations

import dataclasses
import random

import pytest

from lwm2m.coap import endpoint, events, message
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.events import Event, RequestReceived
from lwm2m.coap.message import Message, decode_message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.twin import slot_setters, unfrozen_twin

C = ("10.0.0.1", 5683)
GET = Message(Type.CON, Code.GET, 0x1234, b"tk", ((11, b"a"), (11, b"b"), (2048, b"z")), b"payload")


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


def test_a_twin_has_the_layout_and_plain_stores() -> None:
    twin = unfrozen_twin(Point)
    assert twin is not None
    assert twin.__slots__ == Point.__slots__ and twin.__bases__ == Point.__bases__  # type: ignore[attr-defined]
    obj = object.__new__(twin)
    obj.x = 1
    obj.y = 2
    obj.__class__ = Point
    assert obj == Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.x = 3  # type: ignore[misc]


def test_no_twin_without_slots_and_setters_match_the_slots() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        x: int

    assert unfrozen_twin(Plain) is None
    sx, sy = slot_setters(Point)
    obj = object.__new__(Point)
    sx(obj, 5)
    sy(obj, 6)
    assert obj == Point(5, 6)


def test_the_message_and_request_twins_exist_here() -> None:
    assert message._Fields is not None and events.RequestFields is not None
    assert issubclass(events.RequestFields, Event)
    assert tuple(f.name for f in dataclasses.fields(RequestReceived)) == events._REQUEST_FIELDS


@pytest.mark.parametrize("twin", [True, False], ids=["twin", "descriptors"])
def test_decode_builds_the_same_message_both_ways(monkeypatch: pytest.MonkeyPatch, twin: bool) -> None:
    if not twin:
        monkeypatch.setattr(message, "_Fields", None)
    msg, _ = decode_message(GET.encode())
    assert type(msg) is Message and msg == GET
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.mid = 1  # type: ignore[misc]


@pytest.mark.parametrize("twin", [True, False], ids=["twin", "descriptors"])
def test_request_received_is_the_same_event_both_ways(monkeypatch: pytest.MonkeyPatch, twin: bool) -> None:
    if not twin:
        monkeypatch.setattr(events, "RequestFields", None)
    ev = events.request_received(C, GET)
    assert type(ev) is RequestReceived and ev == RequestReceived(C, GET)


@pytest.mark.parametrize("twin", [True, False], ids=["twin", "descriptors"])
def test_the_endpoint_plain_request_path_both_ways(monkeypatch: pytest.MonkeyPatch, twin: bool) -> None:
    if not twin:
        monkeypatch.setattr(endpoint, "_RequestFields", None)
    ep = Endpoint(rng=random.Random(1))
    request = Message(Type.CON, Code.GET, 7, b"t", ((11, b"x"),))
    ep.receive_datagram(request.encode(), C, 0.0)
    ev = ep.next_event()
    assert type(ev) is RequestReceived and ev == RequestReceived(C, request)
    ep.respond(ev, Message(Type.ACK, Code.CONTENT, payload=b"ok"), 0.0)
    ((data, addr),) = ep.datagrams_to_send(0.0)
    assert addr == C and Message.decode(data).payload == b"ok"


def test_fast_event_constructor_matches_the_dataclass() -> None:
    import dataclasses

    from lwm2m.coap import events

    msg = Message.build(Type.CON, Code.GET, uri_path="/3/0/0").replace(mid=1, token=b"t")
    assert tuple(f.name for f in dataclasses.fields(RequestReceived)) == events._REQUEST_FIELDS
    assert events.request_received(C, msg) == RequestReceived(C, msg)
