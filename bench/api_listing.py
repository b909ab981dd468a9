"""CoAP round-trip time while the REST API lists a large fleet: ``GET /api/clients`` page by page.

The server (``Server`` with the memory store, or ``--store sqlite``, and its REST API
on uvicorn) runs in this process on one event loop, as ``lwm2m server`` runs them. Other processes (so
they do not share the GIL with the server) do the rest:

1. ``--clients`` Registers over loopback CoAP, from raw UDP sockets (the registration
   storm of ``bench/server_load.py``);
2. a prober sends one CON GET to a path the server does not serve at a time and
   times each 4.04 answer: first for ``--seconds`` alone (the baseline), then while
3. a lister walks the whole listing over HTTP (``?limit=`` and ``cursor``), once
   unfiltered and once with a glob that matches 1% of the endpoints (the server
   scans in bounded chunks and answers short pages).

Printed: p50/p99/max of the CoAP round trip in each phase, the listing's duration and
page count, and the longest stall of the server's event loop seen by a timer. Target:
max RTT during a listing of 100,000 registrations under 50 ms.

    python bench/api_listing.py [--clients 100000] [--limit 1000] [--seconds 5] [--store memory|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from coap_loop import HOST, free_port
from server_load import clients_main, option

TARGET_MAX_RTT = 0.050  # seconds, during a listing
PROBE_GAP = 0.002  # seconds between two probes
PROBE_TIMEOUT = 2.0


def registering_main(port: int, sockets: int, conn) -> None:  # type: ignore[no-untyped-def]
    """``server_load``'s clients with at most ``sockets`` source ports (names share them): a
    100,000-strong storm would otherwise take most of the machine's ephemeral ports."""
    limit = sockets + 600  # server_load keeps 600 descriptors spare
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    clients_main(port, conn)


# --- the prober (its own process) ----------------------------------------------------------------


def probe_main(port: int, conn) -> None:  # type: ignore[no-untyped-def]
    """One CON GET /probe at a time until told to stop; answers the round-trip times."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.connect((HOST, port))
    sock.settimeout(PROBE_TIMEOUT)
    conn.send(("ready",))
    mid = 0
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            break
        rtts: list[float] = []
        lost = 0
        while not conn.poll():
            mid = (mid + 1) & 0xFFFF
            token = mid.to_bytes(2, "big")
            datagram = bytes((0x42, 0x01)) + token + token + option(11, b"probe")
            start = time.perf_counter()
            sock.send(datagram)
            try:
                while True:
                    answer = sock.recv(2048)
                    if answer[2:4] == token:
                        break
                rtts.append(time.perf_counter() - start)
            except TimeoutError:
                lost += 1
            time.sleep(PROBE_GAP)
        conn.recv()  # "stop"
        conn.send(("rtts", rtts, lost))
    sock.close()


# --- the lister (its own process) ----------------------------------------------------------------


def list_main(base: str, limit: int, endpoint: str | None, conn) -> None:  # type: ignore[no-untyped-def]
    import httpx

    params: dict[str, str] = {"limit": str(limit)}
    if endpoint:
        params["endpoint"] = endpoint
    seen = pages = 0
    worst = 0.0
    start = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as http:
        cursor = None
        while True:
            t0 = time.perf_counter()
            answer = http.get("/api/clients", params={**params, **({"cursor": cursor} if cursor else {})})
            worst = max(worst, time.perf_counter() - t0)
            answer.raise_for_status()
            page = answer.json()
            pages += 1
            seen += len(page["clients"])
            cursor = page["next"]
            if cursor is None:
                break
    conn.send(("listed", seen, pages, time.perf_counter() - start, worst))


# --- the server (this process) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    rtts: list[float]
    lost: int
    stall: float  # the longest the server's loop was late for a 1 ms timer
    busy: float  # the most CPU time the loop spent between two ticks of that timer
    gc_pause: float  # the longest garbage collection in the server's process
    listed: int = 0
    pages: int = 0
    seconds: float = 0.0
    worst_page: float = 0.0

    def quantile(self, q: float) -> float:
        if not self.rtts:
            return float("nan")
        ordered = sorted(self.rtts)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class StallWatch:
    """How late a 1 ms timer of the server's loop fires: what one blocking call costs everyone;
    and the longest garbage collection in the meantime (a stall of its own kind)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.busy = 0.0
        self.worst_gc = 0.0
        self._task: asyncio.Task[None] | None = None
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.worst_gc = max(self.worst_gc, time.perf_counter() - self._gc_start)

    async def _run(self) -> None:
        while True:
            t0, c0 = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t0 - 0.001)
            # CPU time, unlike wall time, does not count the moments another process had the
            # core: the longest the loop itself was busy between two ticks.
            self.busy = max(self.busy, time.thread_time() - c0)

    def start(self) -> None:
        self.worst = self.busy = self.worst_gc = 0.0
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst


async def run_all(args: argparse.Namespace) -> tuple[list[Phase], int, float]:
    from lwm2m.cli.server_cmd import http_server, start_http, tune_gc
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.registrar import RegistrationLimits
    from lwm2m.server.role import Server
    from lwm2m.web.app import create_app

    loop = asyncio.get_running_loop()
    ctx = mp.get_context("spawn")
    store = None
    if args.store == "sqlite":
        from lwm2m.storage.sqlite import SqliteStore

        store = SqliteStore(os.path.join(args.tmp, "store.db"))
    # 100,000 Registers from one address: the per-address rate limit would spread them over minutes.
    server = Server(
        ServerConfig(host=HOST, port=free_port(), registration_limits=RegistrationLimits(rate=None)), store
    )
    await server.start()
    http = http_server(create_app(server), HOST, 0)
    http_task, base = await start_http(http, HOST, 0)
    tune_gc()
    conns = []

    def spawn(target, *extra):  # type: ignore[no-untyped-def]
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(*extra, child), daemon=True)
        proc.start()
        child.close()
        conns.append((parent, proc))
        return parent

    async def recv(conn, timeout: float) -> tuple:  # type: ignore[no-untyped-def]
        if not await loop.run_in_executor(None, conn.poll, timeout):
            raise TimeoutError("a helper process did not answer")
        return conn.recv()

    watch = StallWatch()
    phases: list[Phase] = []
    try:
        clients = spawn(registering_main, server.port, args.sockets)
        prober = spawn(probe_main, server.port)
        await recv(clients, 30)
        await recv(prober, 30)
        started = time.perf_counter()
        clients.send(("register", args.clients, args.inflight, "client-"))
        _, storm = await recv(clients, max(120.0, args.clients / 100))
        storm_seconds = time.perf_counter() - started
        registered = storm.created

        async def phase(name: str, endpoint: str | None = None, *, listing: bool) -> Phase:
            watch.start()
            prober.send(("go",))
            if listing:
                lister = spawn(list_main, base, args.limit, endpoint)
                _, seen, pages, seconds, worst = await recv(lister, 600)
            else:
                await asyncio.sleep(args.seconds)
                seen = pages = 0
                seconds = worst = 0.0
            prober.send(("stop",))
            _, rtts, lost = await recv(prober, 30)
            stall = await watch.stop()
            return Phase(name, rtts, lost, stall, watch.busy, watch.worst_gc, seen, pages, seconds, worst)

        phases.append(await phase("baseline (no listing)", listing=False))
        phases.append(await phase(f"full listing, limit={args.limit}", listing=True))
        phases.append(
            await phase(
                f"listing with endpoint=client-*77 (1%), limit={args.limit}", "client-*77", listing=True
            )
        )
        phases.append(await phase("baseline again", listing=False))
        return phases, registered, storm_seconds
    finally:
        for conn, _ in conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("quit",))
        for _, proc in conns:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        http.should_exit = True
        await http_task
        await server.stop()
        if store is not None:
            store.close()


def report(phases: list[Phase], registered: int, storm_seconds: float, args: argparse.Namespace) -> bool:
    print(f"registered {registered:,} of {args.clients:,} endpoints over CoAP in {storm_seconds:.1f} s")
    columns = ("probes", "p50 ms", "p99 ms", "max ms", "stall ms", "busy ms", "gc ms")
    print(f"{'phase':58}" + "".join(f" {c:>8}" for c in columns))
    for p in phases:
        print(
            f"{p.name:58} {len(p.rtts):8d} {p.quantile(0.5) * 1e3:8.2f} {p.quantile(0.99) * 1e3:8.2f}"
            f" {max(p.rtts, default=float('nan')) * 1e3:8.2f} {p.stall * 1e3:8.2f} {p.busy * 1e3:8.2f}"
            f" {p.gc_pause * 1e3:8.1f}" + (f"  lost {p.lost}" if p.lost else "")
        )
    ok = True
    for p in phases:
        if p.pages:
            print(
                f"  {p.name}: {p.listed:,} clients in {p.pages:,} pages, {p.seconds:.2f} s"
                f" ({p.listed / p.seconds:,.0f} clients/s), slowest page {p.worst_page * 1e3:.1f} ms"
            )
            worst = max(p.rtts, default=float("inf"))
            ok = ok and worst < TARGET_MAX_RTT and p.lost == 0
    full = phases[1]
    if full.listed != registered:
        print(f"  the full listing saw {full.listed:,} clients, not {registered:,}")
        ok = False
    base = statistics.median(phases[0].rtts) if phases[0].rtts else float("nan")
    print(
        f"max RTT during the listings < {TARGET_MAX_RTT * 1e3:.0f} ms: {'yes' if ok else 'NO'}"
        f" (baseline p50 {base * 1e3:.2f} ms)"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000, help="registrations to list")
    parser.add_argument("--limit", type=int, default=1000, help="clients per page (the API's maximum)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each baseline")
    parser.add_argument("--inflight", type=int, default=64, help="Registers in flight")
    parser.add_argument("--sockets", type=int, default=2000, help="source ports the Registers come from")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    use_uvloop = uvloop_available() if args.loop == "auto" else args.loop == "uvloop"
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        phases, registered, storm_seconds = run(run_all(args), use_uvloop=use_uvloop)
    return 0 if report(phases, registered, storm_seconds, args) else 1


if __name__ == "__main__":
    sys.exit(main())
