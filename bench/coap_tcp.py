"""CoAP requests per second over UDP, DTLS, TCP and TLS (RFC 8323) in one run, and the memory an
idle TCP or TLS connection costs the server.

The server is ours, in this process, on the event loop under test (uvloop where installed); the
load comes from a separate process (so it does not share the GIL with the server) that keeps
``--inflight`` GETs of a small resource outstanding for ``--seconds`` and counts the 2.05
answers: over UDP as confirmable requests on one socket, over DTLS through one PSK session (our
own engine as the client, as ``bench/dtls.py`` does), over TCP and TLS pipelined on one
connection (tokens match the answers, RFC 8323 §3). TLS twice: "tls" with X.509 through the
ssl module, "tls-psk" with a PSK through our own TLS engine on both sides
(``lwm2m.transport.tls_engine``; the load's client is our engine too, the ssl module of this
Python having no PSK). The rates are also given as ratios against
UDP in the same run.

Memory: ``--connections`` idle connections (TCP, then TLS with a client certificate through the
ssl module, then TLS with a PSK through our engine) are opened
by a separate process, each sending its CSM; the server's Python heap (tracemalloc) and its
resident set grow by the figures printed, per connection.

    python bench/coap_tcp.py [--seconds 3] [--inflight 64] [--connections 500] [--no-dtls]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import selectors
import socket
import ssl
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
PAYLOAD = b"22.5"
IDENTITY, KEY = "bench", bytes(range(16))
CSM = bytes((0x00, 0xE1))  # RFC 8323 §5.3: a CSM without options


@dataclass(frozen=True, slots=True)
class Result:
    done: int
    total: int  # answered over the whole run, warm-up included
    lost: int
    seconds: float
    cpu: float  # the generator's CPU share

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


# --- load generators (each in its own process) -------------------------------------------------------


def udp_load(port: int, seconds: float, warmup: float, inflight: int, conn: Any) -> None:
    """CON GETs of /t on one socket: Message ID and token are the request counter."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.connect((HOST, port))
    s.setblocking(False)
    head, path = bytes((0x42, 0x01)), bytes((0xB1,)) + b"t"
    state = {"mid": 0}
    outstanding: set[int] = set()

    def send() -> None:
        mid = state["mid"]
        state["mid"] = (mid + 1) & 0xFFFF
        m = mid.to_bytes(2, "big")
        with contextlib.suppress(BlockingIOError):
            s.send(head + m + m + path)
        outstanding.add(mid)

    def recv() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(s.recv(2048))
            except BlockingIOError:
                return out

    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    for _ in range(inflight):
        send()
    t0, cpu0 = time.monotonic(), time.process_time()
    counts = _count(sel, recv, send, outstanding, seconds, warmup, inflight, lambda d: (d[2] << 8) | d[3])
    _report(conn, counts, seconds, cpu0, t0 + warmup)


def dtls_load(port: int, seconds: float, warmup: float, inflight: int, conn: Any) -> None:
    """As ``udp_load``, through one DTLS session with a PSK (our engine as the client)."""
    from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials
    from lwm2m.transport.dtls.engine_backend import EngineBackend

    client = EngineBackend().client(DtlsClientConfig(psk=PskCredentials(IDENTITY, KEY)))
    c = client.connect(time.monotonic())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.connect((HOST, port))
    s.settimeout(2)
    while not c.handshake(time.monotonic()):
        out = b"".join(c.outgoing())
        if out:
            s.send(out)
        c.feed(s.recv(4096), time.monotonic())
    out = b"".join(c.outgoing())
    if out:
        s.send(out)
    s.setblocking(False)
    head, path = bytes((0x42, 0x01)), bytes((0xB1,)) + b"t"
    state = {"mid": 0}
    outstanding: set[int] = set()

    def send() -> None:
        mid = state["mid"]
        state["mid"] = (mid + 1) & 0xFFFF
        m = mid.to_bytes(2, "big")
        with contextlib.suppress(BlockingIOError):
            s.send(c.write(head + m + m + path))
        outstanding.add(mid)

    def recv() -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                return out
            c.feed(data, time.monotonic())
            plain = c.read()
            if plain is not None:
                out.append(plain)

    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    for _ in range(inflight):
        send()
    t0, cpu0 = time.monotonic(), time.process_time()
    counts = _count(sel, recv, send, outstanding, seconds, warmup, inflight, lambda d: (d[2] << 8) | d[3])
    _report(conn, counts, seconds, cpu0, t0 + warmup)


class EnginePskSocket:
    """A TLS-PSK client socket through our engine (TLS 1.2 over TCP, TLS_PSK_WITH_AES_128_CCM_8):
    the ssl module of this Python has no PSK. The handshake runs blocking in the constructor;
    then ``send``/``recv`` carry application data (``recv`` raises BlockingIOError when a
    non-blocking socket has nothing whole)."""

    def __init__(self, raw: socket.socket) -> None:
        from lwm2m.tls import ConnectionConfig, DtlsConnection, DtlsRole

        self.raw = raw
        config = ConnectionConfig(psk_identity=IDENTITY.encode(), psk=KEY)
        self.conn = DtlsConnection(DtlsRole.CLIENT, config, time.time(), stream=True)
        while not self.conn.established:
            out = self.conn.data_to_send()
            if out:
                raw.sendall(out)
            data = raw.recv(65536)
            if not data:
                raise ConnectionError("the server closed during the TLS handshake")
            self.conn.receive_data(data)
            if self.conn.closed:
                raise ConnectionError("the TLS handshake failed")
        self.conn.next_event()  # HandshakeComplete
        self._out = bytearray(self.conn.data_to_send())

    def fileno(self) -> int:
        return self.raw.fileno()

    def setblocking(self, flag: bool) -> None:
        self.raw.setblocking(flag)

    def sendall(self, data: bytes) -> None:
        self.conn.send_application_data(data)
        self.raw.sendall(bytes(self._out) + self.conn.data_to_send())
        self._out.clear()

    def send(self, data: bytes | bytearray) -> int:
        if not self._out:
            self.conn.send_application_data(bytes(data))
            self._out += self.conn.data_to_send()
            taken = len(data)
        else:
            taken = 0  # the records of earlier data go first
        sent = self.raw.send(self._out)
        del self._out[:sent]
        return taken

    def recv(self, n: int) -> bytes:
        data = self.raw.recv(n)
        if not data:
            return b""
        self.conn.receive_data(data)
        plain = []
        while (event := self.conn.next_event()) is not None:
            payload = getattr(event, "data", None)
            if payload is not None:
                plain.append(payload)
        if not plain:
            raise BlockingIOError
        return b"".join(plain)

    def close(self) -> None:
        self.raw.close()


def tcp_load(
    port: int, seconds: float, warmup: float, inflight: int, tls: dict[str, str] | str | None, conn: Any
) -> None:
    """GETs of /t pipelined on one connection (TLS with ``tls``'s files, or through our engine
    with a PSK for ``"psk"``): token = the counter."""
    raw = socket.create_connection((HOST, port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s: Any = raw
    if tls == "psk":
        s = EnginePskSocket(raw)
    elif tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(tls["ca"])
        context.load_cert_chain(tls["cert"], tls["key"])
        context.set_alpn_protocols(["coap"])
        s = context.wrap_socket(raw)
    s.sendall(CSM)
    s.setblocking(False)
    state = {"n": 0}
    outstanding: set[int] = set()
    pending = bytearray()
    # Len 3 (Uri-Path "t": 2 bytes, ... no payload), TKL 2; code GET; token; option 0xB1 "t".
    path = bytes((0xB1,)) + b"t"

    def send() -> None:
        n = state["n"]
        state["n"] = (n + 1) & 0xFFFF
        pending.extend(bytes(((len(path) << 4) | 2, 0x01)) + n.to_bytes(2, "big") + path)
        outstanding.add(n)
        flush()

    def flush() -> None:
        while pending:
            try:
                sent = s.send(pending)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            del pending[:sent]

    buf = bytearray()

    def recv() -> list[bytes]:
        while True:
            try:
                data = s.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                break
            buf.extend(data)
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 2:
            ln, tkl = buf[pos] >> 4, buf[pos] & 0x0F
            ext = {13: 1, 14: 2, 15: 4}.get(ln, 0)
            if len(buf) - pos < 1 + ext + 1:
                break
            length = (
                ln
                if not ext
                else int.from_bytes(buf[pos + 1 : pos + 1 + ext], "big") + {1: 13, 2: 269, 4: 65805}[ext]
            )
            total = 1 + ext + 1 + tkl + length
            if len(buf) - pos < total:
                break
            code = buf[pos + 1 + ext]
            token = bytes(buf[pos + 2 + ext : pos + 2 + ext + tkl])
            if code == 0x45 and tkl == 2:
                out.append(bytes((0, 0x45)) + token)  # shaped as (_, code, token) for _count
            pos += total
        del buf[:pos]
        flush()
        return out

    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    for _ in range(inflight):
        send()
    flush()
    t0, cpu0 = time.monotonic(), time.process_time()
    counts = _count(sel, recv, send, outstanding, seconds, warmup, inflight, lambda d: (d[2] << 8) | d[3])
    _report(conn, counts, seconds, cpu0, t0 + warmup)
    s.close()


def _count(
    sel: selectors.BaseSelector,
    recv: Any,
    send: Any,
    outstanding: set[int],
    seconds: float,
    warmup: float,
    inflight: int,
    key: Any,
) -> tuple[int, int, int]:
    done = lost = total = 0
    t0 = time.monotonic() + warmup
    end = t0 + seconds
    counting = False
    while (now := time.monotonic()) < end:
        if not counting and now >= t0:
            counting, done, lost = True, 0, 0
        if not sel.select(0.5):
            lost += len(outstanding)
            outstanding.clear()
            for _ in range(inflight):
                send()
            continue
        for data in recv():
            if data[1] != 0x45:
                continue
            k = key(data)
            if k in outstanding:
                outstanding.discard(k)
                done += 1
                total += 1
                send()
    return done, total, lost


def _report(conn: Any, counts: tuple[int, int, int], seconds: float, cpu0: float, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    done, total, lost = counts
    conn.send(Result(done, total, lost, elapsed, (time.process_time() - cpu0) / elapsed))
    conn.close()


def idle_connections(port: int, n: int, tls: dict[str, str] | str | None, conn: Any) -> None:
    """Open ``n`` connections, each sending its CSM; hold them until told to close."""
    context = None
    if isinstance(tls, dict):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(tls["ca"])
        context.load_cert_chain(tls["cert"], tls["key"])
        context.set_alpn_protocols(["coap"])
    held: list[Any] = []
    for _ in range(n):
        s: Any = socket.create_connection((HOST, port))
        if tls == "psk":
            s = EnginePskSocket(s)
        elif context is not None:
            s = context.wrap_socket(s)
        s.sendall(CSM)
        held.append(s)
    conn.send(len(held))
    conn.recv()
    for s in held:
        s.close()


# --- the server side (this process) ------------------------------------------------------------------


async def _run(target: Any, args: tuple[Any, ...], timeout: float) -> Any:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(None, parent.recv), timeout), parent, proc
    except BaseException:
        proc.kill()
        raise


async def measure(target: Any, args: tuple[Any, ...], timeout: float) -> tuple[Result, float]:
    """The load's result, and the server's CPU time per answered request (microseconds)."""
    cpu0 = time.process_time()
    result, _, proc = await _run(target, args, timeout)
    proc.join(5)
    return result, (time.process_time() - cpu0) / max(result.total, 1) * 1e6


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def idle_memory(endpoint: Any, n: int, tls: dict[str, str] | str | None) -> tuple[float, float]:
    """Bytes of Python heap and of resident set per idle connection the server holds."""
    import gc

    gc.collect()
    heap0, rss0 = tracemalloc.get_traced_memory()[0], _rss()
    opened, parent, proc = await _run(idle_connections, (endpoint.port, n, tls), 120)
    async with asyncio.timeout(60):
        while endpoint.connections() < opened:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # every CSM read
    gc.collect()
    heap, rss = tracemalloc.get_traced_memory()[0] - heap0, _rss() - rss0
    parent.send("close")
    proc.join(10)
    return heap / opened, rss / opened


async def run(opts: argparse.Namespace) -> None:
    from lwm2m.coap.events import RequestReceived
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, OptionNumber, Type
    from lwm2m.transport.dtls import DtlsServerConfig
    from lwm2m.transport.tcp import TcpLimits, open_tcp_endpoint, tls_server_context
    from lwm2m.transport.tls_engine import engine_tls_server
    from lwm2m.transport.udp import open_udp_endpoint

    content = Message(Type.ACK, Code.CONTENT, payload=PAYLOAD)
    not_found = Message(Type.ACK, Code.NOT_FOUND)
    resource = ((OptionNumber.URI_PATH, b"t"),)

    def handler(event: RequestReceived) -> Message:
        return content if event.message.options == resource else not_found

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tests.helpers.pki import make_pki

    pki = make_pki("bench CA")
    server_cred, client_cred = pki.issue("bench-server"), pki.issue("bench-client")
    folder = tempfile.mkdtemp()
    tls_files = {
        "ca": os.path.join(folder, "ca.pem"),
        "cert": os.path.join(folder, "c.pem"),
        "key": os.path.join(folder, "c.key"),
    }
    for name, data in (
        ("ca", pki.ca_pem),
        ("cert", client_cred.certificate),
        ("key", client_cred.private_key),
    ):
        with open(tls_files[name], "wb") as f:
            f.write(data)

    budget = opts.seconds + opts.warmup + 60
    load = (opts.seconds, opts.warmup, opts.inflight)
    rows: list[tuple[str, Result, float]] = []
    async with open_udp_endpoint(HOST, 0, handler=handler) as udp:
        rows.append(("udp", *await measure(udp_load, (udp.port, *load), budget)))
    if opts.dtls:
        from lwm2m.transport.dtls import DtlsServerConfig, open_dtls_endpoint

        config = DtlsServerConfig(psk_lookup={IDENTITY: KEY}.get)
        async with open_dtls_endpoint(HOST, 0, server=config, handler=handler) as dtls:
            rows.append(("dtls", *await measure(dtls_load, (dtls.port, *load), budget)))
    limits = TcpLimits(max_connections=max(opts.connections * 2, 100))
    async with open_tcp_endpoint(HOST, 0, handler=handler, limits=limits) as tcp:
        rows.append(("tcp", *await measure(tcp_load, (tcp.port, *load, None), budget)))
    server_ssl = tls_server_context(server_cred)
    async with open_tcp_endpoint(HOST, 0, handler=handler, limits=limits, server_ssl=server_ssl) as tls:
        rows.append(("tls", *await measure(tcp_load, (tls.port, *load, tls_files), budget)))
    engine = engine_tls_server(DtlsServerConfig(psk_lookup={IDENTITY: KEY}.get))
    async with open_tcp_endpoint(HOST, 0, handler=handler, limits=limits, server_tls=engine) as tls:
        rows.append(("tls-psk", *await measure(tcp_load, (tls.port, *load, "psk"), budget)))

    base = rows[0][1].rate or 1.0
    print(f"requests/s over one socket or connection, {opts.inflight} in flight, {opts.seconds:g} s each:")
    base_cpu = rows[0][2] or 1.0
    head = f"{'req/s':>10}{'vs udp':>8}{'server us/req':>15}{'vs udp':>8}{'load CPU':>10}{'lost':>6}"
    print(f"  {'transport':<10}{head}")
    for name, result, cpu in rows:
        line = f"{result.rate:>10.0f}{result.rate / base:>8.2f}{cpu:>15.1f}{cpu / base_cpu:>8.2f}"
        print(f"  {name:<10}{line}{result.cpu:>10.0%}{result.lost:>6}")
    print("  (server us/req: its CPU time per answered request, warm-up included: steadier on a busy host)")

    tracemalloc.start()
    print(f"memory per idle connection ({opts.connections} connections, each after its CSM):")
    async with open_tcp_endpoint(HOST, 0, handler=handler, limits=limits) as tcp:
        heap, rss = await idle_memory(tcp, opts.connections, None)
        print(f"  tcp: {heap / 1024:.1f} KiB Python heap, {rss / 1024:.1f} KiB resident")
    async with open_tcp_endpoint(HOST, 0, handler=handler, limits=limits, server_ssl=server_ssl) as tls:
        heap, rss = await idle_memory(tls, opts.connections, tls_files)
        print(f"  tls: {heap / 1024:.1f} KiB Python heap, {rss / 1024:.1f} KiB resident (OpenSSL's included)")
    async with open_tcp_endpoint(HOST, 0, handler=handler, limits=limits, server_tls=engine) as tls:
        heap, rss = await idle_memory(tls, opts.connections, "psk")
        print(f"  tls-psk: {heap / 1024:.1f} KiB Python heap, {rss / 1024:.1f} KiB resident (our engine)")
    tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--no-dtls", dest="dtls", action="store_false", help="leave DTLS out")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    opts = parser.parse_args(argv)
    from lwm2m.transport.eventloop import loop_factory, uvloop_available

    factory = loop_factory(opts.loop == "uvloop" and uvloop_available())
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(run(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
