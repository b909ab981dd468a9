"""How long the registration expiry sweep holds up the server's event loop, at fleet scale.

An ``Server`` (memory store, and SQLite) is given ``--count`` registrations directly in
its store, with expiry times spread so that about ``--per-second`` of them (default 1%) run
out each second, and runs for ``--seconds`` with its expiry sweep as in production (the
server's own loop, once a second). Beside it a 1 ms timer measures how late the loop lets
it fire (stall) and how much CPU the loop spent between two of its ticks (busy: not
counting the moments another process had the core). Each sweep call is timed, wall and
CPU. The same run with an empty store gives the baseline. Target: the loop never busy for
more than 5 ms because of expiry, whatever the number of registrations.

    python bench/expiry.py [--count 100000] [--seconds 10] [--store memory|sqlite|both]
    python bench/expiry.py --count 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_listing import StallWatch
from coap_loop import HOST, free_port

LIFETIME = 86_400  # seconds; the registrations' expiry times are spread by last_update
LEAD = 2.0  # seconds between the start of a measurement and the first expiry


@dataclass(frozen=True, slots=True)
class Run:
    store: str
    count: int
    expired: int
    sweeps: int
    sweep_mean: float  # wall seconds per call of the sweep
    sweep_max: float
    sweep_cpu_max: float
    stall: float
    busy: float
    gc_pause: float
    fill_seconds: float


def registrations(count: int, base: float, per_second: float) -> Any:
    """``count`` registrations, the i-th expiring at ``base + i / (count * per_second)``."""
    from lwm2m.protocol.registration import ObjectLink, Registration

    objects = (ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(5, 0), ObjectLink(3303, 0))
    spread = count * per_second
    for i in range(count):
        at = base + i / spread - LIFETIME
        yield Registration(
            endpoint=f"bench-{i:07d}",
            registration_id=f"b{i:07d}",
            address=("127.0.0.1", 10_000 + i % 50_000),
            lifetime=LIFETIME,
            objects=objects,
            registered_at=at,
            last_update=at,
        )


async def fill_memory(store: Any, count: int, base: float, per_second: float) -> None:
    add = store.registrations.add
    for n, r in enumerate(registrations(count, base, per_second)):
        await add(r)
        if n % 10_000 == 0:
            await asyncio.sleep(0)


def fill_sqlite(path: str, count: int, base: float, per_second: float) -> None:
    """Rows written in bulk into the store's table, as an old database holds them."""
    import msgspec

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO registrations (endpoint, registration_id, expires_at, data) VALUES (?, ?, ?, ?)",
        (
            (r.endpoint, r.registration_id, r.expires_at, msgspec.json.encode(r.to_dict()))
            for r in registrations(count, base, per_second)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


async def measure(kind: str, count: int, args: argparse.Namespace) -> Run:
    from lwm2m.cli.server_cmd import tune_gc
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.role import Server
    from lwm2m.storage.memory import MemoryStore
    from lwm2m.storage.sqlite import SqliteStore

    # Expiry times are laid out from a fixed base in the future; once the store is full,
    # the registrar's clock is moved so that the measurement starts LEAD seconds before it.
    base = time.time() + 10 * 86_400
    started = time.perf_counter()
    store: Any
    if kind == "memory":
        store = MemoryStore.create()
        await fill_memory(store, count, base, args.per_second)
    else:
        path = os.path.join(args.tmp, f"expiry-{count}.db")
        SqliteStore(path).close()  # the schema
        fill_sqlite(path, count, base, args.per_second)
        store = SqliteStore(path)
    fill_seconds = time.perf_counter() - started
    server = Server(ServerConfig(host=HOST, port=free_port()), store)
    registrar = server.registrar
    for r in registrations(count, base, args.per_second):  # the addresses a server learns
        registrar.remember(r.endpoint, r.address)
    costs: list[tuple[float, float, int]] = []
    sweep = registrar.expire

    async def timed() -> list[Any]:
        t0, c0 = time.perf_counter(), time.thread_time()
        gone = await sweep()
        costs.append((time.perf_counter() - t0, time.thread_time() - c0, len(gone)))
        return gone

    registrar.expire = timed  # type: ignore[method-assign]
    thresholds = gc.get_threshold()
    watch = StallWatch()
    await server.start()
    try:
        tune_gc()  # as `lwm2m server` does once started: the fleet filled in is start-up's
        # Only now, with everything started, does the clock reach the registrations' expiry
        # times: the first expire LEAD seconds into the measurement.
        shift = base - LEAD - time.time()
        registrar._clock = lambda: time.time() + shift
        watch.start()
        await asyncio.sleep(args.seconds)
        stall = await watch.stop()
    finally:
        await server.stop()
        store.close()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    walls = [c[0] for c in costs] or [0.0]
    return Run(
        kind,
        count,
        sum(c[2] for c in costs),
        len(costs),
        statistics.fmean(walls),
        max(walls),
        max((c[1] for c in costs), default=0.0),
        stall,
        watch.busy,
        watch.worst_gc,
        fill_seconds,
    )


async def run_all(args: argparse.Namespace) -> list[Run]:
    runs = []
    for kind in ("memory", "sqlite") if args.store == "both" else (args.store,):
        runs.append(await measure(kind, 0, args))
        runs.append(await measure(kind, args.count, args))
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> None:
    import lwm2m

    print(f"lwm2m from {os.path.dirname(lwm2m.__file__)}")
    print(
        f"{args.seconds:.0f} s per run, ~{args.per_second:.1%} of the registrations expiring per second,"
        " the server's sweep once a second"
    )
    columns = ("expired", "sweeps", "sweep ms", "max ms", "cpu max", "stall ms", "busy ms", "gc ms")
    print(f"{'store':8} {'registrations':>13}" + "".join(f" {c:>9}" for c in columns))
    for r in runs:
        print(
            f"{r.store:8} {r.count:13,} {r.expired:9,} {r.sweeps:9d} {r.sweep_mean * 1e3:9.2f}"
            f" {r.sweep_max * 1e3:9.2f} {r.sweep_cpu_max * 1e3:9.2f} {r.stall * 1e3:9.2f}"
            f" {r.busy * 1e3:9.2f} {r.gc_pause * 1e3:9.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="registrations in the store")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--per-second", type=float, default=0.01, help="fraction expiring per second")
    parser.add_argument("--store", choices=("memory", "sqlite", "both"), default="both")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    use_uvloop = uvloop_available() if args.loop == "auto" else args.loop == "uvloop"
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        runs = run(run_all(args), use_uvloop=use_uvloop)
    report(runs, args)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
