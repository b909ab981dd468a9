"""``kill -9`` of ``lwm2m server``, or a clean stop by SIGTERM or SIGINT, and a restart on the
same data lose no observation: the device's next notification is decoded, sent out on the SSE
stream and kept in the history."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from tests.helpers.cli import start
from tests.helpers.devices import Thermometer
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.server import register
from tests.helpers.web import sse_events

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.udp import open_udp_endpoint


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_observation_survives_a_stop(stop: signal.Signals, tmp_path: Path) -> None:
    coap, http = free_udp_port(), free_tcp_port()
    api = f"http://127.0.0.1:{http}/api"
    proc = start(coap, http, tmp_path)
    device = Thermometer()
    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client, httpx.AsyncClient() as web:
            created = await client.request(register("thermo"), ("127.0.0.1", coap), timeout=10)
            assert created.code == Code.CREATED
            observed = await web.post(f"{api}/clients/thermo/3303/0/5700/observe", timeout=10)
            assert observed.status_code == 200 and observed.json()["code"] == "2.05"
            (relation,) = device.relations
            fmt = relation.message.accept

            proc.send_signal(stop)
            code = proc.wait(timeout=10)
            if stop != signal.SIGKILL:
                assert code == 0  # a clean stop, which keeps the observation's record
            proc = start(coap, http, tmp_path)

            async with web.stream("GET", f"{api}/events", params={"ep": "thermo"}, timeout=10) as stream:
                events = sse_events(stream)
                assert await asyncio.wait_for(anext(events), 5) == (":", None)  # subscribed
                device.value = 31.5
                note = Message.build(Type.CON, Code.CONTENT, content_format=fmt, payload=device.payload(fmt))
                assert client.notify(relation.relation, note)
                name, data = await asyncio.wait_for(anext(events), 5)
                assert name == "NOTIFICATION" and data is not None
                assert data["records"] == [{"path": "/3303/0/5700", "value": 31.5}]
                await events.aclose()
            # Acknowledged, not rejected: the device still holds the relation.
            assert client.endpoint.observations() == [relation.relation]
            history = (await web.get(f"{api}/clients/thermo/history/3303/0/5700", timeout=5)).json()
            assert history["records"][0]["path"] == "/3303/0/5700"
            assert history["records"][0]["value"] == 31.5  # newest first

            # The resumed observation is known to the API: DELETE cancels it.
            url = f"{api}/clients/thermo/3303/0/5700/observe"
            cancelled = await web.delete(url, params={"active": "true"}, timeout=10)
            assert cancelled.status_code == 200 and device.cancels == 1
    finally:
        proc.kill()
        proc.wait()
