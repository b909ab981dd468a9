"""A million registrations in the cluster's Redis: Redis, three ``lwm2m server`` nodes (and
nginx, unused here) as ``deploy/cluster_demo.py`` starts them, and a raw registration generator.

The generator builds CoAP Register requests itself (RFC 7252 §3: a confirmable POST
``/rd?ep=…&lt=…&lwm2m=1.1&b=U`` with a link-format payload, LwM2M-TS-Transport 1.2 §6.4.1)
instead of running a client per device: ``--generators`` processes, each with ``--sockets``
UDP sockets on a loopback address of its own (127.0.0.41, .42, …) and ``--window`` requests
in flight, sends to each node's CoAP port in turn (straight, not through nginx: a million
device addresses would be a million UDP sessions at nginx, see docs/cluster.md). A request
with no answer is sent again (2, 4, 8 s) as a device would, up to three times; one answered
5.03 (a node at its cap of registrations in flight) is sent again after the answer's Max-Age.
Many endpoints share one source port: the nodes keep each registration's address, none of them is asked
anything afterwards.

Every registration has the lifetime ``--lifetime`` (a day by default; the nodes accept up to
that, ``--max-lifetime 86400``), so none expires during the run.

Printed: progress every ``--progress`` s (the registrations Redis lists), then the time and
rate of all of them, the answers' codes, and Redis ``used_memory`` (total, and per registration
against the value before the first one; also without the connections' buffers and the
bounded event and bus streams) with the ``MEMORY USAGE`` of one endpoint's keys.

At the end, and on Ctrl-C, it empties its own Redis (FLUSHALL) and stops every process it
started.

    python bench/cluster_million.py [--registrations 1000000] [--generators 3] [--window 256]
    python bench/cluster_million.py --registrations 20000      # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "deploy"))

from cluster_demo import ClusterDemo, DemoConfig  # noqa: E402

from lwm2m.cluster.bus import reply_stream, request_stream  # noqa: E402
from lwm2m.cluster.events import EVENTS_KEY  # noqa: E402
from lwm2m.cluster.ownership import owner_key  # noqa: E402
from lwm2m.coap.message import Message  # noqa: E402
from lwm2m.coap.numbers import Code, Type  # noqa: E402
from lwm2m.storage.redisconn import endpoint_tag  # noqa: E402
from lwm2m.transport.eventloop import run as run_loop  # noqa: E402  (uvloop where installed)

FIRST_GENERATOR_HOST = 41  # generator process i binds 127.0.0.(41 + i)
PAYLOAD = b"</1/0>,</3/0>,</3303/0>"
# RFC 7252 §3: the message type in bits 5-4 of the first byte; codes as class.detail in one byte.
CON, NON, ACK, RST = (int(t) for t in (Type.CON, Type.NON, Type.ACK, Type.RST))
CREATED = int(Code.CREATED)
SERVICE_UNAVAILABLE = int(Code.SERVICE_UNAVAILABLE)
DEFAULT_MAX_AGE = 60.0  # RFC 7252 §5.10.5: a 5.03 without Max-Age
LINK_FORMAT = 40  # application/link-format (RFC 6690)
RETRANSMIT = (2.0, 4.0, 8.0, 16.0)  # seconds waited for each try's answer
EMPTY = 0x00  # the code of an empty ACK
SEPARATE_WAIT = 60.0  # seconds a separate response may take after its empty ACK


def register(mid: int, token: bytes, endpoint: str, lifetime: int) -> bytes:
    """A confirmable Register of ``endpoint`` (LwM2M-TS-Transport 1.2 §6.4.1), as bytes."""
    return Message.build(
        Type.CON,
        Code.POST,
        mid,
        token,
        uri_path=("rd",),
        content_format=LINK_FORMAT,
        uri_query=(f"ep={endpoint}", f"lt={lifetime}", "lwm2m=1.1", "b=U"),
        payload=PAYLOAD,
    ).encode()


def endpoint_name(index: int) -> str:
    return f"mil-{index:07d}"


@dataclass(frozen=True)
class Job:
    """What one generator process registers: endpoints ``start`` … ``stop - 1``."""

    host: str
    start: int
    stop: int
    nodes: tuple[tuple[str, int], ...]
    sockets: int
    window: int
    lifetime: int


@dataclass
class Outcome:
    """What one generator process saw."""

    codes: Counter[int] = field(default_factory=Counter)
    deferred: int = 0  # 5.03 answers (a node's cap on registrations in flight): sent again after Max-Age
    lost: int = 0
    retransmissions: int = 0
    seconds: float = 0.0


class Lane(asyncio.DatagramProtocol):
    """One UDP socket: its requests in flight by message id (answered by an ACK: piggybacked,
    or empty when the node answers later) and by token (a separate response, RFC 7252 §5.2.2,
    acknowledged here when confirmable)."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.separate: dict[bytes, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.next_mid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 4:
            return
        kind = (data[0] >> 4) & 3
        if kind in (CON, NON):  # a separate response (or its retransmission)
            if kind == CON and self.transport is not None:
                self.transport.sendto(bytes([0x40 | ACK << 4, 0]) + data[2:4], addr)
            future = self.separate.get(data[4 : 4 + (data[0] & 0x0F)])
        else:
            future = self.waiting.pop(int.from_bytes(data[2:4], "big"), None)
        if future is not None and not future.done():
            future.set_result(data if kind != RST else b"")

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error: the request is sent again at its timeout

    def mid(self) -> int:
        while True:
            self.next_mid = (self.next_mid + 1) & 0xFFFF
            if self.next_mid not in self.waiting:
                return self.next_mid


async def generate_async(job: Job) -> Outcome:
    loop = asyncio.get_running_loop()
    lanes: list[Lane] = []
    for _ in range(job.sockets):
        _, lane = await loop.create_datagram_endpoint(Lane, local_addr=(job.host, 0))
        lanes.append(lane)
    outcome = Outcome()
    indexes = iter(range(job.start, job.stop))
    started = time.monotonic()

    async def one(index: int, lane: Lane) -> None:
        assert lane.transport is not None
        token = index.to_bytes(4, "big")
        target = job.nodes[index % len(job.nodes)]
        try:
            while True:
                reply = await exchange(token, target, lane, endpoint_name(index))
                code = reply[1] if reply else -1
                if code != SERVICE_UNAVAILABLE:
                    break
                # The node is at its cap of registrations in flight: a device registers again
                # after the 5.03's Max-Age (RFC 7252 §5.9.3.4), with a new message id.
                outcome.deferred += 1
                age = Message.decode(reply).max_age
                await asyncio.sleep(DEFAULT_MAX_AGE if age is None else float(age))
            if reply is None:
                outcome.lost += 1
            else:
                outcome.codes[code] += 1
        finally:
            lane.separate.pop(token, None)

    async def exchange(token: bytes, target: tuple[str, int], lane: Lane, endpoint: str) -> bytes | None:
        """One confirmable Register and its answer (b"" for a Reset), or None when none came."""
        assert lane.transport is not None
        mid = lane.mid()
        datagram = register(mid, token, endpoint, job.lifetime)
        answer: asyncio.Future[bytes] = loop.create_future()
        lane.separate[token] = answer
        for attempt, wait in enumerate(RETRANSMIT):
            future: asyncio.Future[bytes] = loop.create_future()
            lane.waiting[mid] = future
            lane.transport.sendto(datagram, target)
            outcome.retransmissions += attempt > 0
            try:
                reply = await asyncio.wait_for(future, wait)
            except TimeoutError:
                lane.waiting.pop(mid, None)
                continue
            if reply and reply[1] == EMPTY:  # received; the answer follows on its own
                try:
                    return await asyncio.wait_for(answer, SEPARATE_WAIT)
                except TimeoutError:
                    return None
            return reply
        return None

    async def worker(number: int) -> None:
        lane = lanes[number % len(lanes)]
        for index in indexes:
            await one(index, lane)

    await asyncio.gather(*(worker(n) for n in range(job.window)))
    outcome.seconds = time.monotonic() - started
    for lane in lanes:
        if lane.transport is not None:
            lane.transport.close()
    return outcome


def generate(job: Job, answer: Connection) -> None:
    """A generator process: registers its endpoints, sends its Outcome back."""
    try:
        answer.send(run_loop(generate_async(job)))
    except KeyboardInterrupt:
        pass
    finally:
        answer.close()


def redis_cli(port: int, *command: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout


def info_memory(port: int) -> dict[str, str]:
    lines = redis_cli(port, "info", "memory").splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads): fields 14 and 15 of /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: the clean-up runs either way."""
    raise KeyboardInterrupt


def say(line: str) -> None:
    print(line, flush=True)


def jobs(args: argparse.Namespace, nodes: Sequence[tuple[str, int]]) -> list[Job]:
    share, extra = divmod(args.registrations, args.generators)
    found, start = [], 0
    for index in range(args.generators):
        count = share + (index < extra)
        host = f"127.0.0.{FIRST_GENERATOR_HOST + index}"
        found.append(Job(host, start, start + count, tuple(nodes), args.sockets, args.window, args.lifetime))
        start += count
    return found


def run(args: argparse.Namespace, demo: ClusterDemo) -> None:
    port = demo.ports["redis"]
    nodes = [("127.0.0.1", node.coap_port) for node in demo.nodes]
    before = info_memory(port)
    pids = [node.proc.pid for node in demo.nodes if node.proc is not None]
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    ctx = mp.get_context("spawn")
    procs: list[tuple[mp.process.BaseProcess, Connection]] = []
    try:
        started = time.monotonic()
        for job in jobs(args, nodes):
            parent, child = ctx.Pipe(duplex=False)
            generator = ctx.Process(target=generate, args=(job, child), daemon=True)
            generator.start()
            child.close()
            procs.append((generator, parent))
        listed, shown = 0, started
        deadline = started + args.time_limit
        while any(proc.is_alive() for proc, _ in procs) and time.monotonic() < deadline:
            time.sleep(0.5)
            if time.monotonic() - shown >= args.progress:
                shown = time.monotonic()
                now = int(redis_cli(port, "zcard", "lwm2m:endpoints"))
                say(
                    f"  {shown - started:6.0f} s  {now:>9,} registered  "
                    f"({(now - listed) / args.progress:,.0f}/s)  used_memory "
                    f"{int(info_memory(port)['used_memory']) / 2**20:,.0f} MiB"
                )
                listed = now
        took = time.monotonic() - started
        cut = [proc for proc, _ in procs if proc.is_alive()]
        for proc in cut:  # at the time limit: what is registered by now is the figure
            proc.terminate()
            proc.join(10)
        if cut:
            say(
                f"stopped at the time limit ({args.time_limit:g} s): {len(cut)} generators were still "
                "sending (their answers' codes are not counted below)"
            )
        outcomes: list[Outcome] = []
        for proc, parent in procs:
            if proc not in cut and parent.poll():
                try:
                    outcomes.append(parent.recv())
                except EOFError:
                    say(f"a generator exited with {proc.exitcode} without its outcome")
        codes: Counter[int] = Counter()
        for outcome in outcomes:
            codes.update(outcome.codes)
        registered = int(redis_cli(port, "zcard", "lwm2m:endpoints"))
        named = {CREATED: "2.01", -1: "RST"}
        shown_codes = ", ".join(
            f"{named.get(c, f'{c >> 5}.{c & 31:02d}')} {n:,}" for c, n in sorted(codes.items())
        )
        say(
            f"registered {registered:,}/{args.registrations:,} in {took:.1f} s: "
            f"{registered / took:,.0f} registrations/s; answers: {shown_codes or 'none collected'}; "
            f"lost {sum(o.lost for o in outcomes):,}, sent again {sum(o.retransmissions for o in outcomes):,}"
            f"; 5.03 (at a node's cap, registered again after Max-Age) {sum(o.deferred for o in outcomes):,}"
        )
        spent = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        say(
            f"nodes    {spent:,.0f} CPU-s in all ({spent / took:.0%} of a core over the run): "
            f"{spent / max(registered, 1) * 1e3:.2f} ms per registration"
        )
        time.sleep(1.0)  # the nodes' claims and events after the last answers
        after = info_memory(port)
        used = int(after["used_memory"]) - int(before["used_memory"])
        buffers = int(after["mem_clients_normal"]) - int(before["mem_clients_normal"])
        streams = sum(
            int(redis_cli(port, "memory", "usage", key).strip() or 0)
            for key in (
                EVENTS_KEY,
                *(f(n.node_id) for n in demo.nodes for f in (request_stream, reply_stream)),
            )
        )
        count = max(registered, 1)
        say(
            f"redis    used_memory {int(after['used_memory']) / 2**30:.2f} GiB "
            f"(used_memory_rss {int(after['used_memory_rss']) / 2**30:.2f} GiB); "
            f"{used / count:,.0f} bytes per registration over {registered:,}; without the connections' "
            f"buffers ({buffers / 1e6:.1f} MB) and the event and bus streams ({streams / 1e6:.1f} MB): "
            f"{(used - buffers - streams) / count:,.0f} bytes"
        )
        sample = redis_cli(port, "zrandmember", "lwm2m:endpoints", "100").split()  # 100 registered ones
        own = 0
        for endpoint in sample:
            keys = [f"lwm2m:reg:{endpoint_tag(endpoint)}", owner_key(endpoint)]
            registration_id = redis_cli(port, "hget", keys[0], "id").strip()
            if registration_id:
                keys.append(f"lwm2m:regid:{registration_id}")
            for key in keys:
                own += int(redis_cli(port, "memory", "usage", key).strip() or 0)
        say(
            f"         keys of one endpoint (registration, owner, id): {own / max(len(sample), 1):,.0f}"
            " bytes "
            f"(MEMORY USAGE, mean of {len(sample)}; index entries not counted)"
        )
    finally:
        for proc, parent in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            parent.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--registrations", type=int, default=1_000_000)
    parser.add_argument("--generators", type=int, default=3, help="generator processes (one address each)")
    parser.add_argument("--sockets", type=int, default=256, help="UDP sockets per generator")
    parser.add_argument("--window", type=int, default=256, help="requests in flight per generator")
    parser.add_argument("--lifetime", type=int, default=86_400, help="registration lifetime (s)")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--time-limit", type=float, default=1500.0, help="seconds the generators may take")
    parser.add_argument("--state", type=Path, help="keep the processes' state and logs in this folder")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    # The nodes run this checkout's package too.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE.parent / "src"), os.environ.get("PYTHONPATH")])
    )
    say(
        f"{args.registrations:,} registrations from {args.generators} generator processes "
        f"({args.sockets} sockets, {args.window} in flight each), lifetime {args.lifetime} s, "
        f"{os.cpu_count()} cores, load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    with tempfile.TemporaryDirectory(prefix="lwm2m-bench-million-") as tmp:
        folder = Path(tmp) if args.state is None else args.state.resolve()
        demo = ClusterDemo(DemoConfig(state=folder / "cluster"))
        try:
            demo.start()
            run(args, demo)
        except KeyboardInterrupt:
            say("interrupted: cleaning up")
        finally:
            if demo.redis is not None and demo.redis.poll() is None:
                try:
                    redis_cli(demo.ports["redis"], "flushall")
                except (OSError, subprocess.SubprocessError) as exc:
                    say(f"FLUSHALL failed: {exc}")
            demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
