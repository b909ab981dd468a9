"""OSCORE-protected CoAP requests per second beside plain ones, in one run (RFC 8613).

The server is our UDP endpoint (``lwm2m.transport.udp``) on the loop under test, serving a
small resource; the load comes from a separate process keeping ``--inflight`` CON requests
outstanding. Rows:

- ``plain``: plain GETs to an endpoint without OSCORE;
- ``plain+layer``: the same GETs to an endpoint that has an OSCORE layer (its cost to plain
  traffic);
- ``oscore``: OSCORE-protected GETs (outer POST, a fresh Partial IV each) to that endpoint,
  each verified, routed, answered and the answer protected (AES-CCM-16-64-128);
- ``oscore+store``: the same, the layer being a server's (``lwm2m.server.oscore``: its
  contexts from a security store, each verified request reported to it, which reads the entry
  again at most every 10 s).

The generator protects its requests before the clock starts (``--requests`` of them; the
Message ID and token live outside the AEAD and are filled in as it sends), so it costs the
same per request in every row. ``--requests`` must exceed what the server answers in warm-up
and measuring time together, or the later requests are replays (counted as bad answers).

A sans-IO line is printed too: protect + unprotect of a request and its response in this
process (the cryptographic cost alone, no sockets).

    python bench/oscore.py [--seconds 5] [--inflight 64] [--loops asyncio,uvloop] [--requests 400000]
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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coap_loop import HOST, PAYLOAD, Load, Measured, free_port

SECRET = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
CLIENT_ID, SERVER_ID = b"\x01", b"\x02"


def _client_config():  # type: ignore[no-untyped-def]
    from lwm2m.coap.oscore import OscoreConfig

    return OscoreConfig(SECRET, sender_id=CLIENT_ID, recipient_id=SERVER_ID)


def _bodies(count: int) -> list[bytes]:
    """``count`` protected GET /t requests, each after its 4-byte header and 2-byte token."""
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, Type
    from lwm2m.coap.oscore import OscoreContext

    ctx = OscoreContext(_client_config())
    get = Message.build(Type.CON, Code.GET, 0, b"\0\0", uri_path="t")
    return [ctx.protect_request(get)[0].encode()[6:] for _ in range(count)]


def generate(port: int, seconds: float, warmup: float, inflight: int, protected: int, conn) -> None:  # type: ignore[no-untyped-def]
    """Keep ``inflight`` CON requests outstanding; OSCORE ones when ``protected`` > 0 (that many
    prepared). A fresh source port every 65536 requests (the server's duplicate cache)."""
    bodies = _bodies(protected) if protected else [bytes((0xB1,)) + b"t"]
    conn.send("ready")  # the server's clock starts now, not while the requests were prepared
    expected = 0x44 if protected else 0x45  # the outer 2.04 of a protected answer (RFC 8613 §4.2)
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    outstanding: set[int] = set()
    state = {"mid": 0, "n": 0}

    def new_sock() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((HOST, 0))
        s.connect((HOST, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, len(socks))
        socks.append(s)
        return s

    cur = new_sock()
    head = bytes((0x42, 0x01))  # CON GET, token length 2 (the outer code is in the body's stead)
    if protected:
        head = bytes((0x42, 0x02))  # CON POST

    def send_one() -> None:
        nonlocal cur
        mid = state["mid"]
        if mid == 0x10000:
            cur = new_sock()
            mid = 0
        m = mid.to_bytes(2, "big")
        n = state["n"]
        body = bodies[n % len(bodies)]
        state["n"] = n + 1
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            cur.send(head + m + m + body)
        outstanding.add(((len(socks) - 1) << 16) | mid)
        state["mid"] = mid + 1

    for _ in range(inflight):
        send_one()
    answered = bad = lost = total = 0
    t0 = time.monotonic() + warmup
    end = t0 + seconds
    counting = False
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if not counting and now >= t0:
            counting = True
            answered = bad = 0
        events = sel.select(0.2)
        if not events:
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
                if data[0] & 0xF0 != 0x60 or data[1] != expected:
                    bad += 1
                send_one()
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    conn.send(Load(answered, total, bad, lost, elapsed))
    conn.close()


@contextlib.asynccontextmanager
async def server(port: int, with_layer: bool, with_store: bool = False) -> AsyncIterator[None]:
    from lwm2m.coap.events import RequestReceived
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, OptionNumber, Type
    from lwm2m.coap.oscore import OscoreContext, OscoreLayer
    from lwm2m.transport.udp import open_udp_endpoint

    content = Message(Type.ACK, Code.CONTENT, payload=PAYLOAD)
    not_found = Message(Type.ACK, Code.NOT_FOUND)
    resource = ((OptionNumber.URI_PATH, b"t"),)

    def handler(event: RequestReceived) -> Message:
        return content if event.message.options == resource else not_found

    layer = None
    if with_store:
        from lwm2m.server.oscore import ServerOscore
        from lwm2m.storage.base import OscoreSecrets, SecurityInfo
        from lwm2m.storage.memory import MemorySecurityStore

        c = _client_config()
        secrets = OscoreSecrets(c.master_secret, c.sender_id, c.recipient_id, c.master_salt, c.id_context)
        info = SecurityInfo("bench", oscore=secrets)
        store = MemorySecurityStore()
        await store.put(info)
        contexts = ServerOscore(store)
        contexts.put(info, None)
        layer = contexts.layer
    elif with_layer:
        layer = OscoreLayer()
        layer.add(OscoreContext(_client_config().peer()))
    async with open_udp_endpoint(HOST, port, handler=handler, oscore=layer):
        yield


ROWS: dict[str, tuple[Callable[[int], AbstractAsyncContextManager[None]], bool]] = {
    "plain": (lambda port: server(port, False), False),
    "plain+layer": (lambda port: server(port, True), False),
    "oscore": (lambda port: server(port, True), True),
    "oscore+store": (lambda port: server(port, True, True), True),
}


async def measure(row: str, seconds: float, warmup: float, inflight: int, requests: int) -> Measured:
    make, protected = ROWS[row]
    port = free_port()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    async with make(port):
        proc = ctx.Process(
            target=generate, args=(port, seconds, warmup, inflight, requests if protected else 0, child)
        )
        proc.start()
        child.close()
        loop = asyncio.get_running_loop()
        # The generator prepares its requests first: the server's clock starts at its first one.
        await asyncio.wait_for(loop.run_in_executor(None, parent.recv), 300)
        cpu0, wall0 = time.process_time(), time.monotonic()
        try:
            load: Load = await asyncio.wait_for(
                loop.run_in_executor(None, parent.recv), seconds + warmup + 120
            )
        finally:
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return Measured(load, cpu / max(wall, 1e-9), cpu / max(load.total, 1))


def sans_io(count: int = 20_000) -> tuple[float, float]:
    """Exchanges per second in this process: a GET and its 2.05, each protected and verified;
    and the same round of encode/decode without OSCORE."""
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, Type
    from lwm2m.coap.oscore import OscoreContext

    client = OscoreContext(_client_config())
    srv = OscoreContext(_client_config().peer())
    get = Message.build(Type.CON, Code.GET, 1, b"\1\2", uri_path="t")
    answer = Message(Type.ACK, Code.CONTENT, 1, b"\1\2", payload=PAYLOAD)
    t = time.perf_counter()
    for _ in range(count):
        outer, sent = client.protect_request(get)
        _, bound = srv.unprotect_request(Message.decode(outer.encode()))
        reply = srv.protect_response(answer, bound)
        client.unprotect_response(Message.decode(reply.encode()), sent)
    protected = count / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(count):
        Message.decode(get.encode())
        Message.decode(answer.encode())
    plain = count / (time.perf_counter() - t)
    return protected, plain


def main(argv: list[str] | None = None) -> int:
    from lwm2m.transport.eventloop import run, uvloop_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--requests", type=int, default=400_000, help="protected requests prepared")
    parser.add_argument("--loops", default="asyncio,uvloop")
    args = parser.parse_args(argv)
    protected, plain = sans_io()
    print(
        f"sans-IO, one process: {protected:,.0f} protected exchanges/s (protect+verify both ways),"
        f" {plain:,.0f} plain encode/decode rounds/s"
    )
    print(f"{args.inflight} CON requests in flight, {args.seconds:g} s per row, loopback {HOST}")
    for loop_name in [x for x in args.loops.split(",") if x]:
        if loop_name == "uvloop" and not uvloop_available():
            print("uvloop: not installed, skipped")
            continue
        print(f"\n{loop_name}:")
        rates: dict[str, float] = {}
        for row in ROWS:
            best = run(
                measure(row, args.seconds, args.warmup, args.inflight, args.requests),
                use_uvloop=loop_name == "uvloop",
            )
            rates[row] = best.rate
            load = best.load
            extra = [f"{load.bad} bad answers"] if load.bad else []
            if load.lost:
                extra.append(f"{load.lost} lost")
            note = f"  ({', '.join(extra)})" if extra else ""
            print(
                f"  {row:12s} {best.rate:10,.0f} requests/s   server CPU {best.cpu_share:4.0%},"
                f" {best.cpu_per_request * 1e6:5.1f} µs/request{note}",
                flush=True,
            )
        if rates.get("plain"):
            print(f"  oscore/plain       {rates['oscore'] / rates['plain']:6.2f}")
            print(f"  plain+layer/plain  {rates['plain+layer'] / rates['plain']:6.2f}")
            print(f"  oscore+store/oscore {rates['oscore+store'] / rates['oscore']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
