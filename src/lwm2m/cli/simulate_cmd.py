"""``lwm2m simulate``: a fleet of virtual devices registering with a server, in one process.

While the devices register a progress bar shows how many are in; then a
live summary (registered, requests served, notifications sent, errors, with
their rates). SIGINT or SIGTERM de-registers every device and stops; a second
one stops without waiting for the de-registrations. When the output is not a
terminal the same facts come as plain lines: one when registering is done,
one every ``--report-every`` seconds, and one at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import signal
import sys
import time
from dataclasses import dataclass

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.client.client import ServerUri
from lwm2m.protocol.registration import SUPPORTED_VERSIONS
from lwm2m.simulator.fleet import Fleet, FleetStats
from lwm2m.simulator.profiles import PROFILES
from lwm2m.transport.eventloop import run

SPARE_FILES = 64  # descriptors beyond one per device: the loop, stdio, the resolver
SETTLE_SECONDS = 5.0  # registering is over when all started and none registered for this long


def _number(
    option: str, text: str, *, integer: bool, low: float, high: float = math.inf, expected: str = ""
) -> float:
    """``text`` as a number in ``low..high``, else a one-line error naming the option and the value."""
    if not expected:
        kind = "a whole number" if integer else "a number"
        expected = f"{kind} from {low:g}" + (f" to {high:g}" if high != math.inf else " up")
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        fail(f"{option} {text}: expected {expected}")
    if not low <= value <= high:  # NaN fails too
        fail(f"{option} {text}: expected {expected}")
    return value


def _file_limit(count: int) -> None:
    """Make room for one socket per device, raising the soft descriptor limit up to the hard one."""
    need = count + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        fail(
            f"--count {count}: needs {need} open files (one UDP socket per device), the limit is {hard};"
            " raise it (ulimit -n) or run fewer devices"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second rates between two stats snapshots."""

    requests: float
    notifications: float

    @classmethod
    def between(cls, before: FleetStats | None, after: FleetStats) -> Rates:
        if before is None or after.elapsed <= before.elapsed:
            return cls(0.0, 0.0)
        dt = after.elapsed - before.elapsed
        return cls((after.requests - before.requests) / dt, (after.notifications - before.notifications) / dt)


def summary_line(stats: FleetStats, rates: Rates) -> str:
    return (
        f"registered {stats.registered}/{stats.devices}, requests served {stats.requests}"
        f" ({rates.requests:.0f}/s), notifications sent {stats.notifications} ({rates.notifications:.0f}/s),"
        f" errors {stats.errors}, updates {stats.updates}"
    )


class Display:
    """What the command shows: rich progress and a live table on a terminal, plain lines otherwise."""

    def __init__(self, fleet: Fleet, report_every: float) -> None:
        from rich.console import Console

        self.fleet = fleet
        self.console = Console()
        self.interactive = self.console.is_terminal
        self.report_every = report_every

    def line(self, text: str) -> None:
        if self.interactive:
            self.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)
            sys.stdout.flush()

    async def registering(self, stop: asyncio.Event) -> FleetStats:
        """Until every device is registered (or registering settled, or ``stop``)."""
        fleet = self.fleet
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_change, last_registered = started, -1
        progress = task = None
        if self.interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            progress = Progress(
                TextColumn("[bold]registering"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>6.0f}/s"),
                TextColumn("started {task.fields[started]}"),
                TextColumn("errors {task.fields[errors]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            task = progress.add_task("registering", total=fleet.count, rate=0.0, started=0, errors=0)
            progress.start()
        try:
            while True:
                stats = fleet.stats()
                now = loop.time()
                if stats.registered != last_registered:
                    last_registered, last_change = stats.registered, now
                if progress is not None and task is not None:
                    rate = stats.registrations / max(now - started, 1e-9)
                    progress.update(
                        task,
                        completed=stats.registered,
                        rate=rate,
                        started=stats.started,
                        errors=stats.errors,
                    )
                all_started = not fleet.starting
                if stop.is_set() or (all_started and stats.registered == stats.started):
                    break
                if all_started and now - last_change >= SETTLE_SECONDS:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await stop.wait()
        finally:
            if progress is not None:
                progress.stop()
        took = loop.time() - started
        if fleet.start_error is not None:
            self.line(f"only {stats.started} devices could start: {fleet.start_error}")
        done = f"registered {stats.registered}/{stats.devices}"
        if stats.registered == stats.devices:
            self.line(f"{done} in {took:.2f} s ({stats.errors} errors)")
        else:
            self.line(f"{done} after {took:.2f} s ({stats.errors} errors); the others keep trying")
        return stats

    async def running(self, stop: asyncio.Event, until: float | None) -> None:
        """The live summary, until ``stop`` or the loop time ``until``."""
        loop = asyncio.get_running_loop()
        previous: FleetStats | None = None
        live = None
        if self.interactive:
            from rich.live import Live

            first = self._table(self.fleet.stats(), Rates(0, 0))
            live = Live(first, console=self.console, auto_refresh=False)
            live.start()
        period = 1.0 if self.interactive else self.report_every
        try:
            while not stop.is_set():
                wait = period if until is None else min(period, until - loop.time())
                if wait <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await stop.wait()
                stats = self.fleet.stats()
                rates = Rates.between(previous, stats)
                previous = stats
                if live is not None:
                    live.update(self._table(stats, rates), refresh=True)
                elif not stop.is_set():
                    self.line(summary_line(stats, rates))
        finally:
            if live is not None:
                live.stop()

    def _table(self, stats: FleetStats, rates: Rates) -> object:
        from rich.table import Table

        table = Table(title=f"{self.fleet.count} devices, {self.fleet.profile.name}", title_justify="left")
        table.add_column("")
        table.add_column("total", justify="right")
        table.add_column("per second", justify="right")
        table.add_row("registered", f"{stats.registered}/{stats.devices}", "")
        table.add_row("requests served", str(stats.requests), f"{rates.requests:.0f}")
        table.add_row("notifications sent", str(stats.notifications), f"{rates.notifications:.0f}")
        table.add_row("errors", str(stats.errors), "")
        table.add_row("registration updates", str(stats.updates), "")
        table.caption = f"up {_duration(stats.elapsed)} · Ctrl-C de-registers and stops"
        return table


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


async def simulate(fleet: Fleet, duration: float | None, report_every: float) -> None:
    display = Display(fleet, report_every)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            fleet.hurry()  # a second Ctrl-C: do not wait for the de-registrations
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    rate = "as fast as possible" if fleet.rate is None else f"up to {fleet.rate:g}/s"
    display.line(
        f"lwm2m simulate: {fleet.count} devices ({fleet.profile.name}) named {fleet.endpoint_name(0)}…"
        f" registering with {fleet.server_uri}, {rate}"
    )
    until = None if duration is None else loop.time() + duration
    await fleet.start()
    try:
        if until is not None:
            loop.call_at(until, stop.set)
        await display.registering(stop)
        await display.running(stop, until)
    finally:
        registered = fleet.registered
        display.line(f"stopping: de-registering {registered} devices (Ctrl-C again to skip)")
        started = time.monotonic()
        await fleet.stop()
        stats = fleet.stats()
        display.line(
            f"lwm2m simulate: stopped {stats.started} devices in {time.monotonic() - started:.1f} s;"
            f" served {stats.requests} requests, sent {stats.notifications} notifications,"
            f" {stats.errors} errors"
        )


@main.command("simulate")
@click.option("--server", "server_uri", default="coap://127.0.0.1:5683", show_default=True, metavar="URI")
@click.option("--count", "-n", default="10", show_default=True, metavar="N", help="how many devices")
@click.option(
    "--profile",
    "-p",
    default="mixed",
    show_default=True,
    metavar="NAME",
    help="kind of device: " + ", ".join(PROFILES),
)
@click.option("--prefix", default="sim", show_default=True, help="endpoint names are PREFIX-00000, …")
@click.option("--rate", default="100", show_default=True, metavar="R", help="devices registering per second")
@click.option("--lifetime", default="300", show_default=True, metavar="SECONDS", help="registration lifetime")
@click.option("--lwm2m-version", default="1.1", show_default=True, metavar="V", help="1.0, 1.1 or 1.2")
@click.option("--queue-mode", is_flag=True, help="register in queue mode (devices sleep between exchanges)")
@click.option("--seed", default=None, metavar="N", help="same seed, same devices and values")
@click.option("--speed", default="1", show_default=True, metavar="X", help="simulated seconds per second")
@click.option(
    "--update-interval", default="10", show_default=True, metavar="SECONDS", help="how often values move"
)
@click.option("--local-host", default=None, metavar="ADDRESS", help="address the devices bind to")
@click.option("--duration", default=None, metavar="SECONDS", help="stop after this long (default: at Ctrl-C)")
@click.option(
    "--report-every", default="10", show_default=True, metavar="SECONDS", help="summary period off a terminal"
)
def simulate_command(
    server_uri: str,
    count: str,
    profile: str,
    prefix: str,
    rate: str,
    lifetime: str,
    lwm2m_version: str,
    queue_mode: bool,
    seed: str | None,
    speed: str,
    update_interval: str,
    local_host: str | None,
    duration: str | None,
    report_every: str,
) -> None:
    """Run many virtual devices (IPSO and uCIFI profiles) in one process, each on its own UDP port."""
    try:
        ServerUri.parse(server_uri)
    except ValueError as exc:
        fail(f"--server {server_uri}: {exc}")
    n = int(_number("--count", count, integer=True, low=1, high=60000))
    if profile not in PROFILES:
        fail(f"--profile {profile}: no such profile; expected one of {', '.join(PROFILES)}")
    per_second = _number("--rate", rate, integer=False, low=1e-3, expected="devices per second above 0")
    life = int(_number("--lifetime", lifetime, integer=True, low=1, high=2**31 - 1))
    if lwm2m_version not in SUPPORTED_VERSIONS:
        fail(f"--lwm2m-version {lwm2m_version}: expected one of {', '.join(SUPPORTED_VERSIONS)}")
    seed_value = None if seed is None else int(_number("--seed", seed, integer=True, low=-(2**63)))
    scale = _number("--speed", speed, integer=False, low=1e-3, high=1e6, expected="a factor, 0.001 to 1e6")
    interval = _number("--update-interval", update_interval, integer=False, low=0.1, high=86400)
    stop_after = None if duration is None else _number("--duration", duration, integer=False, low=0.1)
    every = _number("--report-every", report_every, integer=False, low=0.1)
    _file_limit(n)
    try:
        fleet = Fleet(
            server_uri,
            count=n,
            profile=profile,
            prefix=prefix,
            rate=per_second,
            lifetime=life,
            lwm2m_version=lwm2m_version,
            queue_mode=queue_mode,
            seed=seed_value,
            tick=min(1.0, interval),
            update_interval=interval,
            time_scale=scale,
            local_host=local_host,
            freeze_gc=True,  # the devices live as long as the process
        )
    except ValueError as exc:
        fail(f"--{exc}")  # only the prefix is left to check: "prefix 'a b': …"
    try:
        run(simulate(fleet, stop_after, every))
    except OSError as exc:
        fail(f"--server {server_uri}: {exc.strerror or exc}")
