"""The cost of the MQTT export on the notification ingest path, with and without, in one run.

One server (this process, uvloop if installed), Debian's ``mosquitto`` on a free loopback port
(started here, stopped at the end), and ``--observers`` simulated clients in a separate process
(``bench/server_load.py``'s raw-UDP clients) that send NON SenML-CBOR notifications as fast
as they can. While they send, the server alternates phases of ``--seconds``: *off* (no export)
and *on* (an ``MqttExport`` connected to the broker, publishing every notification with QoS 1
under ``lwm2m/{ep}/notify/3303/0/5700``), ``--rounds`` times each, interleaved so that a drift
of the machine weighs on both alike.

Per phase: notifications taken (the server's own count), their rate, the server process's CPU
time per notification (the export runs in the same process: its conversion to JSON and its
MQTT client are counted), and for the *on* phases the messages the broker acknowledged and
those dropped because the queue was full. The cost is the median over the on/off pairs of
on/off - 1 of the CPU per notification.

Before the phases, the export alone (no device traffic) publishes ``--messages`` queued
messages: its rate and CPU time per message, the cost of the MQTT client itself.

    python bench/mqtt_export.py [--observers 200] [--seconds 3] [--rounds 3] [--window 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from coap_loop import HOST, free_port
from server_load import PATH, clients_main

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True, slots=True)
class Phase:
    export: bool
    notifications: int
    seconds: float
    cpu: float  # the server process's CPU seconds in the phase
    published: int = 0
    dropped: int = 0

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0

    @property
    def cpu_per(self) -> float:
        return self.cpu / self.notifications if self.notifications else 0.0


@contextlib.contextmanager
def broker(folder: Path):  # type: ignore[no-untyped-def]
    """``mosquitto`` on 127.0.0.1, a free port; yields the port."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def run(args: argparse.Namespace, port: int) -> tuple[list[Phase], str]:
    from lwm2m.cli.server_cmd import tune_gc
    from lwm2m.export.mqtt import MqttConfig, MqttExport
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.registrar import RegistrationLimits
    from lwm2m.server.role import Server
    from lwm2m.transport.eventloop import is_uvloop

    loop = asyncio.get_running_loop()
    limits = RegistrationLimits(rate=None)  # every device registers from 127.0.0.1 at once
    server = Server(ServerConfig(host=HOST, port=free_port(), registration_limits=limits))
    await server.start()
    tune_gc()  # as ``lwm2m server`` does
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=clients_main, args=(server.port, child), daemon=True)
    proc.start()
    child.close()

    async def recv(timeout: float) -> tuple:
        if not await loop.run_in_executor(None, conn.poll, timeout):
            raise TimeoutError("the clients process did not answer")
        return conn.recv()

    phases: list[Phase] = []
    try:
        # The export alone: how fast it publishes, and its CPU time per message.
        alone = MqttExport(
            server, MqttConfig(host=HOST, port=port, window=args.window, queue_size=args.messages)
        )
        async with alone:
            async with asyncio.timeout(10):
                while not alone.connected:
                    await asyncio.sleep(0.01)
            t0, c0 = time.monotonic(), time.process_time()
            for n in range(args.messages):
                alone.publish(
                    "notify/3303/0/5700", {"records": [{"path": PATH, "value": 21.5}], "n": n}, "obs-0001"
                )
            while alone.pending:
                await asyncio.sleep(0.001)
            seconds, cpu = time.monotonic() - t0, time.process_time() - c0
        print(
            f"export alone: {args.messages:,} messages in {seconds:.2f} s = {args.messages / seconds:,.0f}/s,"
            f" {cpu / args.messages * 1e6:.1f} µs CPU per message (window {args.window})"
        )
        await recv(30)  # ready
        conn.send(("observers", args.observers))
        _, names, _ = await recv(60)
        if not names:
            raise RuntimeError("the observer clients could not register")
        observations = await asyncio.gather(*(server.observe(n, PATH, timeout=10) for n in names))
        # Each on phase connects first (up to a second), outside its measured time.
        total = args.warmup + 2 * args.rounds * (args.seconds + 1.0) + 2.0
        conn.send(("go", total))
        await asyncio.sleep(args.warmup)
        count = server.observation_manager.notifications_received
        for _ in range(args.rounds):
            for on in (False, True):
                config = MqttConfig(host=HOST, port=port, window=args.window)
                export = MqttExport(server, config) if on else None
                if export is not None:
                    await export.start()
                    async with asyncio.timeout(10):
                        while not export.connected:
                            await asyncio.sleep(0.01)
                    await asyncio.sleep(0.5)  # what queued while connecting goes out first
                    p0, d0 = export.published, export.dropped
                else:
                    await asyncio.sleep(0.5)
                n0, t0, c0 = count(), time.monotonic(), time.process_time()
                await asyncio.sleep(args.seconds)
                n1, t1, c1 = count(), time.monotonic(), time.process_time()
                if export is not None:
                    phases.append(
                        Phase(True, n1 - n0, t1 - t0, c1 - c0, export.published - p0, export.dropped - d0)
                    )
                    await export.close()
                else:
                    phases.append(Phase(False, n1 - n0, t1 - t0, c1 - c0))
        await recv(total + 30)  # blasted
        for obs in observations:
            await obs.cancel()
        return phases, "uvloop" if is_uvloop(loop) else "asyncio"
    finally:
        with contextlib.suppress(Exception):
            conn.send(("quit",))
        await loop.run_in_executor(None, proc.join, 10)
        if proc.is_alive():
            proc.kill()
        await server.stop()


def report(phases: list[Phase], loop: str, args: argparse.Namespace) -> None:
    print(
        f"notification ingest, {args.observers} observations, {args.rounds} x {args.seconds:g} s per phase,"
        f" MQTT export to mosquitto on loopback when on, window {args.window} (loop {loop})"
    )
    for p in phases:
        extra = f"   published {p.published / p.seconds:8,.0f}/s  dropped {p.dropped:,}" if p.export else ""
        print(
            f"  export {'on ' if p.export else 'off'}  {p.rate:10,.0f} notifications/s"
            f"   server CPU {p.cpu_per * 1e6:6.2f} µs/notification{extra}"
        )
    off = [p for p in phases if not p.export]
    on = [p for p in phases if p.export]
    paired = statistics.median(b.cpu_per / a.cpu_per - 1 for a, b in zip(off, on, strict=True) if a.cpu_per)
    cpu_off = statistics.median(p.cpu_per for p in off)
    cpu_on = statistics.median(p.cpu_per for p in on)
    noise = (max(p.cpu_per for p in off) - min(p.cpu_per for p in off)) / cpu_off if cpu_off else 0.0
    print(
        f"  median: off {statistics.median(p.rate for p in off):,.0f}/s {cpu_off * 1e6:.2f} µs,"
        f" on {statistics.median(p.rate for p in on):,.0f}/s {cpu_on * 1e6:.2f} µs"
        f"   cost: CPU/notification {paired:+.1%} (median of the on/off pairs);"
        f" the off phases alone spread {noise:.0%}"
    )


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run as run_loop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=200, help="observed clients sending notifications")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs of phases")
    parser.add_argument("--window", type=int, default=100, help="messages awaiting their PUBACK at once")
    parser.add_argument("--messages", type=int, default=20_000, help="published by the export alone first")
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, broker(Path(folder)) as port:
        phases, loop = run_loop(run(args, port))
    report(phases, loop, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
