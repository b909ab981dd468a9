"""Round trip of the request bus between two nodes on loopback (lwm2m.cluster.bus).

Starts Debian's ``redis-server`` on a free port (``--cluster``: a three-master Redis Cluster;
or uses ``--url``, also a ``redis+cluster://`` one), makes two nodes in this process, each
with its own client, and times ``--count`` requests from A to B one after another (a small
dict there, a small dict back), then the same number with ``--concurrency`` in flight.
Prints p50/p99 of the sequential round trips and the throughput of the concurrent ones.

    python bench/cluster_bus.py [--count 1000] [--concurrency 50] [--cluster | --url redis://HOST:PORT/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lwm2m.cluster import BusConfig, Payload, RequestBus
from lwm2m.storage.redisconn import connect


async def _answer(payload: Payload) -> Payload:
    return {"status": "2.05", "echo": payload}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(url: str, count: int, concurrency: int) -> dict[str, Any]:
    config = BusConfig()
    a = RequestBus(connect(url), "bench-a", config)
    b = RequestBus(connect(url), "bench-b", config)
    await a.start()
    await b.start(_answer)
    try:
        for i in range(50):  # warm up connections and scripts
            await a.request("bench-b", {"op": "read", "i": i}, timeout=5)
        times: list[float] = []
        for i in range(count):
            started = time.perf_counter()
            await a.request("bench-b", {"op": "read", "path": "/3303/0/5700", "i": i}, timeout=5)
            times.append(time.perf_counter() - started)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await a.request("bench-b", {"op": "read", "i": i}, timeout=10)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    finally:
        await a.close()
        await b.close()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": _pct(times, 0.99) * 1000,
        "max_ms": max(times) * 1000,
        "concurrent_per_s": count / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--url", help="a Redis to use instead of starting one")
    parser.add_argument("--cluster", action="store_true", help="start a three-master Redis Cluster")
    args = parser.parse_args()
    if args.url:
        figures = asyncio.run(run(args.url, args.count, args.concurrency))
    elif args.cluster:
        from tests.helpers.redis import redis_cluster

        with tempfile.TemporaryDirectory() as folder, redis_cluster(Path(folder)) as cluster:
            figures = asyncio.run(run(cluster.url, args.count, args.concurrency))
    else:
        from tests.helpers.redis import redis_server

        with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as server:
            figures = asyncio.run(run(server.url, args.count, args.concurrency))
    where = (
        "Redis Cluster"
        if args.cluster or (args.url or "").partition("://")[0].endswith("cluster")
        else "Redis"
    )
    print(f"bus round trip ({where}), {args.count} sequential requests A -> B on loopback:")
    print("  p50 {p50_ms:.3f} ms   p99 {p99_ms:.3f} ms   max {max_ms:.3f} ms".format(**figures))
    rate = figures["concurrent_per_s"]
    print(f"  {args.count} requests with {args.concurrency} in flight: {rate:.0f} requests/s")


if __name__ == "__main__":
    main()
