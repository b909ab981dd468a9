"""``kill -9`` of ``lwm2m server`` and a restart on the same SQLite data lose no registration:
the client is listed again and a Read reaches it at the address it registered from."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
from tests.cli.test_server_cmd import free_tcp_port
from tests.conftest import free_udp_port
from tests.server.test_server import Device, register

from lwm2m.coap.numbers import Code
from lwm2m.transport.udp import open_udp_endpoint


def start(coap: int, http: int, data: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap), "--http-port", str(http)]
    proc = subprocess.Popen(
        [*command, "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"coap://127.0.0.1:{coap}" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc


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
