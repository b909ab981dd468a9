"""An LwM2M client written on aiocoap (a CoAP stack we did not write) against our server.

Its payloads are built here by hand and with cbor2, not with our codecs, so the
server's decoding is checked against independent bytes.
"""

from __future__ import annotations

import aiocoap
import aiocoap.resource as aioresource
import cbor2
from tests.helpers.ports import free_udp_port
from tests.helpers.server import next_event

from lwm2m.codec.base import ContentFormat as CF
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server

P = Path.parse
MANUFACTURER = b"Open Mobile Alliance"
# LwM2M-TS-Core 1.2 §7.4.3: resource TLVs, 8-bit IDs, 8-bit length for the string.
DEVICE_TLV = bytes([0xC8, 0x00, len(MANUFACTURER)]) + MANUFACTURER + bytes([0xC1, 0x09, 85])
DEVICE_SENML_CBOR = cbor2.dumps([{-2: "/3/0/", 0: "0", 3: MANUFACTURER.decode()}, {0: "9", 2: 85}])


class DeviceInstance(aioresource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.accepts: list[int | None] = []

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        accept = request.opt.accept
        self.accepts.append(None if accept is None else int(accept))
        if accept == CF.TLV:
            return aiocoap.Message(payload=DEVICE_TLV, content_format=int(CF.TLV))
        if accept in (None, CF.SENML_CBOR):
            return aiocoap.Message(payload=DEVICE_SENML_CBOR, content_format=int(CF.SENML_CBOR))
        return aiocoap.Message(code=aiocoap.NOT_ACCEPTABLE)


async def test_aiocoap_client_registers_is_read_in_tlv_and_senml_cbor_and_deregisters() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        site = aioresource.Site()
        device = DeviceInstance()
        site.add_resource(["3", "0"], device)
        ctx = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", free_udp_port()), transports=["udp6"]
        )
        try:
            register = aiocoap.Message(
                code=aiocoap.POST,
                uri=f"coap://127.0.0.1:{server.port}/rd?ep=aio-1&lt=120&lwm2m=1.1&b=U",
                content_format=int(CF.LINK),
                payload=b"</1/0>,</3/0>",
            )
            created = await ctx.request(register).response
            assert created.code == aiocoap.CREATED
            location = list(created.opt.location_path)
            assert location[0] == "rd"
            assert (await next_event(events, ClientRegistered)).registration.endpoint == "aio-1"

            expected = (Record(P("/3/0/0"), MANUFACTURER.decode()), Record(P("/3/0/9"), 85))
            tlv = await server.read("aio-1", "/3/0", format="tlv", timeout=10)
            assert tlv.content_format == CF.TLV and tlv.records == expected
            senml = await server.read("aio-1", "/3/0", timeout=10)  # 1.1 client: SenML-CBOR
            assert senml.content_format == CF.SENML_CBOR and senml.records == expected
            assert device.accepts == [CF.TLV, CF.SENML_CBOR]

            deregister = aiocoap.Message(
                code=aiocoap.DELETE, uri=f"coap://127.0.0.1:{server.port}/{'/'.join(location)}"
            )
            assert (await ctx.request(deregister).response).code == aiocoap.DELETED
            assert (await next_event(events, ClientDeregistered)).registration.endpoint == "aio-1"
            assert await server.registrations() == []
        finally:
            await ctx.shutdown()


class Thermometer(aioresource.ObservableResource):
    """/3303/0/5700 of the aiocoap client: a float in SenML-CBOR, built with cbor2."""

    def __init__(self) -> None:
        super().__init__()
        self.value = 21.5

    def payload(self) -> bytes:
        return cbor2.dumps([{-2: "/3303/0/5700", 2: self.value}])

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self.payload(), content_format=int(CF.SENML_CBOR))


async def test_aiocoap_client_driven_through_the_rest_api_reads_notifies_sends_and_leaves() -> None:
    import asyncio

    import httpx
    from tests.helpers.web import served

    from lwm2m.web.app import create_app

    async with Server(ServerConfig(port=0)) as server, served(create_app(server)) as base:
        site = aioresource.Site()
        device = DeviceInstance()
        thermometer = Thermometer()
        site.add_resource(["3", "0"], device)
        site.add_resource(["3303", "0", "5700"], thermometer)
        ctx = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", free_udp_port()), transports=["udp6"]
        )
        coap = f"coap://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=f"{base}/api", timeout=10) as api:
                register = aiocoap.Message(
                    code=aiocoap.POST,
                    uri=f"{coap}/rd?ep=aio-rest&lt=120&lwm2m=1.1&b=U",
                    content_format=int(CF.LINK),
                    payload=b"</1/0>,</3/0>,</3303/0>",
                )
                created = await ctx.request(register).response
                assert created.code == aiocoap.CREATED
                listed = (await api.get("/clients/aio-rest")).json()
                assert {o["path"] for o in listed["objects"]} >= {"/3/0", "/3303/0"}

                expected = [
                    {"path": "/3/0/0", "value": MANUFACTURER.decode()},
                    {"path": "/3/0/9", "value": 85},
                ]
                for fmt in ("tlv", "senml-cbor"):
                    answer = (await api.get("/clients/aio-rest/3/0", params={"format": fmt})).json()
                    assert (answer["code"], answer["records"]) == ("2.05", expected), fmt

                # Observe through the API; aiocoap notifies; the value reaches the history.
                observed = (await api.post("/clients/aio-rest/3303/0/5700/observe")).json()
                assert observed["code"] == "2.05"
                thermometer.value = 23.25
                thermometer.updated_state()
                history: list[dict[str, object]] = []
                for _ in range(50):
                    history = (await api.get("/clients/aio-rest/history/3303/0/5700")).json()["records"]
                    if any(h["value"] == 23.25 for h in history):
                        break
                    await asyncio.sleep(0.1)
                assert any(h["value"] == 23.25 for h in history), history

                # Send (/dp) with a timestamped value, as SenML-CBOR built here.
                send = aiocoap.Message(
                    code=aiocoap.POST,
                    uri=f"{coap}/dp",
                    content_format=int(CF.SENML_CBOR),
                    payload=cbor2.dumps([{-2: "/3303/0/5700", 2: 19.5, 6: 1_700_000_000}]),
                )
                assert (await ctx.request(send).response).code == aiocoap.CHANGED
                history = (await api.get("/clients/aio-rest/history/3303/0/5700")).json()["records"]
                assert any(h["value"] == 19.5 and h["time"] == 1_700_000_000 for h in history), history

                deregister = aiocoap.Message(
                    code=aiocoap.DELETE, uri=f"{coap}/{'/'.join(created.opt.location_path)}"
                )
                assert (await ctx.request(deregister).response).code == aiocoap.DELETED
                assert (await api.get("/clients/aio-rest")).status_code == 404
        finally:
            await ctx.shutdown()
