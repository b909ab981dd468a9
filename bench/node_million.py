"""One node at a million registrations: memory per registration and per observation, a lookup
and a paged listing, and how long ``lwm2m server`` takes to serve CoAP again after a restart on
a SQLite file that holds them.

1. memory store, in this process: ``--count`` registrations put straight into a ``MemoryStore``
   (as the registrar keeps them); this process's VmRSS grown over them, per registration; then
   the store's lookup by endpoint and a page of ``--limit`` from a random place, each timed
   ``--samples`` times (p50, p99, max);
2. observations: ``--observed`` devices register over CoAP with a ``Server`` in this process
   (its store in memory, or with ``--observe-store sqlite`` in a fresh file), each from an
   address of its own as a fleet's devices are (127.64.0.0 plus its number, sent through one of
   50 sockets with that source address chosen by ``IP_PKTINFO``); the sockets answer the
   server's Observe with 2.05 and an Observe option, and the server observes ``/3303/0/5700``
   on each; the VmRSS grown over the registrations, per registration (the registrar's and the
   store's part, the client's address among them), and over the observations, per observation
   (the store's record, the CoAP relation, the server's observation and the first answer);
3. SQLite: ``--count`` registrations, and an observation of each (``--no-stored-observations``:
   none), written into a fresh file (``lwm2m.db`` in a folder, as ``lwm2m server --data`` keeps
   it) through ``SqliteStore``; then ``lwm2m server --data`` is started on it and timed from
   its start to the first 2.01 to a Register sent to it (the server serves CoAP again), its
   VmRSS then, the time until it has taken up all the stored observations (it logs it) and
   its VmRSS then, and a lookup (``GET /api/clients/{ep}``) and a
   paged listing (``GET /api/clients?limit=&cursor=``, from a random place) through its REST
   API, each ``--samples`` times.

Targets (LwM2M server at fleet scale): memory store ≤ 1.5 GB for a million registrations with
one observation each, SQLite ≤ 1 GB; lookups and pages under 5 ms; CoAP served again within
30 s of a restart on a million.

Measured (2 cores, Python 3.11), a million devices with an address each: a registration 628 B
and an observation 737 B with the memory store, 1,424 MB in all; with SQLite 341 B and 704 B,
1,104 MB (the registrations in the file; the server's tables and the observations in memory).
Where it goes (``--trace``): a registration is its record (160 B), the client's address (a
tuple and its host, ~118 B), its name and ID (~60 B each), and the entries of the registrar's
and the store's tables (by name, by address, by ID, the page and expiry indexes); its times
are shared with the registrations of the same millisecond. An observation is the CoAP
relation's request (144 B, the request message itself shared by the relations made with an
equal one), the store's record (112 B), the server's observation (104 B), the transport's
relation (72 B), the token, the first answer, and the entries of four tables; at a million,
each table entry takes ~42 B. Duplicate detection keeps at most ``max_dedup_entries``
(100,000) messages, ~250 B each with a peer of its own (its one message in the record's own
slots). Until this bench gave each device an address of its own (all came from 50), the
address and the tables keyed by it were counted once for 20,000 devices: 1,413 MB measured
that way. A restart of
``lwm2m server`` on a million registrations with an observation each answers a Register with
2.01 after 5.9 s, with 687 MB, and has taken all the observations up after 30.6 s, with
1,431 MB: it serves while it reads and takes them up, a thousand at a time (it used to take
them all up first: 29.7 s to the first answer; without the observations, as this phase wrote
them before: 9.3 s, 651 MB).

    python bench/node_million.py [--count 1000000] [--observed 20000] [--samples 200]
    python bench/node_million.py --count 20000 --observed 2000     # a quick run
    python bench/node_million.py --phases observe --observed 20000 --trace 12   # where it goes
    python bench/node_million.py --phases observe --observed 1000000 --observe-store sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import ipaddress
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path as FsPath
from typing import Any

import httpx

ROOT = FsPath(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from registration_storm import option, register_datagram  # noqa: E402  (bench/, beside this file)

from lwm2m.model.path import Path  # noqa: E402
from lwm2m.protocol.registration import ObjectLink, Registration  # noqa: E402
from lwm2m.server.config import ServerConfig  # noqa: E402
from lwm2m.server.registrar import RegistrationLimits  # noqa: E402
from lwm2m.server.role import Server  # noqa: E402
from lwm2m.storage.base import Observation  # noqa: E402
from lwm2m.storage.memory import MemoryStore  # noqa: E402
from lwm2m.storage.sqlite import SqliteStore  # noqa: E402
from lwm2m.web.listing import encode_cursor  # noqa: E402

HOST = "127.0.0.1"
LIFETIME = 86400  # none expires during the run
OBJECTS = (ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, 0))
OBSERVED = Path.parse("/3303/0/5700")  # what each stored observation of the SQLite phase observes
TAKEN_UP = "stored observations taken up in"  # the server's log line once it has taken them all up


def rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def name(i: int) -> str:
    return f"node-{i:07d}"


def registration(i: int, now: float) -> Registration:
    return Registration(
        endpoint=name(i),
        registration_id=f"r{i:07x}",
        address=("10.0.0.1", 10000 + i % 50000),
        lifetime=LIFETIME,
        objects=OBJECTS,
        registered_at=now,
        last_update=now,
    )


def figures(took: list[float]) -> str:
    ms = sorted(t * 1e3 for t in took)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):6.3f} ms  p99 {p99:6.3f} ms  max {ms[-1]:6.3f} ms"


async def timed(calls: list[Any]) -> list[float]:
    took = []
    for call in calls:
        start = time.perf_counter()
        await call()
        took.append(time.perf_counter() - start)
    return took


async def memory_phase(args: argparse.Namespace) -> None:
    store = MemoryStore.create()
    now = time.time()
    gc.collect()
    before = rss()
    add = store.registrations.add
    for i in range(args.count):
        await add(registration(i, now))
    gc.collect()
    grown = rss() - before
    print(
        f"memory   {args.count:,} registrations in the store: {grown / 1e6:,.0f} MB of RSS, "
        f"{grown / args.count:,.0f} B each"
    )
    pick = random.Random(1)
    get = store.registrations.get
    page = store.registrations.page
    lookups = await timed(
        [functools.partial(get, name(pick.randrange(args.count))) for _ in range(args.samples)]
    )
    pages = await timed(
        [functools.partial(page, name(pick.randrange(args.count)), args.limit) for _ in range(args.samples)]
    )
    print(f"         lookup by endpoint   {figures(lookups)}")
    print(f"         a page of {args.limit:<5}     {figures(pages)}")


# Each device sends from an address of its own, 127.64.0.0 + its number (127.0.0.0/8 is local
# as a whole on Linux), through one of a few sockets bound to the wildcard address: the source
# address of each datagram chosen with IP_PKTINFO on ``sendmsg``, the address a datagram came
# to read with it on ``recvmsg`` (as lwm2m.transport.shared does for the simulator). So the
# server holds an address per device, as with a real fleet, and no state per device is kept
# here beyond a bit.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("@i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_ANCILLARY = socket.CMSG_SPACE(_PKTINFO.size)
FIRST_ADDRESS = int(ipaddress.IPv4Address("127.64.0.0"))


def device_address(i: int) -> bytes:
    return (FIRST_ADDRESS + i).to_bytes(4, "big")


class Devices:
    """Many devices behind one socket, each at an address of its own: 2.01s counted, each
    confirmable GET (an Observe) answered 2.05 with an Observe option and a plain-text value,
    from the address it was sent to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, answered: bytearray) -> None:
        self.created = 0
        self.answered = answered  # a bit per device (its token is its number): 2.01 seen
        sock = self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        loop.add_reader(sock.fileno(), self._readable)
        self._loop = loop

    def send(self, data: bytes, source: bytes, to: tuple[str, int]) -> None:
        ancillary = [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, source, b"\0\0\0\0"))]
        with contextlib.suppress(BlockingIOError):  # lost as UDP may be: sent again
            self.sock.sendmsg([data], ancillary, 0, to)

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        for _ in range(64):
            try:
                data, ancdata, _, addr = self.sock.recvmsg(2048, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            to = b"\x7f\0\0\x01"
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    to = _PKTINFO.unpack(value[: _PKTINFO.size])[1]  # the address it came to
            self._received(data, to, addr)

    def _received(self, data: bytes, to: bytes, addr: tuple[str, int]) -> None:
        kind, tkl, code = (data[0] >> 4) & 3, data[0] & 15, data[1]
        if code == 0x41:
            i = int.from_bytes(data[4 : 4 + tkl], "big")
            if not self.answered[i >> 3] & (1 << (i & 7)):
                self.answered[i >> 3] |= 1 << (i & 7)
                self.created += 1
        elif code == 0x01 and kind == 0:  # CON GET
            head = bytes((0x60 | tkl, 0x45)) + data[2:4] + data[4 : 4 + tkl]
            self.send(head + option(6, b"\x01") + option(6, b"") + b"\xff21.5", to, addr)


def top(diff: list[tracemalloc.StatisticDiff], count: int, per: int, what: str) -> None:
    """The ``count`` places that allocated most over the registrations or the observations, in
    bytes per ``what``."""
    total = sum(d.size_diff for d in diff)
    print(f"         tracemalloc: {total / per:,.0f} B per {what} in all; the top {count}:")
    for d in sorted(diff, key=lambda d: d.size_diff, reverse=True)[:count]:
        frame = d.traceback[0]
        where = frame.filename
        if where.startswith(str(ROOT)):
            where = os.path.relpath(where, ROOT)
        blocks = d.count_diff / per
        print(f"         {d.size_diff / per:8,.0f} B  {blocks:5.2f} blocks  {where}:{frame.lineno}")
        for caller in list(d.traceback)[1:]:  # with --trace-depth above 1
            print(f"                                 from {caller.filename}:{caller.lineno}")


async def observation_phase(args: argparse.Namespace) -> None:
    if args.observe_store == "sqlite":
        with (
            tempfile.TemporaryDirectory(prefix="node-million-", dir=args.state) as folder,
            SqliteStore(FsPath(folder) / "lwm2m.db") as store,
        ):
            await _observations(args, store)
    else:
        await _observations(args, None)


async def _observations(args: argparse.Namespace, store: SqliteStore | None) -> None:
    loop = asyncio.get_running_loop()
    limits = RegistrationLimits(rate=None)  # every device registers from 127.0.0.1 at once
    server = Server(ServerConfig(host=HOST, port=0, registration_limits=limits), store)
    print(f"observe  the server's store: {args.observe_store}")
    await server.start()
    answered = bytearray(args.observed // 8 + 1)  # 125 kB for a million
    lanes = [Devices(loop, answered) for _ in range(50)]
    peer = (HOST, server.port)
    gc.collect()
    start_rss = empty = rss()

    def created() -> int:
        return sum(lane.created for lane in lanes)

    def send(i: int, mid: int) -> None:
        data = register_datagram(mid & 0xFFFF, i.to_bytes(4, "big"), name(i))
        lanes[i % len(lanes)].send(data, device_address(i), peer)

    if args.trace:
        tracemalloc.start(args.trace_depth)
        traced = tracemalloc.take_snapshot()
    key = "traceback" if args.trace_depth > 1 else "lineno"
    try:
        # At most WINDOW Registers unanswered at once (more would overflow the socket's buffer
        # and be lost), then those still unanswered sent again (a new Message ID) until every
        # device has its 2.01.
        window = 2000
        for i in range(args.observed):
            send(i, i)
            if i % 200 == 199:
                while i + 1 - created() > window:
                    await asyncio.sleep(0.002)
        deadline = time.monotonic() + max(120.0, args.observed / 1000)
        round_ = 1
        while created() < args.observed:
            if time.monotonic() > deadline:
                raise TimeoutError(f"registrations missing: {args.observed - created():,}")
            before_wait = created()
            await asyncio.sleep(1.0)
            if created() == before_wait:  # quiet for a second: send the rest again
                for i in range(args.observed):
                    if not answered[i >> 3] & (1 << (i & 7)):
                        send(i, i + round_ * 7919)
                round_ += 1
        gc.collect()
        before = rss()
        print(
            f"register {args.observed:,} registrations over CoAP (the server's own, beside the store's): "
            f"{(before - empty) / 1e6:,.0f} MB of RSS, {(before - empty) / args.observed:,.0f} B each"
        )
        if args.trace:
            registered = tracemalloc.take_snapshot().compare_to(traced, key)
            top(registered, args.trace, args.observed, "registration")
            traced = tracemalloc.take_snapshot()
        kept = []
        devices = iter(range(args.observed))

        async def observe() -> None:  # 200 at a time, and no task per observation made here
            for i in devices:
                kept.append(await server.observe(name(i), "/3303/0/5700", timeout=30))

        await asyncio.gather(*(observe() for _ in range(200)))
        gc.collect()
        grown = rss() - before
        print(
            f"observe  {args.observed:,} observations (one per registered device): "
            f"{grown / 1e6:,.0f} MB of RSS, {grown / args.observed:,.0f} B each"
            + (" (traced: tracemalloc's own memory counts in the RSS)" if args.trace else "")
        )
        print(
            f"process  RSS {rss() / 1e6:,.0f} MB with the {args.observed:,} registrations and observations "
            f"({start_rss / 1e6:,.0f} MB with the server started and none)"
        )
        if args.trace:
            top(tracemalloc.take_snapshot().compare_to(traced, key), args.trace, args.observed, "observation")
            tracemalloc.stop()
    finally:
        await server.stop()
        for lane in lanes:
            lane.close()


async def sqlite_phase(args: argparse.Namespace, folder: FsPath) -> None:
    now = time.time()
    started = time.monotonic()
    observed = args.count if args.stored_observations else 0
    with SqliteStore(folder / "lwm2m.db") as store:
        add = store.registrations.add
        for i in range(args.count):
            await add(registration(i, now))
        observe = store.observations.add
        for i in range(observed):
            token = i.to_bytes(4, "big")
            await observe(Observation(token, name(i), f"r{i:07x}", (OBSERVED,), content_format=0))
    size = (folder / "lwm2m.db").stat().st_size
    print(
        f"sqlite   {args.count:,} registrations and {observed:,} observations written in "
        f"{time.monotonic() - started:,.1f} s ({size / 1e6:,.0f} MB file)"
    )
    coap, http = free_port(), free_port(socket.SOCK_STREAM)
    argv = [sys.executable, "-m", "lwm2m", "server", "--data", str(folder), "--host", HOST]
    argv += ["--coap-port", str(coap), "--http-port", str(http), "--max-lifetime", str(LIFETIME)]
    argv += ["--max-registrations", str(args.count + 1000)]  # room for the probe beside them
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        probe.settimeout(0.05)
        start = time.monotonic()
        log_path = folder / "server.log"  # its INFO lines: when the stored observations are all taken up
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
        try:
            mid = 0
            answers: dict[str, int] = {}  # codes answered before the 2.01, and how often
            heard = 0.0  # seconds from the start to its first CoAP answer
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"lwm2m server ended with {proc.returncode}")
                if time.monotonic() - start > args.timeout:
                    raise TimeoutError(f"no 2.01 within {args.timeout} s (answers: {answers})")
                mid = (mid + 1) & 0xFFFF
                probe.sendto(register_datagram(mid, b"pr" + mid.to_bytes(2, "big"), "probe"), (HOST, coap))
                try:
                    data = probe.recv(2048)
                except (TimeoutError, ConnectionRefusedError):  # not listening yet
                    time.sleep(0.05)
                    continue
                heard = heard or time.monotonic() - start
                if data[1] == 0x41:
                    break
                code = f"{data[1] >> 5}.{data[1] & 31:02d}"
                answers[code] = answers.get(code, 0) + 1
                time.sleep(0.05)  # a 5.03 while it starts: asked again, not flooded
            served = time.monotonic() - start
            resident = rss(proc.pid)
            print(
                f"restart  lwm2m server on them answers CoAP {heard:,.1f} s after its start, a Register "
                f"with 2.01 {served:,.1f} s after it; RSS then {resident / 1e6:,.0f} MB "
                f"({resident / args.count:,.0f} B per registration)"
                + (f"; answered before: {answers}" if answers else "")
            )
            if observed:
                # Taken up while CoAP is served: when the last is, and the RSS then.
                while TAKEN_UP not in log_path.read_text(errors="replace"):
                    if proc.poll() is not None or time.monotonic() - start > args.timeout:
                        raise TimeoutError(f"stored observations not all taken up within {args.timeout} s")
                    time.sleep(0.1)
                line = next(x for x in log_path.read_text(errors="replace").splitlines() if TAKEN_UP in x)
                resident = rss(proc.pid)
                print(
                    f"         its {observed:,} stored observations all taken up "
                    f"{time.monotonic() - start:,.1f} s after its start; RSS then {resident / 1e6:,.0f} MB"
                    f" (its log: {line.split(': ', 1)[-1].strip()!r})"
                )
            pick = random.Random(2)
            base = f"http://{HOST}:{http}/api/clients"
            async with httpx.AsyncClient(timeout=30) as client:
                # The REST API starts after the server: waited for as the CoAP answer was.
                while True:
                    try:
                        await client.get(base, params={"limit": "1"})
                        break
                    except httpx.TransportError:
                        if proc.poll() is not None or time.monotonic() - start > args.timeout:
                            raise
                        await asyncio.sleep(0.1)

                async def lookup(i: int) -> None:
                    answer = await client.get(f"{base}/{name(i)}")
                    answer.raise_for_status()

                async def page(i: int) -> None:
                    # The page after endpoint i, as a client paging through holds its cursor.
                    params = {"limit": str(args.limit), "cursor": encode_cursor(name(i))}
                    answer = await client.get(base, params=params)
                    answer.raise_for_status()
                    assert len(answer.json()["clients"]) == min(args.limit, args.count - 1 - i)

                picks = [pick.randrange(args.count) for _ in range(args.samples)]
                lookups = await timed([functools.partial(lookup, i) for i in picks])
                pages = await timed([functools.partial(page, i) for i in picks])
            print(f"         GET /api/clients/{{ep}}               {figures(lookups)}")
            print(f"         GET /api/clients?limit={args.limit}&cursor=  {figures(pages)}")
            print(f"         RSS at the end {rss(proc.pid) / 1e6:,.0f} MB")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000, help="registrations in the stores")
    parser.add_argument(
        "--observed", type=int, default=20_000, help="devices registered and observed over CoAP"
    )
    parser.add_argument("--samples", type=int, default=200, help="timed lookups and pages of each kind")
    parser.add_argument("--limit", type=int, default=100, help="registrations per page")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the restarted server may take")
    parser.add_argument("--phases", default="memory,observe,sqlite", help="which phases, comma-separated")
    parser.add_argument("--state", help="folder to make the SQLite phase's folder in")
    parser.add_argument(
        "--stored-observations",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SQLite phase: one stored observation per registration, which the restart resumes",
    )
    parser.add_argument(
        "--observe-store",
        choices=("memory", "sqlite"),
        default="memory",
        help="the store of the observe phase's server (sqlite: a file in a fresh folder)",
    )
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="N",
        help="observe phase: also the N places that allocate most per registration and per "
        "observation (tracemalloc)",
    )
    parser.add_argument("--trace-depth", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.count:,} registrations, {args.observed:,} observed, {os.cpu_count()} cores, load {load}")
    if "memory" in phases:
        asyncio.run(memory_phase(args))
    if "observe" in phases:
        asyncio.run(observation_phase(args))
    if "sqlite" in phases:
        with tempfile.TemporaryDirectory(prefix="node-million-", dir=args.state) as folder:
            asyncio.run(sqlite_phase(args, FsPath(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
