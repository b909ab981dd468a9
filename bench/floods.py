"""Memory of ``lwm2m server`` under three floods, and after them: does it come back down?

Starts ``lwm2m server`` (memory store, plain CoAP and CoAP over DTLS on free loopback
ports, short expiries so that the run takes a few minutes) as a subprocess and replays,
from this process, over loopback only, each bounded in count and in time:

1. Block1 transfers that never finish: ``--transfers`` (400) PUTs of ``--blocks`` (1,000)
   blocks of 1 KiB each, every block with M=1, 4 transfers per source port, every block
   sent whatever the answer. 400 MB were asked for; the endpoint's budget for all
   block-wise bodies is 32 MiB (a refused transfer's later blocks get 4.08).
2. Junk registrations from plain CoAP: ``--registrations`` (20,000) Registers with
   lt=30 from a pool of sockets on one address (they meet the per-address rate limit:
   4.29), then, each from an address of its own (127.0.0.2, .3, .4), one with
   lt=999999999999999999999999999999 (kept, with the lifetime shortened to the maximum: the
   bench reads the lifetime kept from ``GET /api/clients/{ep}``), one with a 5,000-character
   endpoint name (4.00) and one with 6,000 links in 58 KB (4.13). Printed: the answers by
   code.
3. DTLS handshakes: (a) ``--hellos`` (155,000) ClientHellos without a cookie (answered
   with a HelloVerifyRequest, no state kept), then (b) ``--stalled`` (20,000) ClientHellos
   that complete the cookie exchange and then go silent (state kept until the handshake's
   lifetime; their number capped by the DTLS memory budget).

For each flood the server's VmRSS (``/proc/PID/status``) before, at its peak (sampled every
0.1 s) and after the flood once its expiry has passed, in a table. The after/before ratio
should stay within 1.2.

    python bench/floods.py [--transfers 400] [--blocks 1000] [--registrations 20000]
                           [--hellos 155000] [--stalled 20000] [--seconds 90]
                           [--exchange-lifetime 30] [--handshake-lifetime 20]

To find what stays after a flood, set ``FLOODS_DIAG`` to a directory: before each flood and
after its expiry the server (on SIGUSR1) writes there, and the bench prints, glibc's heap
figures (mallinfo2, and the resident part of its heap) and CPython's small-object arenas
(``sys._debugmallocstats``); with ``FLOODS_GC=1`` the figures again after a full garbage
collection and a ``malloc_trim``, which shows what only CPython's free lists held. With
``FLOODS_TRACEMALLOC=1`` too, the server runs with ``tracemalloc`` on (slower) and the bench
prints the Python memory traced before and after and the lines that hold most of what the
flood left behind (``FLOODS_TRACEMALLOC_FRAMES``, default 1, frames kept per allocation).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from coap_loop import HOST, free_port
from server_load import option

LINKS = b"</1/0>,</3/0>,</3303/0>"
TRACE_DIR = os.environ.get("FLOODS_DIAG")
# The server with diagnostics: ``lwm2m`` as ``python -m lwm2m`` runs it, with a SIGUSR1
# handler that writes the allocators' figures (glibc's mallinfo2, CPython's arenas) and, with
# FLOODS_TRACEMALLOC set, a tracemalloc snapshot, to the next numbered files of FLOODS_DIAG.
TRACED_SERVER = """
import ctypes, os, signal, sys, tracemalloc
if os.environ.get("FLOODS_TRACEMALLOC"):
    tracemalloc.start(int(os.environ.get("FLOODS_TRACEMALLOC_FRAMES", "1")))
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
count = [0]
def figures():
    # glibc heap (mallinfo2, and the resident part of [heap]), CPython arenas, RSS
    info = libc.mallinfo2()
    saved = os.dup(2)
    with open(os.path.join(os.environ["FLOODS_DIAG"], "pymalloc"), "w+") as f:
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        arenas = [l.split("=")[1].strip() for l in f if l.startswith("# arenas allocated current")]
    heap = "?"
    with open("/proc/self/smaps") as f:
        mapping = ""
        for l in f:
            if not l[0].isupper() or l.startswith(("VmFlags",)):
                mapping = l
            elif l.startswith("Rss:") and mapping.rstrip().endswith("[heap]"):
                heap = "%.1f MiB" % (int(l.split()[1]) / 1024)
    with open("/proc/self/status") as f:
        rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]
    return "RSS %.1f MiB: glibc heap %.1f MiB (resident %s, in use %.1f MiB), %s pymalloc arenas" % (
        rss / 1024, info.arena / 2**20, heap, info.uordblks / 2**20, arenas[0] if arenas else "?")
def dump(signum, frame):
    count[0] += 1
    base = os.path.join(os.environ["FLOODS_DIAG"], "%d" % count[0])
    text = figures()
    if os.environ.get("FLOODS_GC"):
        import gc
        gc.collect()
        libc.malloc_trim(0)
        text += "; after gc.collect() and malloc_trim: " + figures()
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(base + ".snapshot")
    with open(base + ".tmp", "w") as f:
        f.write(text)
    os.replace(base + ".tmp", base + ".txt")
signal.signal(signal.SIGUSR1, dump)
sys.argv[0] = "lwm2m"
from lwm2m.cli import main
main()
"""


def code_name(code: int) -> str:
    return f"{code >> 5}.{code & 31:02d}"


# --- the server and its memory -------------------------------------------------------------------


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Sampler(threading.Thread):
    """Polls the server's RSS every 0.1 s; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = False

    def reset(self) -> None:
        self.peak = rss(self.pid)

    def run(self) -> None:
        while not self.stop:
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.1)


@dataclass
class Server:
    proc: subprocess.Popen
    coap: int
    coaps: int
    log: str
    http: int = 0
    snapshots: int = 0

    @classmethod
    def start(cls, exchange_lifetime: float, handshake_lifetime: float) -> Server:
        coap, coaps, http = free_port(), free_port(), free_port()
        log = tempfile.NamedTemporaryFile(prefix="floods-server-", suffix=".log", delete=False)  # noqa: SIM115
        command = [
            sys.executable,
            *(["-c", TRACED_SERVER] if TRACE_DIR else ["-m", "lwm2m"]),
            "server",
            "--store",
            "memory",
            "--host",
            HOST,
            "--coap-port",
            str(coap),
            "--http-port",
            str(http),
            "--coaps-port",
            str(coaps),
            "--exchange-lifetime",
            str(exchange_lifetime),
            "--dtls-handshake-lifetime",
            str(handshake_lifetime),
        ]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(log.name) as f:
                if "REST API on" in f.read():
                    return cls(proc, coap, coaps, log.name, http)
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
        with open(log.name) as f:
            raise RuntimeError(f"lwm2m server did not start:\n{f.read()}")

    def snapshot(self) -> Any:
        """The allocators' figures and a tracemalloc snapshot of the server (or None) with
        FLOODS_DIAG set; else None."""
        if not TRACE_DIR:
            return None
        import tracemalloc

        self.snapshots += 1
        base = os.path.join(TRACE_DIR, str(self.snapshots))
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while not os.path.exists(base + ".txt"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no figures at {base}.txt")
            time.sleep(0.2)
        with open(base + ".txt") as f:
            print(f"  allocators: {f.read()}", flush=True)
        return tracemalloc.Snapshot.load(base + ".snapshot") if os.path.exists(base + ".snapshot") else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Row:
    flood: str
    sent: str
    answers: Counter = field(default_factory=Counter)
    before: int = 0
    peak: int = 0
    after: int = 0
    waited: float = 0.0


def udp(bind: str = HOST) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind, 0))
    s.setblocking(False)
    return s


def drain(sel: selectors.BaseSelector, timeout: float) -> Iterator[tuple[socket.socket, bytes]]:
    """Datagrams that arrive on the registered sockets within ``timeout`` (less once idle)."""
    for key, _ in sel.select(timeout):
        s = key.fileobj
        while True:
            try:
                data = s.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                break
            yield s, data  # type: ignore[misc]


# --- 1. Block1 transfers that never finish ---------------------------------------------------------


def block1_datagram(mid: int, token: bytes, path: bytes, num: int, payload: bytes) -> bytes:
    value = (num << 4) | 0x08 | 6  # M=1, SZX=6 (1024 bytes), RFC 7959 §2.2
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return (
        bytes((0x40 | len(token), 0x03))  # CON PUT
        + mid.to_bytes(2, "big")
        + token
        + option(11, b"flood")  # Uri-Path
        + option(0, path)
        + option(16, raw)  # Block1 (27)
        + b"\xff"
        + payload
    )


def block1_flood(server: Server, transfers: int, blocks: int, seconds: float, row: Row) -> None:
    """Every block of every transfer is sent, whatever the answers (an attacker does not
    listen); the answers are counted by code."""
    socks = [udp() for _ in range((transfers + 3) // 4)]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    payload = bytes(1024)
    dest = (HOST, server.coap)
    end = time.monotonic() + seconds
    sent = rounds = 0
    for num in range(blocks):
        if time.monotonic() > end:
            break
        rounds += 1
        waiting = 0
        for i in range(transfers):
            s = socks[i // 4]
            mid = (num * 4 + i % 4) & 0xFFFF
            s.sendto(block1_datagram(mid, i.to_bytes(4, "big"), str(i % 4).encode(), num, payload), dest)
            sent += 1
            waiting += 1
            if i % 64 == 63:  # let the server keep up: UDP drops what overflows its buffer
                for _, data in drain(sel, 0):
                    waiting -= 1
                    row.answers[code_name(data[1])] += 1
        deadline = time.monotonic() + 1.0
        while waiting > 0 and time.monotonic() < deadline:
            for _, data in drain(sel, 0.05):
                waiting -= 1
                row.answers[code_name(data[1])] += 1
        row.answers["no answer"] += max(0, waiting)
    row.sent = f"{sent:,} blocks, {transfers}x{rounds}"
    for s in socks:
        s.close()


# --- 2. junk registrations ----------------------------------------------------------------------


def register(mid: int, token: bytes, name: bytes, lt: bytes = b"30", links: bytes = LINKS) -> bytes:
    return (
        bytes((0x40 | len(token), 0x02))  # CON POST
        + mid.to_bytes(2, "big")
        + token
        + option(11, b"rd")
        + option(1, b"\x28")  # Content-Format 40 (link format)
        + option(3, b"ep=" + name)
        + option(0, b"lt=" + lt)
        + option(0, b"lwm2m=1.1")
        + option(0, b"b=U")
        + b"\xff"
        + links
    )


def registration_flood(
    server: Server, count: int, seconds: float, row: Row, specials: dict[str, str]
) -> None:
    socks = [udp() for _ in range(64)]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    dest = (HOST, server.coap)
    inflight: dict[tuple[socket.socket, bytes], float] = {}
    end = time.monotonic() + seconds
    n = 0
    window = 128
    while (n < count or inflight) and time.monotonic() < end:
        while n < count and len(inflight) < window:
            s = socks[n % len(socks)]
            token = n.to_bytes(4, "big")
            s.sendto(register(n & 0xFFFF, token, f"junk-{n:07d}".encode()), dest)
            inflight[(s, token)] = time.monotonic() + 5.0
            n += 1
        for s, data in drain(sel, 0.05):
            key = (s, data[4 : 4 + (data[0] & 0x0F)])
            if inflight.pop(key, None) is not None:
                row.answers[code_name(data[1])] += 1
        now = time.monotonic()
        for key in [k for k, t in inflight.items() if t < now]:
            del inflight[key]
            row.answers["no answer"] += 1
    row.sent = f"{n:,} Registers (lt=30)"
    for s in socks:
        s.close()
    # The three of the issue, one at a time, each from a source address of its own (all of
    # 127/8 is loopback on Linux): they meet the registration limits, not the rate limit that
    # the flood above ran into.
    junk = {
        "lt=999999999999999999999999999999": (
            "127.0.0.2",
            "junk-lifetime",
            register(1, b"s1", b"junk-lifetime", lt=b"999999999999999999999999999999"),
        ),
        "5,000-character name, lt=30": ("127.0.0.3", "n" * 5000, register(2, b"s2", b"n" * 5000)),
        "6,000 links (58 KB), lt=30": (
            "127.0.0.4",
            "junk-links",
            register(3, b"s3", b"junk-links", links=b",".join(f"</{i}/0>".encode() for i in range(6000))),
        ),
    }
    for label, (source, name, data) in junk.items():
        s = udp(source)
        s.setblocking(True)
        s.settimeout(3.0)
        s.sendto(data, dest)
        try:
            reply = s.recv(65536)
        except TimeoutError:
            answer = "no answer"
        else:
            answer = code_name(reply[1])
            diag = reply[4 + (reply[0] & 0x0F) :].split(b"\xff", 1)
            if len(diag) == 2 and diag[1]:
                answer += f" ({diag[1][:90].decode(errors='replace')})"
            if reply[1] == 0x41:  # 2.01 Created: the lifetime the server kept, from its REST API
                answer += f", kept with {kept_lifetime(server, name)}"
        s.close()
        specials[f"{label}: {len(data):,} bytes from {source}"] = answer


def kept_lifetime(server: Server, endpoint: str) -> str:
    """``lifetime`` of ``GET /api/clients/{endpoint}``."""
    url = f"http://{HOST}:{server.http}/api/clients/{urllib.parse.quote(endpoint)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return f"lifetime {json.load(answer)['lifetime']:,} s (GET /api/clients/{endpoint})"
    except (OSError, ValueError, KeyError) as exc:
        return f"lifetime unknown ({exc})"


# --- 3. DTLS handshakes ---------------------------------------------------------------------------


def _clients():  # type: ignore[no-untyped-def]
    from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials

    # Mbed TLS is a test peer now: its backend lives beside the tests, in the repository root.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.helpers.mbedtls_backend import MbedtlsBackend

    return MbedtlsBackend().client(DtlsClientConfig(psk=PskCredentials("flood", bytes(16))))


def hello_flood(server: Server, count: int, seconds: float, row: Row) -> None:
    """ClientHellos without a cookie: each gets a HelloVerifyRequest, none leaves state."""
    conn = _clients().connect(time.monotonic())
    conn.handshake(time.monotonic())
    hello = b"".join(conn.outgoing())
    socks = [udp() for _ in range(64)]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    dest = (HOST, server.coaps)
    end = time.monotonic() + seconds
    n = 0
    while n < count and time.monotonic() < end:
        for s in socks:
            s.sendto(hello, dest)
        n += len(socks)
        got = 0
        deadline = time.monotonic() + 0.5
        while got < len(socks) and time.monotonic() < deadline:
            for _, data in drain(sel, 0.05):
                got += 1
                row.answers["HelloVerifyRequest" if data[13:14] == b"\x03" else "other"] += 1
        row.answers["no answer"] += len(socks) - got
    row.sent = f"{n:,} ClientHellos"
    for s in socks:
        s.close()


def stalled_flood(server: Server, count: int, seconds: float, row: Row) -> None:
    """ClientHellos that complete the cookie exchange, then silence: state on the server."""
    factory = _clients()
    dest = (HOST, server.coaps)
    end = time.monotonic() + seconds
    n = 0
    batch = 200
    while n < count and time.monotonic() < end:
        socks = [udp() for _ in range(min(batch, count - n))]
        sel = selectors.DefaultSelector()
        conns = {}
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
            c = factory.connect(time.monotonic())
            c.handshake(time.monotonic())
            s.sendto(b"".join(c.outgoing()), dest)
            conns[s] = c
        pending = set(socks)
        deadline = time.monotonic() + 2.0
        while pending and time.monotonic() < deadline:
            for s, data in drain(sel, 0.05):
                if s not in pending:
                    continue  # the server's flight after the cookie: not answered, ever
                pending.discard(s)
                c = conns[s]
                c.feed(data, time.monotonic())
                try:
                    c.handshake(time.monotonic())
                except Exception:
                    row.answers["failed"] += 1
                    continue
                s.sendto(b"".join(c.outgoing()), dest)  # ClientHello with the cookie
                row.answers["cookie exchanged"] += 1
        row.answers["no HelloVerifyRequest"] += len(pending)
        n += len(socks)
        time.sleep(0.02)  # the server's flights arrive; nobody reads them
        for s in socks:
            sel.unregister(s)
            s.close()
    row.sent = f"{n:,} handshakes stalled"


# --- the run ---------------------------------------------------------------------------------------


def settle(server: Server, seconds: float) -> int:
    """The server's RSS after ``seconds`` (its timers have run meanwhile)."""
    time.sleep(seconds)
    return rss(server.proc.pid)


def traced(name: str, before: Any, after: Any) -> None:
    """What tracemalloc saw the flood leave behind: Python memory before and after, and the
    lines holding most of the new blocks."""
    total = [sum(s.size for s in snap.statistics("filename")) for snap in (before, after)]
    print(f"{name}: traced Python memory {mib(total[0])} -> {mib(total[1])} MiB; grown most at:")
    stats = after.compare_to(before, "lineno")
    stats.sort(key=lambda stat: -stat.count_diff)
    for stat in stats[:25]:
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+8d} blocks  {stat.traceback}")


def mib(n: int) -> str:
    return f"{n / 2**20:7.1f}"


def report(rows: list[Row], specials: dict[str, str], args: argparse.Namespace) -> None:
    print()
    print(
        f"expiries: --exchange-lifetime {args.exchange_lifetime:g} s (duplicate detection, Block1 "
        f"reassembly, served Block2 bodies), --dtls-handshake-lifetime {args.handshake_lifetime:g} s, "
        "registrations lt=30 s"
    )
    print(f"{'flood':<30} {'sent':<32} {'before':>7} {'peak':>7} {'after':>7}  {'after/before':>12}  (MiB)")
    for r in rows:
        ratio = r.after / r.before if r.before else 0.0
        flag = "ok" if ratio <= 1.2 else "OVER 1.2"
        print(
            f"{r.flood:<30} {r.sent:<32} {mib(r.before)} {mib(r.peak)} {mib(r.after)}  {ratio:12.2f}  {flag}"
            f"  (after {r.waited:.0f} s)"
        )
    print()
    for r in rows:
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.answers.items()))
        print(f"{r.flood}: {answers}")
    for label, answer in specials.items():
        print(f"  Register with {label} -> {answer}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=400)
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--registrations", type=int, default=20_000)
    parser.add_argument("--hellos", type=int, default=155_000)
    parser.add_argument("--stalled", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=90.0, help="time bound of each flood")
    parser.add_argument("--exchange-lifetime", type=float, default=30.0)
    parser.add_argument("--handshake-lifetime", type=float, default=20.0)
    parser.add_argument("--floods", default="block1,registrations,dtls")
    args = parser.parse_args(argv)
    floods = set(args.floods.split(","))
    server = Server.start(args.exchange_lifetime, args.handshake_lifetime)
    sampler = Sampler(server.proc.pid)
    sampler.start()
    rows: list[Row] = []
    specials: dict[str, str] = {}
    margin = 8.0  # the timer's sweep, then the trim (at most every 2 s)
    try:
        time.sleep(2.0)

        def run(name: str, flood, *flood_args, wait: float) -> None:  # type: ignore[no-untyped-def]
            row = Row(name, "")
            before = server.snapshot()
            row.before = rss(server.proc.pid)
            sampler.reset()
            started = time.monotonic()
            flood(server, *flood_args, row)
            print(
                f"{name}: {time.monotonic() - started:.1f} s, peak so far {mib(sampler.peak)} MiB", flush=True
            )
            row.peak = sampler.peak
            row.after = settle(server, wait)
            row.waited = wait
            rows.append(row)
            after = server.snapshot()
            if before is not None and after is not None:
                traced(name, before, after)

        if "block1" in floods:
            run(
                "1. Block1, never finished",
                block1_flood,
                args.transfers,
                args.blocks,
                args.seconds,
                wait=args.exchange_lifetime + margin,
            )
        if "registrations" in floods:
            row_flood = registration_flood

            def registrations(server: Server, count: int, seconds: float, row: Row) -> None:
                row_flood(server, count, seconds, row, specials)

            run(
                "2. junk registrations",
                registrations,
                args.registrations,
                args.seconds,
                wait=30.0 + margin,
            )
        if "dtls" in floods:
            run("3a. ClientHello, no cookie", hello_flood, args.hellos, args.seconds, wait=margin)
            run(
                "3b. DTLS stalled after cookie",
                stalled_flood,
                args.stalled,
                args.seconds,
                wait=args.handshake_lifetime + margin,
            )
    finally:
        sampler.stop = True
        server.stop()
    report(rows, specials, args)
    with open(server.log, errors="replace") as f:
        lines = f.read().splitlines()
    counts = sum(" not logged one by one " in line for line in lines)
    print(f"server log: {len(lines):,} lines, {counts} of them counts of lines left out under a flood")
    os.unlink(server.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
