"""The cost of the MQTT export on the notification ingest path, with and without, in one run.

One server (this process, uvloop if installed), Debian's ``mosquitto`` on a free loopback port
(started here, stopped at the end), and ``--observers`` simulated clients in a separate process
(``bench/server_load.py``'s raw-UDP clients) that send NON SenML-CBOR notifications as fast
as they can. While they send, the server alternates phases of ``--seconds``: *off* (no export)
and *on* (the export worker process started with the MQTT export, connected to the broker,
publishing every notification with QoS 1 under ``lwm2m/{ep}/notify/3303/0/5700``; with
``--in-process``, an ``MqttExport`` in the server's process instead), ``--rounds`` times each,
interleaved so that a drift of the machine weighs on both alike.

Per phase: notifications taken (the server's own count), their rate, the server process's CPU
time per notification (with the worker: the handoff of each event; in process: the conversion
to JSON and the MQTT client too), the worker's CPU time per notification (its own figure, on
the other core), and for the *on* phases the messages the broker acknowledged and those
dropped because the queue was full. The cost is the median over the on/off pairs of on/off - 1
of the server's CPU per notification.

Before the phases, the export alone (no device traffic) publishes ``--messages`` queued
messages: its rate and CPU time per message, the cost of the MQTT client itself.

    python bench/mqtt_export.py [--observers 200] [--seconds 3] [--rounds 3] [--window 100]
                                [--in-process]
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
from worker_cpu import keep_subscribed, process_cpu

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True, slots=True)
class Phase:
    export: bool
    notifications: int
    seconds: float
    cpu: float  # the server process's CPU seconds in the phase
    published: int = 0
    dropped: int = 0
    worker_cpu: float = 0.0  # the export worker's CPU seconds in the phase

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0

    @property
    def cpu_per(self) -> float:
        return self.cpu / self.notifications if self.notifications else 0.0

    @property
    def worker_per(self) -> float:
        return self.worker_cpu / self.notifications if self.notifications else 0.0


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


def sent(export, worker) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Messages the broker acknowledged and messages dropped so far, by either export."""
    if export is not None:
        return export.published, export.dropped
    if worker is not None:
        return worker.counters.published, worker.counters.mqtt_dropped + worker.counters.dropped
    return 0, 0


async def run(args: argparse.Namespace, port: int) -> tuple[list[Phase], str]:
    from lwm2m.cli.server_cmd import tune_gc
    from lwm2m.export.handoff import ExportConfig, ExportWorker
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
        kept = keep_subscribed(server) if args.stream else None
        # Each on phase starts its worker and connects first, outside its measured time.
        total = args.warmup + 2 * args.rounds * (args.seconds + 8.0) + 2.0
        conn.send(("go", total, args.rate or None))
        await asyncio.sleep(args.warmup)
        count = server.observation_manager.notifications_received
        for _ in range(args.rounds):
            for on in (False, True):
                config = MqttConfig(host=HOST, port=port, window=args.window)
                export: MqttExport | None = None
                worker: ExportWorker | None = None
                if on and args.in_process:
                    export = MqttExport(server, config)
                    await export.start()
                    async with asyncio.timeout(10):
                        while not export.connected:
                            await asyncio.sleep(0.01)
                elif on:
                    worker = ExportWorker(
                        server, ExportConfig(mqtt=config, counters_every=0.25, stop_timeout=2.0)
                    )
                    await worker.start()
                    async with asyncio.timeout(30):
                        await worker.wait_ready()
                        while not worker.counters.mqtt_connected:
                            await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)  # what queued while connecting goes out first

                pid = worker.pid if worker is not None else None
                (p0, d0), w0 = sent(export, worker), process_cpu(pid)
                n0, t0, c0 = count(), time.monotonic(), time.process_time()
                await asyncio.sleep(args.seconds)
                n1, t1, c1 = count(), time.monotonic(), time.process_time()
                w1 = process_cpu(pid)
                if worker is not None:
                    await asyncio.sleep(0.3)  # the worker's counters of the phase come back
                p1, d1 = sent(export, worker)
                phases.append(Phase(on, n1 - n0, t1 - t0, c1 - c0, p1 - p0, d1 - d0, w1 - w0))
                if export is not None:
                    await export.close()
                if worker is not None:
                    await worker.close()
        await recv(total + 30)  # blasted
        for obs in observations:
            await obs.cancel()
        if kept is not None:
            kept.cancel()
        return phases, "uvloop" if is_uvloop(loop) else "asyncio"
    finally:
        with contextlib.suppress(Exception):
            conn.send(("quit",))
        await loop.run_in_executor(None, proc.join, 10)
        if proc.is_alive():
            proc.kill()
        await server.stop()


def report(phases: list[Phase], loop: str, args: argparse.Namespace) -> dict[str, float]:
    where = "in the server's process" if args.in_process else "by the export worker process"
    print(
        f"notification ingest, {args.observers} observations, {args.rounds} x {args.seconds:g} s per phase,"
        f"{f' clients at {args.rate:,.0f} notifications/s,' if args.rate else ''}"
        f" MQTT export to mosquitto on loopback when on, {where}, window {args.window}"
        f"{', a subscriber in every phase' if args.stream else ''} (loop {loop})"
    )
    for p in phases:
        extra = f"   published {p.published / p.seconds:8,.0f}/s  dropped {p.dropped:,}" if p.export else ""
        print(
            f"  export {'on ' if p.export else 'off'}  {p.rate:10,.0f} notifications/s"
            f"   server CPU {p.cpu_per * 1e6:6.2f} µs/notification"
            f"   worker CPU {p.worker_per * 1e6:6.2f} µs/notification{extra}"
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
    worker = statistics.median(p.worker_per for p in on)
    ratio = statistics.median(b.rate / a.rate for a, b in zip(off, on, strict=True) if a.rate)
    print(
        f"  export worker: {worker * 1e6:.2f} µs CPU per notification on the other core"
        f" ({worker / cpu_off:.0%} of the server's {cpu_off * 1e6:.2f} µs); ingest rate on/off {ratio:.2f}"
    )
    return {"cost": paired, "rate_ratio": ratio, "server_off": cpu_off, "worker": worker}


def main(argv: list[str] | None = None) -> int:
    measure(parse(argv))
    return 0


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Run the phases with a broker of its own and print them; answer the summary figures."""
    from lwm2m.transport.eventloop import run as run_loop

    with tempfile.TemporaryDirectory() as folder, broker(Path(folder)) as port:
        phases, loop = run_loop(run(args, port))
    return report(phases, loop, args)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=200, help="observed clients sending notifications")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="notifications per second the clients send (0: as fast as they can); below what the"
        " server takes, on and off phases compare its CPU per notification at the same rate",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs of phases")
    parser.add_argument("--window", type=int, default=100, help="messages awaiting their PUBACK at once")
    parser.add_argument("--messages", type=int, default=20_000, help="published by the export alone first")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--stream",
        action="store_true",
        help="a subscriber in every phase, as the REST API's event stream is in `lwm2m server`:"
        " the server makes each event in both, and on/off differ by the export alone",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="publish from the server's process (--export-in-process)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
