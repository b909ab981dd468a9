"""A minimal device, a registration request and an event waiter for server tests."""

from __future__ import annotations

import asyncio

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.model.record import Record

P = Path.parse
MODELS = load_catalogue()
DEVICE = {P("/3/0/0"): "Open Mobile Alliance", P("/3/0/9"): 85}


class Device:
    """A minimal client: answers Read of /3/0 and its resources in the asked format."""

    def __init__(self) -> None:
        self.requests: list[Message] = []

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        self.requests.append(msg)
        path = P("/" + "/".join(msg.uri_path))
        if msg.code == Code.GET:
            records = [Record(p, v) for p, v in DEVICE.items() if p.startswith(path)]
            if not records:
                return Message.build(Type.ACK, Code.NOT_FOUND)
            fmt = msg.accept if msg.accept is not None else CF.TLV
            payload = get_codec(fmt).encode(records, path, MODELS)
            return Message.build(Type.ACK, Code.CONTENT, content_format=fmt, payload=payload)
        if msg.code == Code.POST and msg.uri_path == ("3", "0", "4"):
            return Message.build(Type.ACK, Code.CHANGED)
        return Message.build(Type.ACK, Code.METHOD_NOT_ALLOWED)


def register(ep: str, lt: int = 300, version: str = "1.1") -> Message:
    return Message.build(
        Type.CON,
        Code.POST,
        uri_path="/rd",
        uri_query=[f"ep={ep}", f"lt={lt}", f"lwm2m={version}", "b=U"],
        content_format=CF.LINK,
        payload=b"</1/0>,</3/0>,</3303/0>;ver=1.1",
    )


async def next_event(events, kind):  # type: ignore[no-untyped-def]
    async def wait():  # type: ignore[no-untyped-def]
        async for event in events:
            if isinstance(event, kind):
                return event
        return None

    return await asyncio.wait_for(wait(), 5)


def register_queued(ep: str) -> Message:
    return Message.build(
        Type.CON,
        Code.POST,
        uri_path="/rd",
        uri_query=[f"ep={ep}", "lt=300", "lwm2m=1.1", "b=U", "Q"],
        content_format=CF.LINK,
        payload=b"</3/0>",
    )
