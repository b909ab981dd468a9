"""``lwm2m server`` on SQLite stopped with SIGTERM and started again keeps its DTLS sessions: the
device's next request goes over its old session, with no ClientHello (issue 14)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
from tests.helpers.cli import start as start_server
from tests.helpers.pki import KEY
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.security import count_hellos, psk, update
from tests.helpers.server import Device, register

from lwm2m.coap.numbers import Code
from lwm2m.transport.dtls import open_dtls_endpoint


def start(coap: int, coaps: int, http: int, data: Path) -> subprocess.Popen[str]:
    # The CoAP line, then the DTLS one.
    return start_server(coap, http, data, "--coaps-port", str(coaps), ready="CoAP over DTLS", lines=3)


async def test_dtls_sessions_survive_sigterm_and_a_restart(tmp_path: Path) -> None:
    coap, coaps, http = free_udp_port(), free_udp_port(), free_tcp_port()
    api = f"http://127.0.0.1:{http}/api"
    server = ("127.0.0.1", coaps)
    proc = start(coap, coaps, http, tmp_path)
    try:
        async with (
            open_dtls_endpoint(client=psk("dev-1-id", KEY), handler=Device()) as device,
            httpx.AsyncClient() as web,
        ):
            body = {"pskIdentity": "dev-1-id", "pskKey": KEY.hex()}
            assert (await web.put(f"{api}/security/clients/dev-1", json=body, timeout=5)).status_code < 300
            created = await device.request(register("dev-1"), server, timeout=10)
            assert created.code == Code.CREATED

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            proc = start(coap, coaps, http, tmp_path)

            hellos = count_hellos(device)
            changed = await device.request(update(created.location_path), server, timeout=10)
            assert changed.code == Code.CHANGED
            read = (await web.get(f"{api}/clients/dev-1/3/0/9", params={"timeout": 5}, timeout=10)).json()
            assert read["code"] == "2.05"
            assert hellos == []
            assert device.dtls.counters["handshakes_started"] == 1  # the first, before the restart
    finally:
        proc.kill()
        proc.wait()
