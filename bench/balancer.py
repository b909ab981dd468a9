"""What nginx's UDP balancer costs: CoAP GETs per second direct to a node and through nginx.

One CoAP endpoint of ours (``coap_loop.our_server``: a piggybacked 2.05 for ``GET /t``) runs
in this process; the load generator of ``coap_loop`` runs in another process and keeps
``--inflight`` confirmable GETs outstanding for ``--seconds``, first straight at the endpoint,
then at an nginx (Debian's, stream module, ``tests/helpers/nginx.py``: one worker, ``hash
$remote_addr consistent``) whose only upstream is that endpoint, and so on for ``--repeat``
rounds; the best round of each is kept. Printed: both rates, their ratio, and nginx's CPU
time per request (its worker's utime + stime from /proc).

    python bench/balancer.py [--seconds 5] [--inflight 64] [--repeat 2]

On two cores the run through nginx has three busy processes (generator, nginx, endpoint)
where the direct run has two: the ratio includes that contention, nginx's CPU per request
does not.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests.helpers.nginx

from coap_loop import HOST, Load, free_port, generate, our_server  # noqa: E402
from tests.helpers.nginx import NginxBalancer  # noqa: E402


@dataclass(frozen=True, slots=True)
class Round:
    load: Load
    nginx_cpu: float  # seconds of nginx worker CPU over the run (0 direct)

    @property
    def rate(self) -> float:
        return self.load.rate


def cpu_seconds(pids: set[int]) -> float:
    """utime + stime of ``pids`` in seconds (processes that are gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


async def load(target: int, seconds: float, warmup: float, inflight: int) -> Load:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=generate, args=(HOST, target, seconds, warmup, inflight, True, child))
    proc.start()
    child.close()
    try:
        # The waiting thread sleeps in recv(): the endpoint keeps the GIL to itself.
        return await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, parent.recv), seconds + warmup + 30
        )
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


async def measure(through_nginx: bool, folder: Path, seconds: float, warmup: float, inflight: int) -> Round:
    port = free_port()
    async with our_server(port):
        if not through_nginx:
            return Round(await load(port, seconds, warmup, inflight), 0.0)
        with NginxBalancer(folder, udp_upstreams=[(HOST, port)]) as balancer:
            workers = balancer.workers()
            before = cpu_seconds(workers)
            result = await load(balancer.udp_port, seconds, warmup, inflight)
            return Round(result, cpu_seconds(workers) - before)


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="rounds (direct, then nginx), best kept")
    args = parser.parse_args(argv)

    uvloop = uvloop_available()
    print(
        f"{args.inflight} CON GETs in flight, {args.seconds:g} s per run, {args.repeat} rounds, "
        f"loopback {HOST}, {'uvloop' if uvloop else 'asyncio'}"
    )
    direct: list[Round] = []
    proxied: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="lwm2m-bench-nginx-") as tmp:
        for index in range(max(1, args.repeat)):
            for through, rounds in ((False, direct), (True, proxied)):
                folder = Path(tmp) / f"nginx-{index}"
                started = time.monotonic()
                rounds.append(
                    run(measure(through, folder, args.seconds, args.warmup, args.inflight), use_uvloop=uvloop)
                )
                took = time.monotonic() - started
                name = "nginx " if through else "direct"
                print(
                    f"  round {index + 1} {name} {rounds[-1].rate:10,.0f} requests/s ({took:.1f} s)",
                    flush=True,
                )
    best_direct = max(direct, key=lambda r: r.rate)
    best_proxied = max(proxied, key=lambda r: r.rate)
    for name, best in (("direct", best_direct), ("nginx", best_proxied)):
        extra = f", {best.load.lost} lost" if best.load.lost else ""
        extra += f", {best.load.bad} bad answers" if best.load.bad else ""
        print(f"{name:8s} {best.rate:10,.0f} requests/s{extra}")
    ratio = best_proxied.rate / best_direct.rate if best_direct.rate else 0.0
    print(f"nginx/direct {ratio:6.2f}")
    per_request = best_proxied.nginx_cpu / max(best_proxied.load.total, 1)
    print(f"nginx CPU    {per_request * 1e6:6.1f} µs/request (its worker, request and answer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
