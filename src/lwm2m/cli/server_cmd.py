"""``lwm2m server``: the LwM2M server on CoAP and its REST API on HTTP, in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.model.catalogue import build_registry
from lwm2m.model.ddf import DDFError
from lwm2m.storage.base import HistoryRetention
from lwm2m.transport.eventloop import run

# The cyclic garbage collector's thresholds for a long-running server: see tune_gc.
GC_THRESHOLDS = (20_000, 10, 10)


def tune_gc() -> None:
    """Fit the garbage collector to a server that runs for days under load; call it once
    start-up is done.

    With the default first threshold (700 container objects more than freed) a young
    collection runs every few milliseconds under load, so the objects of every request
    in flight (tasks, futures, timers, messages) outlive two of them and reach the oldest
    generation: at 10,000 reads/s full collections came twice a second, up to 0.2 s
    each. At 20,000 nearly all of them are gone before a collection looks. Freezing
    moves what start-up made (the object catalogue, the web app) out of the collector's
    sight, so the full collections that still come have less to walk.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere


def open_store(data: str, store: str | None, *, history_records: int | None = None) -> Any:
    """The store of ``--data``/``--store``; ``history_records`` values kept per device in the
    history (None: the store's default)."""
    retention = None if history_records is None else HistoryRetention(max_records=history_records)
    if store == "memory":
        from lwm2m.storage.memory import MemoryStore

        return MemoryStore.create(history_retention=retention)
    from lwm2m.storage.sqlite import SqliteStore

    folder = Path(data)
    folder.mkdir(parents=True, exist_ok=True)
    return SqliteStore(folder / "lwm2m.db", history_retention=retention)


def http_server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        # uvicorn re-raises a captured SIGINT after shutting down, which would end the
        # process with KeyboardInterrupt; this command handles the signals itself.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    # A stream of events never ends by itself: give open SSE connections a few seconds.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    return _Server(config)


def dtls_certificate(coaps_port: int | None, cert: str | None, key: str | None, ca: str | None) -> Any:
    """The server's X.509 credentials from ``--dtls-cert/--dtls-key/--dtls-ca``, or None."""
    if cert is None and key is None and ca is None:
        return None
    if coaps_port is None:
        fail("--dtls-cert, --dtls-key and --dtls-ca need --coaps-port")
    if cert is None or key is None or ca is None:
        fail("give --dtls-cert, --dtls-key and --dtls-ca together")
    from lwm2m.transport.dtls.config import X509Credentials

    try:
        return X509Credentials.from_files(cert, key, ca)
    except OSError as exc:
        fail(f"cannot read the DTLS certificate files: {exc}")


@contextlib.asynccontextmanager
async def bootstrap_beside(host: str, port: int | None, store: Any, models: Any) -> AsyncIterator[Any]:
    """A bootstrap server on ``port`` sharing the LwM2M server's store (None: no bootstrap server)."""
    if port is None:
        yield None
        return
    from lwm2m.bootstrap import BootstrapServer

    async with BootstrapServer(host, port, store=store, models=models) as bootstrap:
        yield bootstrap


async def start_http(http: Any, host: str, port: int) -> tuple[asyncio.Task[None], str]:
    """Start uvicorn's ``http`` server; its task and base URL once it listens."""
    task = asyncio.create_task(http.serve())
    while not http.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        await task  # the HTTP server failed to start: raise its error
        raise OSError(f"cannot serve HTTP on {host}:{port}")
    (sock,) = http.servers[0].sockets[:1]
    bound = sock.getsockname()
    web_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return task, f"http://{web_host}:{bound[1]}"


async def serve(
    host: str,
    coap_port: int,
    http_host: str,
    http_port: int,
    store: Any,
    models: Any,
    token: str | None,
    coaps_port: int | None = None,
    certificate: Any = None,
    bootstrap_port: int | None = None,
) -> None:
    from lwm2m.server.server import LwM2MServer
    from lwm2m.web.app import create_app

    server_options: dict[str, Any] = {"coaps_port": coaps_port, "certificate": certificate}
    async with (
        LwM2MServer(host, coap_port, store=store, models=models, **server_options) as server,
        bootstrap_beside(host, bootstrap_port, store, models) as bootstrap,
    ):
        app = create_app(server, api_token=token, bootstrap=bootstrap)
        http = http_server(app, http_host, http_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, setattr, http, "should_exit", True)
        task, base = await start_http(http, http_host, http_port)
        tune_gc()
        click.echo(f"lwm2m server: CoAP on {server.uri}, REST API on {base}/api")
        if server.coaps_uri is not None:
            click.echo(f"  CoAP over DTLS on {server.coaps_uri} (credentials: lwm2m security add)")
        if bootstrap is not None:
            click.echo(f"  bootstrap server on {bootstrap.uri} (configurations: {base}/api/bootstrap)")
        click.echo(f"  API documentation: {base}/api/docs")
        click.echo("Ctrl-C stops it.")
        await task
    click.echo("lwm2m server: stopped")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve CoAP on")
@click.option("--coap-port", default=5683, show_default=True, type=click.IntRange(0, 65535))
@click.option("--http-host", default="127.0.0.1", show_default=True, help="address to serve the REST API on")
@click.option("--http-port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", default=".lwm2m-data", show_default=True, help="folder of the SQLite database")
@click.option("--store", type=click.Choice(["sqlite", "memory"]), default=None, help="memory: keep nothing")
@click.option(
    "--history-records",
    default=HistoryRetention().max_records,
    show_default=True,
    type=click.IntRange(1),
    help="values kept per device in the history, the oldest dropped first (with --store memory, in RAM)",
)
@click.option("--models", "model_dirs", multiple=True, help="folder or file of DDF XML (repeatable)")
@click.option(
    "--api-token", default=None, envvar="LWM2M_API_TOKEN", help="bearer token the REST API requires"
)
@click.option(
    "--coaps-port", default=None, type=click.IntRange(0, 65535), help="also serve CoAP over DTLS (e.g. 5684)"
)
@click.option("--dtls-cert", default=None, help="the server's certificate (PEM) for X.509 clients")
@click.option("--dtls-key", default=None, help="the private key of --dtls-cert (PEM)")
@click.option("--dtls-ca", default=None, help="authorities (PEM) that client certificates must chain to")
@click.option(
    "--bootstrap-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also run the bootstrap server on this CoAP port (e.g. 5685), with one REST API",
)
def server(
    host: str,
    coap_port: int,
    http_host: str,
    http_port: int,
    data: str,
    store: str | None,
    history_records: int,
    model_dirs: tuple[str, ...],
    api_token: str | None,
    coaps_port: int | None,
    dtls_cert: str | None,
    dtls_key: str | None,
    dtls_ca: str | None,
    bootstrap_port: int | None,
) -> None:
    """Run the LwM2M server with its REST API and event stream."""
    if not is_loopback(http_host) and not api_token:
        # Anyone who reaches the API can write to every device: require a token off loopback.
        fail(f"--http-host {http_host} is not a loopback address: give --api-token too")
    try:
        models = build_registry(model_dirs)
    except (DDFError, OSError) as exc:
        fail(f"--models: {exc}")
    certificate = dtls_certificate(coaps_port, dtls_cert, dtls_key, dtls_ca)
    try:
        opened = open_store(data, store, history_records=history_records)
    except Exception as exc:  # sqlite3 and OS errors alike: name the folder
        fail(f"--data {data}: {exc}")
    try:
        served = (host, coap_port, http_host, http_port, opened, models, api_token, coaps_port, certificate)
        run(serve(*served, bootstrap_port=bootstrap_port))
    except OSError as exc:
        fail(f"cannot serve: {exc.strerror or exc}")
    except ImportError as exc:  # --coaps-port without the dtls extra
        fail(str(exc))
    finally:
        opened.close()
