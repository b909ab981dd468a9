"""Our server reads the root link's ``ct`` in both forms a client may send (LwM2M-TS-Core 1.2
§6.2.1, RFC 7252 §7.2.1): a bare integer (``ct=112``) and a quoted list (``ct="112 110"``)."""

from __future__ import annotations

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint


@pytest.mark.parametrize(
    ("ct", "formats"),
    [(b"ct=112", (112,)), (b'ct="112 110 11544 11542"', (112, 110, 11544, 11542)), (b"ct=11542", (11542,))],
)
async def test_both_forms_of_ct_are_read(ct: bytes, formats: tuple[int, ...]) -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0) as device,
    ):
        payload = b'</>;rt="oma.lwm2m";' + ct + b",</3/0>,</3303/0>"
        register = Message.build(
            Type.CON,
            Code.POST,
            uri_path=["rd"],
            uri_query=["ep=ct-dev", "lwm2m=1.1", "lt=60"],
            payload=payload,
        )
        answer = await device.request(register, ("127.0.0.1", server.port), timeout=5)
        assert answer.code == Code.CREATED
        registration = await server.registration("ct-dev")
        assert registration.content_formats == formats
