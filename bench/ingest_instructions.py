"""The server's instructions per notification with metrics and export on beside plain, counted
by valgrind's callgrind in one run: figures that the other core's work (the clients, the export
worker) and a busy machine do not move. ``bench/metrics.py``, ``bench/export.py`` and
``bench/mqtt_export.py`` give CPU time and rates instead, which these do move.

One ``Server`` (memory store, uvloop where installed) with ``--devices`` registered devices,
each observed on ``/3303/0/5700``; NON SenML-CBOR notifications (a value that changes from one
to the next) are fed to the server's UDP driver as its socket reader would, one from each
device per wake-up, without the socket (the reads are system calls, not user-space
instructions, and the clients are not counted). Only the server's calls are counted: each
phase is one call through ``operator.call``, the one function callgrind collects in, dumped
when it returns; the set-up runs uninstrumented. Phases of ``--notifications`` each, in this
order, after ``--warmup`` uncounted notifications of their own:

- plain: no subscriber to the server's events (a notification makes no event);
- plain with the REST API's ring of recent events (``RecentEvents`` following the server, as
  ``lwm2m server``'s web app always runs it): what making and keeping the events costs;
- ``/metrics`` on (``ServerMetrics`` with its event-loop lag timer), and one scrape, counted
  alone and spread over the notifications of ``--scrape-every`` seconds at ``--rate``;
- webhooks: the export worker process (``ExportWorker``, started for real, not under valgrind)
  with one hook wanting every notification (its posts go to a receiver process);
- MQTT: the same worker with the MQTT export to a ``mosquitto`` this bench starts; the MQTT
  export goes through the same handoff as the webhooks (every event kind wanted);
- plain again, the ring stopped: how far the same work moved over the run.

The ring stays on from the second phase to the MQTT one, as it is in ``lwm2m server``: the
cost of metrics and of each export is the difference to the second phase (the issue's "≤ 5 %"),
and the difference to plain is printed beside it.

Every phase starts from the same state of the server's own tables, so that none pays for
another's growth: each observation's unread notifications (nobody reads them here: from the
``BACKLOG``-th on, each new one drops the oldest) are filled before the first phase, and both
generations of the duplicate detection's per-device tables of Message IDs are emptied before
each. Without that, the lists filled up during the third phase and the tables crossed a size
(and were resized, all devices' at once) in whichever phase it happened: ~600 instructions per
notification each, counted against metrics and export (webhooks +6.2 % where the export costs
+4.7 %).

The handoff's look at the events comes every ``rate x flush_interval`` notifications (the size
of its batches at ``--rate`` notifications/s), called here, not by the worker's 30 ms timer: the
process runs ~50 times slower under valgrind, and a timer would make batches 50 times smaller.
The waits for the worker's acknowledgements are counted (a few idle turns of the loop); the
lag timer's ticks come in wall time, more often per notification than at full speed: both
count against metrics and export, never for them.

    python bench/ingest_instructions.py [--devices 20] [--notifications 2000] [--rate 10000]
                                        [--scrape-every 15] [--state DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import operator
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coap_loop import HOST, free_port
from mqtt_export import MOSQUITTO, broker
from server_load import PATH, senml_value

from export import receiver_main

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.05
LIFETIME = 86_400  # no registration expires during the run, however slow valgrind makes it
# The phases, in the order they run; the metrics phase is followed by the scrape's count.
PHASES = (
    ("plain", "plain"),
    ("subscriber", "the REST API's ring of events (RecentEvents)"),
    ("metrics", "/metrics on (lag timer)"),
    ("webhooks", "webhooks: handoff to the worker"),
    ("mqtt", "MQTT: handoff to the worker"),
    ("again", "plain again"),
)


# --- the counted process (under callgrind) ---------------------------------------------------------


class Devices:
    """The observed devices: their sockets (for the set-up) and their next notifications."""

    def __init__(self, count: int) -> None:
        self.names = [f"ingest-{i:04d}" for i in range(count)]
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((HOST, 0))
            s.setblocking(False)
            self.sockets.append(s)
        self.tokens: list[bytes] = [b""] * count
        self.seq = 2  # the Observe GET was answered with 1
        # The value changes from one notification to the next, as a sensor's would.
        self.payloads = [senml_value(20.0 + i / 8) for i in range(64)]

    async def set_up(self, server: Any) -> list[Any]:
        """Register every device, observe it (its socket answers the GET); the observations."""
        from lwm2m.coap.message import Message
        from lwm2m.coap.numbers import Code, Type

        loop = asyncio.get_running_loop()
        server_addr = (HOST, server.port)
        for i, (name, s) in enumerate(zip(self.names, self.sockets, strict=True)):
            s.connect(server_addr)  # a datagram socket's send never waits: no sendto in uvloop
            # Its Message ID is one no notification of the run takes (the duplicate would go).
            query = (f"ep={name}", f"lt={LIFETIME}", "lwm2m=1.1", "b=U")
            register = Message.build(
                Type.CON, Code.POST, 0xFFFF - i, i.to_bytes(4, "big"), uri_path="rd", content_format=40,
                uri_query=query, payload=b"</1/0>,</3/0>,</3303/0>",
            )  # fmt: skip
            s.send(register.encode())
            answer = Message.decode(await asyncio.wait_for(loop.sock_recv(s, 2048), 10))
            if answer.code != Code.CREATED:
                raise RuntimeError(f"{name} could not register: {answer.code}")

        async def answer_get(i: int) -> None:
            get = Message.decode(await loop.sock_recv(self.sockets[i], 2048))
            self.tokens[i] = get.token
            ack = Message.build(
                Type.ACK, Code.CONTENT, get.mid, get.token, observe=1, content_format=112,
                payload=self.payloads[0],
            )  # fmt: skip
            self.sockets[i].send(ack.encode())

        async def observe(i: int) -> Any:
            answering = asyncio.ensure_future(answer_get(i))
            observation = await server.observe(self.names[i], PATH, timeout=10)
            await answering
            return observation

        return await asyncio.wait_for(asyncio.gather(*(observe(i) for i in range(len(self.names)))), 30)

    def rounds(self, n: int) -> list[list[tuple[bytes, tuple[str, int]]]]:
        """The datagrams of ``n`` notifications (rounded up to whole rounds), one round per
        wake-up: one from each device."""
        from lwm2m.coap.message import Message
        from lwm2m.coap.numbers import Code, Type

        addrs = [s.getsockname() for s in self.sockets]
        rounds = []
        for _ in range(-(-n // len(self.sockets))):
            seq = self.seq
            self.seq += 1
            payload = self.payloads[seq & 63]
            rounds.append(
                [
                    (
                        Message.build(
                            Type.NON,
                            Code.CONTENT,
                            seq & 0xFFFF,
                            token,
                            observe=seq,
                            content_format=112,
                            payload=payload,
                        ).encode(),
                        addr,
                    )
                    for token, addr in zip(self.tokens, addrs, strict=True)
                ]
            )
        return rounds

    def close(self) -> None:
        for s in self.sockets:
            s.close()


async def feed(
    server: Any,
    rounds: list[list[tuple[bytes, tuple[str, int]]]],
    every: int,
    look: Callable[[], object] | None,
    settled: Callable[[], bool],
    taken: Callable[[], int],
) -> None:
    """Each round to the UDP driver as one wake-up of its reader, the loop turned once after it
    (the observations' pumps take the notifications); ``look`` (the handoff's flush, or the
    subscriber's take) every ``every`` notifications and at the end; then the loop turned until
    every notification is taken (``taken()`` counts them) and ``settled()`` (the worker
    acknowledged every batch)."""
    driver = server._endpoint._driver  # the loop's reader would call these two per wake-up
    receive, batch = driver._receive, driver._on_batch
    clock = asyncio.get_running_loop().time
    since = 0
    target = taken() + sum(map(len, rounds))
    for datagrams in rounds:
        now = clock()
        for data, addr in datagrams:
            receive(data, addr, now)
        batch(now)
        await asyncio.sleep(0)
        since += len(datagrams)
        if look is not None and since >= every:
            look()
            since = 0
    deadline = time.monotonic() + 60
    while taken() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target - taken()} notifications were not taken")
        await asyncio.sleep(0)
    if look is not None:
        look()
    while not settled():
        if time.monotonic() > deadline:
            raise TimeoutError("the export worker did not acknowledge every batch")
        await asyncio.sleep(0.002)


def measure_child(opts: argparse.Namespace) -> None:
    """The counted process: set up uninstrumented, say ``ready``, wait for ``go`` (callgrind's
    instrumentation is on by then), run the phases, write what they did to ``opts.result``."""
    from lwm2m.cli.server_cmd import tune_gc
    from lwm2m.export.handoff import ExportConfig, ExportWorker
    from lwm2m.export.metrics import MetricsConfig, ServerMetrics
    from lwm2m.export.mqtt import MqttConfig
    from lwm2m.export.webhooks import WebhookConfig, Webhooks
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.jsonform import EVENT_NAMES, event_view
    from lwm2m.server.observation import BACKLOG
    from lwm2m.server.registrar import RegistrationLimits
    from lwm2m.server.role import Server
    from lwm2m.transport.eventloop import is_uvloop, loop_factory
    from lwm2m.web.sse import RecentEvents

    loop = loop_factory()()
    asyncio.set_event_loop(loop)
    limits = RegistrationLimits(rate=None)  # every device registers from 127.0.0.1 at once
    server = Server(ServerConfig(host=HOST, port=free_port(), registration_limits=limits))
    devices = Devices(opts.devices)
    # The handoff's batches at --rate: what its look every flush_interval seconds takes.
    every = max(1, round(opts.rate * ExportConfig().flush_interval))
    call = operator.call
    done: list[dict[str, Any]] = []
    workers: list[int] = []

    async def set_up() -> list[Any]:
        await server.start()
        observations = await devices.set_up(server)
        tune_gc()  # as ``lwm2m server`` does once started
        return observations

    observations = loop.run_until_complete(set_up())
    # Nobody reads the observations: each keeps its last BACKLOG notifications unread, and from
    # then on drops the oldest for each new one. Filled here, uncounted, so that every phase runs
    # in that steady state (else the lists fill up during the third phase, and the drops from
    # then on would count against metrics and export).
    received = server.observation_manager.notifications_received
    filling = devices.rounds(BACKLOG * opts.devices)
    loop.run_until_complete(feed(server, filling, every, None, lambda: True, received))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("not told to go")

    def phase(
        key: str,
        look: Callable[[], object] | None = None,
        settled: Callable[[], bool] = lambda: True,
        handed: Callable[[], int] = lambda: 0,
    ) -> None:
        count = server.observation_manager.notifications_received
        # Both generations of the duplicate detection emptied (RFC 7252 §4.5: the Message IDs
        # of the last EXCHANGE_LIFETIME, kept per peer): its tables grow from the same size in
        # every phase. Else they grow over the run, and the phase in which the devices' tables
        # cross a size (all 20 at once) pays their resizing, ~600 instructions per notification.
        dedup = server._endpoint.endpoint._dedup
        dedup.rotate(loop.time())
        dedup.rotate(loop.time())
        loop.run_until_complete(feed(server, devices.rounds(opts.warmup), every, look, settled, count))
        rounds = devices.rounds(opts.notifications)
        gc.collect()
        n0, h0 = count(), handed()
        call(loop.run_until_complete, feed(server, rounds, every, look, settled, count))  # counted
        done.append(
            {
                "phase": key,
                "notifications": count() - n0,
                "handed": handed() - h0,
                "fed": sum(map(len, rounds)),
            }
        )

    async def started(export: ExportWorker) -> None:
        await export.start()
        async with asyncio.timeout(60):
            await export.wait_ready()
        assert export.pid is not None
        workers.append(export.pid)

    def exported(key: str, config: ExportConfig, webhooks: Webhooks | None) -> None:
        # The warm-up's wait for the acknowledgements also waits for the MQTT connection (a
        # batch is acknowledged once the broker has its messages).
        export = ExportWorker(server, config, webhooks)
        try:
            loop.run_until_complete(started(export))
            if webhooks is not None:  # the hooks, read again, go to the worker (it watches them)
                loop.run_until_complete(webhooks.refresh())
            # Beside the REST API's ring (``recent``), as in ``lwm2m server``: the export's cost
            # is what it adds to the events that ring has the server make anyway.
            phase(key, export._flush, lambda: not export._pending, lambda: export.counters.events)
        finally:
            loop.run_until_complete(export.close())

    try:
        phase("plain")
        # The REST API's ring of recent events, which ``lwm2m server`` always runs (its web app
        # follows the server's events with it, for SSE clients to resume from): a task takes
        # each event as it comes. It stays through the export phases, as it does in a server.
        recent = RecentEvents()
        recent.follow_server(server)
        phase("subscriber")

        metrics = ServerMetrics(server, MetricsConfig())

        async def start_metrics() -> None:
            metrics.start()  # its lag timer runs on the loop

        loop.run_until_complete(start_metrics())
        phase("metrics")
        scrape = len(call(metrics.exposition))  # counted alone: the next dump
        metrics.close()
        done[-1]["scrape_bytes"] = scrape

        # The worker's own timers are out of the way: its looks come from the phase, its counters
        # (a frame a second at full speed) not at all.
        quiet = {"flush_interval": 3600.0, "counters_every": 3600.0, "stop_timeout": 2.0}
        webhooks = Webhooks(
            server, server.store.webhooks, EVENT_NAMES, event_view, WebhookConfig(), deliver=False
        )
        loop.run_until_complete(webhooks.add(f"http://{HOST}:{opts.hook_port}/hook", ["NOTIFICATION"]))
        loop.run_until_complete(webhooks.start())
        try:
            exported("webhooks", ExportConfig(**quiet), webhooks)  # type: ignore[arg-type]
        finally:
            loop.run_until_complete(webhooks.close())

        mqtt = MqttConfig(host=HOST, port=opts.mqtt_port)
        exported("mqtt", ExportConfig(mqtt=mqtt, **quiet), None)  # type: ignore[arg-type]

        loop.run_until_complete(recent.close())
        phase("again")
    finally:

        async def stop() -> None:
            for observation in observations:
                await observation.cancel()
            await server.stop()

        loop.run_until_complete(stop())
        devices.close()
        loop.close()
    result = {
        "phases": done,
        "every": every,
        "loop": "uvloop" if is_uvloop(loop) else "asyncio",
        "workers": workers,
    }
    Path(opts.result).write_text(json.dumps(result))


# --- the orchestrating process ----------------------------------------------------------------------


def summaries(out: Path) -> list[int]:
    """Instructions of each counted call, in order: callgrind's dumps ``out.1``, ``out.2``, …"""
    counts = []
    part = 1
    while (path := Path(f"{out}.{part}")).exists():
        found = re.search(r"^summary: (\d+)", path.read_text(), re.MULTILINE)
        assert found, f"no summary in {path}"
        counts.append(int(found.group(1)))
        part += 1
    return counts


def count(opts: argparse.Namespace, folder: Path, hook_port: int, mqtt_port: int) -> tuple[list[int], dict]:
    """Run the counted process under callgrind; answer its counts and what it did."""
    out = folder / "callgrind.out"
    result = folder / "result.json"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # the set-up runs ~5 times faster uninstrumented
        "--collect-atstart=no",
        "--toggle-collect=_operator_call",
        "--dump-after=_operator_call",
        "--trace-children=no",  # the export worker runs at full speed, uncounted
        f"--callgrind-out-file={out}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--devices", str(opts.devices),
        "--notifications", str(opts.notifications),
        "--warmup", str(opts.warmup),
        "--rate", f"{opts.rate:g}",
        "--hook-port", str(hook_port),
        "--mqtt-port", str(mqtt_port),
        "--result", str(result),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT / "src"), str(ROOT / "bench"))))
    with open(folder / "child.log", "w") as log:
        child = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.readline().strip() != "ready":
                child.wait(30)
                raise RuntimeError(
                    f"the counted process did not set up:\n{(folder / 'child.log').read_text()}"
                )
            # The set-up ran uninstrumented; from now on every instruction is seen (counted only
            # inside operator.call).
            subprocess.run(["callgrind_control", "-i", "on", str(child.pid)], check=True, capture_output=True)
            child.stdin.write("go\n")
            child.stdin.flush()
            if child.wait(opts.timeout) != 0:
                raise RuntimeError(f"the counted process failed:\n{(folder / 'child.log').read_text()}")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return summaries(out), json.loads(result.read_text())


def report(counts: list[int], result: dict, opts: argparse.Namespace) -> None:
    phases = result["phases"]
    if len(counts) != len(phases) + 1:
        raise RuntimeError(f"{len(counts)} counted calls for {len(phases)} phases and a scrape")
    scrape = counts[3]
    feeds = counts[:3] + counts[4:]
    per: dict[str, float] = {}
    for p, total in zip(phases, feeds, strict=True):
        if p["notifications"] != p["fed"]:
            raise RuntimeError(f"{p['phase']}: {p['notifications']} of {p['fed']} notifications taken")
        if p["phase"] in ("webhooks", "mqtt") and p["handed"] != p["fed"]:
            raise RuntimeError(f"{p['phase']}: {p['handed']} of {p['fed']} notifications handed over")
        per[p["phase"]] = total / p["notifications"]
    n = phases[0]["notifications"]
    every = result["every"]
    print(
        f"server instructions per notification (callgrind; {n:,} SenML-CBOR notifications per phase from"
        f" {opts.devices} devices, one from each per wake-up; handoff batches of {every:,}"
        f" = {opts.rate:,.0f}/s x 30 ms; loop {result['loop']}):"
    )
    plain = per["plain"]
    ring = per["subscriber"]  # what lwm2m server runs without metrics and export: the baseline
    spread = per["scrape"] = scrape / (opts.rate * opts.scrape_every)
    per["metrics+scrape"] = per["metrics"] + spread
    labels = dict(PHASES)
    handed = {p["phase"]: p["handed"] for p in phases}
    print(f"  {'':<46} {'':>9}   {'vs plain':>8}   {'vs the ring (lwm2m server)':>26}")
    for key in ("plain", "subscriber", "metrics", "webhooks", "mqtt", "again"):
        cost = per[key]
        note = f"   {handed[key]:,} events handed over" if key in ("webhooks", "mqtt") else ""
        against = f"{cost / ring - 1:+6.1%}" if key in ("metrics", "webhooks", "mqtt") else ""
        print(f"  {labels[key]:<46} {cost:9,.0f}   {cost / plain - 1:+8.1%}   {against:>26}{note}")
        if key == "metrics":
            scraped = per["metrics+scrape"]
            label = f"  + a scrape every {opts.scrape_every:g} s at {opts.rate:,.0f}/s"
            print(
                f"  {label:<46} {scraped:9,.0f}   {scraped / plain - 1:+8.1%}   {scraped / ring - 1:+26.1%}"
                f"   (one scrape {scrape:,} instructions, {spread:,.1f} per notification)"
            )
    drift = per["again"] / plain - 1
    costs = {"metrics": per["metrics+scrape"], "webhooks": per["webhooks"], "MQTT": per["mqtt"]}
    worst = max(costs, key=lambda k: costs[k])
    verdict = "meets" if costs[worst] / ring - 1 <= TARGET else "misses"
    print(
        f"  largest: {worst} {costs[worst] / ring - 1:+.1%} against the ring ({verdict} the {TARGET:.0%}"
        f" target); plain moved {drift:+.1%} over the run"
    )
    print(f"  export workers started and stopped: {', '.join(map(str, result['workers']))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--devices", type=int, default=20, help="observed devices (notifications per wake-up)"
    )
    parser.add_argument("--notifications", type=int, default=2000, help="counted per phase")
    parser.add_argument("--warmup", type=int, default=200, help="uncounted notifications before each phase")
    parser.add_argument(
        "--rate", type=float, default=10_000.0, help="notifications/s the batches are sized for"
    )
    parser.add_argument("--scrape-every", type=float, default=15.0, help="seconds between two scrapes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the counted process may take")
    parser.add_argument(
        "--state", type=Path, help="folder for the broker's and callgrind's files (default: temporary)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hook-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mqtt-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        measure_child(opts)
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (Debian: apt install valgrind)")
    if not Path(MOSQUITTO).exists():
        raise SystemExit("mosquitto is needed (Debian: apt install mosquitto)")
    if opts.devices < 1 or opts.notifications < 1 or opts.rate <= 0 or opts.scrape_every <= 0:
        raise SystemExit("--devices, --notifications, --rate and --scrape-every must be positive")
    with contextlib.ExitStack() as stack:
        if opts.state is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            folder = opts.state
            folder.mkdir(parents=True, exist_ok=True)
        mqtt_port = stack.enter_context(broker(folder))
        ctx = mp.get_context("spawn")
        ready, bound = ctx.Event(), ctx.Value("i", 0)
        receiver = ctx.Process(target=receiver_main, args=(ready, bound), daemon=True)
        receiver.start()
        try:
            if not ready.wait(30):
                raise RuntimeError("the webhook receiver did not start")
            hook_port = bound.value
            counts, result = count(opts, folder, hook_port, mqtt_port)
        finally:
            receiver.kill()
            receiver.join(10)
    report(counts, result, opts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
