"""``lwm2m client``: one LwM2M device from the command line, showing what the server asks of it.

Every request the server sends is shown as it is answered (method, path, the
LwM2M operation, response code), and so is each change of the registration
(registering, registered, updated, retrying, asleep in queue mode). SIGINT or
SIGTERM de-registers and stops.

``--server`` may be repeated: ``--server coap://a:5683 --server 7=coap://b:5683``
registers with both (LwM2M-TS-Core 1.2 §6.2), each account a core Security and
Server instance with its Short Server ID (101, 102, ... unless ``SSID=`` gives
one); Access Control (object 2) then decides each server's requests: the first
server owns the device's instances, the others may read, write and execute them.

The objects come from a device profile. ``default`` is built in: the SDK's core
Device (3) with every mandatory resource (Error Code, Current Time, Reboot, ...)
and a Temperature sensor (3303); the client adds the core Security (0) and
Server (1) instances of each server account. The fleet simulator's profiles
(:data:`lwm2m.simulator.profiles.PROFILES`: name -> a callable taking
``endpoint=`` and returning the device's object instances) are offered too;
objects with a ``tick(Tick)`` method are moved every few seconds of real time,
as the simulator moves them.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import click

from lwm2m import __version__
from lwm2m.cli import main
from lwm2m.cli.errors import bind_failure, fail
from lwm2m.client.config import ClientConfig

ObjectsFactory = Callable[..., Iterable[Any]]  # a profile: endpoint= -> the instances of one device

DEFAULT_PROFILE = "default"
OPERATIONS_BY_METHOD = {3: "Write", 4: "Delete", 7: "Write-Composite"}  # PUT, DELETE, iPATCH
TICK_SECONDS = 5.0  # how often simulated values move


def default_objects(endpoint: str = "device") -> list[Any]:
    """The built-in device: the core Device object (LwM2M-TS-Core 1.2 §E.4, with its mandatory
    resources) and one temperature sensor. Security and Server come from the client's accounts."""
    from lwm2m.client import ObjectInstance
    from lwm2m.client.core import Device

    device = Device(
        manufacturer="lwm2m",
        model_number="lwm2m-python",
        serial_number=endpoint,
        firmware_version=__version__,
        binding_modes="U",
    )
    return [device, ObjectInstance(0, {5700: 21.5, 5701: "Cel", 5750: "room"}, object_id=3303)]


def profiles() -> dict[str, ObjectsFactory]:
    """Every profile ``--profile`` accepts, by name."""
    found: dict[str, ObjectsFactory] = {DEFAULT_PROFILE: default_objects}
    try:
        module = importlib.import_module("lwm2m.simulator.profiles")
    except ModuleNotFoundError as exc:
        if exc.name != "lwm2m.simulator.profiles":
            raise  # the module is there but broken: show why
        return found
    offered = getattr(module, "PROFILES", None)
    if isinstance(offered, Mapping):
        for name, factory in offered.items():
            if isinstance(name, str) and callable(factory):
                found.setdefault(name, factory)
    return found


async def move_values(objects: Iterable[Any], every: float = TICK_SECONDS) -> None:
    """Step the simulated objects (those with a ``tick`` method) in real time."""
    parts = [o for o in objects if callable(getattr(o, "tick", None))]
    if not parts:
        return
    from lwm2m.simulator.values import Tick, hour_of_day

    rng = random.Random()
    last = time.time()
    while True:
        await asyncio.sleep(every)
        now = time.time()
        tick = Tick(now, hour_of_day(now, time.localtime().tm_gmtoff), now - last, rng)
        last = now
        for part in parts:
            part.tick(tick)


# --- what is shown --------------------------------------------------------------------------------


def code_text(code: int) -> str:
    """``2.05 Content``: the code and its name."""
    from lwm2m.coap.numbers import code_text as text

    return text(code)


def failure_text(exc: BaseException | None) -> str:
    """Why a registration attempt failed: a refusal with the server's code and diagnostic
    (``registration refused: 4.00 Bad Request "..."``), or what went wrong on the way."""
    from lwm2m.errors import RegistrationFailed

    if isinstance(exc, RegistrationFailed) and exc.code is not None:
        shown = f"registration refused: {code_text(exc.code)}"
        return f'{shown} "{exc.diagnostic}"' if exc.diagnostic else shown
    if exc is None:
        return "not registered"
    return f"not registered: {exc or type(exc).__name__}"


def format_name(number: int) -> str:
    """A content format's name (``senml-cbor``), or its number when it has none here."""
    from lwm2m.codec.formats import format_names

    names = {n: name for name, n in format_names().items()}
    return names.get(number, str(number))


def operation(event: Any, bootstrap: bool = False) -> str:
    """The LwM2M operation a request stands for (LwM2M-TS-Transport 1.2 §6.4, Table 6.4.-1);
    ``bootstrap``: a request of the bootstrap server in a session (LwM2M-TS-Core 1.2 §6.1.7)."""
    msg = event.message
    if bootstrap:
        from lwm2m.protocol.bootstrap import downlink_name

        return downlink_name(msg)
    code, depth = int(msg.code), len(msg.uri_path)
    if code == 1:  # GET
        if msg.accept == 40:
            return "Discover"
        return {0: "Observe", 1: "Cancel Observation"}.get(event.observe, "Read")
    if code == 2:  # POST
        return {1: "Create", 2: "Write (update)", 3: "Execute"}.get(depth, "POST")
    if code == 3 and msg.uri_query and not msg.payload:
        return "Write-Attributes"
    if code == 5:  # FETCH
        return "Observe-Composite" if event.observe == 0 else "Read-Composite"
    return OPERATIONS_BY_METHOD.get(code, "?")


def request_line(event: Any, answer: Any, bootstrap: bool = False) -> str:
    from lwm2m.coap.numbers import Code

    msg = event.message
    try:
        method = Code(msg.code).name
    except ValueError:
        method = f"{msg.code >> 5}.{msg.code & 31:02d}"
    path = "/" + "/".join(msg.uri_path)
    if msg.uri_query:
        path += "?" + "&".join(msg.uri_query)
    details = [operation(event, bootstrap)]
    if msg.accept is not None:
        details.append(f"accept {format_name(msg.accept)}")
    if msg.payload:
        shown = "" if msg.content_format is None else f" {format_name(msg.content_format)}"
        details.append(f"{len(msg.payload)} bytes{shown}")
    code = int(answer.code)
    style = "green" if code >> 5 == 2 else "red"
    line = f"{escape(method)} {escape(path)} ({', '.join(details)}) → [{style}]{code_text(code)}[/{style}]"
    if code >> 5 != 2 and answer.payload:
        line += f" ({escape(answer.payload.decode('utf-8', 'replace'))})"
    return line


def escape(text: str) -> str:
    """``text`` with rich markup made literal."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class ClientDisplay:
    """Lines on stdout: colours on a terminal, plain text in a pipe."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)

    def show(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    client: Any = None  # the Client shown, to tell its bootstrap server's requests apart

    def request(self, event: Any, answer: Any) -> None:
        bootstrap = self.client is not None and self.client.bootstrapper.serving(event.addr)
        self.show(request_line(event, answer, bootstrap))


async def watch_registration(client: Any, display: ClientDisplay) -> None:
    """Show each change of the client's registration state."""
    from lwm2m.client import ClientState

    last: tuple[Any, ...] = (None, None, 0, 0, 0)
    shown: dict[int, tuple[int, int, int]] = {}  # what was shown of each further registration
    while True:
        now = (client.state, client.location, client.registrations, client.updates, client.errors)
        if now != last:
            state, location, registrations, updates, errors = now
            was = last[0]
            if state is ClientState.BOOTSTRAPPING and was is not ClientState.BOOTSTRAPPING:
                display.show(f"bootstrapping with {escape(_bootstrap_server(client))}")
            elif state is ClientState.REGISTERING and was is not ClientState.REGISTERING:
                display.show(f"registering with {client.server_uri.scheme}://{_hostport(client)}")
            elif state is ClientState.REGISTERED and registrations > last[2]:
                mode = ", queue mode" if client.config.queue_mode else ""
                display.show(
                    f"[bold]registered[/bold] at /rd/{escape(str(location))} "
                    f"(lifetime {client.lifetime} s, LwM2M {client.config.lwm2m_version}{mode})"
                )
            elif state is ClientState.REGISTERED and updates > last[3]:
                display.show("registration updated" + (" (awake)" if was is ClientState.SLEEPING else ""))
            elif state is ClientState.RETRYING and (was is not ClientState.RETRYING or errors > last[4]):
                display.show(
                    f"[yellow]{escape(failure_text(client.last_error))}[/yellow] (attempt {errors}); retrying"
                )
            elif state is ClientState.SLEEPING and was is not ClientState.SLEEPING:
                display.show("asleep (queue mode): requests wait until the next update")
            last = now
        for other in client.others:
            seen = (other.registrations, other.updates, other.errors)
            before = shown.get(id(other), (0, 0, 0))
            if seen != before:
                where = f"server {other.short_server_id} ({other.server_uri.scheme}://{other.server_uri.host}:{other.server_uri.port})"
                if seen[0] > before[0]:
                    display.show(
                        f"[bold]registered[/bold] with {escape(where)} at /rd/{escape(str(other.location))}"
                    )
                elif seen[1] > before[1]:
                    display.show(f"registration with {escape(where)} updated")
                elif seen[2] > before[2]:
                    display.show(
                        f"[yellow]not registered[/yellow] with {escape(where)}"
                        f" (attempt {seen[2]} failed); retrying"
                    )
                shown[id(other)] = seen
        await asyncio.sleep(0.05)


def _hostport(client: Any) -> str:
    if client.server_uri is None:  # not bootstrapped yet
        return "(from the bootstrap server)"
    host = client.server_uri.host
    return f"[{host}]:{client.server_uri.port}" if ":" in host else f"{host}:{client.server_uri.port}"


def _bootstrap_server(client: Any) -> str:
    account = client.bootstrapper.account()
    return str(account.get(0, "")) if account is not None else "?"


async def run_client(client: Any, display: ClientDisplay) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await client.start()
    watcher = asyncio.create_task(watch_registration(client, display))
    mover = asyncio.create_task(move_values(client.tree))
    where = (
        f"server {client.server_uri.scheme}://{_hostport(client)}"
        if client.server_uri is not None
        else f"bootstrap server {escape(_bootstrap_server(client))}"
    )
    if client.server_uri is not None and client.server_uri.tcp:
        local = "over a TCP connection"  # its local port is the connection's, made as it registers
    else:
        local = f"on UDP port {client.port}"
    display.show(f"lwm2m client: endpoint {escape(client.endpoint_name)} {local}, {where}")
    display.show("Ctrl-C de-registers and stops it.")
    try:
        await stop.wait()
    finally:
        location = client.location
        if location is not None:
            display.show(f"de-registering from /rd/{escape(location)}")
        for other in client.others:
            if other.location is not None:
                display.show(
                    f"de-registering from server {other.short_server_id} at /rd/{escape(other.location)}"
                )
        mover.cancel()
        await client.stop()
        watcher.cancel()
    display.show("lwm2m client: stopped")


# --- the command ---------------------------------------------------------------------------------


class _Integer(click.ParamType):
    """An integer within bounds; anything else is a one-line error naming the value."""

    name = "integer"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        option = param.opts[0] if param is not None and param.opts else "value"
        try:
            number = value if isinstance(value, int) else int(str(value), 10)
        except ValueError:
            number = self.lo - 1
        if not self.lo <= number <= self.hi:
            fail(f"{option} {value}: expected an integer from {self.lo} to {self.hi}")
        return number


def dtls_credentials(
    server_uri: str,
    scheme: str,
    psk_identity: str | None,
    psk_key: str | None,
    cert: str | None,
    key: str | None,
    ca: str | None,
    rpk_key: str | None = None,
    server_rpk: str | None = None,
) -> dict[str, Any]:
    """``ClientConfig``'s psk=, certificate= or rpk= from the options; coaps:// needs exactly one kind."""
    from lwm2m.transport.dtls.config import PskCredentials, RpkCredentials, X509Credentials

    psk_given = psk_identity is not None or psk_key is not None
    cert_given = cert is not None or key is not None or ca is not None
    rpk_given = rpk_key is not None or server_rpk is not None
    if scheme not in ("coaps", "coaps+tcp"):
        if psk_given or cert_given or rpk_given:
            fail(
                "--psk-identity/--psk-key, --cert/--key/--ca and --rpk-key/--server-rpk go with a"
                " coaps:// server"
            )
        return {}
    if psk_given + cert_given + rpk_given != 1:
        fail(
            f"--server {server_uri}: give --psk-identity with --psk-key, --cert with --key and --ca,"
            " or --rpk-key with --server-rpk"
        )
    if psk_given:
        if psk_identity is None or psk_key is None:
            fail("give --psk-identity and --psk-key together")
        try:
            return {"psk": PskCredentials.from_hex(psk_identity, psk_key)}
        except ValueError as exc:
            fail(f"--psk-key: {exc}")
    if rpk_given:
        if rpk_key is None or server_rpk is None:
            fail("give --rpk-key and --server-rpk together")
        from lwm2m.transport.dtls.credentials import load_private_key, load_public_key

        try:
            rpk = RpkCredentials.from_files(rpk_key, server_rpk)
        except OSError as exc:
            fail(f"cannot read the raw public key files: {exc}")
        try:
            load_private_key(rpk.private_key)
        except ValueError as exc:
            fail(f"--rpk-key {rpk_key}: {exc}")
        try:
            load_public_key(rpk.peer_public_keys[0])
        except ValueError as exc:
            fail(f"--server-rpk {server_rpk}: {exc}")
        return {"rpk": rpk}
    if cert is None or key is None or ca is None:
        fail("give --cert, --key and --ca together")
    try:
        return {"certificate": X509Credentials.from_files(cert, key, ca)}
    except OSError as exc:
        fail(f"cannot read the certificate files: {exc}")


FIRST_SHORT_SERVER_ID = 101  # the Short Server ID of the first --server given without one


def server_accounts(given: Iterable[str]) -> list[tuple[int, str]]:
    """``--server [SSID=]URI`` options as (Short Server ID, URI): those without an ID get 101,
    102, ... in order, skipping the IDs given explicitly. A bad value is a one-line error."""
    from lwm2m.client import ServerUri

    parsed: list[tuple[int | None, str]] = []
    for text in given:
        head, sep, tail = text.partition("=")
        ssid: int | None = None
        uri = text
        if sep and "://" not in head:
            if not head.isdigit() or not 1 <= int(head) <= 65534:
                fail(f"--server {text}: the Short Server ID {head!r} must be an integer from 1 to 65534")
            ssid, uri = int(head), tail
        try:
            ServerUri.parse(uri)
        except ValueError as exc:
            fail(f"--server {text}: {exc}")
        parsed.append((ssid, uri))
    taken = [ssid for ssid, _ in parsed if ssid is not None]
    for ssid in taken:
        if taken.count(ssid) > 1:
            fail(f"--server {ssid}=...: Short Server ID {ssid} is given twice")
    out: list[tuple[int, str]] = []
    next_id = FIRST_SHORT_SERVER_ID
    for ssid, uri in parsed:
        if ssid is None:
            while next_id in taken:
                next_id += 1
            ssid = next_id
            taken.append(ssid)
        out.append((ssid, uri))
    return out


# RFC 8613 protects CoAP end to end over any transport without DTLS or TLS of its own.
_OSCORE_SCHEMES = ("coap", "coap+tcp")


def account_objects(
    servers: list[tuple[int, str]],
    keys: dict[str, Any],
    lifetime: int,
    binding: str = "U",
    oscore: dict[str, bytes | None] | None = None,
) -> list[Any]:
    """A core Security and Server instance per server account, paired by Short Server ID
    (LwM2M-TS-Core 1.2 §E.1, §E.2); coaps:// accounts carry the DTLS credentials ``keys``, the
    first coap:// or coap+tcp:// account the ``oscore`` parameters (an OSCORE instance, /21/0,
    its /0/x/17 linking there, §E.5)."""
    from lwm2m.client.connection import ServerUri, credentials
    from lwm2m.client.core import Oscore, Security, ServerAccount

    objects: list[Any] = []
    for n, (ssid, uri) in enumerate(servers):
        parsed = ServerUri.parse(uri)
        extra: dict[str, Any] = credentials(**keys) if parsed.secure else {}
        if oscore is not None and parsed.scheme in _OSCORE_SCHEMES:  # over plain CoAP, UDP or TCP
            objects.append(Oscore(0, **oscore))  # type: ignore[arg-type]
            extra["oscore"] = 0
            oscore = None
        objects.append(Security(n, uri=uri, short_server_id=ssid, **extra))
        # The default binding follows the URI: T for CoAP over TCP (LwM2M-TS-Core 1.2 §5.2.1.1).
        bound = "T" if parsed.tcp and binding == "U" else binding
        objects.append(ServerAccount(n, short_server_id=ssid, lifetime=lifetime, binding=bound))
    return objects


def oscore_parameters(
    secret: str | None, salt: str, sender: str | None, recipient: str | None, context: str | None
) -> dict[str, bytes | None] | None:
    """The OSCORE parameters of the --oscore-* options (RFC 8613 §3.2), or None without them."""
    if secret is None:
        if sender is not None or recipient is not None or context is not None or salt:
            fail(
                "--oscore-sender-id, --oscore-recipient-id, --oscore-master-salt and --oscore-id-context"
                " go with --oscore-master-secret"
            )
        return None
    if sender is None or recipient is None:
        fail("--oscore-master-secret needs --oscore-sender-id and --oscore-recipient-id")
    out: dict[str, bytes | None] = {}
    for name, value in (
        ("master-secret", secret),
        ("master-salt", salt),
        ("sender-id", sender),
        ("recipient-id", recipient),
        ("id-context", context),
    ):
        if value is None:
            out[name.replace("-", "_")] = None
            continue
        try:
            out[name.replace("-", "_")] = bytes.fromhex(value)
        except ValueError:
            shown = "" if name == "master-secret" else f" {value!r}"
            fail(f"--oscore-{name}{shown}: expected hexadecimal digits")
    try:
        from lwm2m.coap.oscore import OscoreConfig
    except ImportError:
        fail("--oscore-master-secret: OSCORE needs the cryptography package (pip install lwm2m[oscore])")
    try:
        OscoreConfig(
            out["master_secret"] or b"",
            sender_id=out["sender_id"] or b"",
            recipient_id=out["recipient_id"] or b"",
            master_salt=out["master_salt"] or b"",
            id_context=out["id_context"],
        )
    except ValueError as exc:
        fail(f"--oscore-*: {exc}")
    out["master_salt"] = out["master_salt"] or b""
    return out


def default_acl(objects: Iterable[Any], owner: int) -> list[Any]:
    """With several servers, Access Control decides (LwM2M-TS-Core 1.2 §7.3): an ACL instance for
    each instance of the device, owned by the first server, the others allowed to read, write and
    execute (the default, ACL resource instance 0). Server instances are each server's own."""
    from lwm2m.client.core import AccessControl, AccessRight

    everyone = AccessRight.READ | AccessRight.WRITE | AccessRight.EXECUTE
    targets = sorted(
        (inst.definition.id, inst.id) for inst in objects if inst.definition.id not in (0, 1, 2, 21)
    )
    return [
        AccessControl(n, target_object=oid, target_instance=iid, acl={0: everyone}, owner=owner)
        for n, (oid, iid) in enumerate(targets)
    ]


@main.command()
@click.option(
    "--server",
    "server_uris",
    multiple=True,
    help="an LwM2M server, [SSID=]coap[s]://HOST[:PORT]; repeat it to register with several"
    " (Short Server IDs 101, 102, ... unless given)",
)
@click.option(
    "--bootstrap", "bootstrap_uri", default=None, help="the bootstrap server, coap://HOST[:PORT] (port 5685)"
)
@click.option("--endpoint", required=True, help="the client's endpoint name")
@click.option("--profile", default=DEFAULT_PROFILE, show_default=True, help="the device's objects")
@click.option("--lifetime", default=300, show_default=True, type=_Integer(1, 0xFFFFFFFF), help="seconds")
@click.option("--lwm2m-version", default="1.2", show_default=True, help="1.0, 1.1 or 1.2")
@click.option("--queue-mode", is_flag=True, help="sleep between exchanges (LwM2M queue mode)")
@click.option("--port", default=0, show_default=True, type=_Integer(0, 65535), help="local UDP port (0: any)")
@click.option("--psk-identity", default=None, help="coaps://: the PSK identity")
@click.option("--psk-key", default=None, envvar="LWM2M_PSK_KEY", help="coaps://: the PSK, in hex")
@click.option("--cert", default=None, help="coaps://: the client's certificate (PEM)")
@click.option("--key", "cert_key", default=None, help="coaps://: the private key of --cert (PEM)")
@click.option("--ca", default=None, help="coaps://: authorities (PEM) the server's certificate must chain to")
@click.option(
    "--rpk-key", default=None, help="coaps://: the client's EC P-256 key pair (PEM or DER), RFC 7250"
)
@click.option(
    "--server-rpk", default=None, help="coaps://: the server's public key (PEM or DER) with --rpk-key"
)
@click.option(
    "--oscore-master-secret",
    default=None,
    envvar="LWM2M_OSCORE_SECRET",
    help="coap://, coap+tcp://: OSCORE (RFC 8613) with the first such server: the Master Secret, in hex",
)
@click.option("--oscore-master-salt", default="", help="OSCORE account: the OSCORE Master Salt, in hex")
@click.option("--oscore-sender-id", default=None, help="OSCORE account: this device's Sender ID, in hex")
@click.option(
    "--oscore-recipient-id", default=None, help="OSCORE account: this device's Recipient ID, in hex"
)
@click.option("--oscore-id-context", default=None, help="OSCORE account: the OSCORE ID Context, in hex")
@click.option(
    "--oscore-sequence-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="OSCORE account: keep the OSCORE sequence numbers in this file across restarts (RFC 8613 B.1.1)",
)
def client(
    server_uris: tuple[str, ...],
    bootstrap_uri: str | None,
    endpoint: str,
    profile: str,
    lifetime: int,
    lwm2m_version: str,
    queue_mode: bool,
    port: int,
    psk_identity: str | None,
    psk_key: str | None,
    cert: str | None,
    cert_key: str | None,
    ca: str | None,
    rpk_key: str | None,
    server_rpk: str | None,
    oscore_master_secret: str | None,
    oscore_master_salt: str,
    oscore_sender_id: str | None,
    oscore_recipient_id: str | None,
    oscore_id_context: str | None,
    oscore_sequence_file: str | None,
) -> None:
    """Run one LwM2M device and show what the server asks of it."""
    from lwm2m.client import Client, ServerUri
    from lwm2m.protocol.registration import SUPPORTED_VERSIONS
    from lwm2m.transport.eventloop import run

    known = profiles()
    if not server_uris and bootstrap_uri is None:
        fail("give --server URI, or --bootstrap URI to be given a server by a bootstrap server")
    servers = server_accounts(server_uris)
    if bootstrap_uri is not None:
        try:
            ServerUri.parse(bootstrap_uri)
        except ValueError as exc:
            fail(f"--bootstrap {bootstrap_uri}: {exc}")
    if servers and bootstrap_uri is not None and ServerUri.parse(bootstrap_uri).secure:
        fail(f"--bootstrap {bootstrap_uri}: with --server, the bootstrap server is a coap:// one")
    option, given = ("--server", servers[0][1]) if servers else ("--bootstrap", bootstrap_uri or "")
    uri = ServerUri.parse(given)
    secure = [u for _, u in servers if ServerUri.parse(u).secure]
    if servers:
        # The DTLS options go with the coaps:// servers (all of them share these credentials).
        keyed = secure[0] if secure else servers[0][1]
        credentials = dtls_credentials(
            keyed,
            ServerUri.parse(secure[0]).scheme if secure else "coap",
            psk_identity,
            psk_key,
            cert,
            cert_key,
            ca,
            rpk_key,
            server_rpk,
        )
    else:
        credentials = dtls_credentials(
            given, uri.scheme, psk_identity, psk_key, cert, cert_key, ca, rpk_key, server_rpk
        )
    oscore = oscore_parameters(
        oscore_master_secret, oscore_master_salt, oscore_sender_id, oscore_recipient_id, oscore_id_context
    )
    if oscore is not None and not any(ServerUri.parse(u).scheme in _OSCORE_SCHEMES for _, u in servers):
        fail("--oscore-master-secret: OSCORE goes with a coap+tcp:// or coap:// --server")
    if not endpoint.strip():
        fail("--endpoint: the endpoint name is empty")
    if profile not in known:
        fail(f"--profile {profile}: no such profile; known: {', '.join(known)}")
    if lwm2m_version not in SUPPORTED_VERSIONS:
        fail(f"--lwm2m-version {lwm2m_version}: expected one of {', '.join(SUPPORTED_VERSIONS)}")
    try:
        objects = list(known[profile](endpoint=endpoint))
    except Exception as exc:  # a profile that cannot build its device: name it
        fail(f"--profile {profile}: {exc}")
    if servers:
        keys = {k: credentials.get(k) for k in ("psk", "certificate", "rpk")}
        acl = default_acl(objects, servers[0][0]) if len(servers) > 1 else []
        objects = [*account_objects(servers, keys, lifetime, oscore=oscore), *objects, *acl]
        credentials = {}  # they are in the accounts now

    display = ClientDisplay()
    try:
        device = Client(
            endpoint,
            None,
            objects,
            on_request=display.request,
            bootstrap=bootstrap_uri,
            config=ClientConfig(
                lifetime=lifetime,
                queue_mode=queue_mode,
                lwm2m_version=lwm2m_version,
                local_port=port,
                oscore_sequence_file=oscore_sequence_file,
                **credentials,
            ),
        )
    except ValueError as exc:  # e.g. a coaps:// bootstrap server this client cannot reach yet
        fail(str(exc))
    display.client = device
    try:
        run(run_client(device, display))
    except socket.gaierror as exc:
        fail(f"{option} {given}: cannot resolve {uri.host}: {exc.strerror or exc}")
    except OSError as exc:
        fail(bind_failure(exc, {"--port": port}) or f"--port {port}: {exc.strerror or exc}")
