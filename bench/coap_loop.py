"""CoAP requests per second over loopback: our endpoint against a bare UDP echo and aiocoap.

Each server runs in this process on the event loop under test; the load comes
from a separate process (so it does not share the GIL with the server) that
keeps ``--inflight`` confirmable GETs outstanding on raw sockets and counts
answers for ``--seconds``. The generator builds its datagrams from a fixed
template, which keeps it cheap enough to saturate one server core.

Servers, each measured with stock asyncio and again with uvloop (if installed):

- ``echo``: a bare asyncio datagram protocol sending every datagram back;
- ``echo-reader``: the same over our raw ``recvfrom_into`` reader (no CoAP);
- ``ours``: ``lwm2m.transport.udp`` serving a small resource (piggybacked 2.05);
- ``aiocoap``: an aiocoap server context serving the same resource.

    python bench/coap_loop.py [--seconds 5] [--inflight 64] [--repeat 1] [--loops asyncio,uvloop]

The figures are only as steady as the host: on a shared two-core machine
another busy process makes the server and the generator share one core
(look at "server CPU": near 100% is a clean run). ``--repeat`` keeps the best;
the server's CPU time per request is the steadier figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import selectors
import socket
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

HOST = "127.0.0.1"
PAYLOAD = b"22.5"
# CON GET, token length 2; then Message ID and token (both the request counter); Uri-Path "t".
_HEAD = bytes((0x42, 0x01))
_PATH = bytes((0xB1,)) + b"t"


@dataclass(frozen=True, slots=True)
class Load:
    answered: int  # matched responses in the measuring window
    total: int  # matched responses over the whole run, warm-up included
    bad: int  # matched, but not a piggybacked 2.05 (echo excepted)
    lost: int  # given up after a stall
    seconds: float

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


# --- load generator (runs in its own process) ------------------------------------------------------


def generate(host: str, port: int, seconds: float, warmup: float, inflight: int, check: bool, conn) -> None:
    """Keep ``inflight`` CON GETs outstanding for ``warmup + seconds``; report a Load on ``conn``.

    A CoAP server remembers (source, Message ID) pairs for EXCHANGE_LIFETIME, so
    reusing an ID would be answered from its duplicate cache: after 65536
    requests the generator moves to a fresh source port instead.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    outstanding: set[int] = set()
    state = {"mid": 0}

    def new_sock() -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((host, 0))
        s.connect((host, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, len(socks))
        socks.append(s)
        return s

    cur = new_sock()

    def send_one() -> None:
        nonlocal cur
        mid = state["mid"]
        if mid == 0x10000:
            cur = new_sock()
            mid = 0
        m = mid.to_bytes(2, "big")
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            cur.send(_HEAD + m + m + _PATH)
        outstanding.add(((len(socks) - 1) << 16) | mid)
        state["mid"] = mid + 1

    for _ in range(inflight):
        send_one()
    answered = bad = lost = total = 0
    start = time.monotonic()
    t0 = start + warmup
    end = t0 + seconds
    counting = False
    select = sel.select
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if not counting and now >= t0:
            counting = True
            answered = bad = 0
        events = select(0.2)
        if not events:
            # A stall: datagrams were dropped (full socket buffers). Start afresh.
            lost += len(outstanding)
            outstanding.clear()
            for _ in range(inflight):
                send_one()
            continue
        for key, _ in events:
            s = key.fileobj
            base = key.data << 16
            while True:
                try:
                    data = s.recv(2048)  # type: ignore[union-attr]
                except (BlockingIOError, ConnectionRefusedError):
                    break
                k = base | (data[2] << 8) | data[3]
                if k not in outstanding:
                    continue
                outstanding.discard(k)
                answered += 1
                total += 1
                if check and (data[0] & 0xF0 != 0x60 or data[1] != 0x45):
                    bad += 1
                send_one()
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    conn.send(Load(answered, total, bad, lost, elapsed))
    conn.close()


# --- servers (run in this process, on the loop under test) --------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def echo_server(port: int) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(HOST, port))
    try:
        yield
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def echo_reader_server(port: int) -> AsyncIterator[None]:
    from lwm2m.transport.reader import DatagramReader, bind_udp

    sock = bind_udp(HOST, port)
    send = sock.sendto

    def on_datagram(data: bytes, addr: tuple, now: float) -> None:
        send(data, addr)

    reader = DatagramReader(asyncio.get_running_loop(), sock, on_datagram, lambda now: None)
    reader.start()
    try:
        yield
    finally:
        reader.close()
        sock.close()


@contextlib.asynccontextmanager
async def our_server(port: int) -> AsyncIterator[None]:
    from lwm2m.coap.events import RequestReceived
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, OptionNumber, Type
    from lwm2m.transport.udp import open_udp_endpoint

    content = Message(Type.ACK, Code.CONTENT, payload=PAYLOAD)
    not_found = Message(Type.ACK, Code.NOT_FOUND)
    # Routing on the raw options: this measures the transport and the endpoint, not a router
    # (``Message.uri_path`` decodes every segment to str, some 10% of the time here).
    resource = ((OptionNumber.URI_PATH, b"t"),)

    def handler(event: RequestReceived) -> Message:
        return content if event.message.options == resource else not_found

    async with open_udp_endpoint(HOST, port, handler=handler):
        yield


@contextlib.asynccontextmanager
async def aiocoap_server(port: int) -> AsyncIterator[None]:
    import aiocoap
    import aiocoap.resource as resource

    # aiocoap leaves a render coroutine unawaited when it shuts down under load: noise, not a result.
    warnings.filterwarnings("ignore", message="coroutine 'Context._render_to_pipe' was never awaited")

    class Small(resource.Resource):
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=PAYLOAD)

    site = resource.Site()
    site.add_resource(["t"], Small())
    ctx = await aiocoap.Context.create_server_context(site, bind=(HOST, port), transports=["udp6"])
    try:
        yield
    finally:
        await ctx.shutdown()


SERVERS: dict[str, Callable[[int], AbstractAsyncContextManager[None]]] = {
    "echo": echo_server,
    "echo-reader": echo_reader_server,
    "ours": our_server,
    "aiocoap": aiocoap_server,
}


# --- driver ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass(frozen=True, slots=True)
class Measured:
    load: Load
    cpu_share: float  # the server's CPU time over wall time (1.0: one core busy all along)
    cpu_per_request: float  # server CPU seconds per answered request: steadier than the rate

    @property
    def rate(self) -> float:
        return self.load.rate


async def measure(name: str, seconds: float, warmup: float, inflight: int) -> Measured:
    """Run the generator against server ``name``; its figures, and what the server spent."""
    port = free_port()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    async with SERVERS[name](port):
        proc = ctx.Process(
            target=generate,
            args=(HOST, port, seconds, warmup, inflight, name.startswith("echo") is False, child),
        )
        proc.start()
        child.close()
        cpu0, wall0 = time.process_time(), time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            # The waiting thread sleeps in recv(): the server keeps the GIL to itself.
            load: Load = await asyncio.wait_for(
                loop.run_in_executor(None, parent.recv), seconds + warmup + 30
            )
        finally:
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return Measured(load, cpu / max(wall, 1e-9), cpu / max(load.total, 1))


def available(name: str) -> bool:
    if name == "aiocoap":
        try:
            import aiocoap  # noqa: F401
        except ImportError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per server and loop")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="runs per server, best kept")
    parser.add_argument("--loops", default="asyncio,uvloop", help="comma-separated: asyncio, uvloop")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: " + ", ".join(SERVERS))
    args = parser.parse_args(argv)

    servers = [s for s in args.servers.split(",") if s]
    for s in servers:
        if s not in SERVERS:
            parser.error(f"unknown server {s!r}")
    loops = [x for x in args.loops.split(",") if x]
    print(f"{args.inflight} CON GETs in flight, {args.seconds:g} s per server, loopback {HOST}")
    for loop_name in loops:
        if loop_name == "uvloop" and not uvloop_available():
            print("uvloop: not installed, skipped")
            continue
        rates: dict[str, float] = {}
        print(f"\n{loop_name}:")
        for name in servers:
            if not available(name):
                print(f"  {name:12s} not installed, skipped")
                continue
            runs = [
                run(measure(name, args.seconds, args.warmup, args.inflight), use_uvloop=loop_name == "uvloop")
                for _ in range(max(1, args.repeat))
            ]
            best = max(runs, key=lambda r: r.rate)
            load = best.load
            rates[name] = best.rate
            extra = []
            if load.bad:
                extra.append(f"{load.bad} bad answers")
            if load.lost:
                extra.append(f"{load.lost} lost")
            note = f"  ({', '.join(extra)})" if extra else ""
            print(
                f"  {name:12s} {best.rate:10,.0f} requests/s   server CPU {best.cpu_share:4.0%},"
                f" {best.cpu_per_request * 1e6:5.1f} µs/request{note}",
                flush=True,
            )
        if "ours" in rates and rates.get("echo"):
            ratio = rates["ours"] / rates["echo"]
            verdict = "meets" if ratio >= 0.7 else "below"
            print(f"  ours/echo    {ratio:10.2f}   ({verdict} the 0.7 target)")
        if "ours" in rates and rates.get("echo-reader"):
            same_io = rates["ours"] / rates["echo-reader"]
            print(f"  ours/echo-rd {same_io:10.2f}   (against the same socket code without CoAP)")
        if "ours" in rates and rates.get("aiocoap"):
            print(f"  ours/aiocoap {rates['ours'] / rates['aiocoap']:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
