"""DTLS 1.2 benchmarks: our sans-IO engine (``lwm2m.tls``) beside Mbed TLS (python-mbedtls) in one
run, and CoAP over DTLS through the transport beside plain CoAP.

Engine sections (this process, no sockets: datagrams are handed from one side to the other):

1. full PSK handshakes (TLS_PSK_WITH_AES_128_CCM_8, the cookie exchange included): the CPU
   time of the *server* side only, each call into it timed on its own (``time.process_time``),
   so the clients' cost is left out and reported apart; the median of ``--runs`` runs. Our
   server is the engine backend of the transport (its stateless cookie check, then a connection
   per address); Mbed TLS's is one ``TLSWrappedBuffer`` per client from one ``ServerContext``,
   with its cookie exchange, as the transport's Mbed TLS backend drives it. Both take the same
   Mbed TLS client, so that they answer the same offers; our server with our own client (which
   adds a Connection ID) is shown too.
2. full ECDHE-ECDSA handshakes (P-256, both sides authenticated, CCM_8 and GCM), the server's
   CPU only as above: our server (the transport's engine backend, with X.509 or raw public keys,
   RFC 7250) and Mbed TLS's (X.509) with the same Mbed TLS client, and ours with our own client
   (X.509 and raw public keys; Mbed TLS has no raw public keys, so no counterpart there). The
   certificates (a CA, a server and a client certificate) are made for the run.
3. records: one 100-byte CoAP payload protected by one side and opened by the other
   (epoch 1, anti-replay window included), per second, on established connections; ours
   through the general calls (``send_application_data``, ``receive_datagram``, an event) and
   "direct", through those the transport uses (``protect_application_data``,
   ``receive_application_data``: the record straight from and to the datagram).
4. memory: ``tracemalloc`` bytes per established session (after its handshake and one CoAP
   message from the client, as a device's Register) and per handshake in progress (the server
   waits for the ClientKeyExchange) in our server's table, and the resident set (VmRSS) over
   ``--sessions`` of each in a fresh process, for ours and for Mbed TLS (whose memory only the
   resident set sees).

Targets (issue 14): ≥ 3,000 full handshakes/s on one core; ≤ 4 KB per established session,
≤ 1 KB per idle resumable one (its exported state) and ≤ 8 KB per handshake in progress.

``--transport`` runs instead the loopback benchmark through ``CoapDtlsEndpoint``: full handshakes
per second against the endpoint, and CoAP requests per second over DTLS beside plain CoAP (the
load from a separate process, so that its cryptography does not share the GIL with the server):

- handshakes: ``--concurrency`` full handshakes at a time in each of ``--generators`` load
  processes (one alone cannot keep the server busy), each from a fresh source port; a finished
  one sends close_notify (the server drops the session) and the slot starts another. The rate on
  one core is 1 / the server's CPU per handshake (its process's CPU time over the window);
- requests: ``--inflight`` confirmable GETs outstanding over ``--sockets`` established sessions,
  and then the same over plain CoAP.

The whole is run ``--runs`` times and the medians are reported, so that a busy machine still
gives a usable figure.

    python bench/dtls.py [--handshakes 2000] [--ecdsa-handshakes 300] [--records 20000]
                         [--sessions 10000] [--traced 1000]
    python bench/dtls.py --transport [--runs 3] [--seconds 5] [--generators 2] [--concurrency 32]
                         [--client mbedtls|engine]
                         [--inflight 64] [--sockets 4] [--profile 30]

``--profile N`` prints the server's N costliest functions (cProfile) for the handshake run and
each request run.

"server CPU" is the server process's CPU time over the window: near 100% means the server, not
the generator, was the limit; "load CPU" is the generator's. Both well below 100% mean that the
machine was busy with other work: the rates then say little, the CPU per request more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Mbed TLS is a test peer: how to drive it sans-IO lives beside the tests, in the repository root.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tests.helpers.mbedtls import handshake_over, psk_configuration, step, take

HOST = "127.0.0.1"
KEY = bytes(range(16))
IDENTITY = "bench"
PAYLOAD = b"22.5"
_HEAD = bytes((0x42, 0x01))  # CON GET, token length 2; then Message ID and token
_PATH = bytes((0xB1,)) + b"t"  # Uri-Path "t"
# A CoAP NON GET with a 4-byte token and a 100-byte payload, as the records benchmark sends.
COAP_100 = bytes((0x54, 0x01, 0x12, 0x34)) + b"tokn" + bytes((0xFF,)) + bytes(91)
TARGET_HANDSHAKES = 3000.0
TARGET_ESTABLISHED = 4 * 1024
TARGET_HANDSHAKING = 8 * 1024
TARGET_EXPORTED = 1024


# --- the engine benchmarks: the two sides of each implementation, sans-IO --------------------------


class OurClient:
    """Our client connection; ``cid`` offers a Connection ID (RFC 9146). ``config`` (an engine
    ``ConnectionConfig``) replaces the PSK one."""

    def __init__(self, cid: bool, config: Any = None) -> None:
        from lwm2m.tls import ConnectionConfig, DtlsConnection, DtlsRole

        if config is None:
            config = ConnectionConfig(psk_identity=IDENTITY.encode(), psk=KEY, connection_id=cid)
        self.connection = DtlsConnection(DtlsRole.CLIENT, config, 0.0)

    def start(self) -> list[bytes]:
        return self.connection.datagrams_to_send(0.0)

    def feed(self, datagrams: list[bytes]) -> list[bytes]:
        for datagram in datagrams:
            self.connection.receive_datagram(datagram, 0.0)
        return self.connection.datagrams_to_send(0.0)

    def send(self, data: bytes) -> list[bytes]:
        self.connection.send_application_data(data)
        return self.connection.datagrams_to_send(0.0)

    @property
    def done(self) -> bool:
        return self.connection.established


class MbedClient:
    """A Mbed TLS client buffer (one context per configuration, made once): PSK, or the
    ``configuration`` given (then the server's name is checked against ``hostname``)."""

    _context: Any = None

    def __init__(self, configuration: Any = None, hostname: str | None = None) -> None:
        from mbedtls import tls

        if configuration is not None:
            self.buf = tls.ClientContext(configuration).wrap_buffers(hostname)
            return
        if MbedClient._context is None:
            MbedClient._context = tls.ClientContext(psk_configuration(pre_shared_key=(IDENTITY, KEY)))
        self.buf = MbedClient._context.wrap_buffers(None)

    def start(self) -> list[bytes]:
        step(self.buf)
        return [take(self.buf)]

    def feed(self, datagrams: list[bytes]) -> list[bytes]:
        for datagram in datagrams:
            self.buf.receive_from_network(datagram)
        step(self.buf)
        out = take(self.buf)
        return [out] if out else []

    def send(self, data: bytes) -> list[bytes]:
        self.buf.write(data)
        return [take(self.buf)]

    @property
    def done(self) -> bool:

        return handshake_over(self.buf)


class OurServer:
    """Our server as the transport drives it: the engine backend's cookie check, then one engine
    connection per address (the DTLS layer's table, without its sockets and limits)."""

    def __init__(self, sessions: int, config: Any = None) -> None:
        from lwm2m.transport.dtls.config import DtlsServerConfig
        from lwm2m.transport.dtls.engine_backend import EngineBackend

        keys = {IDENTITY: KEY}
        self.factory = EngineBackend().server(config or DtlsServerConfig(psk_lookup=keys.get))
        self.table: dict[tuple[str, int], Any] = {}

    def feed(self, datagram: bytes, address: tuple[str, int]) -> list[bytes]:
        conn = self.table.get(address)
        if conn is None:
            conn, answer = self.factory.accept(datagram, f"{address[0]}:{address[1]}".encode(), 0.0)
            if conn is None:
                return [answer] if answer else []
            self.table[address] = conn
        else:
            conn.feed(datagram, 0.0)
            if conn.handshake(0.0):
                while conn.read() is not None:
                    pass
        return conn.outgoing()  # type: ignore[no-any-return]

    def established(self, address: tuple[str, int]) -> bool:
        conn = self.table.get(address)
        return conn is not None and conn.handshake(0.0)  # type: ignore[no-any-return]

    def connection(self, address: tuple[str, int]) -> Any:
        """The engine's ``DtlsConnection`` behind the backend's connection at ``address``."""
        return self.table[address]._conn

    def drop(self, address: tuple[str, int]) -> None:
        conn = self.table.pop(address, None)
        if conn is not None:
            conn.close()


class MbedServer:
    """Mbed TLS's server: one buffer per client, the one that sent the cookie exchange reused."""

    def __init__(self, configuration: Any = None) -> None:
        from mbedtls import tls

        if configuration is None:
            configuration = psk_configuration(pre_shared_key_store={IDENTITY: KEY})
        self.context = tls.ServerContext(configuration)
        self.buffers: dict[tuple[str, int], Any] = {}
        self._spare: Any = None

    def feed(self, datagram: bytes, address: tuple[str, int]) -> list[bytes]:
        from mbedtls import tls

        buf = self.buffers.get(address)
        if buf is not None and handshake_over(buf):
            buf.receive_from_network(datagram)
            with contextlib.suppress(tls.WantReadError):
                buf.read(4096)  # application data: opened and dropped
            return []
        if buf is not None:
            buf.receive_from_network(datagram)
            step(buf)
            return [take(buf)]
        buf, self._spare = self._spare, None
        if buf is None:
            buf = self.context.wrap_buffers()
        buf.setcookieparam(f"{address[0]}:{address[1]}".encode())
        buf.receive_from_network(datagram)
        try:
            step(buf)
        except tls.HelloVerifyRequest:
            out = take(buf)
            if not len(buf._input_buffer):
                self._spare = buf  # reset by the binding: it takes the next hello
            return [out]
        self.buffers[address] = buf
        return [take(buf)]

    def established(self, address: tuple[str, int]) -> bool:

        buf = self.buffers.get(address)
        return buf is not None and handshake_over(buf)

    def drop(self, address: tuple[str, int]) -> None:
        self.buffers.pop(address, None)


Server = OurServer | MbedServer
Client = OurClient | MbedClient


@dataclass(slots=True)
class Costs:
    """CPU seconds spent in each side."""

    server: float = 0.0
    client: float = 0.0


def handshake(server: Server, client: Client, address: tuple[str, int], costs: Costs) -> None:
    """One full handshake, the cookie exchange included; each side's calls timed apart."""
    clock = time.process_time
    t = clock()
    pending = client.start()
    costs.client += clock() - t
    for _ in range(8):
        replies: list[bytes] = []
        t = clock()
        for datagram in pending:
            replies += server.feed(datagram, address)
        costs.server += clock() - t
        if client.done and server.established(address):
            return
        t = clock()
        pending = client.feed(replies)
        costs.client += clock() - t
    raise RuntimeError(f"the handshake with {type(server).__name__} did not complete")


def handshakes_per_second(
    make_server: Callable[[], Server], make_client: Callable[[], Client], n: int
) -> Costs:
    """CPU seconds per handshake of each side, over ``n`` handshakes (after a short warm-up);
    the server forgets each session once established, outside the timed calls."""
    server = make_server()
    for i in range(min(50, n)):
        handshake(server, make_client(), ("10.0.0.1", i), Costs())
        server.drop(("10.0.0.1", i))
    costs = Costs()
    for i in range(n):
        address = ("10.0.0.2", i)
        handshake(server, make_client(), address, costs)
        server.drop(address)
    return Costs(costs.server / n, costs.client / n)


def median_costs(
    make_server: Callable[[], Server], make_client: Callable[[], Client], n: int, runs: int
) -> Costs:
    """``handshakes_per_second`` ``runs`` times: the median of each side's cost, so that one run
    slowed down by other work on the machine does not make the figure."""
    each = [handshakes_per_second(make_server, make_client, n) for _ in range(runs)]
    return Costs(statistics.median(c.server for c in each), statistics.median(c.client for c in each))


def our_pair(cid: bool) -> tuple[Any, Any]:
    """An established pair of our connections (client, server)."""
    server = OurServer(1)
    client = OurClient(cid)
    handshake(server, client, ("10.0.0.3", 1), Costs())
    return client.connection, server.connection(("10.0.0.3", 1))


def our_records(n: int, cid: bool) -> float:
    """Records per second: protected by our client, opened by our server (CoAP, 100 bytes)."""
    client, server = our_pair(cid)
    send, out, receive, event = (
        client.send_application_data,
        client.datagrams_to_send,
        server.receive_datagram,
        server.next_event,
    )
    t = time.process_time()
    for _ in range(n):
        send(COAP_100)
        for datagram in out(0.0):
            receive(datagram, 0.0)
        got = event()
    elapsed = time.process_time() - t
    assert got is not None and got.data == COAP_100  # type: ignore[union-attr]
    return n / elapsed


def our_direct_records(n: int, cid: bool) -> float:
    """As ``our_records``, through the forms the transport uses for application data: the record
    returned by ``protect_application_data``, the content by ``receive_application_data``."""
    client, server = our_pair(cid)
    protect, receive = client.protect_application_data, server.receive_application_data
    t = time.process_time()
    for _ in range(n):
        got = receive(protect(COAP_100), 0.0)
    elapsed = time.process_time() - t
    assert got == COAP_100
    return n / elapsed


def mbedtls_records(n: int) -> float:
    """Records per second: protected by a Mbed TLS client, opened by a Mbed TLS server."""
    server = MbedServer()
    client = MbedClient()
    handshake(server, client, ("10.0.0.3", 1), Costs())
    sbuf, cbuf = server.buffers[("10.0.0.3", 1)], client.buf
    write, receive, read = cbuf.write, sbuf.receive_from_network, sbuf.read
    t = time.process_time()
    for _ in range(n):
        write(COAP_100)
        receive(take(cbuf))
        got = read(2048)
    elapsed = time.process_time() - t
    assert got == COAP_100
    return n / elapsed


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _fill(server: Server, make_client: Callable[[], Client], n: int, established: bool) -> None:
    # ``n`` sessions in the server, established or stopped after the server's first flight
    # (waiting for the ClientKeyExchange); the clients are dropped. An established session has
    # also taken one CoAP message from its client, as a device's first (the Register) would.
    for i in range(n):
        address = ("10.1.0.0", i)
        client = make_client()
        if established:
            handshake(server, client, address, Costs())
            for datagram in client.send(COAP_100):
                server.feed(datagram, address)
            continue
        pending = client.start()
        for _ in range(2):  # the ClientHello, the HelloVerifyRequest, the hello with the cookie
            replies = [r for d in pending for r in server.feed(d, address)]
            pending = client.feed(replies)


def memory_traced(
    make_server: Callable[[], OurServer], make_client: Callable[[], Client], n: int
) -> dict[str, float]:
    """tracemalloc bytes per session in our table: established, and handshakes in progress."""
    figures: dict[str, float] = {}
    for name, established in (("established", True), ("handshaking", False)):
        server = make_server()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        _fill(server, make_client, n, established)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(server.table) == n
        figures[name] = (after - before) / n
    return figures


def memory_resident(which: str, established: bool, n: int, conn: Any) -> None:
    """In a fresh process: VmRSS per session over ``n`` sessions of one server (ours or Mbed TLS's)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    make_client: Callable[[], Client] = MbedClient if which == "mbedtls" else lambda: OurClient(True)
    server: Server = MbedServer() if which == "mbedtls" else OurServer(n)
    _fill(server, make_client, 20, established)  # load the code and the caches first
    for i in range(20):
        server.drop(("10.1.0.0", i))
    gc.collect()
    before = _rss()
    _fill(server, make_client, n, established)
    gc.collect()
    conn.send((_rss() - before) / n)
    conn.close()


def resident(which: str, established: bool, n: int) -> float:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=memory_resident, args=(which, established, n, child), daemon=True)
    proc.start()
    figure: float = parent.recv()
    proc.join(10)
    return figure


def exported_size(connection: Any) -> int:
    """The bytes of an idle session exported (``DtlsConnection.export_state``)."""
    return len(connection.export_state())


def engine(opts: argparse.Namespace) -> None:
    from mbedtls import version

    n = opts.handshakes
    print(f"DTLS 1.2 engine, one core, no I/O: lwm2m.tls beside {version.version} (python-mbedtls)")
    print(
        f"full PSK handshakes (TLS_PSK_WITH_AES_128_CCM_8, cookie exchange included), {n} each,"
        f" median of {opts.runs} runs:"
    )
    print(f"  {'server':<26} {'client':<22} {'server µs':>10} {'server hs/s':>12} {'client µs':>10}")
    rows = (
        ("lwm2m.tls", "Mbed TLS", lambda: OurServer(1), MbedClient),
        ("lwm2m.tls", "lwm2m.tls (CID)", lambda: OurServer(1), lambda: OurClient(True)),
        ("lwm2m.tls", "lwm2m.tls (no CID)", lambda: OurServer(1), lambda: OurClient(False)),
        ("Mbed TLS", "Mbed TLS", MbedServer, MbedClient),
    )
    rates: dict[str, float] = {}
    for server_name, client_name, make_server, make_client in rows:
        costs = median_costs(make_server, make_client, n, opts.runs)  # type: ignore[arg-type]
        rate = 1 / costs.server
        rates.setdefault(server_name, rate)
        print(
            f"  {server_name:<26} {client_name:<22} {costs.server * 1e6:>10.0f} {rate:>12,.0f}"
            f" {costs.client * 1e6:>10.0f}"
        )
    ours, theirs = rates["lwm2m.tls"], rates["Mbed TLS"]
    print(
        f"  server side, same Mbed TLS client: ours/Mbed TLS = {ours / theirs:.2f}"
        f"   target ≥ {TARGET_HANDSHAKES:,.0f}/s: {'met' if ours >= TARGET_HANDSHAKES else 'NOT met'}"
    )

    ecdsa(opts)

    r = opts.records
    print(f"records: a {len(COAP_100)}-byte CoAP message protected by one side, opened by the other, {r}:")
    theirs = mbedtls_records(r)
    for name, rate in (
        ("lwm2m.tls", our_records(r, cid=False)),
        ("lwm2m.tls (CID)", our_records(r, cid=True)),
        ("lwm2m.tls, direct", our_direct_records(r, cid=False)),
        ("lwm2m.tls, direct (CID)", our_direct_records(r, cid=True)),
        ("Mbed TLS", theirs),
    ):
        print(f"  {name:<26} {rate:>10,.0f} records/s   {rate / theirs:.2f} of Mbed TLS's")

    s, t = opts.sessions, opts.traced
    print(f"memory per session on the server: tracemalloc over {t}, VmRSS over {s} (a fresh process each)")
    traced = memory_traced(lambda: OurServer(t), lambda: OurClient(True), t)
    for name, established, target in (
        ("established", True, TARGET_ESTABLISHED),
        ("handshake in progress", False, TARGET_HANDSHAKING),
    ):
        key = "established" if established else "handshaking"
        ours_rss, theirs_rss = resident("ours", established, s), resident("mbedtls", established, s)
        print(
            f"  {name:<22} lwm2m.tls {traced[key]:>7,.0f} B traced, {ours_rss:>7,.0f} B RSS"
            f"   Mbed TLS {theirs_rss:>7,.0f} B RSS   target ≤ {target:,} B:"
            f" {'met' if max(traced[key], ours_rss) <= target else 'NOT met'}"
        )
    _, server = our_pair(cid=True)
    size = exported_size(server)
    print(
        f"  idle exported session (the server's, with a CID): {size} B   target ≤ {TARGET_EXPORTED:,} B:"
        f" {'met' if size <= TARGET_EXPORTED else 'NOT met'}"
    )


# --- ECDHE-ECDSA: certificates (X.509) and raw public keys (RFC 7250) ---------------------------------

SERVER_NAME = "lwm2m.example"
ECDSA_CCM_8 = "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8"
ECDSA_GCM = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"


@dataclass(frozen=True, slots=True)
class Pki:
    """A CA, a server certificate for ``SERVER_NAME`` and a client certificate it issued
    (P-256, made with ``cryptography`` for this run), as DER, with the keys as PKCS#8 DER."""

    ca: bytes
    server: bytes
    server_key: bytes
    client: bytes
    client_key: bytes

    @staticmethod
    def make() -> Pki:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])

        def issue(name: str, key: ec.EllipticCurvePrivateKey, usage: str) -> x509.Certificate:
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]) if usage else ca_name
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
            )
            if not usage:  # the CA: may sign certificates (RFC 5280 §4.2.1.3, §4.2.1.9)
                identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
                builder = builder.add_extension(identifier, False)
                builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                builder = builder.add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
                )
                return builder.sign(key, hashes.SHA256())
            purpose = ExtendedKeyUsageOID.CLIENT_AUTH
            if usage == "server":
                purpose = ExtendedKeyUsageOID.SERVER_AUTH
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), False)
            if usage == "server":
                builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            return builder.sign(ca_key, hashes.SHA256())

        der = serialization.Encoding.DER

        def pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

        return Pki(
            ca=issue("Bench CA", ca_key, "").public_bytes(der),
            server=issue(SERVER_NAME, server_key, "server").public_bytes(der),
            server_key=pkcs8(server_key),
            client=issue("urn:imei:490154203237518", client_key, "client").public_bytes(der),
            client_key=pkcs8(client_key),
        )


def _mbedtls_x509(pki: Pki, own: bytes, key: bytes, suite: str) -> Any:
    """A Mbed TLS configuration with X.509 both ways: our chain, the peer's checked against the CA."""
    from mbedtls import pk, tls
    from mbedtls import x509 as mbedtls_x509

    return tls.DTLSConfiguration(
        ciphers=(suite,),
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
        highest_supported_version=tls.DTLSVersion.DTLSv1_2,
        certificate_chain=((mbedtls_x509.CRT.from_DER(own),), pk.ECC.from_DER(key)),
        trust_store=tls.TrustStore([mbedtls_x509.CRT.from_DER(pki.ca)]),
        validate_certificates=True,
    )


def _our_ecdsa_server(pki: Pki, kind: str, suite: str) -> OurServer:
    """Our server through the transport's engine backend (its cookie check first): X.509 with the
    client's certificate required, or a raw public key that knows the client's."""
    from lwm2m.tls import spki_der
    from lwm2m.transport.dtls.config import CipherSuite, DtlsServerConfig, RpkCredentials, X509Credentials

    ciphers = (CipherSuite(suite),)
    if kind == "X.509":
        credentials = X509Credentials(pki.server, pki.server_key, trusted=pki.ca)
        return OurServer(1, DtlsServerConfig(certificate=credentials, ciphers=ciphers))
    rpk = RpkCredentials(pki.server_key, (spki_der(_private(pki.client_key).public_key()),))
    return OurServer(1, DtlsServerConfig(rpk=rpk, ciphers=ciphers))


def _private(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    return load_der_private_key(der, None)


def _our_ecdsa_client(pki: Pki, kind: str, suite: str) -> Callable[[], OurClient]:
    from cryptography import x509

    from lwm2m.tls import CertificateCredentials, ConnectionConfig, connection, spki_der

    number = connection.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    if suite == ECDSA_CCM_8:
        number = connection.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
    key = _private(pki.client_key)
    if kind == "X.509":
        credentials = CertificateCredentials(
            key,
            (x509.load_der_x509_certificate(pki.client),),
            trust_anchors=(x509.load_der_x509_certificate(pki.ca),),
            expected_name=SERVER_NAME,
        )
    else:
        server_key = spki_der(_private(pki.server_key).public_key())
        credentials = CertificateCredentials(
            key, raw_public_key=True, peer_public_keys=frozenset({server_key})
        )
    config = ConnectionConfig(certificate=credentials, ecdsa_suites=(number,), connection_id=True)
    return lambda: OurClient(True, config)


def ecdsa(opts: argparse.Namespace) -> None:
    """Server-side CPU per full ECDHE-ECDSA handshake (mutual authentication), ours beside Mbed
    TLS's with the same Mbed TLS client (X.509), and ours with our own client (X.509 and raw
    public keys, CCM_8 and GCM)."""
    pki = Pki.make()
    n = opts.ecdsa_handshakes
    print(
        f"full ECDHE-ECDSA handshakes (P-256, both sides authenticated, cookie exchange included), {n} each,"
        f" median of {opts.runs} runs:"
    )
    print(f"  {'server':<26} {'client':<22} {'server µs':>10} {'server hs/s':>12} {'client µs':>10}")
    mbed_client = _mbedtls_x509(pki, pki.client, pki.client_key, ECDSA_CCM_8)
    mbed_server = _mbedtls_x509(pki, pki.server, pki.server_key, ECDSA_CCM_8)
    rows: list[tuple[str, str, Callable[[], Server], Callable[[], Client]]] = [
        (
            "lwm2m.tls CCM_8 X.509",
            "Mbed TLS",
            lambda: _our_ecdsa_server(pki, "X.509", ECDSA_CCM_8),
            lambda: MbedClient(mbed_client, SERVER_NAME),
        ),
        (
            "Mbed TLS CCM_8 X.509",
            "Mbed TLS",
            lambda: MbedServer(mbed_server),
            lambda: MbedClient(mbed_client, SERVER_NAME),
        ),
    ]
    for suite_name, suite in (("CCM_8", ECDSA_CCM_8), ("GCM", ECDSA_GCM)):
        for kind in ("X.509", "RPK"):
            rows.append(
                (
                    f"lwm2m.tls {suite_name} {kind}",
                    "lwm2m.tls (CID)",
                    lambda k=kind, s=suite: _our_ecdsa_server(pki, k, s),  # type: ignore[misc]
                    _our_ecdsa_client(pki, kind, suite),
                )
            )
    rates: dict[str, float] = {}
    for server_name, client_name, make_server, make_client in rows:
        costs = median_costs(make_server, make_client, n, opts.runs)
        rates.setdefault(server_name, 1 / costs.server)
        print(
            f"  {server_name:<26} {client_name:<22} {costs.server * 1e6:>10.0f} {1 / costs.server:>12,.0f}"
            f" {costs.client * 1e6:>10.0f}"
        )
    ours, theirs = rates["lwm2m.tls CCM_8 X.509"], rates["Mbed TLS CCM_8 X.509"]
    print(f"  server side, X.509, same Mbed TLS client: ours/Mbed TLS = {ours / theirs:.2f}")
    print(
        "  raw public keys (RFC 7250): no Mbed TLS counterpart (Mbed TLS does not implement them),"
        " so ours with our own client only"
    )


# --- the transport benchmark: CoapDtlsEndpoint over loopback ------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    done: int  # in the measuring window
    failed: int
    lost: int  # stalled and started afresh
    seconds: float
    cpu: float = 0.0  # the load generator's CPU share over the window: near 100%, it was the limit

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _client_factory(kind: str = "mbedtls") -> Any:
    """The load generators' DTLS clients: Mbed TLS's (an implementation we did not write), or
    our engine's, whose cheaper records leave more of a small machine's CPU to the server."""
    from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials

    config = DtlsClientConfig(psk=PskCredentials(IDENTITY, KEY))
    if kind == "engine":
        from lwm2m.transport.dtls.engine_backend import EngineBackend

        return EngineBackend().client(config)
    from tests.helpers.mbedtls_backend import MbedtlsBackend

    return MbedtlsBackend().client(config)


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
    cpu0 = 0.0
    while (now := time.monotonic()) < end:
        if not counting and now >= t0:
            counting, done, failed, lost = True, 0, 0, 0
            cpu0 = time.process_time()
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
    cpu = (time.process_time() - cpu0) / elapsed if elapsed > 0 else 0.0
    for s in list(started):
        finish(s)
    conn.send(Result(done, failed, lost, elapsed, cpu))
    conn.close()


def requests(
    port: int,
    secure: bool,
    seconds: float,
    warmup: float,
    inflight: int,
    nsocks: int,
    client: str,
    conn: Any,
) -> None:
    factory = _client_factory(client) if secure else None
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
    cpu0 = 0.0
    while (now := time.monotonic()) < end:
        if not counting and now >= t0:
            counting, done, lost = True, 0, 0
            cpu0 = time.process_time()
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
    cpu = (time.process_time() - cpu0) / elapsed if elapsed > 0 else 0.0
    for s in socks:
        s.close()
    conn.send(Result(done, 0, lost, elapsed, cpu))
    conn.close()


# --- the servers (this process) ---------------------------------------------------------------------


async def measure(
    target: Any, args: tuple[Any, ...], timeout: float, profile: int = 0, processes: int = 1
) -> tuple[Result, float]:
    """Run the load ``target`` in ``processes`` processes of its own; their results summed and
    this process's CPU share. ``profile`` > 0 prints that many of the server's most costly
    functions (cProfile, which slows the server down: the rates are then not the figures to
    compare)."""
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(processes):
        parent, child = ctx.Pipe(duplex=False)
        pipes.append(parent)
        procs.append(ctx.Process(target=target, args=(*args, child), daemon=True))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for proc in procs:
        proc.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        results: list[Result] = [
            await asyncio.wait_for(loop.run_in_executor(None, parent.recv), timeout) for parent in pipes
        ]
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    cpu = (time.process_time() - cpu0) / max(time.monotonic() - wall0, 1e-9)
    # The generators measure the same window: their counts add up, their durations are averaged.
    result = Result(
        sum(r.done for r in results),
        sum(r.failed for r in results),
        sum(r.lost for r in results),
        sum(r.seconds for r in results) / processes,
        sum(r.cpu for r in results),
    )
    if profiler is not None:
        import pstats

        profiler.disable()
        print(f"--- server profile, load {target.__name__}{args[1:2]}: by own time")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return result, cpu


async def run_transport(opts: argparse.Namespace) -> dict[str, Any]:
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
        figures["handshakes"] = await measure(
            handshakes, args, budget, opts.profile, processes=opts.generators
        )
        await asyncio.sleep(0.2)
        # Close_notify ended the others; these are handshakes the end of the run cut off.
        figures["sessions_left"] = len(secure.sessions())
        args = (secure.port, True, opts.seconds, opts.warmup, opts.inflight, opts.sockets, opts.client)
        figures["dtls"] = await measure(requests, args, budget, opts.profile)
    async with open_udp_endpoint(HOST, 0, handler=handler) as plain:
        args = (plain.port, False, opts.seconds, opts.warmup, opts.inflight, opts.sockets, opts.client)
        figures["plain"] = await measure(requests, args, budget, opts.profile)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshakes", type=int, default=2000, help="full handshakes per implementation")
    parser.add_argument("--ecdsa-handshakes", type=int, default=300, help="ECDHE-ECDSA handshakes per row")
    parser.add_argument("--records", type=int, default=20000, help="records per implementation")
    parser.add_argument("--sessions", type=int, default=10000, help="sessions for the resident set")
    parser.add_argument("--traced", type=int, default=1000, help="sessions for tracemalloc")
    parser.add_argument("--transport", action="store_true", help="the endpoint over loopback instead")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32, help="handshakes in progress at once")
    parser.add_argument("--inflight", type=int, default=64, help="requests outstanding at once")
    parser.add_argument("--generators", type=int, default=2, help="handshake load processes")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each handshake row or transport run (medians)"
    )
    parser.add_argument("--sockets", type=int, default=4, help="sessions (source ports) the requests use")
    parser.add_argument(
        "--client",
        choices=("mbedtls", "engine"),
        default="mbedtls",
        help="the DTLS client of the request load (the handshake load is always Mbed TLS)",
    )
    parser.add_argument("--profile", type=int, default=0, help="print the server's N costliest functions")
    opts = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    if opts.transport:
        transport(opts)
    else:
        engine(opts)


def transport(opts: argparse.Namespace) -> None:
    from mbedtls import version

    from lwm2m.transport.eventloop import run as run_loop
    from lwm2m.transport.eventloop import uvloop_available

    loop = "uvloop" if uvloop_available() else "asyncio"
    print(
        f"DTLS 1.2 over loopback: server on our engine (lwm2m.tls, the default for PSK) on {loop}, "
        f"handshake clients {version.version} via python-mbedtls, request clients "
        f"{'ours' if opts.client == 'engine' else 'the same'}; {opts.runs} runs of {opts.seconds:g} s, "
        f"handshakes from {opts.generators} load processes"
    )
    hs_rates, hs_costs, shares, cost_ratios = [], [], [], []
    for i in range(1, opts.runs + 1):
        figures = run_loop(run_transport(opts))
        hs, hs_cpu = figures["handshakes"]
        (dtls, dtls_cpu), (plain, plain_cpu) = figures["dtls"], figures["plain"]
        print(f"run {i}:")
        print(
            f"  full PSK handshakes (cookie exchange included): {hs.rate:8.0f}/s"
            f"   server CPU {hs_cpu:4.0%}   load CPU {hs.cpu:4.0%}  failed {hs.failed}  stalled {hs.lost}"
        )
        hs_cost = hs_cpu / hs.rate * 1e6 if hs.rate else 0.0
        print(f"    server CPU per handshake: {hs_cost:.0f} µs;", end=" ")
        print(f"server sessions left (the others ended by close_notify): {figures['sessions_left']}")
        for name, run, cpu in (("over DTLS (CCM_8)", dtls, dtls_cpu), ("plain", plain, plain_cpu)):
            print(
                f"  CoAP requests {name + ':':34}{run.rate:8.0f}/s   server CPU {cpu:4.0%}"
                f"   load CPU {run.cpu:4.0%}"
            )
        share = dtls.rate / plain.rate if plain.rate else 0.0
        # The server's CPU per request: what the rates come to when the server alone is the
        # limit, and less disturbed than the rates by a generator or a machine busy elsewhere.
        runs = ((dtls.rate, dtls_cpu), (plain.rate, plain_cpu))
        cost = [cpu / rate * 1e6 if rate else 0.0 for rate, cpu in runs]
        ratio = cost[1] / cost[0] if cost[0] else 0.0
        print(f"  DTLS rate / plain rate: {share:.0%}")
        print(
            f"  server CPU per request: {cost[0]:.1f} µs over DTLS, {cost[1]:.1f} µs plain"
            f" (ratio {ratio:.0%})"
        )
        hs_rates.append(hs.rate)
        hs_costs.append(hs_cost)
        shares.append(share)
        cost_ratios.append(ratio)
    median = statistics.median
    one_core = 1e6 / median(hs_costs) if median(hs_costs) else 0.0
    print(f"medians over {opts.runs} runs:")
    print(
        f"  full PSK handshakes/s {median(hs_rates):,.0f} measured; {one_core:,.0f} on one core"
        f" (1 / the server's CPU per handshake)   target ≥ {TARGET_HANDSHAKES:,.0f}:"
        f" {'met' if one_core >= TARGET_HANDSHAKES else 'NOT met'}"
    )
    print(
        f"  requests over DTLS / plain: {median(shares):.0%} by rate, {median(cost_ratios):.0%} by server CPU"
        f" per request   target ≥ 60%: {'met' if median(shares) >= 0.6 else 'NOT met'} by rate"
    )


if __name__ == "__main__":
    main()
