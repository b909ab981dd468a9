"""``lwm2m server``: the LwM2M server on CoAP and its REST API on HTTP, in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import math
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import bind_failure, fail
from lwm2m.cli.logs import configure_logging, log_level_option
from lwm2m.errors import ConfigError, DDFError
from lwm2m.model.catalogue import build_registry
from lwm2m.storage import Store, open_store
from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.redisconn import REDIS_SCHEMES, shown_url
from lwm2m.transport.eventloop import run

if TYPE_CHECKING:
    from lwm2m.server.config import ServerConfig

# The cyclic garbage collector's thresholds for a long-running server: see tune_gc.
GC_THRESHOLDS = (20_000, 10, 10)
# How long a queue-mode client is reachable after it sent something: MAX_TRANSMIT_WAIT of RFC 7252
# §4.8.2 with the default transmission parameters (LwM2M-TS-Core 1.2 §6.5).
DEFAULT_AWAKE_TIME = 93.0


def positive_seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A positive, finite number of seconds; the option is named otherwise."""
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{value:g}: give a positive number of seconds")
    return value


def optional_positive_seconds(
    ctx: click.Context, param: click.Parameter, value: float | None
) -> float | None:
    """``positive_seconds``, or None when the option is not given."""
    return None if value is None else positive_seconds(ctx, param, value)


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


STORE_HELP = (
    "sqlite (the file lwm2m.db in --data), memory (keep nothing), or a store URL: sqlite:///PATH,"
    " redis://HOST:PORT/DB, rediss://… (TLS), redis+cluster://HOST:PORT[,HOST:PORT…] (several nodes"
    " share it)"
)


def store_choice(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--store``: sqlite, memory or a URL with a scheme; anything else is named as refused."""
    if value is None or value in ("sqlite", "memory") or "://" in value:
        return value
    raise click.BadParameter(
        f"{value!r}: give sqlite, memory or a store URL such as redis://127.0.0.1:6379/0"
    )


def node_id_choice(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--node-id``: what a cluster takes as a node's id; anything else is named as refused."""
    if value is None:
        return None
    try:
        from lwm2m.cluster.encoding import check_node_id
    except ImportError:
        raise click.BadParameter(f"{value}: a cluster needs redis-py: pip install 'lwm2m[cluster]'") from None
    try:
        return check_node_id(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def link_choice(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    """``--cluster-link HOST:PORT`` (``[V6]:PORT`` for IPv6, port 0: a free one)."""
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r}: give HOST:PORT, e.g. 10.0.0.5:5690 or [fd00::5]:5690")
    return host, int(port)


async def open_forwarding(member: Any, link: tuple[str, int]) -> Any:
    """This node's DTLS forwarding (``lwm2m.transport.dtls.forwarding``) with its link socket
    bound at ``link``, the cluster's link key and the node's byte; its address is published
    with the node's heartbeat."""
    from lwm2m.transport.dtls.forwarding import DtlsForwarding

    forwarding = await DtlsForwarding.open(
        link[0], link[1], key=await member.link_key(), node=member.identity.byte, directory=member
    )
    try:
        await member.publish_link(forwarding.address)
    except BaseException:
        await forwarding.close()
        raise
    return forwarding


def store_url(data: str, kind: str | None) -> str:
    """The store URL of ``--data``/``--store``: ``memory://``, a URL given as ``--store``, or the
    SQLite file ``lwm2m.db`` in the folder ``data`` (created if missing)."""
    if kind == "memory":
        return "memory://"
    if kind is not None and "://" in kind:
        return kind
    folder = Path(data)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite://{(folder / 'lwm2m.db').absolute()}"


def outbox_store(data: str, kind: str | None) -> str | None:
    """The store URL the export worker opens for the webhook outbox: the server's, or None for
    the memory store (the worker keeps an outbox of its own)."""
    url = store_url(data, kind)
    return None if url.lower().startswith("memory://") else url


def open_data(data: str, kind: str | None, *, history_records: int | None = None) -> Store:
    """The store of ``--data``/``--store`` (``lwm2m.storage.open_store``); ``history_records``
    values kept per device in the history (None: the store's default)."""
    retention = None if history_records is None else HistoryRetention(max_records=history_records)
    return open_store(store_url(data, kind), history_retention=retention)


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
        fail("--dtls-cert, --dtls-key and --dtls-ca need --coaps-port or --tls-port")
    if cert is None or key is None or ca is None:
        fail("give --dtls-cert, --dtls-key and --dtls-ca together")
    from lwm2m.transport.dtls.config import X509Credentials
    from lwm2m.transport.dtls.credentials import load_certificates, load_private_key

    files: dict[str, bytes] = {}
    for option, path, load in (
        ("--dtls-cert", cert, load_certificates),
        ("--dtls-key", key, load_private_key),
        ("--dtls-ca", ca, load_certificates),
    ):
        try:
            with open(path, "rb") as f:
                files[option] = f.read()
            load(files[option])  # files that cannot serve fail now, in one line, not per handshake
        except OSError as exc:
            fail(f"cannot read {option} {path}: {exc.strerror or exc}")
        except ValueError as exc:
            fail(f"{option} {path}: {exc}")
    return X509Credentials(files["--dtls-cert"], files["--dtls-key"], files["--dtls-ca"])


def check_tls(config: Any) -> None:
    """With --tls-port, the credentials DTLS takes (the security store's PSKs, --dtls-rpk-key,
    the certificate) make a TLS server of our engine now: a line naming what is wrong, not a
    failure at start."""
    if config.tls_port is None:
        return
    from lwm2m.transport.dtls.config import DtlsServerConfig
    from lwm2m.transport.tls_engine import engine_tls_server

    try:
        engine_tls_server(
            DtlsServerConfig(psk_lookup=lambda _: None, certificate=config.certificate, rpk=config.rpk)
        )
    except ValueError as exc:
        fail(f"--tls-port: {exc}")


def dtls_rpk(coaps_port: int | None, key: str | None) -> Any:
    """The server's raw public key credentials from ``--dtls-rpk-key`` (RFC 7250), or None."""
    if key is None:
        return None
    if coaps_port is None:
        fail("--dtls-rpk-key needs --coaps-port or --tls-port")
    from lwm2m.transport.dtls.config import RpkCredentials
    from lwm2m.transport.dtls.credentials import load_private_key

    try:
        credentials = RpkCredentials.from_files(key)
        load_private_key(credentials.private_key)  # a key that cannot serve fails now, not per handshake
    except OSError as exc:
        fail(f"cannot read --dtls-rpk-key: {exc}")
    except ValueError as exc:
        fail(f"--dtls-rpk-key {key}: {exc}")
    return credentials


def state_limits(exchange_lifetime: float | None, handshake_lifetime: float | None) -> dict[str, Any]:
    """``ServerConfig`` fields from ``--exchange-lifetime`` and ``--dtls-handshake-lifetime``."""
    options: dict[str, Any] = {}
    if exchange_lifetime is not None:
        from lwm2m.coap.config import EndpointConfig

        default = EndpointConfig()
        non_lifetime = min(default.non_lifetime or exchange_lifetime, exchange_lifetime)
        options["coap"] = EndpointConfig(exchange_lifetime=exchange_lifetime, non_lifetime=non_lifetime)
    if handshake_lifetime is not None:
        from lwm2m.transport.dtls.config import SessionLimits

        timeout_max = min(SessionLimits().handshake_timeout_max, handshake_lifetime)
        options["dtls_limits"] = SessionLimits(
            handshake_lifetime=handshake_lifetime, handshake_timeout_max=timeout_max
        )
    return options


@contextlib.asynccontextmanager
async def bootstrap_beside(host: str, port: int | None, store: Store, models: Any) -> AsyncIterator[Any]:
    """A bootstrap server on ``port`` sharing the LwM2M server's store (None: no bootstrap server)."""
    if port is None:
        yield None
        return
    from lwm2m.bootstrap import BootstrapServer
    from lwm2m.bootstrap.config import BootstrapServerConfig

    async with BootstrapServer(
        BootstrapServerConfig(host=host, port=port), store, models=models
    ) as bootstrap:
        yield bootstrap


async def start_http(http: Any, host: str, port: int) -> tuple[asyncio.Task[None], str]:
    """Start uvicorn's ``http`` server; its task and base URL once it listens. The socket is
    bound first, so that a port in use is an OSError naming the address (``bind_failure``)."""
    from lwm2m.transport.listen import bind_tcp

    sock = bind_tcp(host, port)
    task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        sock.close()
        with contextlib.suppress(SystemExit):  # uvicorn exits on a failed start-up; it logged why
            await task
        raise OSError(f"cannot serve HTTP on {host}:{port}")
    (sock,) = http.servers[0].sockets[:1]
    bound = sock.getsockname()
    web_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return task, f"http://{web_host}:{bound[1]}"


def registration_options(command: Any) -> Any:
    """The options bounding what clients may register (``RegistrationLimits``) and who may use
    plain CoAP; ``registration_config`` turns them into ``ServerConfig`` fields."""
    from lwm2m.server.registrar import RegistrationLimits

    d = RegistrationLimits()
    options = [
        click.option(
            "--max-lifetime",
            default=d.max_lifetime,
            show_default=True,
            type=click.IntRange(1),
            help="seconds: a longer registration lifetime is shortened to this",
        ),
        click.option(
            "--max-registrations",
            default=d.max_registrations,
            show_default=True,
            type=click.IntRange(1),
            help="registrations held at most; a new endpoint beyond them gets 4.29",
        ),
        click.option(
            "--max-endpoint-length",
            default=d.max_endpoint_length,
            show_default=True,
            type=click.IntRange(1, d.max_endpoint_length),
            help="bytes (UTF-8) of an endpoint name",
        ),
        click.option(
            "--max-links",
            default=d.max_links,
            show_default=True,
            type=click.IntRange(1),
            help="links in a Register or Update payload",
        ),
        click.option(
            "--max-registration-payload",
            default=d.max_payload,
            show_default=True,
            type=click.IntRange(1),
            help="bytes of a Register or Update payload; more gets 4.13",
        ),
        click.option(
            "--registration-rate",
            default=d.rate,
            show_default=True,
            type=click.FloatRange(0, min_open=False),
            help="new registrations per second from one source address, 0 for no limit; more get 4.29",
        ),
        click.option(
            "--registration-burst",
            default=d.burst,
            show_default=True,
            type=click.IntRange(1),
            help="registrations one source address may make at once before --registration-rate applies",
        ),
        click.option(
            "--nosec-endpoints",
            type=click.Choice(["allow", "deny"]),
            default="allow",
            show_default=True,
            help="deny: plain CoAP only for endpoints listed with lwm2m security add --nosec",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def registration_config(options: dict[str, Any]) -> dict[str, Any]:
    """``ServerConfig`` fields from the values of ``registration_options``."""
    from lwm2m.server.registrar import RegistrationLimits

    rate = options["registration_rate"]
    try:
        limits = RegistrationLimits(
            max_endpoint_length=options["max_endpoint_length"],
            max_lifetime=options["max_lifetime"],
            max_payload=options["max_registration_payload"],
            max_links=options["max_links"],
            max_registrations=options["max_registrations"],
            rate=rate or None,
            burst=options["registration_burst"],
        )
    except ValueError as exc:
        fail(f"registration limits: {exc}")
    return {"registration_limits": limits, "nosec_endpoints": options["nosec_endpoints"]}


def guard_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--allowed-host`` and ``--cors-origin``: what the REST API's guard lets in (lwm2m.web.guard)."""
    command = click.option(
        "--cors-origin",
        "cors_origins",
        multiple=True,
        metavar="ORIGIN",
        help="a web origin (scheme://host:port) allowed to call the REST API from a browser (repeatable)",
    )(command)
    return click.option(
        "--allowed-host",
        "allowed_hosts",
        multiple=True,
        metavar="NAME",
        help="a host name the REST API is reached by, besides its address and localhost (repeatable)",
    )(command)


def check_guard_options(allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...]) -> None:
    from lwm2m.web.guard import normalize_origin, split_host

    for name in allowed_hosts:
        parts = split_host(name)
        if parts is None or parts[1] is not None:
            fail(f"--allowed-host {name!r}: give a host name or address, without a port")
    for origin in cors_origins:
        try:
            normalize_origin(origin)
        except ValueError as exc:
            fail(f"--cors-origin: {exc}")


def metrics_wanted(asked: bool | None) -> bool:
    """Whether to serve ``/metrics``: as asked (``--metrics``/``--no-metrics``), else when
    prometheus-client is installed (the ``metrics`` extra). ``--metrics`` without it fails."""
    if asked is False:
        return False
    try:
        import lwm2m.export.metrics  # noqa: F401  (it needs prometheus-client)
    except ImportError:
        if asked:
            fail("--metrics needs prometheus-client: pip install 'lwm2m[metrics]'")
        return False
    return True


def server_metrics(server: Any, wanted: bool) -> Any:
    """The metrics of ``server`` for the web app (``lwm2m.export.metrics``), or None."""
    if not wanted:
        return None
    from lwm2m.export.metrics import ServerMetrics

    return ServerMetrics(server)


def mqtt_config(url: str | None, commands: bool = True) -> Any:
    """The ``MqttConfig`` of ``--mqtt-url`` (``lwm2m.export.mqtt``), or None without it; a URL
    that is not one, or aiomqtt missing, fails now in one line."""
    if url is None:
        if not commands:
            fail("--no-mqtt-commands: give --mqtt-url too")
        return None
    try:
        from lwm2m.export.mqtt import MqttConfig
    except ImportError:
        fail("--mqtt-url needs aiomqtt: pip install 'lwm2m[mqtt]'")
    try:
        return MqttConfig.from_url(url, commands=commands)
    except ConfigError as exc:
        fail(f"--mqtt-url: {exc}")


@contextlib.asynccontextmanager
async def mqtt_beside(server: Any, config: Any, metrics: Any = None) -> AsyncIterator[Any]:
    """The MQTT export of ``server`` in its process while it runs (``config``: an
    ``MqttConfig``), or None; its counters added to ``metrics`` (a ``ServerMetrics``) if given."""
    if config is None:
        yield None
        return
    from lwm2m.export.mqtt import MqttExport

    async with MqttExport(server, config) as export:
        if metrics is not None:
            from lwm2m.export.handoff_metrics import ExportCollector, mqtt_counters

            metrics.register(ExportCollector(lambda: mqtt_counters(export), handoff=False))
        yield export


def campaigns_config(lease: float | None) -> Any:
    """The campaigns' ``CampaignsConfig`` of ``--campaign-lease`` (None: the default one)."""
    if lease is None:
        return None
    from lwm2m.fleet.campaigns import CampaignsConfig

    return CampaignsConfig(lease=lease)


def export_worker(server: Any, mqtt: Any, outbox_url: str | None) -> tuple[Any, Any]:
    """The webhooks' registrations and the export worker that posts them and publishes to MQTT
    (``lwm2m.export.handoff``); the worker opens the outbox at ``outbox_url`` (None: its own,
    in memory)."""
    from lwm2m.export.handoff import ExportConfig, ExportWorker
    from lwm2m.export.webhooks import Webhooks
    from lwm2m.server.jsonform import EVENT_NAMES, event_view

    webhooks = Webhooks(server, server.store.webhooks, EVENT_NAMES, event_view, deliver=False)
    return webhooks, ExportWorker(server, ExportConfig(store_url=outbox_url, mqtt=mqtt), webhooks)


async def join_cluster(url: str, node_id: str | None, config: ServerConfig) -> tuple[Any, ServerConfig]:
    """This node's membership of the cluster on the Redis of ``url``, joined, and ``config``
    for a node of it: the store is shared (clients adopted as they come, not all at start) and
    the DTLS Connection IDs begin with the node's byte."""
    import dataclasses

    from lwm2m.cluster.node import ClusterConfig
    from lwm2m.server.membership import ClusterMember, MembershipConfig
    from lwm2m.storage.redisconn import connect
    from lwm2m.transport.dtls.config import SessionLimits

    member = ClusterMember(connect(url), MembershipConfig(cluster=ClusterConfig(node_id=node_id)))
    byte = await member.join()
    limits = dataclasses.replace(config.dtls_limits or SessionLimits(), node_id=byte)
    return member, dataclasses.replace(config, shared_store=True, dtls_limits=limits)


async def serve(
    config: ServerConfig,
    http_host: str,
    http_port: int,
    store: Store,
    models: Any,
    token: str | None,
    bootstrap_port: int | None = None,
    allowed_hosts: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    cluster_url: str | None = None,
    node_id: str | None = None,
    cluster_link: tuple[str, int] | None = None,
    metrics: bool = False,
    metrics_token: str | None = None,
    mqtt: Any = None,
    outbox_url: str | None = None,
    export_in_process: bool = False,
    campaign_lease: float | None = None,
) -> None:
    member = None
    if cluster_url is not None:
        # A node of a cluster (DESIGN.md, "Where its users outgrow one machine"): it joins
        # first, so that its byte leads the DTLS Connection IDs it gives (RFC 9146).
        member, config = await join_cluster(cluster_url, node_id, config)
    forwarding = None
    if member is not None and config.coaps_port is not None:
        # Records of another node's Connection IDs go to it over the link (docs/cluster.md).
        forwarding = await open_forwarding(member, cluster_link or (config.host, 0))
    try:
        await serve_node(
            config,
            http_host,
            http_port,
            store,
            models,
            token,
            bootstrap_port,
            allowed_hosts,
            cors_origins,
            cluster_url,
            member,
            forwarding,
            metrics=metrics,
            metrics_token=metrics_token,
            mqtt=mqtt,
            outbox_url=outbox_url,
            export_in_process=export_in_process,
            campaign_lease=campaign_lease,
        )
    finally:
        if forwarding is not None:
            await forwarding.close()


async def serve_node(
    config: ServerConfig,
    http_host: str,
    http_port: int,
    store: Store,
    models: Any,
    token: str | None,
    bootstrap_port: int | None,
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
    cluster_url: str | None,
    member: Any,
    forwarding: Any,
    *,
    metrics: bool = False,
    metrics_token: str | None = None,
    mqtt: Any = None,
    outbox_url: str | None = None,
    export_in_process: bool = False,
    campaign_lease: float | None = None,
) -> None:
    """``serve`` once the node has joined its cluster (``member``, None for a lone server) and
    opened its DTLS forwarding (None when it has none)."""
    from lwm2m.server.role import Server
    from lwm2m.web.app import create_app, pull_over_http

    host = config.host
    server = Server(config, store, models=models)
    if forwarding is not None:
        server.forward_dtls(forwarding)
    served_metrics = server_metrics(server, metrics)
    async with (
        server,
        bootstrap_beside(host, bootstrap_port, store, models) as bootstrap,
        mqtt_beside(server, mqtt if export_in_process else None, served_metrics),
    ):
        webhooks, export = (None, None) if export_in_process else export_worker(server, mqtt, outbox_url)
        app = create_app(
            server,
            api_token=token,
            bootstrap=bootstrap,
            bind_host=http_host,
            allowed_hosts=allowed_hosts,
            cors_origins=cors_origins,
            cluster=member,
            metrics=served_metrics,
            metrics_token=metrics_token,
            webhooks=webhooks,
            export=export,
            campaigns=campaigns_config(campaign_lease),
        )
        http = http_server(app, http_host, http_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, setattr, http, "should_exit", True)
        task, base = await start_http(http, http_host, http_port)
        pull_over_http(app, base)
        tune_gc()
        click.echo(f"lwm2m server: CoAP on {server.uri}, REST API on {base}/api")
        if member is not None:
            where = shown_url(cluster_url or "")
            click.echo(f"  cluster node {member.node_id} (byte {member.identity.byte}) on {where}")
        if forwarding is not None:
            from lwm2m.transport.dtls.link import format_link

            click.echo(f"  DTLS forwarding link on {format_link(forwarding.address)} (keep it from devices)")
        if server.coaps_uri is not None:
            click.echo(f"  CoAP over DTLS on {server.coaps_uri} (credentials: lwm2m security add)")
        if server.tcp_uri is not None:
            click.echo(f"  CoAP over TCP on {server.tcp_uri}")
        if server.tls_uri is not None:
            click.echo(f"  CoAP over TLS on {server.tls_uri} (X.509 clients: lwm2m security add --x509)")
        if bootstrap is not None:
            click.echo(f"  bootstrap server on {bootstrap.uri} (configurations: {base}/api/bootstrap)")
        click.echo(f"  API documentation: {base}/api/docs")
        if metrics:
            click.echo(f"  Prometheus metrics: {base}/metrics{' (bearer token)' if metrics_token else ''}")
        if mqtt is not None:
            what = "events to and commands from" if mqtt.commands else "events to"
            click.echo(f"  MQTT: {what} {mqtt.host}:{mqtt.port}, topics {mqtt.prefix}/{{ep}}/…")
        if export is not None:
            click.echo("  webhooks and MQTT: posted and published by an export worker process")
        click.echo("Ctrl-C stops it.")
        await task
    click.echo("lwm2m server: stopped")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve CoAP on")
@click.option("--coap-port", default=5683, show_default=True, type=click.IntRange(0, 65535))
@click.option("--http-host", default="127.0.0.1", show_default=True, help="address to serve the REST API on")
@click.option("--http-port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", default=".lwm2m-data", show_default=True, help="folder of the SQLite database")
@click.option("--store", default=None, callback=store_choice, metavar="sqlite|memory|URL", help=STORE_HELP)
@click.option(
    "--history-records",
    default=HistoryRetention().max_records,
    show_default=True,
    type=click.IntRange(1),
    help="values kept per device in the history, the oldest dropped first (with --store memory, in RAM)",
)
@click.option(
    "--models",
    "model_dirs",
    multiple=True,
    help="folder or file of DDF XML (repeatable): objects the bundled catalogue lacks",
)
@click.option(
    "--api-token", default=None, envvar="LWM2M_API_TOKEN", help="bearer token the REST API requires"
)
@click.option(
    "--coaps-port", default=None, type=click.IntRange(0, 65535), help="also serve CoAP over DTLS (e.g. 5684)"
)
@click.option(
    "--tcp-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also serve CoAP over TCP (coap+tcp://, RFC 8323; e.g. 5683)",
)
@click.option(
    "--tls-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also serve CoAP over TLS (coaps+tcp://, RFC 8323; e.g. 5684) for X.509 clients:"
    " give --dtls-cert, --dtls-key and --dtls-ca",
)
@click.option("--dtls-cert", default=None, help="the server's certificate (PEM) for X.509 clients")
@click.option("--dtls-key", default=None, help="the private key of --dtls-cert (PEM)")
@click.option("--dtls-ca", default=None, help="authorities (PEM) that client certificates must chain to")
@click.option(
    "--dtls-rpk-key",
    default=None,
    help="the server's EC P-256 key pair (PEM or DER) for raw public key clients (RFC 7250); with"
    " --dtls-cert, its key",
)
@click.option(
    "--bootstrap-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also run the bootstrap server on this CoAP port (e.g. 5685), with one REST API",
)
@click.option(
    "--awake-time",
    default=DEFAULT_AWAKE_TIME,
    show_default=True,
    type=float,
    callback=positive_seconds,
    help="seconds a queue-mode client stays reachable after it sent something (LwM2M 1.2 §6.5)",
)
@registration_options
@guard_options
@click.option(
    "--exchange-lifetime",
    default=None,
    type=click.FloatRange(1.0, 3600.0),
    help="seconds CoAP state is kept for: duplicate detection, unfinished block-wise transfers "
    "[default: 247, RFC 7252 EXCHANGE_LIFETIME]",
)
@click.option(
    "--dtls-handshake-lifetime",
    default=None,
    type=click.FloatRange(1.0, 3600.0),
    help="seconds a DTLS handshake may take before it is dropped [default: 120]",
)
@click.option(
    "--node-id",
    default=None,
    callback=node_id_choice,
    help="this node's id in a cluster (with --store redis://…) [default: generated]",
)
@click.option(
    "--cluster-link",
    default=None,
    callback=link_choice,
    metavar="HOST:PORT",
    help="where the other nodes send this one the DTLS records of its Connection IDs (with --store"
    " redis://… and --coaps-port); firewall it from devices [default: --host, a free port]",
)
@click.option(
    "--metrics/--no-metrics",
    default=None,
    help="serve Prometheus metrics at /metrics [default: when prometheus-client is installed]",
)
@click.option(
    "--metrics-token",
    default=None,
    envvar="LWM2M_METRICS_TOKEN",
    help="bearer token /metrics requires (it may be --api-token's) [default: open, as exporters are]",
)
@click.option(
    "--mqtt-url",
    default=None,
    envvar="LWM2M_MQTT_URL",
    metavar="mqtt[s]://[USER:PASS@]HOST[:PORT][/PREFIX]",
    help="publish events to this MQTT broker and take commands from it (topics PREFIX/{ep}/…,"
    " PREFIX lwm2m by default; needs aiomqtt)",
)
@click.option(
    "--mqtt-commands/--no-mqtt-commands",
    default=True,
    show_default=True,
    help="take device commands on PREFIX/{ep}/cmd (as strong as the REST API: restrict who may publish"
    " there with the broker's ACLs)",
)
@click.option(
    "--export-in-process",
    is_flag=True,
    default=False,
    help="post webhooks and publish to MQTT in the server's process instead of an export worker"
    " process (for tests and embedding: the export's work then weighs on the ingest path)",
)
@click.option(
    "--campaign-lease",
    default=None,
    type=float,
    callback=optional_positive_seconds,
    help="seconds a firmware campaign's lease lasts unrenewed: with --store redis://…, another node"
    " takes over the campaigns of a node that died this long after [default: 15]",
)
@click.option(
    "--proxy-protocol-from",
    "proxy_from",
    multiple=True,
    metavar="NETWORK",
    help="read the PROXY protocol header that a UDP balancer at this address or network (e.g."
    " 127.0.0.1, 10.0.0.0/24; repeatable) puts in front of a session's first CoAP datagram (nginx:"
    " proxy_protocol on;): the devices are then seen at their own addresses",
)
@log_level_option()
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
    tcp_port: int | None,
    tls_port: int | None,
    dtls_cert: str | None,
    dtls_key: str | None,
    dtls_ca: str | None,
    dtls_rpk_key: str | None,
    bootstrap_port: int | None,
    awake_time: float,
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
    exchange_lifetime: float | None,
    dtls_handshake_lifetime: float | None,
    log_level: str,
    node_id: str | None,
    cluster_link: tuple[str, int] | None,
    metrics: bool | None,
    metrics_token: str | None,
    mqtt_url: str | None,
    mqtt_commands: bool,
    export_in_process: bool,
    campaign_lease: float | None,
    proxy_from: tuple[str, ...],
    **limits: Any,
) -> None:
    """Run the LwM2M server with its REST API and event stream."""
    configure_logging(log_level)
    check_guard_options(allowed_hosts, cors_origins)
    if not is_loopback(http_host) and not api_token:
        # Anyone who reaches the API can write to every device: require a token off loopback.
        fail(f"--http-host {http_host} is not a loopback address: give --api-token too")
    try:
        models = build_registry(model_dirs)
    except (DDFError, OSError) as exc:
        fail(f"--models: {exc}")
    from lwm2m.server.config import ServerConfig
    from lwm2m.transport.proxy import ProxyConfig

    try:
        proxy = ProxyConfig(proxy_from) if proxy_from else None
    except ConfigError as exc:
        fail(f"--proxy-protocol-from: {exc}")
    try:
        config = ServerConfig(
            host=host,
            port=coap_port,
            proxy=proxy,
            coaps_port=coaps_port,
            certificate=dtls_certificate(
                coaps_port if coaps_port is not None else tls_port, dtls_cert, dtls_key, dtls_ca
            ),
            rpk=dtls_rpk(coaps_port if coaps_port is not None else tls_port, dtls_rpk_key),
            awake_time=awake_time,
            tcp_port=tcp_port,
            tls_port=tls_port,
            **registration_config(limits),
            **state_limits(exchange_lifetime, dtls_handshake_lifetime),
        )
        check_tls(config)
    except ConfigError as exc:
        fail(str(exc))
    if metrics is False and metrics_token is not None:
        fail("--metrics-token: /metrics is off (--no-metrics)")
    serve_metrics = metrics_wanted(metrics)
    mqtt = mqtt_config(mqtt_url, mqtt_commands)
    given = store or ""  # a URL given as --store (the folder of --data is made only when opened)
    cluster_url = given if given.partition("://")[0].lower() in REDIS_SCHEMES else None
    if node_id is not None and cluster_url is None:
        fail(f"--node-id {node_id}: a node of a cluster needs a shared store: --store redis://HOST:PORT/DB")
    if cluster_link is not None and (cluster_url is None or coaps_port is None):
        fail(
            "--cluster-link: the link carries DTLS between cluster nodes:"
            " give --store redis://… and --coaps-port"
        )
    try:
        opened = open_data(data, store, history_records=history_records)
    except ConfigError as exc:  # the URL's own message names it
        fail(f"--store: {exc}")
    except Exception as exc:  # sqlite3 and OS errors alike: name the folder
        fail(f"--data {data}: {exc}")
    try:
        guard = {"allowed_hosts": allowed_hosts, "cors_origins": cors_origins}
        run(
            serve(
                config,
                http_host,
                http_port,
                opened,
                models,
                api_token,
                bootstrap_port=bootstrap_port,
                **guard,
                cluster_url=cluster_url,
                node_id=node_id,
                cluster_link=cluster_link,
                metrics=serve_metrics,
                metrics_token=metrics_token,
                mqtt=mqtt,
                outbox_url=outbox_store(data, store),
                export_in_process=export_in_process,
                campaign_lease=campaign_lease,
            )
        )
    except OSError as exc:
        ports = {"--coap-port": coap_port, "--coaps-port": coaps_port, "--bootstrap-port": bootstrap_port}
        ports.update({"--tcp-port": tcp_port, "--tls-port": tls_port})
        fail(bind_failure(exc, {**ports, "--http-port": http_port}) or f"cannot serve: {exc.strerror or exc}")
    except ImportError as exc:  # --coaps-port without the dtls extra
        fail(str(exc))
    finally:
        opened.close()
