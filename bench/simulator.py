"""The fleet simulator under load: registration time, staying registered, reads served, memory and CPU.

The simulated devices (``lwm2m.simulator.Fleet``) run in this process, on
uvloop if installed; our server (``Server``, memory store) runs in a
separate process so its CPU is not counted here, and so does the load
generator, which lives in the server's process and reads one resource of
every device once per second through the server's Python API (so over CoAP),
the reads of a round spread evenly over its second.

Measured:

1. registration: ``--count`` devices started at ``--rate`` per second; time from the
   first start to the last device registered, and the simulator's CPU meanwhile;
2. steady state for ``--seconds``: the load above, with ``--lifetime`` short enough
   that every device sends registration Updates during the window; at the end,
   the devices registered as the devices see it and as the server sees it;
3. reads: how many succeeded, and their latency (send to answer, in the server);
4. resident memory per device: this process's VmRSS grown over the fleet's start,
   divided by the devices;
5. CPU of this process in the steady state (100% = one core), and of the value
   loop alone (the time in ``Fleet.step``).

The baseline is a bare asyncio UDP echo (``bench/coap_loop.py``) measured first in
this run, in this process, on the same loop: the reads/s figure is printed beside it.

``--security psk`` gives every device a PSK of its own (written into the server's security
store first) and has the fleet register and answer over DTLS (``coaps://``): the memory per
device then includes its DTLS session.

    python bench/simulator.py [--count 1000] [--profile mixed] [--rate 2000] [--seconds 30]
                              [--security nosec|psk] [--trace N] [--read-period S]
                              [--shared-network 127.64.0.0/10]

``--read-period S`` reads each device once every S seconds instead of every second.
``--shared-network NET`` runs the devices on one shared socket, each at an address of NET of its
own (``FleetConfig.shared_network``): beyond some 20,000 devices a socket each runs out of file
descriptors and ephemeral ports.

``--trace N`` also prints, on stderr, the N source lines holding the most memory (tracemalloc, in
bytes per device) once the fleet has registered and after the window; tracing slows the run and
inflates the resident memory, so take the memory per device from a run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass

from coap_loop import HOST, free_port, measure

# The resource each profile's read asks for: its most telling moving value.
READ_PATHS = {
    "ipso-weather": "/3303/0/5700",
    "ucifi-streetlight": "/3418/0/4",
    "ucifi-water-meter": "/3424/0/1",
    "ucifi-air-quality": "/3428/0/3",
    "ucifi-parking": "/3431/0/1",
    "ucifi-lorawan-gateway": "/6/0/0",  # its own Location (its end devices answer at their uplinks)
}


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def raise_file_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# --- the server and the load generator (a separate process) ------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadLoad:
    rounds: int
    sent: int
    ok: int  # answered 2.05
    refused: int  # answered with another code
    failed: int  # no answer (timeout) or an error before sending
    skipped: int  # not sent: the cap of outstanding reads was reached
    latencies: tuple[float, ...]  # seconds, of the answered reads (a sample when many)
    seconds: float  # first read sent to last answer
    server_cpu: float  # the server process's CPU share over the load (1.0: one core)
    server_gc: str  # the server's full garbage collections during the load
    behind: float  # how late the last round's last batch went out, seconds


class GcPauses:
    """Full (generation 2) collections of the cyclic garbage collector, and how long each paused."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        elif info["generation"] == 2:
            self.pauses.append(time.perf_counter() - self._t)

    def reset(self) -> None:
        self.pauses.clear()

    def summary(self) -> str:
        if not self.pauses:
            return "no full collection"
        n, total, longest = len(self.pauses), sum(self.pauses), max(self.pauses)
        return f"{n} full collections, {total:.2f} s, longest {longest:.3f} s"


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def _serve(conn, use_uvloop: bool) -> None:
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.role import Server

    loop = asyncio.get_running_loop()

    async def recv() -> tuple:
        while not await loop.run_in_executor(None, conn.poll, 1.0):
            pass
        return conn.recv()

    from lwm2m.cli.server_cmd import tune_gc
    from lwm2m.server.registrar import RegistrationLimits

    # Every device registers from 127.0.0.1 at --rate: no per-address registration rate.
    async with Server(
        ServerConfig(
            host=HOST,
            port=free_port(),
            coaps_port=free_port(),
            registration_limits=RegistrationLimits(rate=None),
        )
    ) as server:
        tune_gc()  # as `lwm2m server` runs
        conn.send(("ready", server.uri, server.coaps_uri))
        while True:
            cmd = await recv()
            if cmd[0] == "quit":
                break
            if cmd[0] == "keys":  # the fleet's PSKs, into the server's security store
                from lwm2m.server.security import SecurityInfo

                for endpoint, key in cmd[1]:
                    await server.security.put(SecurityInfo(endpoint, endpoint, key))
                conn.send(("keys", len(cmd[1])))
            if cmd[0] == "count":
                conn.send(("count", len(await server.registrations())))
            elif cmd[0] == "load":
                _, targets, seconds, cap, period = cmd
                conn.send(("load", await _load(server, targets, seconds, cap, period)))


async def _load(
    server, targets: list[tuple[str, str]], seconds: float, cap: int, period: int = 1
) -> ReadLoad:
    """Read every target once per ``period`` seconds for ``seconds``, in 100 batches a second
    (each second a ``period``-th of the targets, the same ones every ``period`` seconds).

    At most ``cap`` reads are outstanding: a read due while that many wait is not sent
    (counted as skipped), so a stall measures as lost reads rather than an ever longer queue.
    """
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    counts = {"ok": 0, "refused": 0, "failed": 0, "skipped": 0}
    tasks: set[asyncio.Task[None]] = set()

    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds

    async def read(ep: str, path: str) -> None:
        t0 = clock()
        try:
            answer = await server.read(ep, path, timeout=5.0)
        except Exception:
            counts["failed"] += 1
            return
        if answer.code == 0x45:
            counts["ok"] += 1
            if len(latencies) < 200_000:
                latencies.append(clock() - t0)
        else:
            counts["refused"] += 1

    batches = 100
    groups = [targets[g::period] for g in range(period)]
    per_batch = max(1, -(-len(groups[0]) // batches))
    rounds = max(1, int(seconds))
    pauses = GcPauses()
    cpu0, start = time.process_time(), loop.time()
    sent = 0
    behind = 0.0
    for r in range(rounds):
        for b in range(batches):
            due = start + r + b / batches
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            behind = max(0.0, loop.time() - due)
            for ep, path in groups[r % period][b * per_batch : (b + 1) * per_batch]:
                if len(tasks) >= cap:
                    counts["skipped"] += 1
                    continue
                task = loop.create_task(read(ep, path))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
    while tasks:
        await asyncio.gather(*list(tasks), return_exceptions=True)
    elapsed = loop.time() - start
    cpu = time.process_time() - cpu0
    return ReadLoad(
        rounds,
        sent,
        counts["ok"],
        counts["refused"],
        counts["failed"],
        counts["skipped"],
        tuple(latencies),
        elapsed,
        cpu / elapsed,
        pauses.summary(),
        behind,
    )


def server_main(conn, use_uvloop: bool) -> None:
    from lwm2m.transport.eventloop import run

    raise_file_limit(4096)
    try:
        run(_serve(conn, use_uvloop), use_uvloop=use_uvloop)
    finally:
        conn.close()


# --- the simulator (this process) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Results:
    loop: str
    echo_rate: float
    count: int
    started: int
    registered_at: float  # seconds from the first start to the last registration (or giving up)
    registered_first: int  # devices registered then (all, unless registering timed out)
    registration_cpu: float  # CPU share of this process while registering
    rss_before: int
    rss_after: int
    rss_end: int  # after the steady window
    steady_cpu: float  # CPU share of this process in the steady window
    steady_gc: str  # this process's full garbage collections in the steady window
    step_share: float  # share of the steady window spent in Fleet.step
    steps: int
    registered_clients: int  # at the end of the window, as the devices see it
    registered_server: int  # as the server sees it
    updates: int
    errors: int
    served: int
    load: ReadLoad
    library: int = 0  # resident bytes of loading the DTLS stack, once for the process


def print_trace(when: str, top: int, count: int) -> None:
    """The ``top`` source lines holding the most traced memory now, in bytes per device."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"))
    )
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"tracemalloc, {when}: {total / count:,.0f} B per device", file=sys.stderr)
    for s in stats[:top]:
        frame = s.traceback[0]
        name = frame.filename.split("/src/")[-1].split("/lib/")[-1]
        print(
            f"  {s.size / count:8,.0f} B  {s.count / count:6.1f} blocks  {name}:{frame.lineno}",
            file=sys.stderr,
        )


async def run_all(args: argparse.Namespace, use_uvloop: bool) -> Results:
    from lwm2m.simulator import Fleet, FleetConfig
    from lwm2m.transport.eventloop import is_uvloop

    loop = asyncio.get_running_loop()
    echo = await measure("echo", args.echo_seconds, 0.5, 64)

    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=server_main, args=(child, use_uvloop), daemon=True)
    proc.start()
    child.close()

    async def recv(timeout: float) -> tuple:
        if not await loop.run_in_executor(None, conn.poll, timeout):
            raise TimeoutError("the server process did not answer")
        return conn.recv()

    fleet = None
    try:
        _, uri, coaps_uri = await recv(60)
        fleet = Fleet(
            coaps_uri if args.security == "psk" else uri,
            FleetConfig(
                count=args.count,
                profile=args.profile,
                rate=args.rate,
                lifetime=args.lifetime,
                seed=1,
                local_host=HOST,
                shared_network=args.shared_network,
                update_interval=args.update_interval,
                freeze_gc=True,  # as lwm2m simulate runs it
                dedup_entries=args.dedup,
                security=args.security,
            ),
        )
        if args.security == "psk":
            conn.send(("keys", [(k.endpoint, k.key) for k in fleet.server_keys()]))
            await recv(120)
        library = rss_bytes()
        if args.security == "psk":
            # The DTLS engine and ``cryptography`` are loaded once for the process (about 12 MB
            # of resident code and data): loaded here, they are not counted as memory per device.
            import lwm2m.transport.dtls.engine_backend  # noqa: F401
        gc.collect()
        rss0 = rss_bytes()
        library = rss0 - library
        if args.trace:
            tracemalloc.start()
        cpu0, t0 = time.process_time(), loop.time()
        await fleet.start()
        try:
            await fleet.wait_registered(timeout=max(120.0, 6 * args.count / args.rate))
        except TimeoutError:
            states = collections.Counter(d.client.state.value for d in fleet.devices)
            print(f"registering timed out: {fleet.stats()}; client states {dict(states)}", file=sys.stderr)
        registered_at = loop.time() - t0
        registered_first = fleet.registered
        registration_cpu = (time.process_time() - cpu0) / registered_at
        gc.collect()
        rss1 = rss_bytes()
        if args.trace:
            print_trace("registered", args.trace, args.count)

        targets = [(d.endpoint, READ_PATHS[d.profile.name]) for d in fleet.devices]
        step0, ticks0 = fleet.step_seconds, fleet.ticks
        pauses = GcPauses()
        served0 = fleet.stats().requests
        cpu1, t1 = time.process_time(), loop.time()
        conn.send(("load", targets, args.seconds, args.inflight, args.read_period))
        _, load = await recv(args.seconds + 120)
        steady = loop.time() - t1
        steady_cpu = (time.process_time() - cpu1) / steady
        rss2 = rss_bytes()
        if args.trace:
            gc.collect()
            print_trace("after the window", args.trace, args.count)
            tracemalloc.stop()
        stats = fleet.stats()
        conn.send(("count",))
        _, on_server = await recv(30)
        return Results(
            "uvloop" if is_uvloop(loop) else "asyncio",
            echo.rate,
            args.count,
            stats.started,
            registered_at,
            registered_first,
            registration_cpu,
            rss0,
            rss1,
            rss2,
            steady_cpu,
            pauses.summary(),
            (fleet.step_seconds - step0) / steady,
            fleet.ticks - ticks0,
            stats.registered,
            on_server,
            stats.updates,
            stats.errors,
            stats.requests - served0,
            load,
            library,
        )
    finally:
        if fleet is not None:
            await fleet.stop(timeout=30)
        with contextlib.suppress(Exception):
            conn.send(("quit",))
        await loop.run_in_executor(None, proc.join, 15)
        if proc.is_alive():
            proc.kill()


def report(r: Results, args: argparse.Namespace) -> None:
    echo = r.echo_rate
    print(
        f"{r.count:,} devices ({args.profile}, {args.security}), loop {r.loop}, loopback {HOST},"
        f" lifetime {args.lifetime} s,"
        f" {os.cpu_count()} CPUs"
    )
    print(f"  bare UDP echo            {echo:10,.0f} round trips/s (64 in flight; the baseline)")
    reg_rate = r.registered_first / r.registered_at if r.registered_at else 0.0
    print(
        f"  registration             {r.registered_at:10.2f} s for {r.registered_first:,} of {r.count:,}"
        f" devices at up to {args.rate:g}/s = {reg_rate:,.0f}/s   simulator CPU {r.registration_cpu:.0%}"
    )
    stayed = "all" if r.registered_clients == r.registered_server == r.count else "NOT all"
    print(
        f"  stayed registered        {r.registered_clients:,} (devices) / {r.registered_server:,} (server)"
        f" of {r.count:,} after {args.seconds:g} s: {stayed}; {r.updates:,} Updates, {r.errors} errors"
    )
    ld = r.load
    lat = list(ld.latencies)
    due = ld.sent + ld.skipped
    ratio = ld.ok / due if due else 0.0
    rate = ld.ok / ld.seconds if ld.seconds else 0.0
    print(
        f"  reads (1/device/{args.read_period}s)    {rate:10,.0f} reads/s"
        f"   {ld.ok:,}/{due:,} ok = {ratio:.2%}"
        f" ({ld.refused} refused, {ld.failed} failed, {ld.skipped} skipped)   echo ratio {rate / echo:.3f}"
    )
    if lat:
        p50, p95, p99 = (_percentile(lat, p) * 1e3 for p in (0.5, 0.95, 0.99))
        print(
            f"  read latency             p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms,"
            f" max {max(lat) * 1e3:.1f} ms (mean {statistics.fmean(lat) * 1e3:.2f} ms)"
        )
    print(
        f"  server process CPU       {ld.server_cpu:10.0%} while serving the reads"
        f" (generator included; last batch {ld.behind * 1e3:.0f} ms behind schedule); {ld.server_gc}"
    )
    per = (r.rss_after - r.rss_before) / max(1, r.started)
    end = (r.rss_end - r.rss_before) / max(1, r.started)
    print(
        f"  memory / device          {per / 1024:10.1f} KB   RSS {r.rss_before / 2**20:.0f} ->"
        f" {r.rss_after / 2**20:.0f} MB registered; {end / 1024:.1f} KB ({r.rss_end / 2**20:.0f} MB)"
        " after the window"
    )
    if r.library:
        print(f"  DTLS stack, loaded once  {r.library / 2**20:10.1f} MB   (not in the memory per device)")
    print(
        f"  simulator CPU (steady)   {r.steady_cpu:10.0%} of one core, value loop {r.step_share:.1%}"
        f" ({r.steps} ticks); {r.served:,} requests served by the devices; {r.steady_gc}"
    )


def main(argv: list[str] | None = None) -> int:
    from lwm2m.simulator.profiles import PROFILES
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="devices in the fleet")
    parser.add_argument("--profile", choices=list(PROFILES), default="mixed")
    parser.add_argument("--rate", type=float, default=2000.0, help="devices started per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="steady-state window with the read load")
    parser.add_argument("--lifetime", type=int, default=20, help="registration lifetime, s")
    parser.add_argument("--inflight", type=int, default=2000, help="outstanding reads at most")
    parser.add_argument("--read-period", type=int, default=1, help="seconds between two reads of a device")
    parser.add_argument(
        "--update-interval", type=float, default=10.0, help="seconds between two moves of a device's values"
    )
    parser.add_argument(
        "--shared-network",
        default=None,
        help="the devices share one socket, an address each of this network (e.g. 127.64.0.0/10)",
    )
    parser.add_argument("--dedup", type=int, default=16, help="CoAP exchanges each device remembers")
    parser.add_argument("--security", choices=("nosec", "psk"), default="nosec", help="psk: CoAP over DTLS")
    parser.add_argument("--echo-seconds", type=float, default=3.0)
    parser.add_argument(
        "--trace", type=int, default=0, help="print the N lines holding most memory (tracemalloc)"
    )
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    if args.count < 1 or args.rate <= 0:
        parser.error("--count and --rate must be positive")
    if args.read_period < 1:
        parser.error("--read-period must be 1 or more")
    need = 1024 if args.shared_network else args.count + 256
    have = raise_file_limit(need)
    if have < need:
        parser.error(
            f"--count {args.count} needs {need} open files; the limit is {have}"
            " (--shared-network puts the devices on one socket)"
        )
    use_uvloop = uvloop_available() if args.loop == "auto" else args.loop == "uvloop"
    results = run(run_all(args, use_uvloop), use_uvloop=use_uvloop)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
