"""The cost of webhooks on the notification ingest path: no hook vs one hook that receives every
notification, in one run.

One server (this process, uvloop if installed) with its export worker process running (or,
with ``--in-process``, its webhooks posting from the server's own process), ``--observers``
simulated clients in a separate process (``bench/server_load.py``'s raw-UDP clients) sending
NON SenML-CBOR notifications as fast as they can, and a webhook receiver (plain HTTP/1.1 on
asyncio streams, answering 200) in a third process. The server alternates phases of
``--seconds``: *off* (no hook registered: the webhooks take each event and find nobody wants
it) and *on* (one hook wanting ``NOTIFICATION``: each notification is turned into JSON,
written to the store's outbox in batches, POSTed signed and removed), ``--rounds`` times each,
interleaved so that a drift of the machine weighs on both alike. With the worker, the server
only hands each wanted event over (a batch encoded once, written to the worker's socket); the
JSON, the outbox and the posts are the worker's.

Per phase: notifications taken (the server's own count), their rate, the server process's CPU
time per notification, the worker's CPU time per notification (its own figure: it runs on the
other core), and the posts delivered. The cost printed is the median over the on/off pairs of
the server's CPU per notification (on/off - 1) and the ratio of the rates (on/off).

With ``--batch N`` the hook asks for batches of ``N`` events per post (``--batch-delay``
seconds at most for an incomplete one); the figures then show the events delivered per second
and those dropped (the outbox, or the handoff, full), the worker's throughput.

    python bench/export.py [--observers 200] [--seconds 3] [--rounds 3] [--store memory|sqlite]
                           [--rate N] [--stream] [--batch N [--batch-delay S]] [--in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from coap_loop import HOST, free_port
from server_load import PATH, clients_main
from worker_cpu import keep_subscribed, process_cpu

TARGET_COST = 0.05


@dataclass(frozen=True, slots=True)
class Phase:
    hook: bool
    notifications: int
    seconds: float
    cpu: float
    posts: int  # events the hook delivered in the phase
    worker_cpu: float = 0.0  # the export worker's CPU seconds in the phase
    dropped: int = 0  # events given up in the phase (the handoff's queue or the outbox full)

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0

    @property
    def cpu_per(self) -> float:
        return self.cpu / self.notifications if self.notifications else 0.0

    @property
    def worker_per(self) -> float:
        return self.worker_cpu / self.notifications if self.notifications else 0.0


def receiver_main(ready, bound) -> None:  # type: ignore[no-untyped-def]
    """A webhook receiver: every POST answered 200, kept-alive connections. It listens on a
    port the system picks, put in ``bound`` (a shared int) before ``ready`` is set: a port
    picked free beforehand may be another's by the time it binds."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readline():
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, HOST, 0, backlog=256)
        bound.value = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    from lwm2m.transport.eventloop import run as run_loop

    run_loop(serve())


async def cost_of_handoff(server, webhooks, export, url: str, n: int = 20_000) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Server CPU seconds per event handed to the worker, with no ingest running: the event
    made and given to the subscription (as an observation does for each notification while
    the server has a subscriber) and the flush (the wanted events into a batch, encoded once,
    queued and written to the worker's socket)."""
    from lwm2m.model.path import Path as LwPath
    from lwm2m.model.record import Record
    from lwm2m.server.events import NotificationReceived

    path = LwPath.parse(PATH)
    hook = await webhooks.add(url, ["NOTIFICATION"])
    paths = (path,)
    records = [(Record(path, 21.5 + i),) for i in range(n)]
    emit = server._emit  # what an observation calls for each notification
    await asyncio.sleep(0.1)
    c0 = time.process_time()
    for values in records:
        emit(NotificationReceived("bench-1", b"12345678", paths, values))
    c1 = time.process_time()
    export._flush()
    await asyncio.sleep(0)  # the sender writes the batches
    c2 = time.process_time()
    while export.counters.queue:
        await asyncio.sleep(0.005)
    await webhooks.remove(hook.hook_id)
    return (c1 - c0) / n, (c2 - c1) / n


async def cost_of_parts(webhooks, url: str, n: int = 3000) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Server CPU seconds per event, with no ingest running: taking a notification (its JSON,
    into the batch), writing it to the outbox, and posting it (to the receiver process) and
    removing it."""
    from lwm2m.model.path import Path as LwPath
    from lwm2m.model.record import Record
    from lwm2m.server.events import NotificationReceived

    path = LwPath.parse(PATH)
    event = NotificationReceived("bench-1", b"12345678", (path,), (Record(path, 21.5),))
    hook = await webhooks.add(url, ["NOTIFICATION"])
    webhooks._follow(False)  # no live events meanwhile
    c0 = time.process_time()
    for _ in range(n):
        webhooks.take(event)
    c1 = time.process_time()
    await webhooks._write()
    c2 = time.process_time()
    while await webhooks.store.size():  # the webhooks' poster at work
        await asyncio.sleep(0.005)
    c3 = time.process_time()
    await webhooks.remove(hook.hook_id)
    return (c1 - c0) / n, (c2 - c1) / n, (c3 - c2) / n


async def run(args: argparse.Namespace, folder: Path) -> tuple[list[Phase], tuple[float, ...], str]:
    from lwm2m.export.handoff import ExportConfig, ExportWorker
    from lwm2m.export.webhooks import WebhookConfig, Webhooks
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.jsonform import EVENT_NAMES, event_view
    from lwm2m.server.registrar import RegistrationLimits
    from lwm2m.server.role import Server
    from lwm2m.storage.url import open_store
    from lwm2m.transport.eventloop import is_uvloop
    from lwm2m.web.app import create_app

    loop = asyncio.get_running_loop()
    url = "memory://" if args.store == "memory" else f"sqlite:///{folder / 'lwm2m.db'}"
    store = open_store(url)
    limits = RegistrationLimits(rate=None)
    server = Server(ServerConfig(host=HOST, port=free_port(), registration_limits=limits), store)
    await server.start()
    from lwm2m.cli.server_cmd import tune_gc

    tune_gc()
    export = None
    if args.in_process:
        app = create_app(server)  # the app's webhooks: in the server's store, events in their SSE forms
        webhooks = app.state.api.webhooks
    else:
        webhooks = Webhooks(server, store.webhooks, EVENT_NAMES, event_view, WebhookConfig(), deliver=False)
        outbox = None if args.store == "memory" else url
        export = ExportWorker(server, ExportConfig(store_url=outbox, counters_every=0.25), webhooks)
    await webhooks.start()
    if export is not None:
        await export.start()
        await export.wait_ready()
    ctx = mp.get_context("spawn")
    ready, bound = ctx.Event(), ctx.Value("i", 0)
    receiver = ctx.Process(target=receiver_main, args=(ready, bound), daemon=True)
    receiver.start()
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=clients_main, args=(server.port, child), daemon=True)
    proc.start()
    child.close()

    async def recv(timeout: float) -> tuple:
        if not await loop.run_in_executor(None, conn.poll, timeout):
            raise TimeoutError("the clients process did not answer")
        return conn.recv()

    phases: list[Phase] = []
    try:
        if not await loop.run_in_executor(None, ready.wait, 30):
            raise RuntimeError("the webhook receiver did not start")
        hook_port = bound.value
        await recv(30)
        conn.send(("observers", args.observers))
        _, names, _ = await recv(60)
        if not names:
            raise RuntimeError("the observer clients could not register")
        observations = await asyncio.gather(*(server.observe(n, PATH, timeout=10) for n in names))
        kept = keep_subscribed(server) if args.stream else None
        total = args.warmup + 2 * args.rounds * args.seconds + 1.0
        conn.send(("go", total, args.rate or None))
        await asyncio.sleep(args.warmup)
        count = server.observation_manager.notifications_received
        batch = (args.batch, args.batch_delay) if args.batch > 1 else None

        def dropped() -> int:
            return webhooks.counters.dropped + (export.counters.dropped if export is not None else 0)

        for _ in range(args.rounds):
            for on in (False, True):
                hook = (
                    await webhooks.add(f"http://{HOST}:{hook_port}/hook", ["NOTIFICATION"], batch=batch)
                    if on
                    else None
                )
                pid = export.pid if export is not None else None
                d0 = webhooks.counters.delivered
                x0 = dropped()
                n0, t0, c0, w0 = count(), time.monotonic(), time.process_time(), process_cpu(pid)
                await asyncio.sleep(args.seconds)
                n1, t1, c1, w1 = count(), time.monotonic(), time.process_time(), process_cpu(pid)
                delivered = webhooks.counters.delivered - d0
                phases.append(Phase(on, n1 - n0, t1 - t0, c1 - c0, delivered, w1 - w0, dropped() - x0))
                if hook is not None:
                    await webhooks.remove(hook.hook_id)
        await recv(total + 30)
        for obs in observations:
            await obs.cancel()
        if kept is not None:
            kept.cancel()
        hook_url = f"http://{HOST}:{hook_port}/hook"
        if export is not None:
            parts: tuple[float, ...] = await cost_of_handoff(server, webhooks, export, hook_url)
        else:
            parts = await cost_of_parts(webhooks, hook_url)
        return phases, parts, "uvloop" if is_uvloop(loop) else "asyncio"
    finally:
        with contextlib.suppress(Exception):
            conn.send(("quit",))
        await loop.run_in_executor(None, proc.join, 10)
        for p in (proc, receiver):
            if p.is_alive():
                p.kill()
        if export is not None:
            await export.close()
        await webhooks.close()
        await server.stop()
        store.close()


def report(
    phases: list[Phase], parts: tuple[float, ...], loop: str, args: argparse.Namespace
) -> dict[str, float]:
    where = "in the server's process" if args.in_process else "by the export worker process"
    batching = (
        f" in batches of {args.batch} (at most {args.batch_delay:g} s)"
        if args.batch > 1
        else ", one per post"
    )
    print(
        f"notification ingest, {args.observers} observations, {args.rounds} x {args.seconds:g} s per phase,"
        f"{f' clients at {args.rate:,.0f} notifications/s,' if args.rate else ''}"
        f" store {args.store}, webhooks posted {where}"
        f"{batching}"
        f"{', a subscriber in every phase' if args.stream else ''} (loop {loop})"
    )
    for p in phases:
        print(
            f"  hook {'on ' if p.hook else 'off'}  {p.rate:10,.0f} notifications/s"
            f"   server CPU {p.cpu_per * 1e6:6.2f} µs/notification"
            f"   {p.posts / p.seconds:8,.0f} events delivered/s   {p.dropped:6,} dropped"
            f"   worker CPU {p.worker_per * 1e6:6.2f} µs/notification"
        )
    off = [p for p in phases if not p.hook]
    on = [p for p in phases if p.hook]
    pairs = list(zip(off, on, strict=True))
    cpu = statistics.median(b.cpu_per / a.cpu_per - 1 for a, b in pairs if a.cpu_per)
    ratio = statistics.median(b.rate / a.rate for a, b in pairs if a.rate)
    verdict = "meets" if cpu <= TARGET_COST else "misses"
    print(
        f"  ratio on/off: ingest rate {ratio:.2f}, CPU per notification {cpu:+.1%}"
        f" (medians of the pairs; {verdict} the {TARGET_COST:.0%} target)"
    )
    cpu_off = statistics.median(p.cpu_per for p in off)
    worker = statistics.median(p.worker_per for p in on)
    print(
        f"  export worker: {worker * 1e6:.2f} µs CPU per notification on the other core"
        f" ({worker / cpu_off:.0%} of the server's {cpu_off * 1e6:.2f} µs)"
    )
    if len(parts) == 2:
        put, flush = parts
        print(
            f"  handoff alone, per event: the event made and given to the subscription {put * 1e6:.2f} µs"
            f" + batch, encode and write {flush * 1e6:.2f} µs = {(put + flush) * 1e6:.2f} µs,"
            f" {(put + flush) / cpu_off:.1%} of a notification's {cpu_off * 1e6:.2f} µs of server CPU"
        )
    else:
        take, write, post = parts
        print(
            f"  from the parts, per event: take {take * 1e6:.1f} µs + outbox write {write * 1e6:.1f} µs"
            f" + post and remove {post * 1e6:.1f} µs = {(take + write + post) * 1e6:.1f} µs,"
            f" {(take + write + post) / cpu_off:.0%} of a notification's {cpu_off * 1e6:.1f} µs of server CPU"
        )
    delivered = sum(p.posts for p in on) / sum(p.seconds for p in on)
    print(
        f"  delivered {delivered:,.0f} events/s in the on phases"
        f" ({sum(p.posts for p in on) / max(1, sum(p.notifications for p in on)):.0%} of the notifications),"
        f" {sum(p.dropped for p in phases):,} dropped"
    )
    return {"cost": cpu, "rate_ratio": ratio, "server_off": cpu_off, "worker": worker, "delivered": delivered}


def main(argv: list[str] | None = None) -> int:
    measure(parse(argv))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=200)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="notifications per second the clients send (0: as fast as they can); below what the"
        " server takes, on and off phases compare its CPU per notification at the same rate",
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--stream",
        action="store_true",
        help="a subscriber in every phase, as the REST API's event stream is in `lwm2m server`:"
        " the server makes each event in both, and on/off differ by the export alone",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="events per post the hook asks for (0: one per post, as by default)",
    )
    parser.add_argument(
        "--batch-delay", type=float, default=0.5, help="seconds an incomplete batch waits at most"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="post from the server's process (--export-in-process)"
    )
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Run the phases and print them; answer the summary figures (for bench/fleet_ops.py)."""
    from lwm2m.transport.eventloop import run as run_loop

    with tempfile.TemporaryDirectory() as folder:
        phases, parts, loop = run_loop(run(args, Path(folder)))
    return report(phases, parts, loop, args)


if __name__ == "__main__":
    raise SystemExit(main())
