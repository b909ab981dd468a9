"""CoAP Observe test helpers: two peers' addresses, an Observe registration, its notifications."""

from __future__ import annotations

from typing import Any

from lwm2m.coap.events import CoapNotificationReceived, RequestReceived, ResponseReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type

C, S = ("10.0.0.1", 5683), ("10.0.0.2", 5683)
BIG = bytes(range(256)) * 10  # 2560 bytes


def content(payload: bytes, **kw: Any) -> Message:
    return Message.build(Type.ACK, Code.CONTENT, payload=payload, **kw)


def register(net: Any, payload: bytes = b"0", path: str = "/3303/0/5700") -> tuple[bytes, RequestReceived]:
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path=path, observe=0), S, net.now)
    net.deliver()
    (ev,) = net.events(net.s)
    assert isinstance(ev, RequestReceived)
    assert ev.observe == 0 and ev.is_observe_registration and ev.relation == (C, token)
    net.s.respond(ev, content(payload, observe=0), net.now)
    net.deliver()
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived) and resp.token == token
    assert resp.response.observe is not None
    return token, ev


def notifications(net: Any) -> list[CoapNotificationReceived]:
    evs = net.events(net.c)
    assert all(isinstance(e, CoapNotificationReceived) for e in evs), evs
    return evs
