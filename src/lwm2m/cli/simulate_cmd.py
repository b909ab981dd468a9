"""``lwm2m simulate``: a fleet of virtual devices registering with a server, in one process.

While the devices register a progress bar shows how many are in; then a
live summary (registered, requests served, notifications sent, errors, with
their rates). SIGINT or SIGTERM de-registers every device and stops; a second
one stops without waiting for the de-registrations. When the output is not a
terminal the same facts come as plain lines: one when registering is done,
one every ``--report-every`` seconds, and one at the end.

``--security psk`` gives every device a PSK of its own (16 random bytes, the
endpoint name as identity) for a ``coaps://`` or ``coaps+tcp://`` server; ``--oscore`` (``--security oscore``)
an OSCORE context of its own for a ``coap://`` server, derived from a master secret new at
every run and the device's index, provisioned as the PSKs are; ``--bootstrap URI`` makes
every device bootstrap first and register with the server it is given. What
the servers must know (the keys; with ``--bootstrap`` and ``--server``, a
bootstrap configuration per device naming that server) goes through ``--api``
(the REST API of ``lwm2m server`` or ``lwm2m bootstrap``) or, without it, into
the database in ``--data``, as ``lwm2m security add`` and ``lwm2m bootstrap
config add`` do. A ``coaps://`` bootstrap server's own PSKs have no REST API:
they go into ``DATA/bootstrap``, where ``lwm2m bootstrap --coaps-port`` reads
them. Keys are never printed: only how many went where.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.client.connection import ServerUri
from lwm2m.client.gateway import MAX_END_DEVICES
from lwm2m.errors import RemoteApiError
from lwm2m.protocol.registration import SUPPORTED_VERSIONS
from lwm2m.simulator.fleet import PSK_SCHEMES, SECURITY_MODES, Fleet, FleetConfig, FleetStats
from lwm2m.simulator.geography import CITIES
from lwm2m.simulator.profiles import PROFILES
from lwm2m.simulator.provision import JsonApi, Provisioned, provision_api, provision_stores
from lwm2m.transport.eventloop import run

if TYPE_CHECKING:
    from rich.table import Table

SPARE_FILES = 64  # descriptors beyond one per device: the loop, stdio, the resolver
SETTLE_SECONDS = 5.0  # registering is over when all started and none registered for this long
DEFAULT_SERVER = "coap://127.0.0.1:5683"
DEFAULT_DATA = ".lwm2m-data"  # the folder lwm2m server, lwm2m security and lwm2m bootstrap use


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


def _check_local_host(host: str) -> None:
    """The devices bind ports the system picks, so none can be in use; the address itself may not
    be this machine's, and then each device would fail alone: say it once, up front."""
    from lwm2m.transport.reader import bind_udp

    try:
        bind_udp(host, 0).close()
    except OSError as exc:
        fail(f"--local-host {host}: cannot bind there: {exc.strerror or exc}")


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


def _check_shared_network(network: str, security: str, schemes: dict[str, str]) -> None:
    try:
        ipaddress.IPv4Network(network)
    except ValueError:
        fail(f"--shared-network {network}: expected an IPv4 network such as 127.64.0.0/10")
    if security == "psk" or set(schemes.values()) - {"coap"}:
        fail(
            f"--shared-network {network}: plain coap:// only (a DTLS or TCP device needs a socket of its own)"
        )


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


class FleetDisplay:
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

    def _table(self, stats: FleetStats, rates: Rates) -> Table:
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


Provision = Callable[[], Awaitable[str]]  # gives the servers the fleet's keys; says what went where


async def simulate(
    fleet: Fleet, duration: float | None, report_every: float, provision: Provision | None = None
) -> None:
    display = FleetDisplay(fleet, report_every)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            fleet.hurry()  # a second Ctrl-C: do not wait for the de-registrations
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    rate = "as fast as possible" if fleet.rate is None else f"up to {fleet.rate:g}/s"
    if fleet.bootstrap_uri is None:
        goal = f"registering with {fleet.server_uri}"
    else:
        server = fleet.server_uri or "the server it hands out"
        goal = f"bootstrapping from {fleet.bootstrap_uri}, then registering with {server}"
    over_tls = (fleet.server_uri or "").startswith("coaps+tcp://")
    psk_line = ", TLS with a PSK each" if over_tls else ", DTLS with a PSK each"
    security = {"psk": psk_line, "oscore": ", OSCORE with a context each"}.get(fleet.security, "")
    display.line(
        f"lwm2m simulate: {fleet.count} devices ({fleet.profile.name}) named {fleet.endpoint_name(0)}…"
        f" {goal}{security}, {rate}"
    )
    if provision is not None:
        display.line(await provision())
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
        bootstraps = f" {stats.bootstraps} bootstraps," if fleet.bootstrap_uri is not None else ""
        display.line(
            f"lwm2m simulate: stopped {stats.started} devices in {time.monotonic() - started:.1f} s;"
            f"{bootstraps} served {stats.requests} requests, sent {stats.notifications} notifications,"
            f" {stats.errors} errors"
        )


def _provisioner(fleet: Fleet, api: str | None, token: str | None, data: str) -> Provision | None:
    """What gives the servers the fleet's keys and bootstrap configurations (None: nothing to give)."""
    configs = fleet.bootstrap_uri is not None and fleet.server_uri is not None
    if not (fleet.server_psk or fleet.bootstrap_psk or configs or fleet.oscore):
        if api is not None:
            fail(
                f"--api {api}: nothing to give it (that takes --security psk, --oscore,"
                " or --bootstrap with --server)"
            )
        return None
    client = None
    if api is not None:
        try:
            client = JsonApi(api, token)
        except ValueError as exc:
            fail(f"--api {api}: {exc}")

    async def provision() -> str:
        lines = []
        if client is not None and (fleet.server_psk or configs or fleet.oscore):
            try:
                done = await provision_api(fleet, client)
            except RemoteApiError as exc:
                fail(f"--api {exc}")
            where = "/api/bootstrap" if fleet.bootstrap_uri is not None else "/api/security/clients"
            lines.append(f"gave {client.base}{where} {done.describe()}")
            if done.not_provisioned:
                lines.append(
                    f"warning: the bootstrap server did not give the LwM2M server {done.not_provisioned}"
                    " of the keys: those devices cannot register until it has them (lwm2m security add)"
                )
        on_disk = fleet.bootstrap_psk or client is None
        if on_disk:
            lines.append(await _into_data(fleet, data, server=client is None))
        return "\n".join(lines)

    return provision


def _open(folder: str) -> Any:
    from lwm2m.cli.server_cmd import open_data

    try:
        return open_data(folder, None)
    except Exception as exc:  # sqlite3 and OS errors alike: name the folder
        fail(f"--data {folder}: {exc}")


async def _into_data(fleet: Fleet, data: str, *, server: bool) -> str:
    """Write into the database in ``data`` (the LwM2M server's keys and the bootstrap configurations
    when ``server``) and ``data/bootstrap`` (a coaps:// bootstrap server's own keys)."""
    store = _open(data) if server else None
    own = _open(str(Path(data) / "bootstrap")) if fleet.bootstrap_psk else None
    try:
        done: Provisioned = await provision_stores(
            fleet, store, bootstrap_security=None if own is None else own.security
        )
    except ValueError as exc:  # a PSK identity another endpoint has
        fail(f"--data {data}: {exc}")
    finally:
        for opened in (store, own):
            if opened is not None:
                opened.close()
    return f"wrote into {data}: {done.describe()}"


@main.command("simulate")
@click.option(
    "--server",
    "server_uri",
    default=None,
    metavar="URI",
    help=f"the LwM2M server [default: {DEFAULT_SERVER}]; with --bootstrap, the one each device's"
    " bootstrap configuration names (none: the bootstrap server's own configurations decide)",
)
@click.option(
    "--security",
    default="nosec",
    show_default=True,
    metavar="MODE",
    help="psk: DTLS or TLS with a key per device (identity: the endpoint name) to coaps:// or"
    " coaps+tcp:// servers;"
    " oscore: OSCORE with a context per device to a coap:// server",
)
@click.option(
    "--oscore",
    is_flag=True,
    help="OSCORE (--security oscore): a context per device to a coap:// server, given to it as keys are",
)
@click.option(
    "--bootstrap",
    "bootstrap_uri",
    default=None,
    metavar="URI",
    help="every device bootstraps from this server first, coap:// or coaps:// (e.g. coap://127.0.0.1:5685)",
)
@click.option(
    "--api",
    default=None,
    metavar="URL",
    help="REST API that takes the keys (and bootstrap configurations), e.g. http://127.0.0.1:8080",
)
@click.option("--api-token", default=None, envvar="LWM2M_API_TOKEN", help="bearer token of the REST API")
@click.option(
    "--data",
    default=DEFAULT_DATA,
    show_default=True,
    metavar="DIR",
    help="without --api: the database folder of lwm2m server/bootstrap to write the keys into",
)
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
@click.option(
    "--city",
    type=click.Choice([c.name for c in CITIES], case_sensitive=False),
    default=None,
    help="where devices with a Location (6) stand (default: one chosen by --prefix)",
)
@click.option("--rate", default="100", show_default=True, metavar="R", help="devices registering per second")
@click.option("--lifetime", default="300", show_default=True, metavar="SECONDS", help="registration lifetime")
@click.option("--lwm2m-version", default="1.1", show_default=True, metavar="V", help="1.0, 1.1 or 1.2")
@click.option("--queue-mode", is_flag=True, help="register in queue mode (devices sleep between exchanges)")
@click.option("--seed", default=None, metavar="N", help="same seed, same devices and values")
@click.option("--speed", default="1", show_default=True, metavar="X", help="simulated seconds per second")
@click.option(
    "--update-interval", default="10", show_default=True, metavar="SECONDS", help="how often values move"
)
@click.option(
    "--end-devices", default="20", show_default=True, metavar="N", help="end devices behind each gateway"
)
@click.option(
    "--uplink-period",
    default="30",
    show_default=True,
    metavar="SECONDS",
    help="between two uplinks of an end device (requests to it wait for the next)",
)
@click.option("--local-host", default=None, metavar="ADDRESS", help="address the devices bind to")
@click.option(
    "--shared-network",
    default=None,
    metavar="NETWORK",
    help="one UDP socket for all devices, each at an address of this IPv4 network (e.g. 127.64.0.0/10)",
)
@click.option("--duration", default=None, metavar="SECONDS", help="stop after this long (default: at Ctrl-C)")
@click.option(
    "--report-every", default="10", show_default=True, metavar="SECONDS", help="summary period off a terminal"
)
def simulate_command(
    server_uri: str | None,
    security: str,
    oscore: bool,
    bootstrap_uri: str | None,
    api: str | None,
    api_token: str | None,
    data: str,
    count: str,
    profile: str,
    prefix: str,
    city: str | None,
    rate: str,
    lifetime: str,
    lwm2m_version: str,
    queue_mode: bool,
    seed: str | None,
    speed: str,
    update_interval: str,
    end_devices: str,
    uplink_period: str,
    local_host: str | None,
    shared_network: str | None,
    duration: str | None,
    report_every: str,
) -> None:
    """Run many virtual devices (IPSO and uCIFI profiles) in one process, each on its own UDP port
    (with --shared-network: all on one socket, each at an address of its own)."""
    if security not in SECURITY_MODES:
        fail(f"--security {security}: expected one of {', '.join(SECURITY_MODES)}")
    if oscore:
        if security not in ("nosec", "oscore"):
            fail(f"--oscore: give it or --security {security}, not both")
        security = "oscore"
    if security == "oscore" and bootstrap_uri is not None:
        fail(
            f"--oscore with --bootstrap {bootstrap_uri}: a fleet that bootstraps over OSCORE is not simulated"
        )
    if server_uri is None and bootstrap_uri is None:
        server_uri = DEFAULT_SERVER
    schemes: dict[str, str] = {}
    for option, uri in (("--server", server_uri), ("--bootstrap", bootstrap_uri)):
        if uri is not None:
            try:
                schemes[option] = ServerUri.parse(uri).scheme
            except ValueError as exc:
                fail(f"{option} {uri}: {exc}")
            if schemes[option] == "coaps+tcp" and option == "--bootstrap":
                fail(f"{option} {uri}: a fleet that bootstraps over coaps+tcp:// is not simulated")
            if schemes[option] != "coap" and security == "oscore":
                fail(f"{option} {uri}: --oscore needs a coap:// server (OSCORE protects plain CoAP)")
            if schemes[option] in PSK_SCHEMES and security != "psk":
                fail(f"{option} {uri}: {schemes[option]}:// needs --security psk (a key per device)")
    if security == "psk":
        if schemes.get("--server") in ("coap", "coap+tcp"):
            fail(
                f"--security psk: the server {server_uri} is plain CoAP; give a coaps:// one (port 5684)"
                " or a coaps+tcp:// one"
            )
        if not set(PSK_SCHEMES) & set(schemes.values()):
            fail(
                "--security psk with --bootstrap: give --server coaps://… (the server the devices are"
                " handed, with their keys) or a coaps:// bootstrap server"
            )
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
    behind = int(_number("--end-devices", end_devices, integer=True, low=1, high=MAX_END_DEVICES))
    uplinks = _number("--uplink-period", uplink_period, integer=False, low=0.1, high=86400)
    every = _number("--report-every", report_every, integer=False, low=0.1)
    if shared_network is None:
        _file_limit(n)
    else:
        _check_shared_network(shared_network, security, schemes)
    if local_host is not None:
        _check_local_host(local_host)
    try:
        fleet = Fleet(
            server_uri,
            FleetConfig(
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
                end_devices=behind,
                uplink_period=uplinks,
                time_scale=scale,
                local_host=local_host,
                freeze_gc=True,  # the devices live as long as the process
                security=security,
                bootstrap=bootstrap_uri,
                city=city,
                shared_network=shared_network,
            ),
        )
    except ValueError as exc:
        fail(f"--{exc}")  # only the prefix is left to check: "prefix 'a b': …"
    provision = _provisioner(fleet, api, api_token, data)
    try:
        run(simulate(fleet, stop_after, every, provision))
    except OSError as exc:
        first = f"--bootstrap {bootstrap_uri}" if bootstrap_uri is not None else f"--server {server_uri}"
        fail(f"{first}: {exc.strerror or exc}")
