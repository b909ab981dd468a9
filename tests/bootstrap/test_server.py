"""BootstrapServer against a device written on aiocoap that records what it is sent
(LwM2M-TS-Core 1.2 §6.1): the order and content of a session, the formats, the failures."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiocoap
import pytest
from tests.helpers.aio_device import RecordingDevice, aio_device, bootstrap_request
from tests.helpers.bootstrap import senml
from tests.helpers.events import next_event
from tests.helpers.ports import free_udp_port

from lwm2m.bootstrap import (
    DEFAULT_ENDPOINT,
    BootstrapConfig,
    BootstrapFailed,
    BootstrapFinished,
    BootstrapServer,
    BootstrapStarted,
)
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path

P = Path.parse
MODELS = load_catalogue()
KEY = "000102030405060708090a0b0c0d0e0f"
CONFIG = {
    "servers": [
        {
            "uri": "coaps://lwm2m.example:5684",
            "shortServerId": 101,
            "lifetime": 300,
            "security": {"mode": "psk", "identity": "dev-1", "key": KEY},
        },
        {"uri": "coap://backup.example", "shortServerId": 102, "binding": "UQ"},
    ],
    "deletePaths": ["/0", "/1"],
    "bootstrapDiscover": True,
    "accessControl": [{"objectId": 3, "objectInstanceId": 0, "acl": {"102": 1}, "owner": 101}],
    "objects": {"records": [{"path": "/3/0/14", "value": "+01:00"}]},
}


async def test_session_steps_in_order_with_their_content() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device() as (device, ctx):
        await bs.set_config("dev-1", BootstrapConfig.from_json(CONFIG, MODELS))
        events = bs.events()
        answer = await bootstrap_request(ctx, bs.port, "ep=dev-1&pct=112")
        assert answer.code == aiocoap.CHANGED
        started = await next_event(events, BootstrapStarted)
        finished = await next_event(events, BootstrapFinished)
        assert started.endpoint == finished.endpoint == "dev-1"
        assert device.lines() == [
            "GET /",
            "DELETE /0",
            "DELETE /1",
            "PUT /0/1",  # the Discover showed the bootstrap account at /0/0
            "PUT /0/2",
            "PUT /1/0",
            "PUT /1/1",
            "PUT /2/0",
            "PUT /3/0/14",
            "POST /bs",
        ]
        assert device.find("GET /").accept == CF.LINK
        assert {s.content_format for s in device.seen if s.method == "PUT"} == {CF.SENML_CBOR}
        security = senml(device.find("PUT /0/1").payload)
        assert security == {
            "/0/1/0": "coaps://lwm2m.example:5684",
            "/0/1/1": False,
            "/0/1/2": 0,
            "/0/1/3": b"dev-1",
            "/0/1/4": b"",
            "/0/1/5": bytes.fromhex(KEY),
            "/0/1/10": 101,
        }
        assert senml(device.find("PUT /0/2").payload)["/0/2/2"] == 3  # NoSec
        assert senml(device.find("PUT /1/1").payload) == {
            "/1/1/0": 102,
            "/1/1/1": 86400,
            "/1/1/6": True,
            "/1/1/7": "UQ",
        }
        assert senml(device.find("PUT /2/0").payload) == {
            "/2/0/0": 3,
            "/2/0/1": 0,
            "/2/0/2/102": 1,
            "/2/0/3": 101,
        }
        assert device.find("POST /bs").payload == b""
        (session,) = bs.sessions()
        assert session.status == "finished" and session.ended_at is not None
        assert session.steps[0] == "Bootstrap-Discover / -> 2.05 Content"
        assert session.steps[-1] == "Bootstrap-Finish -> 2.04 Changed"


async def test_without_pct_or_discover_a_1_0_client_gets_tlv() -> None:
    config = {**CONFIG, "bootstrapDiscover": False}
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device() as (device, ctx):
        await bs.set_config("old", BootstrapConfig.from_json(config))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=old")
        await next_event(events, BootstrapFinished)
        assert device.lines()[:3] == ["DELETE /0", "DELETE /1", "PUT /0/1"]
        put = device.find("PUT /0/1")
        assert put.content_format == CF.TLV
        # The first TLV is resource 0, the URI: type byte 0b11_0_01_000 with an 8-bit length.
        uri = b"coaps://lwm2m.example:5684"
        assert put.payload[:3] == bytes([0xC8, 0x00, len(uri)]) and put.payload[3 : 3 + len(uri)] == uri
        decoded = get_codec(CF.TLV).decode(put.payload, P("/0/1"), MODELS)
        assert {r.path.ids[2]: r.value for r in decoded}[5] == bytes.fromhex(KEY)


async def test_a_discovered_1_1_client_gets_senml_and_ids_around_its_bootstrap_account() -> None:
    device = RecordingDevice(discover=b'</>;lwm2m=1.1,</0/0>;ssid=7;uri="coap://x",</0/3>,</1/0>;ssid=7')
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device(device) as (device, ctx):
        await bs.set_config("dev", BootstrapConfig.from_json(CONFIG))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev")
        await next_event(events, BootstrapFinished)
        puts = [s for s in device.seen if s.method == "PUT"]
        assert [s.path for s in puts][:2] == ["/0/0", "/0/1"]  # /0/3 is the bootstrap account
        assert {s.content_format for s in puts} == {CF.SENML_CBOR}


async def test_default_configuration_serves_unknown_endpoints_and_none_means_4_00() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device() as (device, ctx):
        events = bs.events()
        refused = await bootstrap_request(ctx, bs.port, "ep=stranger")
        assert refused.code == aiocoap.BAD_REQUEST
        assert b"no bootstrap configuration for 'stranger'" in refused.payload
        failed = await next_event(events, BootstrapFailed)
        assert failed.endpoint == "stranger" and "no bootstrap configuration" in failed.reason
        assert device.seen == []

        await bs.set_config(DEFAULT_ENDPOINT, BootstrapConfig.from_json({"servers": CONFIG["servers"]}))
        assert (await bootstrap_request(ctx, bs.port, "ep=stranger")).code == aiocoap.CHANGED
        await next_event(events, BootstrapFinished)
        assert device.lines()[-1] == "POST /bs"


@pytest.mark.parametrize(
    ("line", "answer", "reason"),
    [
        (
            "PUT /0/2",
            aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"bad URI"),
            "Bootstrap-Write /0/2: 4.00 Bad Request: bad URI",
        ),
        ("DELETE /1", aiocoap.Message(code=aiocoap.UNAUTHORIZED), "Bootstrap-Delete /1: 4.01 Unauthorized"),
        (
            "POST /bs",
            aiocoap.Message(code=aiocoap.NOT_ACCEPTABLE, payload=b"no server account"),
            "Bootstrap-Finish: 4.06 Not Acceptable: the client found the configuration inconsistent: "
            "no server account",
        ),
        (
            "GET /",
            aiocoap.Message(code=aiocoap.CONTENT, content_format=40, payload=b"<bad"),
            "not link format",
        ),
        ("PUT /1/0", None, "Bootstrap-Write /1/0: no answer from 127.0.0.1:"),
    ],
)
async def test_bad_client_answers_end_the_session_with_the_reason(
    line: str, answer: Any, reason: str
) -> None:
    async with (
        BootstrapServer(BootstrapServerConfig(port=0, request_timeout=0.5)) as bs,
        aio_device() as (device, ctx),
    ):
        device.answers[line] = answer
        await bs.set_config("dev", BootstrapConfig.from_json(CONFIG))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev&pct=112")
        failed = await next_event(events, BootstrapFailed)
        assert reason in failed.reason
        assert failed.session.status == "failed"
        # Nothing after the failed step; no Bootstrap-Finish unless it was the one refused.
        assert device.lines()[-1] == line
        assert bs.sessions()[0].reason == failed.reason


async def test_a_session_that_runs_too_long_fails() -> None:
    async with (
        BootstrapServer(BootstrapServerConfig(port=0, request_timeout=5, session_timeout=0.4)) as bs,
        aio_device() as (dev, ctx),
    ):
        dev.answers["PUT /0/1"] = None
        await bs.set_config("slow", BootstrapConfig.from_json(CONFIG))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=slow")
        failed = await next_event(events, BootstrapFailed)
        assert "longer than 0.4 s" in failed.reason


async def test_a_new_bootstrap_request_replaces_the_running_session() -> None:
    async with (
        BootstrapServer(BootstrapServerConfig(port=0, request_timeout=5)) as bs,
        aio_device() as (device, ctx),
    ):
        device.answers["PUT /0/1"] = None
        await bs.set_config("again", BootstrapConfig.from_json(CONFIG))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=again")
        await next_event(events, BootstrapStarted)
        async with asyncio.timeout(5):
            while "PUT /0/1" not in device.lines():
                await asyncio.sleep(0.01)
        del device.answers["PUT /0/1"]
        await bootstrap_request(ctx, bs.port, "ep=again")
        failed = await next_event(events, BootstrapFailed)
        assert failed.reason == "a new Bootstrap-Request came"
        finished = await next_event(events, BootstrapFinished)
        assert finished.session.session_id != failed.session.session_id
        assert [s.status for s in bs.sessions()] == ["finished", "failed"]


async def test_bootstrap_pack_carries_every_value() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device() as (_, ctx):
        await bs.set_config("packed", BootstrapConfig.from_json(CONFIG))
        events = bs.events()
        request = aiocoap.Message(
            code=aiocoap.GET, uri=f"coap://127.0.0.1:{bs.port}/bspack?ep=packed", accept=int(CF.SENML_CBOR)
        )
        answer = await asyncio.wait_for(ctx.request(request).response, 5)
        assert answer.code == aiocoap.CONTENT and answer.opt.content_format == CF.SENML_CBOR
        values = senml(answer.payload)
        assert values["/0/1/0"] == "coaps://lwm2m.example:5684" and values["/0/1/5"] == bytes.fromhex(KEY)
        assert values["/1/1/7"] == "UQ" and values["/3/0/14"] == "+01:00"
        assert (await next_event(events, BootstrapFinished)).session.kind == "pack"
        tlv = aiocoap.Message(
            code=aiocoap.GET, uri=f"coap://127.0.0.1:{bs.port}/bspack?ep=packed", accept=11542
        )
        assert (await asyncio.wait_for(ctx.request(tlv).response, 5)).code == aiocoap.NOT_ACCEPTABLE
        unknown = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{bs.port}/bspack?ep=who")
        assert (await asyncio.wait_for(ctx.request(unknown).response, 5)).code == aiocoap.BAD_REQUEST


async def test_bad_input_never_stops_the_bootstrap_server() -> None:
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device() as (_, ctx):
        await bs.set_config("dev", BootstrapConfig.from_json(CONFIG))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for junk in (b"", b"\x00", b"\xff" * 40, bytes(range(256)), b"\x40\x02\x00\x01\xb2bs"):
                raw.sendto(junk, ("127.0.0.1", bs.port))
        for query in ("", "ep=", "ep=a&ep=b", "ep=dev&pct=zz"):
            assert (await bootstrap_request(ctx, bs.port, query)).code == aiocoap.BAD_REQUEST
        wrong = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{bs.port}/rd")
        assert (await asyncio.wait_for(ctx.request(wrong).response, 5)).code == aiocoap.NOT_FOUND
        events = bs.events()
        assert (await bootstrap_request(ctx, bs.port, "ep=dev&pct=0")).code == aiocoap.CHANGED
        finished = await next_event(events, BootstrapFinished)
        assert "SenML-CBOR instead" in finished.session.steps[0]


async def test_stop_ends_running_sessions() -> None:
    bs = BootstrapServer(BootstrapServerConfig(port=free_udp_port(), request_timeout=5))
    await bs.start()
    async with aio_device() as (device, ctx):
        device.answers["PUT /0/1"] = None
        await bs.set_config("dev", BootstrapConfig.from_json(CONFIG))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev")
        await next_event(events, BootstrapStarted)
        await bs.stop()
        failed = await next_event(events, BootstrapFailed)
        assert failed.reason == "the server stopped"
