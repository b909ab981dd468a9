"""Read-Composite and Observe-Composite asked in LwM2M-CBOR (LwM2M-TS-Core 1.2 §6.3.2, §6.4.4): the
format asked for is the answer's (Accept); the path list goes in SenML-CBOR (SenML-JSON for a
client that lists only that one), which clients take, never in LwM2M-CBOR, which they refuse
(4.15). Checked at a scripted device for the request's options, and end to end through REST
(``?format=lwm2m-cbor``) with our client."""

from __future__ import annotations

import asyncio
from typing import Any

import cbor2
import pytest
from tests.helpers.server import next_event
from tests.helpers.web import client_for

from lwm2m.client import Client, ObjectInstance
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.management import path_list_format
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered, NotificationReceived
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint

P = Path.parse
PATHS = ["/3/0/9", "/3303/0/5700"]


def test_the_path_list_is_senml_whatever_the_answer_is_asked_in() -> None:
    assert path_list_format(CF.LWM2M_CBOR) == CF.SENML_CBOR
    assert path_list_format(CF.SENML_JSON) == CF.SENML_JSON
    assert path_list_format(CF.SENML_CBOR, (CF.SENML_JSON,)) == CF.SENML_CBOR
    assert path_list_format(CF.LWM2M_CBOR, (CF.SENML_JSON, CF.LWM2M_CBOR)) == CF.SENML_JSON
    assert path_list_format(CF.LWM2M_CBOR, (CF.SENML_CBOR, CF.SENML_JSON)) == CF.SENML_CBOR
    assert path_list_format(None) == CF.SENML_CBOR


class Scripted:
    """A device that takes a composite request only with a SenML path list, as real ones do."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        self.seen.append(msg)
        if msg.content_format not in (CF.SENML_CBOR, CF.SENML_JSON):
            return Message.build(Type.ACK, Code.UNSUPPORTED_CONTENT_FORMAT)
        records = [Record(P("/3/0/9"), 80), Record(P("/3303/0/5700"), 19.5)]
        payload = get_codec(msg.accept or CF.SENML_CBOR).encode(records, ROOT)
        return Message.build(
            Type.ACK,
            Code.CONTENT,
            observe=0 if msg.observe == 0 else None,
            content_format=msg.accept,
            payload=payload,
        )


def _registration(ct: str) -> Message:
    return Message.build(
        Type.CON,
        Code.POST,
        uri_path="/rd",
        uri_query=["ep=cbor-dev", "lt=300", "lwm2m=1.2", "b=U"],
        content_format=CF.LINK,
        payload=f'</>;rt="oma.lwm2m";ct={ct},</3/0>,</3303/0>'.encode(),
    )


@pytest.mark.parametrize(
    ("ct", "asked", "body", "accept"),
    [
        ("112", "lwm2m-cbor", CF.SENML_CBOR, CF.LWM2M_CBOR),
        ("110", "lwm2m-cbor", CF.SENML_JSON, CF.LWM2M_CBOR),
        ("112", "senml-json", CF.SENML_JSON, CF.SENML_JSON),
        ("112", None, CF.SENML_CBOR, CF.SENML_CBOR),
    ],
)
async def test_composite_requests_carry_a_senml_path_list_and_ask_for_the_format_given(
    ct: str, asked: str | None, body: CF, accept: CF
) -> None:
    script = Scripted()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=script) as device,
    ):
        assert (await device.request(_registration(ct), ("127.0.0.1", server.port))).code == Code.CREATED
        read = await server.read_composite("cbor-dev", PATHS, format=asked, timeout=5)
        assert read.code == Code.CONTENT and read.content_format == accept
        assert sorted((str(r.path), r.value) for r in read.records) == [
            ("/3/0/9", 80),
            ("/3303/0/5700", 19.5),
        ]
        observation = await server.observe_composite("cbor-dev", PATHS, format=asked, timeout=5)
        assert observation.response is not None and observation.response.content_format == accept
        fetches = [m for m in script.seen if m.code == Code.FETCH]
        assert [(m.content_format, m.accept, m.observe) for m in fetches] == [
            (body, accept, None),
            (body, accept, 0),
        ]
        names = get_codec(body).decode(fetches[0].payload, ROOT)
        assert [str(r.path) for r in names] == PATHS
        if body == CF.SENML_CBOR:  # read by an independent decoder too
            base, names_seen = "", []
            for entry in cbor2.loads(fetches[0].payload):
                base = entry.get(-2, base)  # SenML base name (-2) and name (0), RFC 8428 §6
                names_seen.append(base + entry.get(0, ""))
            assert names_seen == PATHS


async def test_our_client_answers_composite_reads_and_observations_asked_in_lwm2m_cbor() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        events = server.events()
        sensor = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
        async with Client("composite-1", server.uri, [sensor]) as client, client_for(server) as api:
            await next_event(events, ClientRegistered)
            url = "/api/clients/composite-1/composite"
            body: dict[str, Any] = {"paths": ["/3303/0/5700", "/3303/0/5701"]}
            read = await api.post(f"{url}/read", params={"format": "lwm2m-cbor"}, json=body)
            answer = read.json()
            assert read.status_code == 200 and answer["code"] == "2.05", answer
            assert answer["contentFormat"] == CF.LWM2M_CBOR
            assert sorted(answer["records"], key=lambda r: r["path"]) == [
                {"path": "/3303/0/5700", "value": 21.5},
                {"path": "/3303/0/5701", "value": "Cel"},
            ]
            observed = await api.post(f"{url}/observe", params={"format": "lwm2m-cbor"}, json=body)
            assert observed.status_code == 200, observed.text
            assert observed.json()["code"] == "2.05" and observed.json()["contentFormat"] == CF.LWM2M_CBOR
            sensor.set(5700, 23.0)  # a notification follows, decoded
            note = await asyncio.wait_for(next_event(events, NotificationReceived), 10)
            assert Record(P("/3303/0/5700"), 23.0) in note.records
            assert client.observer is not None
