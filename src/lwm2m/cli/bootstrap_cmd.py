"""``lwm2m bootstrap``: the bootstrap server (LwM2M-TS-Core 1.2 §6.1) and its configurations.

::

    lwm2m bootstrap                          # CoAP on 5685, REST API on 8081, data in .lwm2m-data
    lwm2m bootstrap config add sensor-1 --server coaps://lwm2m.example:5684 --psk-generate
    lwm2m bootstrap config add '*' --server coap://127.0.0.1:5683   # for every other endpoint
    lwm2m bootstrap config list
    lwm2m bootstrap config remove sensor-1

``config`` writes into the database in ``--data``, by default the folder ``lwm2m
server`` uses too: a running bootstrap server reads each configuration when a
device asks, and a PSK handed out is also put into the LwM2M server's security
store there (``--no-provision`` does not), so that one command sets a device up
end to end. ``--api URL`` goes through a running server's REST API instead.
A generated key is printed once; ``list`` never shows keys.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path as PathLib
from typing import Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import bind_failure, fail
from lwm2m.cli.logs import configure_logging, log_level_option
from lwm2m.cli.remote import api_call, store_options
from lwm2m.cli.server_cmd import dtls_certificate, dtls_rpk, http_server, is_loopback, open_data, start_http
from lwm2m.errors import ConfigError
from lwm2m.storage.base import SecurityStore, Store
from lwm2m.transport.eventloop import run

DEFAULT_DATA = ".lwm2m-data"
GENERATED_KEY_BYTES = 16


async def serve_bootstrap(
    host: str,
    coap_port: int,
    http_host: str,
    http_port: int,
    store: Store,
    token: str | None,
    coaps_port: int | None = None,
    credentials: SecurityStore | None = None,
    certificate: Any = None,
    rpk: Any = None,
    tcp_port: int | None = None,
    tls_port: int | None = None,
) -> None:
    from lwm2m.bootstrap import BootstrapServer
    from lwm2m.bootstrap.config import BootstrapServerConfig
    from lwm2m.web.bootstrap_api import create_bootstrap_app

    config = BootstrapServerConfig(
        host=host,
        port=coap_port,
        coaps_port=coaps_port,
        certificate=certificate,
        rpk=rpk,
        tcp_port=tcp_port,
        tls_port=tls_port,
    )
    async with BootstrapServer(config, store, security=credentials) as bootstrap:
        app = create_bootstrap_app(bootstrap, api_token=token, security=store.security)
        http = http_server(app, http_host, http_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, setattr, http, "should_exit", True)
        task, base = await start_http(http, http_host, http_port)
        click.echo(f"lwm2m bootstrap: CoAP on {bootstrap.uri}, REST API on {base}/api/bootstrap")
        if bootstrap.coaps_uri is not None:
            click.echo(
                f"  CoAP over DTLS on {bootstrap.coaps_uri}"
                " (device credentials: lwm2m security add EP ... --data DATA/bootstrap)"
            )
        if bootstrap.tcp_uri is not None:
            click.echo(f"  CoAP over TCP on {bootstrap.tcp_uri}")
        if bootstrap.tls_uri is not None:
            click.echo(
                f"  CoAP over TLS on {bootstrap.tls_uri} (X.509 clients: a certificate's CN is the endpoint)"
            )
        click.echo("  configurations: lwm2m bootstrap config add|list|remove")
        click.echo("Ctrl-C stops it.")
        await task
    click.echo("lwm2m bootstrap: stopped")


@main.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve CoAP on")
@click.option("--coap-port", default=5685, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--coaps-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also serve CoAP over DTLS (e.g. 5686); the PSKs devices bootstrap with are in DATA/bootstrap",
)
@click.option(
    "--tcp-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also serve CoAP over TCP (coap+tcp://, RFC 8323; e.g. 5685)",
)
@click.option(
    "--tls-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="also serve CoAP over TLS (coaps+tcp://, RFC 8323; e.g. 5686) for X.509 clients:"
    " give --dtls-cert, --dtls-key and --dtls-ca",
)
@click.option("--dtls-cert", default=None, help="the bootstrap server's certificate (PEM) for X.509 clients")
@click.option("--dtls-key", default=None, help="the private key of --dtls-cert (PEM)")
@click.option("--dtls-ca", default=None, help="authorities (PEM) that client certificates must chain to")
@click.option(
    "--dtls-rpk-key",
    default=None,
    help="the bootstrap server's EC P-256 key pair (PEM or DER) for raw public key clients (RFC 7250);"
    " with --dtls-cert, its key",
)
@click.option("--http-host", default="127.0.0.1", show_default=True, help="address to serve the REST API on")
@click.option("--http-port", default=8081, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", default=DEFAULT_DATA, show_default=True, help="folder of the SQLite database")
@click.option("--store", type=click.Choice(["sqlite", "memory"]), default=None, help="memory: keep nothing")
@click.option(
    "--api-token", default=None, envvar="LWM2M_API_TOKEN", help="bearer token the REST API requires"
)
@log_level_option()
@click.pass_context
def bootstrap(
    ctx: click.Context,
    host: str,
    coap_port: int,
    coaps_port: int | None,
    tcp_port: int | None,
    tls_port: int | None,
    dtls_cert: str | None,
    dtls_key: str | None,
    dtls_ca: str | None,
    dtls_rpk_key: str | None,
    http_host: str,
    http_port: int,
    data: str,
    store: str | None,
    api_token: str | None,
    log_level: str,
) -> None:
    """Run the bootstrap server with its REST API, or manage its configurations (config ...)."""
    if ctx.invoked_subcommand is not None:
        return
    configure_logging(log_level)
    if not is_loopback(http_host) and not api_token:
        # Anyone who reaches the API can hand out server accounts: require a token off loopback.
        fail(f"--http-host {http_host} is not a loopback address: give --api-token too")
    # The files are read and checked before anything is opened: a bad one is one line naming it.
    certificate = dtls_certificate(
        coaps_port if coaps_port is not None else tls_port, dtls_cert, dtls_key, dtls_ca
    )
    if tls_port is not None and certificate is None:
        fail("--tls-port needs --dtls-cert, --dtls-key and --dtls-ca (CoAP over TLS takes X.509 clients)")
    rpk = dtls_rpk(coaps_port, dtls_rpk_key)
    if certificate is not None and rpk is not None:
        from lwm2m.transport.dtls.credentials import own_public_key

        if own_public_key(certificate.private_key) != own_public_key(rpk.private_key):
            fail(f"--dtls-rpk-key {dtls_rpk_key}: not the key of --dtls-cert (one key pair serves both)")
    try:
        opened = open_data(data, store)
        # The bootstrap server's own credentials, apart from the LwM2M server's in DATA.
        own = open_data(str(PathLib(data) / "bootstrap"), store) if coaps_port is not None else None
    except Exception as exc:  # sqlite3 and OS errors alike: name the folder
        fail(f"--data {data}: {exc}")
    credentials = own.security if own is not None else None
    try:
        run(
            serve_bootstrap(
                host,
                coap_port,
                http_host,
                http_port,
                opened,
                api_token,
                coaps_port,
                credentials,
                certificate=certificate,
                rpk=rpk,
                tcp_port=tcp_port,
                tls_port=tls_port,
            )
        )
    except OSError as exc:
        ports = {"--coap-port": coap_port, "--coaps-port": coaps_port, "--http-port": http_port}
        ports.update({"--tcp-port": tcp_port, "--tls-port": tls_port})
        fail(bind_failure(exc, ports) or f"cannot serve: {exc.strerror or exc}")
    except ImportError as exc:  # --coaps-port without the dtls extra
        fail(str(exc))
    except ConfigError as exc:
        fail(str(exc))
    finally:
        opened.close()
        if own is not None:
            own.close()


# --- configurations ------------------------------------------------------------------------------


def _with_store(data: str, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    try:
        store = open_data(data, None)
    except Exception as exc:
        fail(f"--data {data}: {exc}")
    try:
        return asyncio.run(work(store))
    finally:
        store.close()


def _describe(endpoint: str, config: dict[str, Any]) -> str:
    name = "* (default)" if endpoint == "*" else endpoint
    servers = []
    for s in config.get("servers", []):
        security = s.get("security", {"mode": "nosec"})
        how = security["mode"] + (f" identity {security['identity']!r}" if "identity" in security else "")
        servers.append(f"{s['uri']} (ssid {s['shortServerId']}, lifetime {s['lifetime']} s, {how})")
    extra = []
    if config.get("deletePaths"):
        extra.append("delete " + " ".join(config["deletePaths"]))
    if config.get("bootstrapDiscover", True) is False:
        extra.append("no discover: bootstrap account assumed at /0/0")
    return f"{name}: " + "; ".join(servers) + (f" [{', '.join(extra)}]" if extra else "")


_with_common = store_options(DEFAULT_DATA, "folder of the database", "http://127.0.0.1:8081")


@bootstrap.group()
def config() -> None:
    """Bootstrap configurations by endpoint ('*': the default for the others)."""


@config.command("add")
@click.argument("endpoint")
@click.option(
    "--server", "server_uri", required=True, help="the LwM2M server to hand out, coap[s]://HOST[:PORT]"
)
@click.option("--short-server-id", default=101, show_default=True, type=click.IntRange(1, 65534))
@click.option(
    "--lifetime", default=300, show_default=True, type=click.IntRange(1, 0x7FFFFFFF), help="seconds"
)
@click.option("--binding", default="U", show_default=True)
@click.option("--psk-identity", default=None, help="coaps://: the PSK identity (default: the endpoint name)")
@click.option("--psk-key", default=None, envvar="LWM2M_PSK_KEY", help="coaps://: the PSK, in hex")
@click.option("--psk-generate", is_flag=True, help="coaps://: make a random 16-byte PSK and print it once")
@click.option(
    "--rpk-key",
    default=None,
    help="coaps://: the device's EC P-256 key pair (PEM or DER) to hand out (RFC 7250)",
)
@click.option(
    "--server-rpk", default=None, help="coaps://: the server's public key (PEM or DER) with --rpk-key"
)
@click.option(
    "--delete",
    "delete_paths",
    multiple=True,
    default=("/0", "/1"),
    show_default=True,
    help="paths to Bootstrap-Delete first (repeatable)",
)
@click.option(
    "--discover/--no-discover",
    default=True,
    show_default=True,
    help="start with a Bootstrap-Discover (finds the device's bootstrap account, which is kept)",
)
@click.option("--no-provision", is_flag=True, help="leave the LwM2M server's security store alone")
@_with_common
def config_add(
    endpoint: str,
    server_uri: str,
    short_server_id: int,
    lifetime: int,
    binding: str,
    psk_identity: str | None,
    psk_key: str | None,
    psk_generate: bool,
    rpk_key: str | None,
    server_rpk: str | None,
    delete_paths: tuple[str, ...],
    discover: bool,
    no_provision: bool,
    data: str,
    api: str | None,
    api_token: str | None,
) -> None:
    """Set the configuration ENDPOINT gets ('*': every endpoint without one)."""
    from lwm2m.bootstrap.server import security_info
    from lwm2m.errors import ConfigError
    from lwm2m.protocol.bootstrap_config import BootstrapConfig

    if not endpoint:
        fail("the endpoint name is empty")
    if psk_key is not None and psk_generate:
        fail("give --psk-key or --psk-generate, not both")
    if psk_generate:
        psk_key = secrets.token_hex(GENERATED_KEY_BYTES)
    security: dict[str, Any] = {"mode": "nosec"}
    if psk_key is not None or psk_identity is not None:
        if psk_key is None:
            fail("--psk-identity needs --psk-key or --psk-generate")
        security = {"mode": "psk", "identity": psk_identity or endpoint, "key": psk_key}
    if rpk_key is not None or server_rpk is not None:
        if security["mode"] != "nosec":
            fail("give a PSK or --rpk-key with --server-rpk, not both")
        security = _rpk_security(rpk_key, server_rpk)
    body: dict[str, Any] = {
        "servers": [
            {
                "uri": server_uri,
                "shortServerId": short_server_id,
                "lifetime": lifetime,
                "binding": binding,
                "security": security,
            }
        ],
        "deletePaths": list(delete_paths),
        "bootstrapDiscover": discover,
    }
    try:
        parsed = BootstrapConfig.from_json(body)
    except ConfigError as exc:
        fail(str(exc))
    provisioned = False
    if api is not None:
        query = "?provision=false" if no_provision else ""
        status, answer = api_call(api, api_token, "PUT", f"/api/bootstrap/{_quote(endpoint)}{query}", body)
        if status >= 400:
            fail(f"the server refused it ({status}): {answer.get('error')}")
        provisioned = bool(answer.get("provisioned"))
    else:

        async def work(store: Any) -> bool:
            await store.bootstrap_configs.put(endpoint, parsed)
            info = security_info(endpoint, parsed)
            keeper = getattr(store, "security", None)
            if no_provision or info is None or keeper is None:
                return False
            try:
                await keeper.put(info)
            except ValueError as exc:
                fail(f"stored, but the security store refused the keys: {exc}")
            return True

        provisioned = _with_store(data, work)
    click.echo(f"bootstrap configuration {_describe(endpoint, parsed.to_json(secrets=False))}")
    if psk_generate:
        click.echo(f"PSK identity {security['identity']!r}, key {psk_key} (shown only now)")
    if provisioned:
        by = "raw public key" if security["mode"] == "rpk" else "PSK"
        click.echo(f"the LwM2M server's security store now knows {endpoint!r} by that {by}")


def _rpk_security(rpk_key: str | None, server_rpk: str | None) -> dict[str, Any]:
    """The ``"mode": "rpk"`` security of a server account from ``--rpk-key``/``--server-rpk``:
    the device's public and private keys and the server's public key, DER in hex (§E.1)."""
    if rpk_key is None or server_rpk is None:
        fail("give --rpk-key and --server-rpk together")
    from lwm2m.transport.dtls.credentials import load_public_key, own_public_key, private_key_der

    try:
        with open(rpk_key, "rb") as f:
            pair = f.read()
        with open(server_rpk, "rb") as f:
            server = f.read()
    except OSError as exc:
        fail(f"cannot read the raw public key files: {exc}")
    try:
        public, private = own_public_key(pair), private_key_der(pair)
    except ValueError as exc:
        fail(f"--rpk-key {rpk_key}: {exc}")
    try:
        server_public = load_public_key(server)
    except ValueError as exc:
        fail(f"--server-rpk {server_rpk}: {exc}")
    return {
        "mode": "rpk",
        "publicKey": public.hex(),
        "privateKey": private.hex(),
        "serverPublicKey": server_public.hex(),
    }


def _quote(endpoint: str) -> str:
    from urllib.parse import quote

    return quote(endpoint, safe="")


@config.command("list")
@_with_common
def config_list(data: str, api: str | None, api_token: str | None) -> None:
    """Show every configuration (never its keys) and the recent sessions, with --api."""
    if api is not None:
        status, answer = api_call(api, api_token, "GET", "/api/bootstrap")
        if status >= 400:
            fail(f"the server refused it ({status}): {answer.get('error')}")
        configs = [(c["endpoint"], c["config"]) for c in answer["configs"]]
    else:

        async def work(store: Any) -> list[tuple[str, dict[str, Any]]]:
            found = await store.bootstrap_configs.all()
            return [(ep, c.to_json(secrets=False)) for ep, c in found.items()]

        configs = _with_store(data, work)
    if not configs:
        click.echo("no bootstrap configurations")
    for endpoint, shown in configs:
        click.echo(_describe(endpoint, shown))


@config.command("remove")
@click.argument("endpoint")
@_with_common
def config_remove(endpoint: str, data: str, api: str | None, api_token: str | None) -> None:
    """Remove ENDPOINT's configuration."""
    if api is not None:
        status, answer = api_call(api, api_token, "DELETE", f"/api/bootstrap/{_quote(endpoint)}")
        if status == 404:
            fail(f"no bootstrap configuration for {endpoint!r}")
        if status >= 400:
            fail(f"the server refused it ({status}): {answer.get('error')}")
    else:

        async def work(store: Any) -> Any:
            return await store.bootstrap_configs.remove(endpoint)

        if _with_store(data, work) is None:
            fail(f"no bootstrap configuration for {endpoint!r}")
    click.echo(f"removed the bootstrap configuration of {endpoint!r}")
