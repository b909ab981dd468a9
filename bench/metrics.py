"""The cost of Prometheus metrics on the notification ingest path, with and without, in one run.

One server (this process, uvloop if installed) and ``--observers`` simulated clients in a
separate process (``bench/server_load.py``'s raw-UDP clients) that send NON SenML-CBOR
notifications as fast as they can. While they send, the server alternates phases of
``--seconds``: *off* (no metrics object) and *on* (``ServerMetrics`` with its event-loop lag
timer running, and a scrape of the whole exposition every ``--scrape-every`` seconds, far
more often than Prometheus's usual 15 s), ``--rounds`` times each, interleaved so that a drift
of the machine weighs on both alike.

Per phase: notifications taken (the server's own count, read at the phase's edges), their
rate, and the server's CPU time per notification (the steadier figure: the rate also
depends on how much CPU the clients' process gets on a shared machine). The measured cost
is the median over the on/off pairs of on/off - 1 of the CPU per notification, printed
beside the spread of the off phases alone (on a busy machine the noise can exceed the
effect). The cost is also given from its parts: a scrape's time over the scrape interval,
and the counter the server keeps whether or not metrics are served (one integer increment
per notification, timed alone) over the CPU time of a notification.

    python bench/metrics.py [--observers 200] [--seconds 3] [--rounds 4] [--scrape-every 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import statistics
import time
import timeit
from dataclasses import dataclass

from coap_loop import HOST, free_port
from server_load import PATH, clients_main

TARGET_COST = 0.05


@dataclass(frozen=True, slots=True)
class Phase:
    metrics: bool
    notifications: int
    seconds: float
    cpu: float  # the server process's CPU seconds in the phase
    scrapes: int

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0

    @property
    def cpu_per(self) -> float:
        return self.cpu / self.notifications if self.notifications else 0.0


async def run(args: argparse.Namespace) -> tuple[list[Phase], float, int, str]:
    from lwm2m.export.metrics import MetricsConfig, ServerMetrics
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.registrar import RegistrationLimits
    from lwm2m.server.role import Server
    from lwm2m.transport.eventloop import is_uvloop

    loop = asyncio.get_running_loop()
    limits = RegistrationLimits(rate=None)  # every device registers from 127.0.0.1 at once
    server = Server(ServerConfig(host=HOST, port=free_port(), registration_limits=limits))
    await server.start()
    from lwm2m.cli.server_cmd import tune_gc

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
        await recv(30)  # ready
        conn.send(("observers", args.observers))
        _, names, _ = await recv(60)
        if not names:
            raise RuntimeError("the observer clients could not register")
        observations = await asyncio.gather(*(server.observe(n, PATH, timeout=10) for n in names))
        total = args.warmup + 2 * args.rounds * args.seconds + 1.0
        conn.send(("go", total, args.rate or None))
        await asyncio.sleep(args.warmup)
        count = server.observation_manager.notifications_received
        for _ in range(args.rounds):
            for on in (False, True):
                metrics = ServerMetrics(server, MetricsConfig()) if on else None
                scrapes = 0
                if metrics is not None:
                    metrics.start()
                n0, t0, c0 = count(), time.monotonic(), time.process_time()
                end = t0 + args.seconds
                while (left := end - time.monotonic()) > 0:
                    await asyncio.sleep(min(args.scrape_every, left))
                    if metrics is not None and time.monotonic() < end:
                        metrics.exposition()
                        scrapes += 1
                n1, t1, c1 = count(), time.monotonic(), time.process_time()
                if metrics is not None:
                    metrics.close()
                phases.append(Phase(on, n1 - n0, t1 - t0, c1 - c0, scrapes))
        await recv(total + 30)  # blasted
        # One scrape's time with these observations running, for the README's figure.
        metrics = ServerMetrics(server)
        started = time.perf_counter()
        metrics.exposition()
        scrape = time.perf_counter() - started
        metrics.close()
        for obs in observations:
            await obs.cancel()
        return phases, scrape, len(observations), "uvloop" if is_uvloop(loop) else "asyncio"
    finally:
        with contextlib.suppress(Exception):
            conn.send(("quit",))
        await loop.run_in_executor(None, proc.join, 10)
        if proc.is_alive():
            proc.kill()
        await server.stop()


def counter_cost() -> float:
    """Seconds per ``observation.notifications += 1``, the always-on part, alone."""

    class Holder:
        def __init__(self) -> None:
            self.notifications = 0

    holder = Holder()
    n = 2_000_000
    seconds = min(timeit.repeat("h.notifications += 1", globals={"h": holder}, number=n, repeat=5))
    return seconds / n


def report(phases: list[Phase], scrape: float, observers: int, loop: str, args: argparse.Namespace) -> None:
    print(
        f"notification ingest, {observers} observations, {args.rounds} x {args.seconds:g} s per phase,"
        f"{f' clients at {args.rate:,.0f} notifications/s,' if args.rate else ''}"
        f" metrics scraped every {args.scrape_every:g} s when on"
        f" (loop {loop})"
    )
    for p in phases:
        scraped = f"   {p.scrapes} scrapes" if p.metrics else ""
        print(
            f"  metrics {'on ' if p.metrics else 'off'}  {p.rate:10,.0f} notifications/s"
            f"   server CPU {p.cpu_per * 1e6:6.2f} µs/notification{scraped}"
        )
    off = [p for p in phases if not p.metrics]
    on = [p for p in phases if p.metrics]
    rate_off = statistics.median(p.rate for p in off)
    rate_on = statistics.median(p.rate for p in on)
    cpu_off = statistics.median(p.cpu_per for p in off)
    cpu_on = statistics.median(p.cpu_per for p in on)
    # Each on phase against the off phase just before it: a drift of the machine cancels out.
    paired = statistics.median(b.cpu_per / a.cpu_per - 1 for a, b in zip(off, on, strict=True) if a.cpu_per)
    noise = (max(p.cpu_per for p in off) - min(p.cpu_per for p in off)) / cpu_off if cpu_off else 0.0
    print(
        f"  median: off {rate_off:,.0f}/s {cpu_off * 1e6:.2f} µs, on {rate_on:,.0f}/s {cpu_on * 1e6:.2f} µs"
        f"   measured cost: CPU/notification {paired:+.1%} (median of the on/off pairs),"
        f" rate {1 - rate_on / rate_off if rate_off else 0.0:+.1%}; the off phases alone spread {noise:.0%}"
    )
    inc = counter_cost()
    share = inc / cpu_off if cpu_off else 0.0
    print(
        f"  always-on counter    {inc * 1e9:6.1f} ns per notification"
        f" = {share:.2%} of a notification's server CPU (kept with or without metrics)"
    )
    # What metrics on adds, from its parts: the scrapes' share of the loop's time, and the
    # lag timer's ticks (two a second; a tick is a few microseconds).
    bound = scrape / args.scrape_every + 2 * 5e-6
    verdict = "meets" if bound + share <= TARGET_COST and paired <= max(TARGET_COST, noise) else "misses"
    print(
        f"  from the parts       scrapes {scrape / args.scrape_every:.2%} of the loop's time"
        f" + counter {share:.2%} = {bound + share:.2%}   ({verdict} the {TARGET_COST:.0%} target)"
    )
    print(f"  one scrape           {scrape * 1e3:6.2f} ms ({observers} observations running)")


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run as run_loop

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
    parser.add_argument("--rounds", type=int, default=4, help="off/on pairs of phases")
    parser.add_argument("--scrape-every", type=float, default=0.5, help="seconds between scrapes when on")
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    phases, scrape, observers, loop = run_loop(run(args))
    report(phases, scrape, observers, loop, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
