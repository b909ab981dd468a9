"""DTLS over loopback: full PSK handshakes per second, and CoAP requests per second over DTLS beside
plain CoAP, in one run.

The servers run in this process on the event loop under test (uvloop when installed): our
``CoapDtlsEndpoint`` with a PSK looked up per handshake, and a plain ``CoapUdpEndpoint``, both
answering a small resource with a piggybacked 2.05. The load comes from a separate process (so
that its own cryptography does not share the GIL with the server), driving Mbed TLS client
connections through our backend on raw sockets:

- handshakes: ``--concurrency`` full handshakes at a time (TLS_PSK_WITH_AES_128_CCM_8, the cookie
  exchange included: 3 round trips), each from a fresh source port; a finished one sends
  close_notify (the server drops the session) and the slot starts another;
- requests: ``--inflight`` confirmable GETs outstanding over ``--sockets`` established sessions,
  and then the same over plain CoAP.

    python bench/dtls.py [--seconds 5] [--concurrency 32] [--inflight 64] [--sockets 4]

"server CPU" is the server process's CPU time over the window: near 100% means the server, not
the generator, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
KEY = bytes(range(16))
IDENTITY = "bench"
PAYLOAD = b"22.5"
_HEAD = bytes((0x42, 0x01))  # CON GET, token length 2; then Message ID and token
_PATH = bytes((0xB1,)) + b"t"  # Uri-Path "t"


@dataclass(frozen=True, slots=True)
class Result:
    done: int  # in the measuring window
    failed: int
    lost: int  # stalled and started afresh
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _client_factory() -> Any:
    from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials
    from lwm2m.transport.dtls.mbedtls_backend import MbedtlsBackend

    return MbedtlsBackend().client(DtlsClientConfig(psk=PskCredentials(IDENTITY, KEY)))


def _udp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((HOST, 0))
    s.connect((HOST, port))
    s.setblocking(False)
    return s


# --- load generators (run in their own process) ------------------------------------------------------


def handshakes(port: int, seconds: float, warmup: float, concurrency: int, conn: Any) -> None:
    from lwm2m.errors import HandshakeError

    factory = _client_factory()
    sel = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}

    def start() -> None:
        s = _udp(port)
        c = factory.connect(time.monotonic())
        c.handshake(time.monotonic())
        with contextlib.suppress(OSError):
            s.send(b"".join(c.outgoing()))
        sel.register(s, selectors.EVENT_READ, c)
        started[s] = time.monotonic()

    def finish(s: socket.socket) -> None:
        sel.unregister(s)
        del started[s]
        s.close()

    for _ in range(concurrency):
        start()
    done = failed = lost = 0
    t0 = time.monotonic() + warmup
    end = t0 + seconds
    counting = False
    while (now := time.monotonic()) < end:
        if not counting and now >= t0:
            counting, done, failed, lost = True, 0, 0, 0
        for key, _ in sel.select(0.05):
            s, c = key.fileobj, key.data
            try:
                data = s.recv(4096)  # type: ignore[union-attr]
            except OSError:
                continue
            c.feed(data, time.monotonic())
            try:
                up = c.handshake(time.monotonic())
            except HandshakeError:
                failed += 1
                finish(s)  # type: ignore[arg-type]
                start()
                continue
            out = b"".join(c.outgoing())
            if up:
                done += 1
                with contextlib.suppress(OSError):
                    s.send(out + c.close())  # type: ignore[union-attr]
                finish(s)  # type: ignore[arg-type]
                start()
            elif out:
                with contextlib.suppress(OSError):
                    s.send(out)  # type: ignore[union-attr]
        for s, at in list(started.items()):
            if now - at > 1.0:  # a datagram was dropped somewhere: start afresh
                lost += 1
                finish(s)
                start()
    elapsed = time.monotonic() - t0
    for s in list(started):
        finish(s)
    conn.send(Result(done, failed, lost, elapsed))
    conn.close()


def requests(
    port: int, secure: bool, seconds: float, warmup: float, inflight: int, nsocks: int, conn: Any
) -> None:
    factory = _client_factory() if secure else None
    sel = selectors.DefaultSelector()
    sessions: dict[socket.socket, Any] = {}
    for _ in range(nsocks):
        s = _udp(port)
        c = None
        if factory is not None:
            c = factory.connect(time.monotonic())
            s.setblocking(True)
            s.settimeout(2)
            up = c.handshake(time.monotonic())
            while not up:
                out = b"".join(c.outgoing())
                if out:
                    s.send(out)
                c.feed(s.recv(4096), time.monotonic())
                up = c.handshake(time.monotonic())
            out = b"".join(c.outgoing())
            if out:
                s.send(out)
            s.setblocking(False)
        sessions[s] = c
        sel.register(s, selectors.EVENT_READ, c)
    socks = list(sessions)
    mids = dict.fromkeys(socks, 0)
    outstanding: set[tuple[socket.socket, int]] = set()

    def send(s: socket.socket) -> None:
        mid = mids[s]
        mids[s] = (mid + 1) & 0xFFFF
        m = mid.to_bytes(2, "big")
        datagram = _HEAD + m + m + _PATH
        c = sessions[s]
        if c is not None:
            datagram = c.write(datagram)
        with contextlib.suppress(BlockingIOError):
            s.send(datagram)
        outstanding.add((s, mid))

    for i in range(inflight):
        send(socks[i % nsocks])
    done = lost = 0
    t0 = time.monotonic() + warmup
    end = t0 + seconds
    counting = False
    while (now := time.monotonic()) < end:
        if not counting and now >= t0:
            counting, done, lost = True, 0, 0
        events = sel.select(0.2)
        if not events:
            lost += len(outstanding)
            outstanding.clear()
            for i in range(inflight):
                send(socks[i % nsocks])
            continue
        for key, _ in events:
            s, c = key.fileobj, key.data
            while True:
                try:
                    data = s.recv(2048)  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                if c is not None:
                    c.feed(data, time.monotonic())
                    plain = c.read()
                    if plain is None:
                        continue
                    data = plain
                k = (s, (data[2] << 8) | data[3])
                if k in outstanding and data[1] == 0x45:
                    outstanding.discard(k)
                    done += 1
                    send(s)  # type: ignore[arg-type]
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    conn.send(Result(done, 0, lost, elapsed))
    conn.close()


# --- the servers (this process) ---------------------------------------------------------------------


async def measure(target: Any, args: tuple[Any, ...], timeout: float) -> tuple[Result, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        result: Result = await asyncio.wait_for(loop.run_in_executor(None, parent.recv), timeout)
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    cpu = (time.process_time() - cpu0) / max(time.monotonic() - wall0, 1e-9)
    return result, cpu


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    from lwm2m.coap.events import RequestReceived
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, OptionNumber, Type
    from lwm2m.transport.dtls import DtlsServerConfig, SessionLimits, open_dtls_endpoint
    from lwm2m.transport.udp import open_udp_endpoint

    content = Message(Type.ACK, Code.CONTENT, payload=PAYLOAD)
    not_found = Message(Type.ACK, Code.NOT_FOUND)
    resource = ((OptionNumber.URI_PATH, b"t"),)

    def handler(event: RequestReceived) -> Message:
        return content if event.message.options == resource else not_found

    keys = {IDENTITY: KEY}
    config = DtlsServerConfig(psk_lookup=keys.get, limits=SessionLimits(max_sessions=100_000))
    budget = opts.seconds + opts.warmup + 30
    figures: dict[str, Any] = {}
    async with open_dtls_endpoint(HOST, 0, server=config, handler=handler) as secure:
        args = (secure.port, opts.seconds, opts.warmup, opts.concurrency)
        figures["handshakes"] = await measure(handshakes, args, budget)
        await asyncio.sleep(0.2)
        # Close_notify ended the others; these are handshakes the end of the run cut off.
        figures["sessions_left"] = len(secure.sessions())
        args = (secure.port, True, opts.seconds, opts.warmup, opts.inflight, opts.sockets)
        figures["dtls"] = await measure(requests, args, budget)
    async with open_udp_endpoint(HOST, 0, handler=handler) as plain:
        args = (plain.port, False, opts.seconds, opts.warmup, opts.inflight, opts.sockets)
        figures["plain"] = await measure(requests, args, budget)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32, help="handshakes in progress at once")
    parser.add_argument("--inflight", type=int, default=64, help="requests outstanding at once")
    parser.add_argument("--sockets", type=int, default=4, help="sessions (source ports) the requests use")
    opts = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from mbedtls import version

    from lwm2m.transport.eventloop import run as run_loop
    from lwm2m.transport.eventloop import uvloop_available

    figures = run_loop(run(opts))
    hs, hs_cpu = figures["handshakes"]
    (dtls, dtls_cpu), (plain, plain_cpu) = figures["dtls"], figures["plain"]
    loop = "uvloop" if uvloop_available() else "asyncio"
    print(
        f"DTLS 1.2 over loopback: server on our engine (lwm2m.tls, the default for PSK) on {loop}, "
        f"clients {version.version} via python-mbedtls"
    )
    print(
        f"  full PSK handshakes (cookie exchange included): {hs.rate:8.0f}/s"
        f"   server CPU {hs_cpu:4.0%}  failed {hs.failed}  stalled {hs.lost}"
    )
    print(f"    server CPU per handshake: {hs_cpu / hs.rate * 1e6 if hs.rate else 0:.0f} µs;", end=" ")
    print(f"server sessions left (the others ended by close_notify): {figures['sessions_left']}")
    for name, rate, cpu in (("over DTLS (CCM_8)", dtls.rate, dtls_cpu), ("plain", plain.rate, plain_cpu)):
        print(f"  CoAP requests {name + ':':34}{rate:8.0f}/s   server CPU {cpu:4.0%}")
    share = dtls.rate / plain.rate if plain.rate else 0.0
    print(f"  DTLS rate / plain rate: {share:.0%}")


if __name__ == "__main__":
    main()
