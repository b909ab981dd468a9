"""The cluster on this machine: Redis, three ``lwm2m server`` nodes and nginx (as
``deploy/cluster_demo.py`` starts them), with simulated devices registering through nginx, and
one node on SQLite with the same devices in the same run.

Printed:

- registration rate: ``--devices`` simulated devices (``lwm2m simulate --profile
  ipso-weather``, in ``--processes`` processes, as fast as they can) registering through nginx:
  all devices over the time from the first registration the store holds to the last (the Redis
  listing's size, polled); the same for the SQLite node (its table's size polled);
- observations: each device's temperature (``/3303/0/5700``) observed through its owner's REST
  API, ``--observers`` requests in flight per node; the devices move their values every
  ``--update-interval`` s and notify;
- notification ingest per node CPU-second: over ``--window`` s, the notification values stored
  (Redis: the history lists' lengths summed per owner node; SQLite: the history table's last
  sequence number) over the CPU time of each node process (utime + stime of
  ``/proc/PID/stat``, every thread of the process), the cluster's nodes beside the SQLite node;
  also each node's idle CPU share, measured over ``--idle`` s once the devices registered and
  before any is observed, and what a value costs beyond it; and the Redis commands per value
  (``INFO commandstats`` over the window);
- p50/p99 of a REST read (``GET /api/clients/{ep}/3/0/0``) of one device through its owner's
  API, and through another node's API (which sends it to the owner over the request bus): the
  difference is what routing adds. ``--reads`` pairs, the two reads of a pair one after the
  other (which goes first alternates), spread over two periods of the devices' value moves:
  both series meet the same bursts of notifications, which two series in a row would not;
- Redis memory per registration with one observation: ``INFO memory`` ``used_memory`` once
  every device registered and is observed, minus before, over the devices; also without what
  does not grow with the fleet or is no registration: the connections' buffers
  (``mem_clients_normal``), the fleet's event stream (``lwm2m:events``, about the last 100,000
  events), the bus streams and the history lists the notifications filled meanwhile;
- failover: the node owning the most devices is killed (SIGKILL), nginx reloaded without it;
  the time until every device it owned is owned by a live node again, which happens at each
  device's next notification or Update, checked with a REST read of some of them.

Ports and addresses: every device flow through nginx costs nginx a socket towards a node, on
an ephemeral port of its source address (``net.ipv4.ip_local_port_range``, 32768-60999: about
28,000 per address), and every simulated device has a socket of its own. So the simulator
processes bind 127.0.0.11, .12, … (one address each), and nginx (``deploy/nginx-lwm2m.conf``)
sends its sessions from 127.0.0.2 to .5 (``split_clients`` + ``proxy_bind``): 30,000 devices
need 30,000 ports on the simulators' side and 30,000 at nginx (twice that for
``worker_shutdown_timeout`` after the failover's reload), which one address could not give.
nginx hashes ``$remote_addr$remote_port`` here (deploy/README.md): the devices of one address
spread over the nodes.

    python bench/cluster.py [--devices 30000] [--processes 3] [--lifetime 300] [--reads 600]
    python bench/cluster.py --devices 300        # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "deploy"))
# The processes it starts (nodes, simulators) run this checkout's package too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(HERE.parent / "src"), os.environ.get("PYTHONPATH")])
)

import httpx  # noqa: E402
from cluster_demo import ClusterDemo, DemoConfig, Node, free_port, lwm2m_command, wait_http  # noqa: E402

from lwm2m.cluster.bus import reply_stream, request_stream  # noqa: E402
from lwm2m.cluster.events import EVENTS_KEY  # noqa: E402
from lwm2m.cluster.ownership import owner_key  # noqa: E402
from lwm2m.storage.redisconn import RedisClient, connect, endpoint_tag  # noqa: E402

TEMPERATURE = "/3303/0/5700"  # what every device has observed (ipso-weather's Temperature)
FIRST_SIMULATOR_HOST = 11  # simulator process i binds 127.0.0.(11 + i)


def say(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class Registering:
    devices: int
    registered: int
    seconds: float  # from the first registration to the last

    @property
    def rate(self) -> float:
        return self.registered / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Observed:
    """The outcome of observing every device once: how many answered 2.05, the others' codes."""

    ok: int
    failed: Counter[str]
    seconds: float
    took: list[float]  # seconds of each request

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Ingest:
    """Notification values stored, and CPU seconds of each node process, over one window;
    ``idle``: each node's CPU share (of a core) measured before any device was observed, so
    that what the notifications themselves cost can be told from what a node spends anyway
    (heartbeats, leases, the request bus, the expiry loop)."""

    records: dict[str, int]
    cpu: dict[str, float]
    seconds: float
    idle: dict[str, float]

    @property
    def total(self) -> int:
        return sum(self.records.values())

    @property
    def per_cpu_second(self) -> float:
        spent = sum(self.cpu.values())
        return self.total / spent if spent else 0.0

    @property
    def net_cpu(self) -> float:
        """The nodes' CPU seconds in the window beyond their idle share."""
        return sum(max(self.cpu[n] - self.idle.get(n, 0.0) * self.seconds, 0.0) for n in self.cpu)

    @property
    def net_rate(self) -> float:
        """Values per node CPU-second beyond the idle share."""
        return self.total / self.net_cpu if self.net_cpu else 0.0

    def lines(self, name: str) -> list[str]:
        idle = sum(self.idle.values())
        out = [
            f"{name} {self.total:,} notification values stored in {self.seconds:.1f} s "
            f"({self.total / self.seconds:,.0f}/s) for {sum(self.cpu.values()):.1f} node CPU-s: "
            f"{self.per_cpu_second:,.0f} per node CPU-second",
            f"         idle before (no observation): {idle:.1%} of a core in all; beyond it "
            f"{self.net_cpu / self.total * 1e6 if self.total else 0:,.0f} µs of node CPU per value",
        ]
        for node in sorted(self.records):
            spent = self.cpu[node]
            out.append(
                f"         {node}: {self.records[node]:,} values, {spent:.1f} CPU-s "
                f"({spent / self.seconds:.0%} of a core): {self.records[node] / spent if spent else 0:,.0f}"
                " per CPU-second"
            )
        return out


def local_host(index: int) -> str:
    """The loopback address simulator process ``index`` binds: its devices' ports are its own."""
    return f"127.0.0.{FIRST_SIMULATOR_HOST + index}"


class Simulators:
    """``processes`` ``lwm2m simulate`` processes sharing ``devices`` devices towards ``server``,
    process ``i`` on the address ``local_host(i)``."""

    def __init__(
        self, server: str, devices: int, processes: int, lifetime: int, update_interval: float, prefix: str
    ) -> None:
        self.server = server
        self.devices = devices
        self.processes = processes
        self.lifetime = lifetime
        self.update_interval = update_interval
        self.prefix = prefix
        self.procs: list[asyncio.subprocess.Process] = []
        self.lines: list[list[str]] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        share, extra = divmod(self.devices, self.processes)
        for index in range(self.processes):
            count = share + (1 if index < extra else 0)
            argv = [
                *lwm2m_command(),
                "simulate",
                "--server",
                self.server,
                "--count",
                str(count),
                "--profile",
                "ipso-weather",
                "--prefix",
                f"{self.prefix}{index}",
                "--rate",
                "1000000",
                "--lifetime",
                str(self.lifetime),
                "--update-interval",
                f"{self.update_interval:g}",
                "--local-host",
                local_host(index),
                "--report-every",
                "3600",
                "--seed",
                str(index),
            ]
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            lines: list[str] = []
            self.procs.append(proc)
            self.lines.append(lines)
            self._readers.append(asyncio.create_task(self._read(proc, lines)))

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            lines.append(line.decode(errors="replace").rstrip())

    def check(self) -> None:
        for proc, lines in zip(self.procs, self.lines, strict=True):
            if proc.returncode is not None:
                raise RuntimeError(f"a simulator exited with {proc.returncode}: {lines[-5:]}")

    async def registered(self, count: Callable[[], Awaitable[int]], timeout: float) -> Registering:
        """Once the server side counts every device (``count``): the time from the first
        registration it counted to the last (so the processes' start-up is not in it)."""
        deadline = time.monotonic() + timeout
        first: float | None = None
        while True:
            found = await count()
            now = time.monotonic()
            if found and first is None:
                first = now
            if found >= self.devices:
                return Registering(self.devices, found, now - (first or now))
            self.check()
            if now > deadline:
                return Registering(self.devices, found, now - (first or now))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        # Twice: the second one skips the de-registrations (lwm2m simulate's Ctrl-C twice).
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for reader in self._readers:
            reader.cancel()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nan for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds: fields 14 and 15 of
    ``/proc/PID/stat`` (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_share(pids: dict[str, int], window: float) -> dict[str, float]:
    """Each process's CPU time over ``window`` seconds, as a share of a core."""
    cpu, started = {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
    await asyncio.sleep(window)
    took = time.monotonic() - started
    return {n: (cpu_seconds(p) - cpu[n]) / took for n, p in pids.items()}


async def measure_ingest(
    count: Callable[[], Awaitable[dict[str, int]]],
    pids: dict[str, int],
    window: float,
    idle: dict[str, float],
) -> Ingest:
    """Values stored per node (``count``) and each node's CPU time, over ``window`` seconds."""
    records, cpu, started = await count(), {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
    await asyncio.sleep(window)
    records_after, cpu_after = await count(), {n: cpu_seconds(p) for n, p in pids.items()}
    return Ingest(
        {n: records_after.get(n, 0) - records.get(n, 0) for n in pids},
        {n: cpu_after[n] - cpu[n] for n in pids},
        time.monotonic() - started,
        idle,
    )


async def command_calls(redis: RedisClient) -> Counter[str]:
    """Redis's calls per command so far (``INFO commandstats``)."""
    stats = await redis.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


async def observe_all(api_of: Callable[[str], str], endpoints: list[str], concurrency: int) -> Observed:
    """``POST …/3303/0/5700/observe`` of every endpoint at ``api_of(endpoint)``, ``concurrency``
    at a time per API (a node answers fastest a few at a time: more in flight only queue up in
    it); one more try for those that did not answer 2.05."""
    failed: Counter[str] = Counter()
    ok = 0
    took: list[float] = []
    gates: dict[str, asyncio.Semaphore] = {}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=120) as http:

        async def one(endpoint: str) -> str:
            api = api_of(endpoint)
            async with gates.setdefault(api, asyncio.Semaphore(concurrency)):
                began = time.monotonic()
                try:
                    answer = await http.post(f"{api}/api/clients/{endpoint}{TEMPERATURE}/observe")
                except httpx.HTTPError as exc:
                    return type(exc).__name__
                finally:
                    took.append(time.monotonic() - began)
            if answer.status_code != 200:
                return f"HTTP {answer.status_code}"
            return str(answer.json().get("code"))

        left = endpoints
        for _ in range(2):
            codes = await asyncio.gather(*(one(ep) for ep in left))
            ok += sum(code == "2.05" for code in codes)
            left = [ep for ep, code in zip(left, codes, strict=True) if code != "2.05"]
            failed = Counter(code for code in codes if code != "2.05")
            if not left:
                break
    return Observed(ok, failed, time.monotonic() - started, took)


def observed_line(name: str, observed: Observed, devices: int) -> str:
    missing = f" (not: {dict(observed.failed)})" if observed.failed else ""
    return (
        f"{name} observed {observed.ok:,}/{devices:,} devices' {TEMPERATURE} in {observed.seconds:.1f} s "
        f"({observed.rate:,.0f}/s; each p50 {percentile(observed.took, 0.5) * 1e3:.0f} ms, p99 "
        f"{percentile(observed.took, 0.99) * 1e3:.0f} ms, max {max(observed.took, default=0) * 1e3:.0f} ms)"
        f"{missing}"
    )


async def read_once(http: httpx.AsyncClient, api: str, endpoint: str) -> float:
    """Seconds of one read of the device's manufacturer through ``api``."""
    started = time.perf_counter()
    answer = await http.get(f"{api}/api/clients/{endpoint}/3/0/0")
    elapsed = time.perf_counter() - started
    if answer.status_code != 200 or answer.json().get("code") != "2.05":
        raise RuntimeError(f"read of {endpoint} at {api}: {answer.status_code} {answer.text[:200]}")
    return elapsed


async def paired_read_latencies(
    http: httpx.AsyncClient, apis: tuple[str, str], endpoint: str, count: int, span: float
) -> tuple[list[float], list[float]]:
    """Seconds of ``count`` reads of the device through each of two APIs, in pairs (which API
    goes first alternates), the pairs spread evenly over ``span`` seconds; 10 pairs first not
    counted."""
    took: tuple[list[float], list[float]] = ([], [])
    gap = span / max(count, 1)
    for index in range(count + 10):
        started = time.perf_counter()
        order = (0, 1) if index % 2 else (1, 0)
        for which in order:
            elapsed = await read_once(http, apis[which], endpoint)
            if index >= 10:
                took[which].append(elapsed)
        if index >= 10:
            await asyncio.sleep(max(0.0, gap - (time.perf_counter() - started)))
    return took


async def owners(redis: RedisClient, endpoints: list[str]) -> dict[str, str]:
    """endpoint -> its owner node ('' for none), pipelined in chunks."""
    found: dict[str, str] = {}
    for start in range(0, len(endpoints), 1000):
        chunk = endpoints[start : start + 1000]
        pipe = redis.pipeline(transaction=False)
        for endpoint in chunk:
            pipe.hget(owner_key(endpoint), "node")
        for endpoint, node in zip(chunk, await pipe.execute(), strict=True):
            found[endpoint] = node.decode() if node else ""
    return found


def history_key(endpoint: str) -> str:
    return f"lwm2m:hist:{endpoint_tag(endpoint)}"


async def history_by_node(redis: RedisClient, owned: dict[str, str]) -> dict[str, int]:
    """Values in the history lists (never trimmed here: 10,000 per device are kept), summed per
    owner node, pipelined in chunks."""
    found: Counter[str] = Counter()
    endpoints = list(owned)
    for start in range(0, len(endpoints), 2000):
        chunk = endpoints[start : start + 2000]
        pipe = redis.pipeline(transaction=False)
        for endpoint in chunk:
            pipe.llen(history_key(endpoint))
        for endpoint, length in zip(chunk, await pipe.execute(), strict=True):
            found[owned[endpoint]] += int(length)
    return dict(found)


async def mean_memory(redis: RedisClient, keys: list[str]) -> float:
    """Mean ``MEMORY USAGE`` of ``keys`` (0 for a missing one)."""
    total = 0
    for key in keys:
        total += int(await redis.memory_usage(key) or 0)
    return total / max(len(keys), 1)


async def endpoint_keys(redis: RedisClient, endpoint: str) -> list[str]:
    """The keys an endpoint has to itself (and its registration id's), its history aside."""
    tag = endpoint_tag(endpoint)
    keys = [f"lwm2m:{kind}:{tag}" for kind in ("reg", "obs")] + [owner_key(endpoint)]
    registration_id = await redis.hget(keys[0], "id")
    if registration_id is not None:
        keys.append(f"lwm2m:regid:{registration_id.decode()}")
    return keys


async def used_memory(redis: RedisClient) -> tuple[int, int]:
    """``used_memory`` and the part of it in client connections' buffers."""
    info = await redis.info("memory")
    return int(info["used_memory"]), int(info["mem_clients_normal"])


async def cluster_run(args: argparse.Namespace, folder: Path) -> tuple[Registering, Ingest]:
    config = DemoConfig(state=folder / "cluster", hash_key="$remote_addr$remote_port")
    demo = ClusterDemo(config).start()
    redis = connect(demo.store_url)
    simulators = Simulators(
        demo.coap_uri, args.devices, args.processes, args.lifetime, args.update_interval, "bench"
    )
    try:
        before, clients_before = await used_memory(redis)
        await simulators.start()
        registering = await simulators.registered(lambda: redis.zcard("lwm2m:endpoints"), args.timeout)
        endpoints = [e.decode() for e in await redis.zrange("lwm2m:endpoints", 0, -1)]
        say(
            f"cluster  registered {registering.registered:,}/{registering.devices:,} in "
            f"{registering.seconds:.1f} s: {registering.rate:,.0f} registrations/s "
            f"(Redis lists {len(endpoints):,})"
        )
        if not registering.registered:
            raise SystemExit(f"no device registered within --timeout {args.timeout:g} s: nothing to measure")
        # A node claims a device after its Register (an event the node follows): let them land.
        settled = time.monotonic()
        while True:
            owned = await owners(redis, endpoints)
            unowned = sum(not node for node in owned.values())
            if not unowned or time.monotonic() - settled > 10:
                break
            await asyncio.sleep(0.25)
        per_node = Counter(node for node in owned.values() if node)
        say(
            "         owners: "
            + ", ".join(f"{n} {c:,}" for n, c in sorted(per_node.items()))
            + f", none {unowned:,} ({time.monotonic() - settled:.1f} s after the last registration)"
        )
        by_id = {node.node_id: node for node in demo.nodes}
        pids = {node.node_id: node.proc.pid for node in demo.nodes if node.proc is not None}
        idle = await idle_share(pids, args.idle)
        observed = await observe_all(lambda ep: by_id[owned[ep] or "n1"].api, endpoints, args.observers)
        say(observed_line("cluster ", observed, len(endpoints)))

        after, clients_after = await used_memory(redis)
        streams = 0
        for key in (EVENTS_KEY, *(f(n.node_id) for n in demo.nodes for f in (request_stream, reply_stream))):
            streams += int(await redis.memory_usage(key) or 0)
        sample = endpoints[:: max(1, len(endpoints) // 100)][:100]
        history = await mean_memory(redis, [history_key(ep) for ep in sample]) * len(endpoints)
        delta, count = after - before, max(len(endpoints), 1)
        buffers = clients_after - clients_before
        say(
            f"redis    {delta / count:,.0f} bytes per registration with one observation "
            f"({delta / 1e6:.1f} MB, {len(endpoints):,} devices); without the connections' buffers "
            f"({buffers / 1e6:.1f} MB), the event and bus streams ({streams / 1e6:.1f} MB) and the "
            f"history so far ({history / 1e6:.1f} MB): {(delta - buffers - streams - history) / count:,.0f}"
            " bytes"
        )
        own: list[str] = []
        for endpoint in sample:
            own += await endpoint_keys(redis, endpoint)
        own_bytes = await mean_memory(redis, own) * len(own) / max(len(sample), 1)
        say(
            f"         keys of one endpoint (registration, observations, owner, id): {own_bytes:,.0f} bytes "
            f"(MEMORY USAGE, mean of {len(sample)}; index entries not counted)"
        )

        calls = await command_calls(redis)
        ingest = await measure_ingest(lambda: history_by_node(redis, owned), pids, args.window, idle)
        calls = await command_calls(redis) - calls
        calls["llen"] -= 2 * len(owned)  # the bench's own: history_by_node reads every list's length
        for line in ingest.lines("cluster "):
            say(line)
        if ingest.total:
            say(
                "         Redis commands per value: "
                + ", ".join(f"{name} {n / ingest.total:.2f}" for name, n in calls.most_common(8))
                + f" (all: {calls.total() / ingest.total:.2f})"
            )

        # REST reads: one device of the node that owns the most (the balancer may have given a
        # small fleet none on some node), through that node and through another.
        owner = max(per_node, key=lambda n: per_node[n])
        device = next(ep for ep, node in sorted(owned.items()) if node == owner)
        elsewhere = next(n for n in sorted(by_id) if n != owner)
        async with httpx.AsyncClient(timeout=30) as http:
            apis = (by_id[owner].api, by_id[elsewhere].api)
            same, other = await paired_read_latencies(
                http, apis, device, args.reads, 2 * args.update_interval
            )
        for name, took in (("same node ", same), ("other node", other)):
            say(
                f"read     {name} p50 {percentile(took, 0.5) * 1e3:6.2f} ms  p99 "
                f"{percentile(took, 0.99) * 1e3:6.2f} ms  ({len(took)} reads)"
            )
        added = (statistics.median(other) - statistics.median(same)) * 1e3
        say(f"         routing adds {added:.2f} ms at p50")
        await failover(args, demo, redis, owned, per_node)
    finally:
        await simulators.stop()
        await redis.aclose()
        demo.stop()
    return registering, ingest


async def failover(
    args: argparse.Namespace,
    demo: ClusterDemo,
    redis: RedisClient,
    owned: dict[str, str],
    per_node: Counter[str],
) -> None:
    """kill -9 of the node that owns the most devices, nginx reloaded without it; then the time
    until every device it owned is owned by a live node."""
    by_id = {node.node_id: node for node in demo.nodes}
    victim_id = max(per_node, key=lambda n: per_node[n])
    victim: Node = by_id[victim_id]
    orphans = [ep for ep, node in owned.items() if node == victim_id]
    assert victim.proc is not None
    killed = time.monotonic()
    victim.proc.kill()
    victim.proc.wait()
    demo.reload_nginx(without=(victim,))
    reloaded = time.monotonic() - killed
    left = orphans
    back: list[float] = []  # seconds from the kill to each orphan owned by a live node (polled)
    while left:
        if time.monotonic() - killed > args.timeout:
            break
        await asyncio.sleep(0.25)
        now = await owners(redis, left)
        left = [ep for ep, node in now.items() if node in ("", victim_id)]
        back += [time.monotonic() - killed] * (len(now) - len(left))
    took = time.monotonic() - killed
    survivors = [n for n in demo.nodes if n is not victim]
    checked = 0
    sampled = orphans[:: max(1, len(orphans) // 5)][:5]
    async with httpx.AsyncClient(timeout=30) as http:
        for endpoint in sampled:
            for node in survivors:
                answer = await http.get(f"{node.api}/api/clients/{endpoint}/3/0/0")
                checked += answer.status_code == 200 and answer.json().get("code") == "2.05"
    update = args.lifetime - min(max(args.lifetime * 0.25, 1.0), 60.0)
    status = "every one"
    if left:
        still = await owners(redis, left)
        dead = sum(node == victim_id for node in still.values())
        registered = 0
        for endpoint in left:
            registered += await redis.exists(f"lwm2m:reg:{endpoint_tag(endpoint)}")
        status = (
            f"{len(left):,} (still {victim_id}'s: {dead:,}, none: {len(left) - dead:,};"
            f" registered: {registered:,}) NOT"
        )
    quantiles = ", ".join(f"{q:.0%} after {percentile(back, q):.1f} s" for q in (0.1, 0.5, 0.9) if back)
    say(
        f"failover kill -9 of {victim_id} ({len(orphans):,} devices), nginx reloaded after "
        f"{reloaded:.2f} s: {status} owned by a live node after {took:.1f} s "
        f"(values move every {args.update_interval:g} s, Updates every {update:g} s); reads of sampled "
        f"ones through both survivors: {checked}/{2 * len(sampled)} answered"
    )
    say(f"         owned again: {quantiles}")


async def sqlite_run(args: argparse.Namespace, folder: Path) -> tuple[Registering, Ingest]:
    coap, http_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    log = folder / "sqlite-node.log"
    argv = [
        *lwm2m_command(),
        "server",
        "--store",
        "sqlite",
        "--data",
        str(folder / "sqlite"),
        "--coap-port",
        str(coap),
        "--http-port",
        str(http_port),
        "--registration-rate",
        "0",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    simulators = Simulators(
        f"coap://127.0.0.1:{coap}", args.devices, args.processes, args.lifetime, args.update_interval, "solo"
    )
    api = f"http://127.0.0.1:{http_port}"
    try:
        wait_http(f"{api}/api/clients", proc, "the SQLite node", log)
        await simulators.start()
        database = sqlite3.connect(f"file:{folder / 'sqlite' / 'lwm2m.db'}?mode=ro", uri=True)
        try:

            async def count() -> int:
                return int(database.execute("SELECT count(*) FROM registrations").fetchone()[0])

            registering = await simulators.registered(count, args.timeout)
            say(
                f"sqlite   one node: registered {registering.registered:,}/{registering.devices:,} in "
                f"{registering.seconds:.1f} s: {registering.rate:,.0f} registrations/s"
            )
            endpoints = [row[0] for row in database.execute("SELECT endpoint FROM registrations")]
            idle = await idle_share({"sqlite": proc.pid}, args.idle)
            observed = await observe_all(lambda ep: api, endpoints, args.observers)
            say(observed_line("sqlite  ", observed, len(endpoints)))

            async def stored() -> dict[str, int]:
                # The history's rows are numbered in arrival order and none is removed here.
                row = database.execute("SELECT coalesce(max(seq), 0) FROM history").fetchone()
                return {"sqlite": int(row[0])}

            ingest = await measure_ingest(stored, {"sqlite": proc.pid}, args.window, idle)
            for line in ingest.lines("sqlite  "):
                say(line)
            return registering, ingest
        finally:
            database.close()
    finally:
        await simulators.stop()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def main_async(args: argparse.Namespace) -> None:
    say(
        f"{args.devices:,} simulated devices in {args.processes} processes, lifetime {args.lifetime} s, "
        f"values move every {args.update_interval:g} s, {os.cpu_count()} cores, "
        f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    with tempfile.TemporaryDirectory(prefix="lwm2m-bench-cluster-") as tmp:
        folder = Path(tmp) if args.state is None else args.state.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        cluster, cluster_ingest = await cluster_run(args, folder)
        solo, solo_ingest = await sqlite_run(args, folder)
        say(
            f"ratio    cluster/sqlite: registrations/s {ratio(cluster.rate, solo.rate)}, "
            f"notification values per node CPU-second "
            f"{ratio(cluster_ingest.per_cpu_second, solo_ingest.per_cpu_second)}, "
            f"per node CPU-second beyond idle {ratio(cluster_ingest.net_rate, solo_ingest.net_rate)}"
        )


def ratio(a: float, b: float) -> str:
    """``a / b``, or n/a when ``b`` is nothing (a run too small to time)."""
    return f"{a / b:.2f}" if b > 0 else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=30_000, help="simulated devices (the issue's 30,000)")
    parser.add_argument("--processes", type=int, default=3, help="simulator processes (one address each)")
    parser.add_argument(
        "--lifetime", type=int, default=300, help="registration lifetime (sets the Update period)"
    )
    parser.add_argument(
        "--update-interval", type=float, default=10.0, help="seconds between a device's value moves"
    )
    parser.add_argument("--observers", type=int, default=4, help="observe requests in flight per node")
    parser.add_argument("--window", type=float, default=20.0, help="seconds notifications are counted")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds the nodes' idle CPU is measured before observing"
    )
    parser.add_argument(
        "--reads", type=int, default=600, help="REST read pairs (one read at the owner, one at another node)"
    )
    parser.add_argument("--state", type=Path, help="keep the processes' state and logs in this folder")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds any phase may take")
    args = parser.parse_args(argv)
    if args.processes > 200:
        parser.error("--processes: at most 200 (one loopback address each from 127.0.0.11)")
    signal.signal(signal.SIGTERM, interrupt)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        say("interrupted: every process it started is stopped")
        return 130
    return 0


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: the clean-up runs either way."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
