"""Devices answering the server's requests in tests."""

from __future__ import annotations

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
TEMPERATURE = P("/3303/0/5700")


class Thermometer:
    def __init__(self) -> None:
        self.value = 20.0
        self.relations: list[RequestReceived] = []
        self.cancels = 0

    def payload(self, fmt: int) -> bytes:
        return get_codec(fmt).encode([Record(TEMPERATURE, self.value)], TEMPERATURE, MODELS)

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        if msg.uri_path != ("3303", "0", "5700"):
            return Message.build(Type.ACK, Code.NOT_FOUND)
        fmt = msg.accept or CF.SENML_CBOR
        if msg.observe == 0:
            self.relations.append(event)
            return Message.build(
                Type.ACK, Code.CONTENT, observe=0, content_format=fmt, payload=self.payload(fmt)
            )
        if msg.observe == 1:
            self.cancels += 1
        return Message.build(Type.ACK, Code.CONTENT, content_format=fmt, payload=self.payload(fmt))
