"""``kill -9`` of ``lwm2m server`` and a restart on the same SQLite data lose no registration:
the client is listed again and a Read reaches it at the address it registered from."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from tests.helpers.cli import start
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.server import Device, register

from lwm2m.coap.numbers import Code
from lwm2m.transport.udp import open_udp_endpoint


async def test_registrations_survive_kill_9(tmp_path: Path) -> None:
    coap, http = free_udp_port(), free_tcp_port()
    api = f"http://127.0.0.1:{http}/api"
    proc = start(coap, http, tmp_path)
    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as device, httpx.AsyncClient() as web:
            created = await device.request(register("durable"), ("127.0.0.1", coap), timeout=10)
            assert created.code == Code.CREATED
            before = (await web.get(f"{api}/clients/durable", timeout=5)).json()

            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = start(coap, http, tmp_path)

            after = (await web.get(f"{api}/clients/durable", timeout=5)).json()
            assert after == before
            read = (await web.get(f"{api}/clients/durable/3/0/9", params={"timeout": 5}, timeout=10)).json()
            assert read["code"] == "2.05" and read["records"] == [{"path": "/3/0/9", "value": 85}]
    finally:
        proc.kill()
        proc.wait()
