"""An LwM2M client written on aiocoap (a CoAP stack we did not write) against our server.

Its payloads are built here by hand and with cbor2, not with our codecs, so the
server's decoding is checked against independent bytes.
"""

from __future__ import annotations

import aiocoap
import aiocoap.resource as aioresource
import cbor2
from tests.conftest import free_udp_port
from tests.server.test_server import next_event

from lwm2m.codec.base import ContentFormat as CF
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.server import LwM2MServer

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
    async with LwM2MServer(port=0) as server:
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
