"""The server's instructions per CoAP request over DTLS beside plain CoAP, and per full PSK
handshake, counted by valgrind's callgrind: figures that a machine busy with other work does
not move, for steering the DTLS fast paths (``bench/dtls.py`` gives the rates).

- requests: a confirmable GET answered 2.05 through the UDP driver of ``CoapDtlsEndpoint``
  (its DTLS layer on our engine) and of ``CoapUdpEndpoint``, one datagram per wake-up, the
  records made beforehand by an engine client without a Connection ID (as Mbed TLS's);
  ``--cid`` adds a run whose client takes the server's Connection ID (RFC 9146);
- handshakes: full PSK handshakes (TLS_PSK_WITH_AES_128_CCM_8, the cookie exchange included)
  of the engine backend's server, with the Mbed TLS client of ``bench/dtls.py``.

Only the server's calls are counted (each made through ``operator.call``, the one function
callgrind collects in), not the client's nor the set-up. The sockets' system calls are not
user-space instructions and are left out: the share of DTLS in a real request is smaller.

    python bench/dtls_instructions.py [--requests 2000] [--handshakes 200] [--cid]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IDENTITY, KEY = "bench", bytes(range(16))
_HEAD, _PATH = bytes((0x42, 0x01)), bytes((0xB1,)) + b"t"  # CON GET, token length 2; Uri-Path "t"
WARMUP = 50


def _coap(mid: int) -> bytes:
    m = (mid & 0xFFFF).to_bytes(2, "big")
    return _HEAD + m + m + _PATH


def requests(n: int, secure: bool, cid: bool) -> None:
    from lwm2m.coap.events import RequestReceived
    from lwm2m.coap.message import Message
    from lwm2m.coap.numbers import Code, OptionNumber, Type
    from lwm2m.tls import ApplicationData, ConnectionConfig, DtlsConnection, DtlsRole
    from lwm2m.transport.dtls import DtlsServerConfig, SessionLimits
    from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
    from lwm2m.transport.udp import CoapUdpEndpoint

    content = Message(Type.ACK, Code.CONTENT, payload=b"22.5")
    resource = ((OptionNumber.URI_PATH, b"t"),)

    def handler(event: RequestReceived) -> Message:
        return content if event.message.options == resource else Message(Type.ACK, Code.NOT_FOUND)

    loop = asyncio.new_event_loop()
    ep: Any
    if secure:
        config = DtlsServerConfig(psk_lookup={IDENTITY: KEY}.get, limits=SessionLimits(max_sessions=1000))
        ep = loop.run_until_complete(CoapDtlsEndpoint.create("127.0.0.1", 0, server=config, handler=handler))
    else:
        ep = loop.run_until_complete(CoapUdpEndpoint.create("127.0.0.1", 0, handler=handler))
    driver = ep._driver  # the loop is never run: the driver's two calls per wake-up are made here
    receive, batch = driver._receive, driver._on_batch
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2)
    addr = peer.getsockname()
    now = loop.time()
    client = None
    if secure:
        client_config = ConnectionConfig(psk_identity=IDENTITY.encode(), psk=KEY, connection_id=cid)
        client = DtlsConnection(DtlsRole.CLIENT, client_config, 0.0)
        while not client.established:
            for datagram in client.datagrams_to_send(0.0):
                receive(datagram, addr, now)
                batch(now)
            if not client.established:
                client.receive_datagram(peer.recv(4096), 0.0)
        datagrams = [client.protect_application_data(_coap(i)) for i in range(n + WARMUP)]
    else:
        datagrams = [_coap(i) for i in range(n + WARMUP)]

    def step(data: bytes, at: float) -> None:
        receive(data, addr, at)
        batch(at)

    for datagram in datagrams[:WARMUP]:
        now += 1e-4
        step(datagram, now)
    answer = peer.recv(4096)  # the first answer: 2.05 Content, through the session
    if client is not None:
        client.receive_datagram(answer, 0.0)
        events = []
        while (event := client.next_event()) is not None:
            events.append(event)
        answer = next(e.data for e in events if isinstance(e, ApplicationData))
    assert answer[1] == Code.CONTENT, answer
    call = operator.call
    for datagram in datagrams[WARMUP:]:
        now += 1e-4
        call(step, datagram, now)  # the only calls counted; the answers pile up unread (UDP drops them)
    peer.close()


def handshakes(n: int) -> None:
    sys.argv = sys.argv[:1]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import dtls as bench  # bench/dtls.py: its server (the engine backend) and Mbed TLS client

    server = bench.OurServer(1)
    call = operator.call

    def one(address: tuple[str, int], counted: bool) -> None:
        client = bench.MbedClient()
        pending = client.start()
        for _ in range(8):
            replies: list[bytes] = []
            for datagram in pending:
                replies += call(server.feed, datagram, address) if counted else server.feed(datagram, address)
            if client.done and server.established(address):
                server.drop(address)
                return
            pending = client.feed(replies)
        raise RuntimeError("the handshake did not complete")

    for i in range(20):
        one(("10.0.0.1", i), False)
    for i in range(n):
        one(("10.0.0.2", i), True)


def callgrind(argv: list[str], out: str) -> int:
    """Instructions callgrind counts in ``operator.call`` (the only function it collects in)
    while this interpreter runs ``argv``, a script and its arguments; its output goes to ``out``."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=_operator_call",
        f"--callgrind-out-file={out}",
        sys.executable,
        *argv,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((os.path.join(ROOT, "src"), ROOT)))
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        match = re.search(r"^summary: (\d+)", f.read(), re.MULTILINE)
    assert match, "no summary in callgrind's output"
    return int(match.group(1))


def count(kind: str, n: int) -> int:
    """Instructions counted in a child under callgrind for ``n`` units of ``kind``."""
    with tempfile.TemporaryDirectory() as tmp:
        return callgrind(
            [os.path.abspath(__file__), "--worker", kind, str(n)], os.path.join(tmp, "callgrind.out")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--cid", action="store_true", help="also requests whose records carry a CID")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        kind, n = opts.worker[0], int(opts.worker[1])
        if kind == "handshakes":
            handshakes(n)
        else:
            requests(n, kind != "plain", kind == "cid")
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian: apt install valgrind)")
    r = opts.requests
    plain = count("plain", r) / r
    dtls = count("dtls", r) / r
    print(f"server instructions per CoAP request (callgrind, {r} requests, one per wake-up):")
    print(f"  plain CoAP            {plain:9,.0f}")
    rows = [("over DTLS (CCM_8)", dtls)]
    if opts.cid:
        rows.append(("over DTLS with a CID", count("cid", r) / r))
    for name, cost in rows:
        print(f"  {name:<21} {cost:9,.0f}   DTLS's own {cost - plain:,.0f}; plain / DTLS {plain / cost:.2f}")
    h = opts.handshakes
    print(f"server instructions per full PSK handshake (cookie exchange included), {h}:")
    print(f"  engine backend, Mbed TLS client {count('handshakes', h) / h:12,.0f}")


if __name__ == "__main__":
    main()
