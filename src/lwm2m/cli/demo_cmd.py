"""``lwm2m demo``: the server, its web console and a simulated fleet, on loopback, in one command.

The server keeps its registrations in its own SQLite data folder (``--data``),
the console is served by the same process at ``http://127.0.0.1:8080/``, and
``--count`` devices of ``--profile`` (``mixed``: weather sensors, street
lights, water meters, air quality and parking sensors, and one LoRaWAN gateway
with uCIFI end devices behind it) register with it.
Ctrl-C (or SIGTERM) de-registers the fleet and stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import bind_failure, fail
from lwm2m.cli.logs import configure_logging, log_level_option
from lwm2m.cli.server_cmd import (
    check_guard_options,
    guard_options,
    http_server,
    metrics_wanted,
    open_data,
    server_metrics,
    start_http,
)
from lwm2m.transport.eventloop import run

DEMO_DATA = ".lwm2m-demo"


async def demo_session(
    host: str,
    coap_port: int,
    http_port: int,
    store: Any,
    count: int,
    profile: str,
    rate: float,
    guard: dict[str, tuple[str, ...]] | None = None,
) -> None:
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.role import Server
    from lwm2m.simulator.fleet import Fleet, FleetConfig
    from lwm2m.web.app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Server(ServerConfig(host=host, port=coap_port), store) as server:
        guard = guard or {}
        app = create_app(
            server,
            bind_host=host,
            allowed_hosts=guard.get("allowed_hosts", ()),
            cors_origins=guard.get("cors_origins", ()),
            metrics=server_metrics(server, metrics_wanted(None)),  # when prometheus-client is installed
        )
        http = http_server(app, host, http_port)
        task, base = await start_http(http, host, http_port)
        try:
            click.echo(f"lwm2m demo: console on {base}/  (REST API {base}/api, CoAP {server.uri})")
            if app.state.api.metrics is not None:
                click.echo(f"  Prometheus metrics on {base}/metrics")
            # A mixed city has one LoRaWAN gateway among its devices, with its end devices behind it.
            gateways = 1 if profile == "mixed" and count > 1 else 0
            fleet = Fleet(
                server.uri,
                FleetConfig(count=count - gateways, profile=profile, prefix="demo", rate=rate, lifetime=120),
            )
            async with fleet, contextlib.AsyncExitStack() as more:
                if gateways:
                    gateway = FleetConfig(
                        count=1, profile="ucifi-lorawan-gateway", prefix="demo-gw", rate=rate, lifetime=120
                    )
                    await more.enter_async_context(Fleet(server.uri, gateway))
                click.echo(f"  {count} simulated devices ({profile}) registering; Ctrl-C stops everything.")
                await stop.wait()
                click.echo("lwm2m demo: stopping (the devices de-register)")
        finally:
            http.should_exit = True
            await task
    click.echo("lwm2m demo: stopped")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address of the server (CoAP and HTTP)")
@click.option("--coap-port", default=5683, show_default=True, type=click.IntRange(0, 65535))
@click.option("--http-port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", default=DEMO_DATA, show_default=True, help="folder of the demo's SQLite database")
@click.option(
    "--count", default=25, show_default=True, type=click.IntRange(1, 10_000), help="simulated devices"
)
@click.option("--profile", default="mixed", show_default=True, help="simulator profile of the devices")
@click.option(
    "--rate",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="devices started per second",
)
@guard_options
# WARNING: the fleet's own registrations and updates would otherwise fill the console.
@log_level_option(default="WARNING")
def demo(
    host: str,
    coap_port: int,
    http_port: int,
    data: str,
    count: int,
    profile: str,
    rate: float,
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
    log_level: str,
) -> None:
    """Run the server with its web console and a simulated fleet."""
    configure_logging(log_level)
    check_guard_options(allowed_hosts, cors_origins)
    from lwm2m.simulator.profiles import PROFILES

    if profile not in PROFILES:
        fail(f"--profile {profile!r}: expected one of {', '.join(sorted(PROFILES))}")
    try:
        store = open_data(data, None)
    except Exception as exc:
        fail(f"--data {data}: {exc}")
    try:
        guard = {"allowed_hosts": allowed_hosts, "cors_origins": cors_origins}
        run(demo_session(host, coap_port, http_port, store, count, profile, rate, guard))
    except OSError as exc:
        ports = {"--coap-port": coap_port, "--http-port": http_port}
        fail(bind_failure(exc, ports) or f"cannot serve: {exc.strerror or exc}")
    finally:
        store.close()
