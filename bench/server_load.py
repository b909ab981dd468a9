"""LwM2M server under load over loopback: a registration storm, notification ingest, memory per client.

The server (``Server``) runs in this process, on uvloop if installed; the
clients are simulated by a separate process (so it does not share the GIL with
the server) on raw UDP sockets with a few hand-built CoAP datagrams:

1. registration storm: ``--clients`` Registers (``POST /rd?ep=…``) from ``--generators``
   processes (``bench/registration_storm.py``'s generator), each from its own source port
   while ``--ports`` allows (else the names share them), ``--inflight`` outstanding at a
   time; time to the last 2.01 (``bench/registration_storm.py`` compares it with an echo
   that answers Registers);
2. resident memory: the server's VmRSS before and after the storm, over the clients;
3. notification ingest: ``--observers`` more clients register, the server observes
   ``/3303/0/5700`` on each, and the clients send NON SenML-CBOR notifications as
   fast as they can for ``--seconds``; counted are the ``NotificationReceived``
   events the server emitted (so decoded and stored in the history).

Rates are printed beside the bare asyncio UDP echo (``bench/coap_loop.py``)
measured in the same run on the same loop, as ratios.

The server's garbage collector is set as ``lwm2m server`` sets it (``tune_gc``)
unless ``--gc default``. Beside the rates, the server's CPU time per notification
in the ingest window: the steadier figure on a shared machine, where the rate also
depends on how much CPU the clients' process gets.

    python bench/server_load.py [--clients 10000] [--seconds 5] [--store memory|sqlite] [--gc server|default]
        [--generators N] [--ports 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import selectors
import socket
import sys
import tempfile
import time
from dataclasses import dataclass

from coap_loop import HOST, free_port, measure
from registration_storm import (
    GENERATORS,
    StormLoad,
    flood,
    open_sockets,
    option,
    rss_bytes,
    socket_budget,
    storm,
)

PATH = "/3303/0/5700"
CF_SENML_CBOR = 112
TARGET_REG_SECONDS = 5.0  # for 10,000 clients
TARGET_NOTIFY_RATE = 50_000.0
TARGET_BYTES_PER_REG = 10 * 1024


def senml_value(value: float = 21.5) -> bytes:
    import cbor2

    return cbor2.dumps([{-2: PATH, 2: value}])


# --- the clients (a separate process) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlastLoad:
    sent: int
    refused: int  # send() failed: socket buffer full
    seconds: float


class _Clients:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sel = selectors.DefaultSelector()

    def open(self, n: int, data: object = None) -> list[socket.socket]:
        return open_sockets(self.port, n, self.sel, data)

    def register(self, names: list[str], pool: list[socket.socket], inflight: int, limit: float) -> StormLoad:
        """Register ``names[i]`` from ``pool[i % len(pool)]``, ``inflight`` at a time."""
        return flood(names, pool, inflight, limit)


def clients_main(port: int, conn) -> None:
    """Simulated clients, driven by commands on ``conn``; every wait is bounded."""
    clients = _Clients(port)
    conn.send(("ready",))
    observers: list[socket.socket] = []
    tokens: dict[socket.socket, bytes] = {}
    payload = senml_value()
    give_up = time.monotonic() + 600
    while time.monotonic() < give_up:
        if not conn.poll(1.0):
            continue
        cmd = conn.recv()
        if cmd[0] == "quit":
            break
        if cmd[0] == "register":
            _, n, inflight, prefix = cmd
            # Opening the sockets first keeps the socket calls out of the timed part.
            pool = clients.open(socket_budget(n, n), "storm")
            names = [f"{prefix}{i:06d}" for i in range(n)]
            load = clients.register(names, pool, inflight, limit=max(60.0, n / 200))
            conn.send(("registered", load))
        elif cmd[0] == "observers":
            _, m = cmd
            observers = clients.open(m, "obs")
            names = [f"obs-{i:04d}" for i in range(m)]
            load = clients.register(names, observers, m, limit=30.0)
            conn.send(("observers", names if load.created == m else [], load))
            # Answer the Observe GETs until told to go.
            deadline = time.monotonic() + 120
            go = None
            while go is None and time.monotonic() < deadline:
                for key, _ in clients.sel.select(0.2):
                    s = key.fileobj
                    while True:
                        try:
                            d = s.recv(2048)  # type: ignore[union-attr]
                        except (BlockingIOError, ConnectionRefusedError):
                            break
                        if d[1] != 0x01:  # not a GET
                            continue
                        tkl = d[0] & 0x0F
                        token = d[4 : 4 + tkl]
                        tokens[s] = token  # type: ignore[index]
                        ack = (
                            bytes((0x60 | tkl, 0x45))
                            + d[2:4]
                            + token
                            + option(6, b"\x01")  # Observe
                            + option(6, bytes((CF_SENML_CBOR,)))  # Content-Format (12)
                            + b"\xff"
                            + payload
                        )
                        s.send(ack)  # type: ignore[union-attr]
                if conn.poll():
                    go = conn.recv()
            if go is None or go[0] != "go":
                break
            conn.send(("blasted", blast(observers, tokens, go[1], go[2] if len(go) > 2 else None)))
    for key in list(clients.sel.get_map().values()):
        with contextlib.suppress(OSError):
            key.fileobj.close()  # type: ignore[union-attr]
    conn.close()


def blast(
    socks: list[socket.socket], tokens: dict[socket.socket, bytes], seconds: float, rate: float | None = None
):
    """NON 2.05 notifications round-robin over the observed sockets for ``seconds``: as fast as
    they go, or ``rate`` per second (paced per round: a phase that compares the server's CPU
    per notification with and without some work then compares it at the same rate, not at the
    lower rate the work itself causes)."""
    ready = [(s, tokens[s]) for s in socks if s in tokens]
    # The value changes from one round to the next, as a sensor's would: nothing on the
    # server's side can answer a notification from a copy of the previous one.
    tails = [option(6, bytes((CF_SENML_CBOR,))) + b"\xff" + senml_value(20.0 + i / 8) for i in range(64)]
    heads = [(s.send, bytes((0x50 | len(t), 0x45)), t + b"\x63") for s, t in ready]
    sent = refused = 0
    seq = 2  # the Observe GET was answered with 1
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        if rate and (ahead := start + sent / rate - now) > 0:
            time.sleep(min(ahead, end - now))
            continue
        mid = (seq & 0xFFFF).to_bytes(2, "big")
        obs = seq.to_bytes(3, "big")
        tail = tails[seq & 63]
        for send, head, tok in heads:
            try:
                send(head + mid + tok + obs + tail)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                refused += 1
        seq += 1
    return BlastLoad(sent, refused, time.monotonic() - start)


# --- the server (this process) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Results:
    loop: str
    echo_rate: float
    echo_cpu: float  # the server's CPU seconds per echoed round trip
    storm: StormLoad
    stored: int
    rss_before: int
    rss_after: int
    observers: int
    notifications: int
    notify_seconds: float
    blast: BlastLoad | None
    backlog: int  # events still queued when the window closed
    rss_ingest: int  # RSS when the ingest window closed
    notify_cpu: float  # the server process's CPU seconds in the ingest window
    emitted: int  # NotificationReceived events over the whole ingest, warm-up included
    history: int  # values the history store holds for the observers afterwards

    @property
    def notify_rate(self) -> float:
        return self.notifications / self.notify_seconds if self.notify_seconds else 0.0


async def run_all(args: argparse.Namespace, store_path: str | None) -> Results:
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.events import NotificationReceived
    from lwm2m.server.role import Server
    from lwm2m.transport.eventloop import is_uvloop

    loop = asyncio.get_running_loop()
    echo = await measure("echo", args.seconds, args.warmup, args.inflight)

    store = None
    if args.store == "sqlite":
        from lwm2m.storage.sqlite import SqliteStore

        store = SqliteStore(store_path)  # type: ignore[arg-type]
    from lwm2m.server.registrar import RegistrationLimits

    # Every device registers from 127.0.0.1 at full speed: no per-address registration rate.
    server = Server(
        ServerConfig(host=HOST, port=free_port(), registration_limits=RegistrationLimits(rate=None)), store
    )
    await server.start()
    if args.gc == "server":
        from lwm2m.cli.server_cmd import tune_gc

        tune_gc()  # as ``lwm2m server`` does once started
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=clients_main, args=(server.port, child), daemon=True)
    proc.start()
    child.close()

    async def recv(timeout: float) -> tuple:
        if not await loop.run_in_executor(None, conn.poll, timeout):
            raise TimeoutError("the clients process did not answer")
        return conn.recv()

    stream = server.events()
    counted = 0
    consumer: asyncio.Task[None] | None = None
    try:
        await recv(30)  # ready
        gc.collect()
        rss0 = rss_bytes()
        storm_load = await loop.run_in_executor(
            None, storm, server.port, args.clients, args.generators, args.inflight, args.ports
        )
        # Registration events are queued for our subscriber: drop them before measuring memory.
        stream.close()
        gc.collect()
        rss1 = rss_bytes()
        stored = len(await server.registrations())

        conn.send(("observers", args.observers))
        _, names, _ = await recv(60)
        if not names:
            raise RuntimeError("the observer clients could not register")
        stream = server.events()

        async def consume() -> None:
            nonlocal counted
            async for event in stream:
                if type(event) is NotificationReceived:
                    counted += 1

        consumer = asyncio.create_task(consume())
        observations = await asyncio.gather(*(server.observe(n, PATH, timeout=10) for n in names))
        conn.send(("go", args.warmup + args.seconds + 0.5))
        await asyncio.sleep(args.warmup)
        c0, t0, cpu0 = counted, time.monotonic(), time.process_time()
        await asyncio.sleep(args.seconds)
        c1, t1, cpu1 = counted, time.monotonic(), time.process_time()
        backlog = stream.pending
        rss2 = rss_bytes()
        _, blasted = await recv(args.seconds + 30)
        for _ in range(100):  # the last events, still on their way to the consumer
            if not stream.pending:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        for obs in observations:
            await obs.cancel()
        # Every notification decoded went to the history and out as an event: the two counts
        # over the whole run (warm-up included) must agree.
        emitted = counted
        kept = 0
        for name in names:
            kept += len(await server.history(name, PATH))
        return Results(
            "uvloop" if is_uvloop(loop) else "asyncio",
            echo.rate,
            echo.cpu_per_request,
            storm_load,
            stored,
            rss0,
            rss1,
            len(observations),
            c1 - c0,
            t1 - t0,
            blasted,
            backlog,
            rss2,
            cpu1 - cpu0,
            emitted,
            kept,
        )
    finally:
        if consumer is not None:
            consumer.cancel()
        stream.close()
        with contextlib.suppress(Exception):
            conn.send(("quit",))
        await loop.run_in_executor(None, proc.join, 10)
        if proc.is_alive():
            proc.kill()
        await server.stop()
        if store is not None:
            store.close()


def report(r: Results, args: argparse.Namespace) -> None:
    from lwm2m.storage.base import HistoryRetention

    echo = r.echo_rate
    gc_note = "gc as lwm2m server sets it" if args.gc == "server" else "default gc"
    print(f"loop {r.loop}, store {args.store}, {gc_note}, loopback {HOST}")
    print(
        f"  bare UDP echo        {echo:10,.0f} round trips/s ({args.inflight} in flight)"
        f"   server CPU {r.echo_cpu * 1e6:.1f} µs/round trip"
    )
    s = r.storm
    note = s.notes()
    target = TARGET_REG_SECONDS * args.clients / 10_000
    verdict = "meets" if s.created == args.clients and s.seconds <= target else "misses"
    print(
        f"  registration storm   {s.rate:10,.0f} registrations/s   {s.created:,} in {s.seconds:.2f} s"
        f" from {s.sockets:,} ports, {r.stored:,} stored   echo ratio {s.rate / echo:.2f}"
        f"   ({verdict} {target:g} s target){'  (' + note + ')' if note else ''}"
    )
    per = (r.rss_after - r.rss_before) / max(1, s.created)
    verdict = "meets" if per <= TARGET_BYTES_PER_REG else "misses"
    mb0, mb1 = r.rss_before / 2**20, r.rss_after / 2**20
    print(
        f"  memory / registration {per / 1024:9.2f} KB   RSS {mb0:.1f} -> {mb1:.1f} MB"
        f"   ({verdict} 10 KB target; not a rate, no echo ratio)"
    )
    b = r.blast
    sent = f", {b.sent / b.seconds:,.0f}/s sent ({b.refused:,} refused by a full socket)" if b else ""
    verdict = "meets" if r.notify_rate >= TARGET_NOTIFY_RATE else "misses"
    print(
        f"  notification ingest  {r.notify_rate:10,.0f} notifications/s   {r.observers} observations,"
        f" {r.notifications:,} in {r.notify_seconds:.2f} s{sent}   echo ratio {r.notify_rate / echo:.2f}"
        f"   ({verdict} 50,000/s target; {r.backlog:,} events queued at the end)"
    )
    # CPU time per notification is the steadier figure on a shared machine: the rate also
    # depends on how fast the clients' process gets to send.
    per = r.notify_cpu / r.notifications * 1e6 if r.notifications else 0.0
    busy = r.notify_cpu / r.notify_seconds if r.notify_seconds else 0.0
    ratio = r.echo_cpu * 1e6 / per if per else 0.0
    print(
        f"  server CPU           {per:10.1f} µs/notification ({busy:.0%} of a core in the window)"
        f"   echo CPU ratio {ratio:.2f} (echo µs / notification µs)"
    )
    same = "all of them" if r.history == r.emitted else "NOT the same count"
    print(
        f"  history              {r.history:10,} values stored for {r.emitted:,} NotificationReceived"
        f" events over the whole ingest: {same} (retention {HistoryRetention().max_records:,} per client)"
    )
    print(f"  RSS after ingest     {r.rss_ingest / 2**20:10.1f} MB (nothing iterates the observations)")


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000, help="registrations in the storm")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time of echo and ingest")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--observers", type=int, default=200, help="observed clients sending notifications")
    parser.add_argument("--inflight", type=int, default=64, help="Registers (and echo requests) in flight")
    parser.add_argument(
        "--generators", type=int, default=GENERATORS, help="processes sending the storm's Registers"
    )
    parser.add_argument("--ports", type=int, default=10_000, help="the storm's source ports (all generators)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument(
        "--gc",
        choices=("server", "default"),
        default="server",
        help="garbage collector settings: those of lwm2m server (tune_gc), or Python's defaults",
    )
    args = parser.parse_args(argv)
    use_uvloop = uvloop_available() if args.loop == "auto" else args.loop == "uvloop"
    with tempfile.TemporaryDirectory(prefix="lwm2m-bench-") as tmp:
        results = run(run_all(args, os.path.join(tmp, "store.db")), use_uvloop=use_uvloop)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
