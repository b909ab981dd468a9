"""The cluster on this machine: Redis, three ``lwm2m server`` nodes and nginx (as
``deploy/cluster_demo.py`` starts them), with simulated devices registering through nginx.

Printed:

- registration rate: ``--devices`` simulated devices (``lwm2m simulate``, in ``--processes``
  processes, as fast as they can) registering through nginx: all devices over the time from
  the first registration the store holds to the last (the Redis listing's size, polled). Then
  the same devices registering with one node on SQLite (no nginx, no Redis; its table's size
  polled), in the same run;
- p50/p99 of a REST read (``GET /api/clients/{ep}/3/0/0``, ``--reads`` in a row) of one device
  through its owner's API, and through another node's API (which sends it to the owner over
  the request bus): the difference is what routing adds;
- Redis memory per registration: ``INFO memory`` ``used_memory`` after the devices registered
  minus before, over the devices; also without what does not grow with the fleet: the
  connections' buffers (``mem_clients_normal``), the fleet's event stream (``lwm2m:events``,
  about the last 100,000 events) and the bus streams;
- failover: the node owning the most devices is killed (SIGKILL), nginx reloaded without it;
  the time until every device it owned is owned by a live node again, which happens at each
  device's next Update (every ``lifetime - max(lifetime / 4, 1)`` s, ``--lifetime``), checked
  with a REST read of some of them.

nginx hashes ``$remote_addr$remote_port`` here (deploy/README.md): all devices come from one
address, which ``$remote_addr`` alone would put on one node.

    python bench/cluster.py [--devices 3000] [--processes 3] [--lifetime 30] [--reads 300]
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


@dataclass(frozen=True)
class Registering:
    devices: int
    registered: int
    seconds: float  # from the first registration to the last

    @property
    def rate(self) -> float:
        return self.registered / self.seconds if self.seconds else 0.0


class Simulators:
    """``processes`` ``lwm2m simulate`` processes sharing ``devices`` devices towards ``server``."""

    def __init__(self, server: str, devices: int, processes: int, lifetime: int, prefix: str) -> None:
        self.server = server
        self.devices = devices
        self.processes = processes
        self.lifetime = lifetime
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
                "--prefix",
                f"{self.prefix}{index}",
                "--rate",
                "1000000",
                "--lifetime",
                str(self.lifetime),
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
            for proc, lines in zip(self.procs, self.lines, strict=True):
                if proc.returncode is not None:
                    raise RuntimeError(f"a simulator exited with {proc.returncode}: {lines[-5:]}")
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
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def read_latencies(http: httpx.AsyncClient, api: str, endpoint: str, count: int) -> list[float]:
    """Seconds of ``count`` reads in a row of the device's manufacturer (after 10 not counted)."""
    took = []
    for index in range(count + 10):
        started = time.perf_counter()
        answer = await http.get(f"{api}/api/clients/{endpoint}/3/0/0")
        elapsed = time.perf_counter() - started
        if answer.status_code != 200 or answer.json().get("code") != "2.05":
            raise RuntimeError(f"read of {endpoint} at {api}: {answer.status_code} {answer.text[:200]}")
        if index >= 10:
            took.append(elapsed)
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


async def endpoint_bytes(redis: RedisClient, endpoints: list[str]) -> float:
    """Mean MEMORY USAGE of the keys an endpoint has to itself (and its registration id's)."""
    total = 0
    for endpoint in endpoints:
        tag = endpoint_tag(endpoint)
        keys = [f"lwm2m:{kind}:{tag}" for kind in ("reg", "obs", "hist")] + [owner_key(endpoint)]
        registration_id = await redis.hget(keys[0], "id")
        if registration_id is not None:
            keys.append(f"lwm2m:regid:{registration_id.decode()}")
        for key in keys:
            total += int(await redis.memory_usage(key) or 0)
    return total / max(len(endpoints), 1)


async def used_memory(redis: RedisClient) -> tuple[int, int]:
    """``used_memory`` and the part of it in client connections' buffers."""
    info = await redis.info("memory")
    return int(info["used_memory"]), int(info["mem_clients_normal"])


async def cluster_run(args: argparse.Namespace, folder: Path) -> tuple[Registering, list[str]]:
    out: list[str] = []
    config = DemoConfig(state=folder / "cluster", hash_key="$remote_addr$remote_port")
    demo = ClusterDemo(config).start()
    redis = connect(demo.store_url)
    simulators = Simulators(demo.coap_uri, args.devices, args.processes, args.lifetime, "bench")
    try:
        before, clients_before = await used_memory(redis)
        await simulators.start()
        registering = await simulators.registered(lambda: redis.zcard("lwm2m:endpoints"), args.timeout)
        endpoints = [e.decode() for e in await redis.zrange("lwm2m:endpoints", 0, -1)]
        out.append(
            f"cluster  registered {registering.registered:,}/{registering.devices:,} in "
            f"{registering.seconds:.1f} s: {registering.rate:,.0f} registrations/s "
            f"(Redis lists {len(endpoints):,})"
        )
        # A node claims a device after its Register (an event the node follows): let them land.
        settled = time.monotonic()
        while True:
            owned = await owners(redis, endpoints)
            unowned = sum(not node for node in owned.values())
            if not unowned or time.monotonic() - settled > 10:
                break
            await asyncio.sleep(0.25)
        per_node = Counter(node for node in owned.values() if node)
        out.append(
            "         owners: "
            + ", ".join(f"{n} {c:,}" for n, c in sorted(per_node.items()))
            + f", none {unowned:,} ({time.monotonic() - settled:.1f} s after the last registration)"
        )
        after, clients_after = await used_memory(redis)
        streams = 0
        for key in (EVENTS_KEY, *(f(n.node_id) for n in demo.nodes for f in (request_stream, reply_stream))):
            streams += int(await redis.memory_usage(key) or 0)
        delta, count = after - before, max(len(endpoints), 1)
        buffers = clients_after - clients_before
        out.append(
            f"redis    {delta / count:,.0f} bytes per registration ({delta / 1e6:.1f} MB, "
            f"{len(endpoints):,} devices); without the connections' buffers ({buffers / 1e6:.1f} MB)"
            f" and the event and bus streams ({streams / 1e6:.1f} MB):"
            f" {(delta - buffers - streams) / count:,.0f} bytes"
        )

        sample = endpoints[:: max(1, len(endpoints) // 100)][:100]
        own_keys = await endpoint_bytes(redis, sample)
        out.append(
            f"         keys of one endpoint (registration, owner, observations, history, id): "
            f"{own_keys:,.0f} bytes (MEMORY USAGE, mean of {len(sample)}; index entries not counted)"
        )

        # REST reads: one device of n1, through n1 (its owner) and through n2.
        by_id = {node.node_id: node for node in demo.nodes}
        device = next(ep for ep, node in sorted(owned.items()) if node == "n1")
        async with httpx.AsyncClient(timeout=30) as http:
            same = await read_latencies(http, by_id["n1"].api, device, args.reads)
            other = await read_latencies(http, by_id["n2"].api, device, args.reads)
        for name, took in (("same node ", same), ("other node", other)):
            out.append(
                f"read     {name} p50 {percentile(took, 0.5) * 1e3:6.2f} ms  p99 "
                f"{percentile(took, 0.99) * 1e3:6.2f} ms  ({len(took)} reads)"
            )
        added = (statistics.median(other) - statistics.median(same)) * 1e3
        out.append(f"         routing adds {added:.2f} ms at p50")

        # Failover: kill -9 the node that owns the most devices, reload nginx without it.
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
        while left:
            if time.monotonic() - killed > args.timeout:
                break
            await asyncio.sleep(0.25)
            now = await owners(redis, left)
            left = [ep for ep, node in now.items() if node in ("", victim_id)]
        took = time.monotonic() - killed
        survivors = [n for n in demo.nodes if n is not victim]
        checked = 0
        async with httpx.AsyncClient(timeout=30) as http:
            for endpoint in orphans[:: max(1, len(orphans) // 5)][:5]:
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
        out.append(
            f"failover kill -9 of {victim_id} ({len(orphans):,} devices), nginx reloaded after "
            f"{reloaded:.2f} s: {status} owned by a live node after {took:.1f} s "
            f"(Updates every {update:g} s); reads of sampled ones through both survivors: "
            f"{checked}/{2 * len(orphans[:: max(1, len(orphans) // 5)][:5])} answered"
        )
    finally:
        await simulators.stop()
        await redis.aclose()
        demo.stop()
    return registering, out


async def sqlite_run(args: argparse.Namespace, folder: Path) -> Registering:
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
    simulators = Simulators(f"coap://127.0.0.1:{coap}", args.devices, args.processes, args.lifetime, "solo")
    try:
        wait_http(f"http://127.0.0.1:{http_port}/api/clients", proc, "the SQLite node", log)
        await simulators.start()
        database = sqlite3.connect(f"file:{folder / 'sqlite' / 'lwm2m.db'}?mode=ro", uri=True)

        async def count() -> int:
            return int(database.execute("SELECT count(*) FROM registrations").fetchone()[0])

        try:
            return await simulators.registered(count, args.timeout)
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
    print(
        f"{args.devices:,} simulated devices in {args.processes} processes, lifetime {args.lifetime} s, "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="lwm2m-bench-cluster-") as tmp:
        folder = Path(tmp) if args.state is None else args.state.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        cluster, lines = await cluster_run(args, folder)
        for line in lines:
            print(line, flush=True)
        solo = await sqlite_run(args, folder)
        print(
            f"sqlite   one node: registered {solo.registered:,}/{solo.devices:,} in {solo.seconds:.1f} s: "
            f"{solo.rate:,.0f} registrations/s (cluster/sqlite {cluster.rate / max(solo.rate, 1e-9):.2f})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--devices", type=int, default=3000, help="simulated devices (30000 for the issue's size)"
    )
    parser.add_argument("--processes", type=int, default=3, help="simulator processes")
    parser.add_argument(
        "--lifetime", type=int, default=30, help="registration lifetime (sets the Update period)"
    )
    parser.add_argument("--reads", type=int, default=300, help="REST reads per measurement")
    parser.add_argument("--state", type=Path, help="keep the processes' state and logs in this folder")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds any phase may take")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
