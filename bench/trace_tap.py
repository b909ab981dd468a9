"""The cost of the per-device message trace on the datagram path, in nanoseconds per datagram.

The trace's tap (:mod:`lwm2m.transport.tap`) stands between the sockets and the CoAP endpoint
only while a trace is on. This measures, on the same stand-in for the endpoint's
``receive_datagram`` (one that does nothing, so that only the tap's own cost shows):

- ``off``: no trace on; the reader calls the endpoint directly (what the server does then);
- ``on, other device``: a trace is on for another device: one address look-up per datagram;
- ``on, this device``: the datagram's device is traced: kept as it is (an append);
- ``read, per message``: what reading the trace costs per message kept (decoded then).

    python bench/trace_tap.py [--datagrams 200000] [--repeat 5]

Each figure is the best of ``--repeat`` runs (the steadiest on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat
from lwm2m.server.events import EventStream
from lwm2m.server.trace import MessageTrace, TraceConfig
from lwm2m.transport.tap import MessageSink, tapped_receive

DEVICE = ("192.0.2.1", 5683)
OTHER = ("192.0.2.2", 5683)


def _receive(data: bytes, addr: Any, now: float) -> None:
    """The endpoint's receive_datagram, standing in: nothing, so that only the tap shows."""


def _run(receive: Any, datagram: bytes, addr: Any, count: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(count):
        receive(datagram, addr, 0.0)
    return (time.perf_counter_ns() - start) / count


async def _measure(count: int, repeat: int) -> dict[str, float]:
    notification = Message.build(
        Type.NON,
        Code.CONTENT,
        mid=1234,
        token=b"\x01\x02\x03\x04",
        observe=7,
        content_format=ContentFormat.SENML_JSON,
        payload=b'[{"bn":"/3303/0/","n":"5700","v":21.5}]',
    ).encode()
    tapped: list[MessageSink | None] = [None]
    trace = MessageTrace(
        lambda sink: tapped.__setitem__(0, sink), {"lamp": DEVICE}, lambda: EventStream(set()), TraceConfig()
    )
    trace.start("lamp", 60)
    assert tapped[0] is trace
    through = tapped_receive(_receive, trace)
    figures = {
        "off": min(_run(_receive, notification, DEVICE, count) for _ in range(repeat)),
        "on, other device": min(_run(through, notification, OTHER, count) for _ in range(repeat)),
        "on, this device": min(_run(through, notification, DEVICE, count) for _ in range(repeat)),
    }
    kept = trace.state("lamp").kept
    start = time.perf_counter_ns()
    for _ in range(repeat):
        trace.entries("lamp")
    figures["read, per message"] = (time.perf_counter_ns() - start) / (repeat * kept)
    trace.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    figures = asyncio.run(_measure(args.datagrams, args.repeat))
    for name, ns in figures.items():
        print(f"{name:18} {ns:8.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
