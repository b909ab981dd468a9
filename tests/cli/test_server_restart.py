"""``kill -9`` of ``lwm2m server`` and a restart on the same SQLite data lose no registration:
the client is listed again and a Read reaches it at the address it registered from; in the
middle of a storm of Registers, none answered 2.01 is missing from the file."""

from __future__ import annotations

import asyncio
import itertools
import signal
from pathlib import Path

import httpx
from tests.helpers.cli import start
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.server import Device, register

from lwm2m.coap.numbers import Code
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

STORM_WORKERS = 48  # Registers in flight at once
STORM_ACKED = 400  # answered 2.01 before the kill


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


async def test_storm_of_registers_acknowledged_survives_kill_9(tmp_path: Path) -> None:
    """Registers arriving together are committed in groups: ``kill -9`` in the middle of a storm
    of concurrent Registers loses none that was answered 2.01 (each went out after its commit)."""
    coap, http = free_udp_port(), free_tcp_port()
    proc = start(coap, http, tmp_path, "--registration-rate", "0", "--log-level", "warning")
    acked: set[str] = set()
    enough = asyncio.Event()

    async def registering(device: CoapUdpEndpoint, worker: int) -> None:
        for i in itertools.count():
            ep = f"storm-{worker}-{i}"
            answer = await device.request(register(ep), ("127.0.0.1", coap), timeout=10)
            assert answer.code == Code.CREATED, answer
            acked.add(ep)
            if len(acked) >= STORM_ACKED:
                enough.set()

    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=Device()) as device:
            workers = [asyncio.create_task(registering(device, w)) for w in range(STORM_WORKERS)]
            try:
                async with asyncio.timeout(30):
                    await enough.wait()
                # Mid-storm: every worker has a Register in flight, some of them about to commit.
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            finally:
                for task in workers:
                    task.cancel()
                failures = [
                    r
                    for r in await asyncio.gather(*workers, return_exceptions=True)
                    if isinstance(r, AssertionError)
                ]
            assert not failures, failures
    finally:
        proc.kill()
        proc.wait()
    acknowledged = set(acked)
    with SqliteStore(tmp_path / "lwm2m.db") as store:
        kept = {r.endpoint for r in await store.registrations.all()}
    assert len(acknowledged) >= STORM_ACKED
    assert acknowledged - kept == set()
