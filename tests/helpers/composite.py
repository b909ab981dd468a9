"""A device answering composite Read and Observe requests."""

from __future__ import annotations

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record

P = Path.parse
MODELS = load_catalogue()
BATTERY, TEMPERATURE = P("/3/0/9"), P("/3303/0/5700")


class Composite:
    """A device that answers Read-Composite and Observe-Composite (FETCH on the root) and
    Write-Composite (iPATCH on the root); every request is kept in ``requests``."""

    def __init__(self) -> None:
        self.values: dict[Path, object] = {BATTERY: 85, TEMPERATURE: 20.0}
        self.requests: list[RequestReceived] = []
        self.relations: list[RequestReceived] = []  # FETCH with Observe 0
        self.cancels: list[RequestReceived] = []  # FETCH with Observe 1
        self.written: list[Record] = []

    def paths(self, event: RequestReceived) -> list[Path]:
        msg = event.message
        fmt = msg.content_format if msg.content_format is not None else CF.SENML_CBOR
        return [r.path for r in get_codec(fmt).decode(msg.payload, ROOT, MODELS)]

    def payload(self, paths: list[Path], fmt: int) -> bytes:
        records = [Record(p, v) for p, v in self.values.items() if any(p.startswith(q) for q in paths)]
        return get_codec(fmt).encode(records, ROOT, MODELS)

    def notification(self, relation: RequestReceived) -> Message:
        fmt = relation.message.accept or CF.SENML_CBOR
        payload = self.payload(self.paths(relation), fmt)
        return Message.build(Type.NON, Code.CONTENT, content_format=fmt, payload=payload)

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        self.requests.append(event)
        if msg.uri_path == () and msg.code == Code.FETCH:
            fmt = msg.accept or CF.SENML_CBOR
            observe = None
            if msg.observe == 0:
                self.relations.append(event)
                observe = 0
            elif msg.observe == 1:
                self.cancels.append(event)
            payload = self.payload(self.paths(event), fmt)
            return Message.build(Type.ACK, Code.CONTENT, observe=observe, content_format=fmt, payload=payload)
        if msg.uri_path == () and msg.code == Code.IPATCH:
            fmt = msg.content_format if msg.content_format is not None else CF.SENML_CBOR
            self.written += get_codec(fmt).decode(msg.payload, ROOT, MODELS)
            return Message.build(Type.ACK, Code.CHANGED)
        return Message.build(Type.ACK, Code.NOT_FOUND)
