"""A registration storm over loopback: the server with the memory store, with SQLite, and a bare
UDP echo, flooded by the same generator in the same run.

A fleet that comes back after an outage or a server restart registers all at once. The
generator is ``--generators`` processes (so that it is not the limit on a small machine: see
"generator" below), each keeping its share of ``--inflight`` Registers (``POST /rd?ep=…`` with
a link-format payload) outstanding on raw UDP sockets, one source port per client while
``--ports`` allows (else the names share them). A phase starts when every generator has opened
its sockets and ends with the last 2.01.

Phases, each with the same generator (repeated ``--repeat`` times, in this order):

- ``echo``: a bare asyncio datagram protocol (on uvloop when installed, as the server) that
  answers each Register with a 2.01-sized ACK (its Message ID and token, Location-Path
  ``/rd/<11 characters>``): what the loop, the sockets and the generator allow;
- ``memory``: ``Server`` with the memory store, in this process;
- ``sqlite``: ``Server`` on a fresh SQLite file, in this process.

``--instructions N`` counts instead the server's instructions per Register with valgrind's
callgrind (as ``bench/dtls_instructions.py`` does: a figure a busy machine does not move), for
the memory store and for SQLite: N Registers from as many source ports, ``BATCH`` per
wake-up of the server's UDP reader (as a storm delivers them), each batch through the
driver and the event loop until every 2.01 has gone, inside the one function counted
(``operator.call``). The sockets' system calls are not user-space instructions: left out.
``--top K`` prints the K functions with the most instructions of their own (callgrind_annotate):
where the interpreter's time goes (``py-spy`` on the storm tells which Python functions).

Printed per round: the rates, both ratios to the echo of the same round, the server's CPU
share in the phase (near 100%: the server is the limit) and its CPU time per registration
(the steadier figure on a shared machine), and the resident memory per registration (VmRSS
before and after the storm, over the registrations: the first round's is the figure, a later
round reuses memory an earlier one freed).

The generator: a phase whose server CPU share stays well under 100% while the generators
are busy is limited by them (or by the CPU they take from the server); ``--generators`` 1, 2, 3
against the echo tells the count at which the echo's rate stops growing. The default, one
process per core but the server's, gave the highest echo rates on a 2-core machine (see
``GENERATORS``).

    python bench/registration_storm.py [--clients 100000] [--generators N] [--inflight 64]
        [--phases echo,memory,sqlite] [--repeat 1] [--ports 10000]
    python bench/registration_storm.py --instructions 2000 [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import operator
import os
import re
import resource
import select
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from coap_loop import HOST, free_port
from dtls_instructions import callgrind

LINKS = b"</1/0>,</3/0>,</3303/0>"
CF_LINK_FORMAT = 40
SPARE_FDS = 600  # descriptors a generator keeps for everything else
PHASES = ("echo", "memory", "sqlite")
# Generator processes: the cores the server leaves. On a 2-core machine one generator drove the
# echo to 105-117k Registers/s at 86% of the server's core; two or three took CPU from the
# server (echo 53-81k/s at 54-75%), and the server phases were at 78-99% of a core with any.
GENERATORS = max(1, (os.cpu_count() or 2) - 1)


# --- minimal CoAP encoding ---------------------------------------------------------------------


def _ext(n: int) -> tuple[int, bytes]:
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes((n - 13,))
    return 14, (n - 269).to_bytes(2, "big")


def option(delta: int, value: bytes) -> bytes:
    d, dx = _ext(delta)
    n, nx = _ext(len(value))
    return bytes(((d << 4) | n,)) + dx + nx + value


def register_datagram(mid: int, token: bytes, name: str) -> bytes:
    """CON POST /rd?ep=name&lt=300&lwm2m=1.1&b=U with a link-format payload."""
    return (
        bytes((0x40 | len(token), 0x02))
        + mid.to_bytes(2, "big")
        + token
        + option(11, b"rd")  # Uri-Path
        + option(1, bytes((CF_LINK_FORMAT,)))  # Content-Format (12)
        + option(3, b"ep=" + name.encode())  # Uri-Query (15)
        + option(0, b"lt=300")
        + option(0, b"lwm2m=1.1")
        + option(0, b"b=U")
        + b"\xff"
        + LINKS
    )


# --- the flood (in a generator process) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StormLoad:
    created: int  # 2.01 answers
    bad: int  # other answers
    missing: int  # never answered before the deadline
    retransmitted: int
    sockets: int  # distinct source ports used
    seconds: float  # first Register sent to last answer
    started: float = 0.0  # time.monotonic() (one clock for all processes on Linux)
    ended: float = 0.0

    @property
    def rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0

    def notes(self) -> str:
        """What went wrong, for a report line ("" when nothing did)."""
        counts = ((self.bad, "not 2.01"), (self.missing, "unanswered"), (self.retransmitted, "retransmitted"))
        return ", ".join(f"{n:,} {what}" for n, what in counts if n)


def merged(loads: list[StormLoad]) -> StormLoad:
    """The loads of several generators as one: counts added, from the first start to the last answer."""
    started = min(x.started for x in loads)
    ended = max(x.ended for x in loads)
    return StormLoad(
        sum(x.created for x in loads),
        sum(x.bad for x in loads),
        sum(x.missing for x in loads),
        sum(x.retransmitted for x in loads),
        sum(x.sockets for x in loads),
        ended - started,
        started,
        ended,
    )


def open_sockets(
    port: int, n: int, sel: selectors.BaseSelector | None = None, data: object = None
) -> list[socket.socket]:
    """``n`` non-blocking UDP sockets connected to ``port`` (registered with ``sel`` if given)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.connect((HOST, port))
        s.setblocking(False)
        if sel is not None:
            sel.register(s, selectors.EVENT_READ, data)
        socks.append(s)
    return socks


def flood(names: list[str], pool: list[socket.socket], inflight: int, limit: float) -> StormLoad:
    """Register ``names[i]`` from ``pool[i % len(pool)]``, ``inflight`` at a time, until all are
    answered or ``limit`` seconds passed; a stall of 0.25 s retransmits what is outstanding.

    Kept cheap, so that the generator is not what limits the rate: the datagrams are made
    before the clock starts, the sockets are watched by an epoll of its own (level-triggered:
    one recv per socket and wake-up, a second datagram is reported again), the clock is read
    once per wake-up."""
    n = len(names)
    npool = len(pool)
    datagrams = [register_datagram(i & 0xFFFF, i.to_bytes(4, "big"), names[i]) for i in range(n)]
    outstanding: dict[int, tuple[socket.socket, bytes]] = {}
    created = bad = retransmitted = 0
    nxt = 0
    poller = select.epoll()
    by_fd = {}
    for s in pool:
        poller.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s

    def send_next() -> None:
        nonlocal nxt
        i = nxt
        nxt += 1
        s = pool[i % npool]
        data = datagrams[i]
        outstanding[i] = (s, data)
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            s.send(data)

    start = time.monotonic()
    last = start
    deadline = start + limit
    while nxt < min(inflight, n):
        send_next()
    poll = poller.poll
    try:
        while outstanding and last < deadline:
            events = poll(0.25)
            if not events:
                for s, data in outstanding.values():  # a stall: retransmit (the server dedups)
                    with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                        s.send(data)
                    retransmitted += 1
                if time.monotonic() >= deadline:
                    break
                continue
            for fd, _ in events:
                s = by_fd[fd]
                try:
                    d = s.recv(2048)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                if d[0] & 0x30 == 0x00:  # a separate response (CON): acknowledge it
                    with contextlib.suppress(BlockingIOError):
                        s.send(bytes((0x60, 0)) + d[2:4])
                if d[1] == 0 or d[0] & 0x0F != 4:
                    continue  # an empty ACK
                if outstanding.pop(int.from_bytes(d[4:8], "big"), None) is None:
                    continue
                if d[1] == 0x41:
                    created += 1
                else:
                    bad += 1
                if nxt < n:
                    send_next()
            last = time.monotonic()
    finally:
        poller.close()
    missing = len(outstanding) + n - nxt
    return StormLoad(created, bad, missing, retransmitted, npool, last - start, start, last)


def socket_budget(n: int, ports: int) -> int:
    """Sockets a generator opens for ``n`` clients with at most ``ports`` of them: as many as
    its descriptor limit allows (raised to the hard limit if need be)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(n, ports) + SPARE_FDS
    if soft < want and soft < hard:
        soft = min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return max(1, min(n, ports, soft - SPARE_FDS))


def generator_main(port: int, names: list[str], inflight: int, ports: int, conn, go) -> None:  # type: ignore[no-untyped-def]
    """One generator: open the sockets, say so, wait for ``go``, flood, answer the StormLoad."""
    pool = open_sockets(port, socket_budget(len(names), ports))
    conn.send("ready")
    if go.wait(60):
        conn.send(flood(names, pool, inflight, limit=max(60.0, len(names) / 100)))
    for s in pool:
        s.close()
    conn.close()


def storm(
    port: int,
    clients: int,
    generators: int,
    inflight: int,
    ports: int,
    prefix: str = "client-",
    cpu: list[float] | None = None,
) -> StormLoad:
    """``clients`` Registers to ``port`` from ``generators`` processes sharing ``inflight`` and
    ``ports`` between them; blocks until they are done (run it on a thread beside a server).
    ``cpu``, when given, receives this process's CPU time at the start and at the end of the flood."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs = []
    conns = []
    share = [clients // generators + (1 if g < clients % generators else 0) for g in range(generators)]
    first = 0
    for g, n in enumerate(share):
        names = [f"{prefix}{i:06d}" for i in range(first, first + n)]
        first += n
        window = inflight // generators + (1 if g < inflight % generators else 0)
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=generator_main, args=(port, names, max(1, window), max(1, ports // generators), child, go)
        )
        proc.start()
        child.close()
        procs.append(proc)
        conns.append(parent)
    try:
        for c in conns:
            if not c.poll(60) or c.recv() != "ready":
                raise RuntimeError("a generator process did not start")
        if cpu is not None:
            cpu.append(time.process_time())
        go.set()
        loads = []
        for c in conns:
            if not c.poll(max(120.0, clients / 50)):
                raise RuntimeError("a generator process did not finish")
            loads.append(c.recv())
        if cpu is not None:
            cpu.append(time.process_time())
        return merged(loads)
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


# --- the servers (this process) ----------------------------------------------------------------

CREATED_TAIL = option(8, b"rd") + option(0, b"x" * 11)  # Location-Path /rd/<a registration ID>


class _Echo(asyncio.DatagramProtocol):
    """Answers a Register with a 2.01-sized ACK: its Message ID, its token, a Location-Path."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        tkl = data[0] & 0x0F
        head = bytes((0x60 | tkl, 0x41))
        self.transport.sendto(head + data[2 : 4 + tkl] + CREATED_TAIL, addr)  # type: ignore[attr-defined]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    load: StormLoad
    cpu_share: float  # this process's CPU time over the phase's wall time
    cpu_per_registration: float  # seconds: steadier than the rate on a shared machine
    stored: int  # registrations the server holds afterwards (echo: 0)
    rss_growth: int  # bytes of VmRSS the storm added

    @property
    def rss_per_registration(self) -> float:
        return self.rss_growth / max(1, self.load.created)


@contextlib.asynccontextmanager
async def echo_at(port: int) -> AsyncIterator[Callable[[], int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(HOST, port))
    try:
        yield lambda: 0
    finally:
        transport.close()


_served: list[Any] = []  # the servers running (the callgrind worker reaches into its own)


Serve = Callable[[int], contextlib.AbstractAsyncContextManager[Callable[[], int]]]


def server_at(store_path: str | None) -> Serve:
    @contextlib.asynccontextmanager
    async def serve(port: int) -> AsyncIterator[Callable[[], int]]:
        from lwm2m.cli.server_cmd import tune_gc
        from lwm2m.server.config import ServerConfig
        from lwm2m.server.registrar import RegistrationLimits
        from lwm2m.server.role import Server

        store = None
        if store_path is not None:
            from lwm2m.storage.sqlite import SqliteStore

            store = SqliteStore(store_path)
        # Every device registers from 127.0.0.1 at full speed: no per-address registration rate.
        limits = RegistrationLimits(rate=None)
        server = Server(ServerConfig(host=HOST, port=port, registration_limits=limits), store)
        await server.start()
        tune_gc()  # as ``lwm2m server`` does once started
        _served.append(server)
        try:
            yield lambda: len(server.registrar.peers)
        finally:
            _served.remove(server)
            await server.stop()
            if store is not None:
                store.close()
            gc.unfreeze()
            gc.collect()

    return serve


async def run_phase(
    name: str,
    serve: Serve,
    args: argparse.Namespace,
) -> Phase:
    loop = asyncio.get_running_loop()
    port = free_port()
    async with serve(port) as stored:
        gc.collect()
        rss0 = rss_bytes()
        cpu: list[float] = []
        load = await loop.run_in_executor(
            None, storm, port, args.clients, args.generators, args.inflight, args.ports, "client-", cpu
        )
        gc.collect()
        grown = rss_bytes() - rss0
        held = stored()
    # From the go to the last generator's answer: the sockets were opened before.
    share = (cpu[1] - cpu[0]) / load.seconds if load.seconds > 0 else 0.0
    return Phase(name, load, share, (cpu[1] - cpu[0]) / max(1, load.created), held, grown)


async def run_rounds(args: argparse.Namespace, tmp: str) -> list[dict[str, Phase]]:
    rounds = []
    for r in range(args.repeat):
        phases: dict[str, Phase] = {}
        for name in args.phases:
            if name == "echo":
                serve = echo_at
            elif name == "memory":
                serve = server_at(None)
            else:
                serve = server_at(os.path.join(tmp, f"storm-{r}.db"))
            phases[name] = await run_phase(name, serve, args)
        rounds.append(phases)
    return rounds


def report(rounds: list[dict[str, Phase]], args: argparse.Namespace, loop_name: str) -> None:
    print(
        f"loop {loop_name}, {args.clients:,} Registers, {args.generators} generator processes,"
        f" {args.inflight} in flight, at most {args.ports:,} source ports, loopback {HOST}"
    )
    for r, phases in enumerate(rounds, 1):
        print(f"round {r}:")
        echo = phases.get("echo")
        for name, p in phases.items():
            s = p.load
            note = s.notes()
            ratio = ""
            if echo is not None and name != "echo":
                ratio = f"   echo ratio {s.rate / echo.load.rate:.2f}"
            memory = "" if name == "echo" else f"   {p.rss_per_registration / 1024:.2f} KB RSS/registration"
            held = "" if name == "echo" else f", {p.stored:,} held"
            print(
                f"  {name:7} {s.rate:10,.0f} registrations/s   {s.created:,} in {s.seconds:.2f} s{held}"
                f"   server CPU {p.cpu_share:.0%}, {p.cpu_per_registration * 1e6:.1f} µs each{ratio}{memory}"
                + (f"   ({note})" if note else "")
            )


# --- instructions per Register (callgrind) -----------------------------------------------------

BATCH = 16  # Registers per wake-up of the server's reader
WARMUP = 2 * BATCH
PEERS = 64  # source addresses of the counted Registers


def registers_counted(n: int, store_path: str | None) -> None:
    """The worker run under callgrind: a server on ``store_path`` (None: memory) answering ``n``
    Registers, ``BATCH`` per wake-up; only ``operator.call`` is counted."""
    from lwm2m.transport.eventloop import new_event_loop

    loop = new_event_loop()
    serve = server_at(store_path)

    async def setup(cm: contextlib.AbstractAsyncContextManager[Callable[[], int]]) -> None:
        await cm.__aenter__()

    cm = serve(0)
    loop.run_until_complete(setup(cm))
    server = _served[-1]
    endpoint = server._endpoint
    assert endpoint is not None
    driver = endpoint._driver
    receive, on_batch, tasks = driver._receive, driver._on_batch, endpoint._tasks
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(PEERS)]
    for peer in peers:
        peer.bind((HOST, 0))  # the answers pile up unread: UDP drops them
    addrs = [peer.getsockname() for peer in peers]
    datagrams = [
        (register_datagram(i & 0xFFFF, i.to_bytes(4, "big"), f"client-{i:06d}"), addrs[i % PEERS])
        for i in range(n + WARMUP)
    ]

    async def feed(batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        # In the loop, as the reader's callback is: the handlers' tasks go to this loop.
        now = time.monotonic()
        for data, addr in batch:
            receive(data, addr, now)
        on_batch(now)
        while tasks:
            await asyncio.sleep(0)

    def step(batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        loop.run_until_complete(feed(batch))

    step(datagrams[:WARMUP])
    call = operator.call
    for i in range(WARMUP, n + WARMUP, BATCH):
        call(step, datagrams[i : i + BATCH])
    assert len(server.registrar.peers) == n + WARMUP, len(server.registrar.peers)
    loop.run_until_complete(cm.__aexit__(None, None, None))
    for peer in peers:
        peer.close()


def count_instructions(n: int, store: str, top: int) -> tuple[float, list[tuple[float, str]]]:
    """(instructions per Register, the ``top`` functions by the instructions of their own)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        total = callgrind(
            [os.path.abspath(__file__), "--worker", store, str(n), os.path.join(tmp, "storm.db")], out
        )
        rows: list[tuple[float, str]] = []
        if top:
            annotated = subprocess.run(
                ["callgrind_annotate", "--threshold=100", out],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for line in annotated.splitlines():
                m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
                if m and "PROGRAM TOTALS" not in line:
                    # "/build/path/file.c:function [/lib/path.so]": the file's and library's names
                    where, _, lib = m.group(2).partition(" [")
                    name = where.rpartition("/")[2]
                    if lib:
                        name += f" ({lib.rstrip(']').rpartition('/')[2]})"
                    rows.append((int(m.group(1).replace(",", "")) / total, name))
                if len(rows) >= top:
                    break
    return total / n, rows


def instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian: apt install valgrind)")
    n = args.instructions
    print(f"server instructions per Register (callgrind, {n:,} Registers, {BATCH} per wake-up):")
    for store in ("memory", "sqlite"):
        per, rows = count_instructions(n, store, args.top)
        print(f"  {store:7} {per:10,.0f}")
        for share, name in rows:
            print(f"      {share:6.1%}  {name}")


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000, help="Registers per phase")
    parser.add_argument(
        "--generators",
        type=int,
        default=GENERATORS,
        help="generator processes (default: one per core but one)",
    )
    parser.add_argument("--inflight", type=int, default=64, help="Registers outstanding, over all generators")
    parser.add_argument("--ports", type=int, default=10_000, help="source ports, over all generators")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated: " + ", ".join(PHASES))
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all phases")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--instructions", type=int, default=0, help="count instructions per Register")
    parser.add_argument("--top", type=int, default=0, help="with --instructions: the top functions")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        store, n, path = args.worker
        registers_counted(int(n), path if store == "sqlite" else None)
        return 0
    if args.instructions:
        instructions(args)
        return 0
    args.phases = [p for p in args.phases.split(",") if p]
    for p in args.phases:
        if p not in PHASES:
            parser.error(f"unknown phase {p!r}")
    if args.generators < 1 or args.clients < args.generators:
        parser.error("--generators must be 1..--clients")
    use_uvloop = uvloop_available() if args.loop == "auto" else args.loop == "uvloop"
    with tempfile.TemporaryDirectory(prefix="lwm2m-storm-") as tmp:
        rounds = run(run_rounds(args, tmp), use_uvloop=use_uvloop)
    report(rounds, args, "uvloop" if use_uvloop else "asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
