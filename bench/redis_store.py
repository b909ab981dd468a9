"""Redis memory per registration with one observation, and the store's write rate, through
``RedisStore`` on a Redis started for the run (Debian's ``redis-server``, free port).

Each device registers as a typical IPSO device does (a dozen object links, queue mode off)
and gets one observation of a temperature resource; ``INFO memory``'s ``used_memory`` before
and after (measured with the store's connections closed: their buffers are no data) gives the
bytes per device (the issue's target: at most 2 KB). Then an expiry sweep
removes them all, timed.

    python bench/redis_store.py [--count 10000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from lwm2m.model.path import Path
from lwm2m.protocol.registration import ObjectLink, Registration
from lwm2m.storage.base import Observation
from lwm2m.storage.redis import RedisStore

LINKS = ((1, 0), (3, 0), (4, 0), (5, 0), (6, 0), (3303, 0), (3303, 1), (3304, 0), (3311, 0), (3311, 1))
OBJECTS = (*(ObjectLink(o, i) for o, i in LINKS), ObjectLink(0, 1), ObjectLink(3442, None, "1.1"))


def registration(i: int) -> Registration:
    return Registration(
        endpoint=f"urn:imei:35{i:013d}",
        registration_id=f"{i:08x}-4c1e-4bd0-9a2a-1f0e6b1c{i % 65536:04x}",
        address=("10.20.30.40", 40000 + i % 20000),
        lifetime=300,
        lwm2m_version="1.1",
        binding="U",
        objects=OBJECTS,
        content_formats=(60, 110, 112),
        registered_at=1.7e9 + i,
        last_update=1.7e9 + i,
    )


def observation(i: int) -> Observation:
    return Observation(
        token=i.to_bytes(8, "big"),
        endpoint=f"urn:imei:35{i:013d}",
        registration_id=f"{i:08x}-4c1e-4bd0-9a2a-1f0e6b1c{i % 65536:04x}",
        paths=(Path.parse("/3303/0/5700"),),
        content_format=112,
        created_at=1.7e9 + i,
    )


def used_memory(port: int) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "memory"], capture_output=True, check=True, text=True
    ).stdout
    return int(next(line for line in out.splitlines() if line.startswith("used_memory:")).split(":")[1])


async def run(url: str, port: int, count: int, concurrency: int) -> None:
    store = RedisStore(url)
    await store.registrations.get("warm-up")  # the scripts are loaded before the baseline
    await store.link.client().aclose()  # client buffers are not data: measure without connections
    before = used_memory(port)
    started = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await store.registrations.add(registration(i))
            await store.observations.add(observation(i))

    await asyncio.gather(*(one(i) for i in range(count)))
    took = time.perf_counter() - started
    await store.link.client().aclose()
    await asyncio.sleep(0.2)  # the server frees the closed connections' buffers
    after = used_memory(port)
    per = (after - before) / count
    print(f"{count} registrations + 1 observation each: {took:.2f} s ({count / took:,.0f} devices/s)")
    print(f"Redis used_memory delta: {after - before:,} bytes = {per:,.0f} bytes per device (target <= 2048)")
    started = time.perf_counter()
    taken = 0
    while batch := await store.registrations.remove_expired(1.8e9, limit=1000):
        taken += len(batch)
    took = time.perf_counter() - started
    print(f"expiry sweep: {taken} registrations removed in {took:.2f} s ({taken / took:,.0f}/s)")
    store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is missing (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                folder,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.02)
            version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
            print(f"redis-server {version.split()[2]}")
            asyncio.run(run(f"redis://127.0.0.1:{port}/0", port, args.count, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
