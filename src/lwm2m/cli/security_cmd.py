"""``lwm2m security``: the endpoints' DTLS credentials, as the server checks them (LwM2M-TS-Core 1.2 §7.1).

::

    lwm2m security add sensor-1 --psk-identity sensor-1 --psk-key 000102030405060708090a0b0c0d0e0f
    lwm2m security add sensor-2 --psk-identity sensor-2 --generate   # prints the new key, once
    lwm2m security add tracker-3 --rpk-public-key tracker-3.pub.pem   # a raw public key (PEM or DER)
    lwm2m security add camera-1 --x509          # a certificate with CN=camera-1, from a trusted CA
    lwm2m security add meter-7 --nosec          # plain CoAP, under lwm2m server --nosec-endpoints deny
    lwm2m security add valve-9 --oscore-master-secret 0102030405060708090a0b0c0d0e0f10 \
        --oscore-sender-id 01 --oscore-recipient-id 02   # OSCORE (RFC 8613), the IDs as the device has them
    lwm2m security list
    lwm2m security remove sensor-1

By default the entries go into the server's database (``--data``, the same
folder as ``lwm2m server``; a running server picks them up from the next
handshake). ``--api URL`` goes through a running server's REST API instead,
which also ends the DTLS sessions made with a changed or removed entry.
A key given is never printed back, and ``list`` shows only a hint of it (of an OSCORE entry,
its IDs alone).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.cli.remote import api_call, store_options
from lwm2m.transport.http import url_path

GENERATED_KEY_BYTES = 16


def _with_store(data: str, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    from lwm2m.cli.server_cmd import open_data

    try:
        store = open_data(data, None)
    except Exception as exc:
        fail(f"--data {data}: {exc}")
    try:
        return asyncio.run(work(store.security))
    finally:
        store.close()


def _dashed(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name)


def _describe(entry: dict[str, Any]) -> str:
    if entry.get("mode") == "rpk":
        fingerprint = hashlib.sha256(bytes.fromhex(entry["rpk"])).hexdigest()[:16]
        return f"{entry['endpoint']}: raw public key (SHA-256 {fingerprint}…)"
    if entry.get("x509"):
        return f"{entry['endpoint']}: X.509 (certificate CN={entry['endpoint']})"
    if entry.get("mode") == "nosec":
        return f"{entry['endpoint']}: NoSec (plain CoAP, no authentication)"
    if entry.get("mode") == "oscore":
        ids = entry["oscore"]
        context = f", ID context {ids['idContext']}" if "idContext" in ids else ""
        empty = "''"
        return (
            f"{entry['endpoint']}: OSCORE, device sender ID {ids['senderId'] or empty},"
            f" recipient ID {ids['recipientId'] or empty}{context}"
        )
    return f"{entry['endpoint']}: PSK identity {entry['pskIdentity']!r}, key {entry['pskKeyHint']}"


_options = store_options(".lwm2m-data", "folder of the server's database", "http://127.0.0.1:8080")


@main.group()
def security() -> None:
    """Credentials of endpoints: a PSK (identity and key), a raw public key, an X.509 certificate, or
    NoSec."""


@security.command("add")
@click.argument("endpoint")
@click.option("--psk-identity", default=None, help="the PSK identity the device presents")
@click.option("--psk-key", default=None, envvar="LWM2M_PSK_KEY", help="the key, as hexadecimal digits")
@click.option("--generate", is_flag=True, help=f"make a random {GENERATED_KEY_BYTES}-byte key and print it")
@click.option(
    "--rpk-public-key",
    "rpk_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="a raw public key (RFC 7250): the device's public key, a PEM or DER file",
)
@click.option(
    "--x509", is_flag=True, help="a certificate with CN=ENDPOINT, from an authority the server trusts"
)
@click.option(
    "--nosec",
    is_flag=True,
    help="plain CoAP without authentication: what lwm2m server --nosec-endpoints deny takes",
)
@click.option(
    "--oscore-master-secret",
    default=None,
    envvar="LWM2M_OSCORE_SECRET",
    help="OSCORE (RFC 8613) instead of DTLS: the Master Secret, as hexadecimal digits",
)
@click.option("--oscore-master-salt", default="", help="the OSCORE Master Salt (hex; default: none)")
@click.option("--oscore-sender-id", default=None, help="the device's OSCORE Sender ID (hex; '' for empty)")
@click.option("--oscore-recipient-id", default=None, help="the device's OSCORE Recipient ID (hex)")
@click.option("--oscore-id-context", default=None, help="the OSCORE ID Context (hex), if any")
@_options
def add(
    endpoint: str,
    psk_identity: str | None,
    psk_key: str | None,
    generate: bool,
    rpk_file: str | None,
    x509: bool,
    nosec: bool,
    oscore_master_secret: str | None,
    oscore_master_salt: str,
    oscore_sender_id: str | None,
    oscore_recipient_id: str | None,
    oscore_id_context: str | None,
    data: str,
    api: str | None,
    api_token: str | None,
) -> None:
    """Set ENDPOINT's credentials (replacing any it had)."""
    from lwm2m.errors import ConfigError, IdentityInUse
    from lwm2m.protocol.keys import public_key_der
    from lwm2m.storage.base import SecurityInfo
    from lwm2m.transport.dtls.config import MAX_PSK_LENGTH

    chosen = [
        flag
        for flag, given in (
            ("--rpk-public-key", rpk_file),
            ("--x509", x509),
            ("--nosec", nosec),
            ("--oscore-master-secret", oscore_master_secret),
        )
        if given
    ]
    if len(chosen) > 1:
        fail(f"give one of {', '.join(chosen)}, not several")
    if oscore_master_secret is not None:
        if psk_identity or psk_key or generate:
            fail(
                "give --oscore-master-secret or a PSK (--psk-identity with --psk-key or --generate), not both"
            )
        if oscore_sender_id is None or oscore_recipient_id is None:
            fail("--oscore-master-secret needs --oscore-sender-id and --oscore-recipient-id")
        oscore = {
            "masterSecret": oscore_master_secret,
            "masterSalt": oscore_master_salt,
            "senderId": oscore_sender_id,
            "recipientId": oscore_recipient_id,
        }
        if oscore_id_context is not None:
            oscore["idContext"] = oscore_id_context
        for name, value in oscore.items():
            try:
                bytes.fromhex(value)
            except ValueError:
                option = {"masterSecret": "master-secret", "masterSalt": "master-salt"}.get(name, name)
                what = "" if name == "masterSecret" else f" {value!r}"
                fail(f"--oscore-{_dashed(option)}{what}: expected hexadecimal digits")
        body: dict[str, Any] = {"oscore": oscore}
    elif rpk_file is not None:
        if psk_identity or psk_key or generate:
            fail("give --rpk-public-key or a PSK (--psk-identity with --psk-key or --generate), not both")
        try:
            with open(rpk_file, "rb") as f:
                der = public_key_der(f.read())
        except OSError as exc:
            fail(f"--rpk-public-key {rpk_file}: {exc.strerror or exc}")
        except ConfigError as exc:
            fail(f"--rpk-public-key {rpk_file}: {exc}")
        body = {"rpk": der.hex()}
    elif nosec:
        if psk_identity or psk_key or generate:
            fail("give --nosec or a PSK (--psk-identity with --psk-key or --generate), not both")
        body = {"mode": "nosec"}
    elif x509:
        if psk_identity or psk_key or generate:
            fail("give --x509 or a PSK (--psk-identity with --psk-key or --generate), not both")
        body = {"x509": True}
    else:
        if not psk_identity:
            fail("give --psk-identity with --psk-key or --generate, --rpk-public-key, --x509 or --nosec")
        if generate == (psk_key is not None):
            fail("give either --psk-key or --generate")
        if generate:
            psk_key = secrets.token_hex(GENERATED_KEY_BYTES)
        assert psk_key is not None
        try:
            key = bytes.fromhex(psk_key)
        except ValueError:
            fail("--psk-key: expected hexadecimal digits")
        if not 1 <= len(key) <= MAX_PSK_LENGTH:
            fail(f"--psk-key: a key has 1 to {MAX_PSK_LENGTH} bytes, not {len(key)}")
        body = {"pskIdentity": psk_identity, "pskKey": psk_key}
    if api is not None:
        where = url_path("api", "security", "clients", endpoint)
        status, answer = api_call(api, api_token, "PUT", where, body)
        if status >= 300:
            fail(f"the server refused: {answer.get('error', status)}")
        shown = answer
    else:
        try:
            info = SecurityInfo.from_dict({"endpoint": endpoint, **body})
        except ValueError as exc:
            fail(str(exc))

        async def put(store: Any) -> None:
            # The store keeps the server's stored OSCORE sequence limit of the same context (RFC
            # 8613 B.1.1) in the same step as the write.
            await store.put(info)

        try:
            _with_store(data, put)
        except IdentityInUse as exc:
            fail(str(exc))
        shown = info.to_dict()
    click.echo(f"set {_describe(shown)}")
    if generate:
        # The one time the key is shown: the device needs it.
        click.echo(f"generated key (give it to the device; it is not shown again): {psk_key}")


@security.command("list")
@_options
def list_(data: str, api: str | None, api_token: str | None) -> None:
    """Every endpoint's credentials (keys are never shown, only a hint)."""
    if api is not None:
        status, answer = api_call(api, api_token, "GET", "/api/security/clients")
        if status >= 300:
            fail(f"the server refused: {answer.get('error', status)}")
        entries = answer
    else:

        async def all_entries(store: Any) -> list[dict[str, Any]]:
            return [info.to_dict() for info in await store.all()]

        entries = _with_store(data, all_entries)
    if not entries:
        click.echo("no security information")
    for entry in entries:
        click.echo(_describe(entry))


@security.command("remove")
@click.argument("endpoint")
@_options
def remove(endpoint: str, data: str, api: str | None, api_token: str | None) -> None:
    """Remove ENDPOINT's credentials: it can no longer register over DTLS (nor, if it was NoSec, over
    plain CoAP on a server run with --nosec-endpoints deny)."""
    if api is not None:
        status, answer = api_call(api, api_token, "DELETE", url_path("api", "security", "clients", endpoint))
        if status == 404:
            fail(f"no security information for {endpoint!r}")
        if status >= 300:
            fail(f"the server refused: {answer.get('error', status)}")
    else:

        async def drop(store: Any) -> Any:
            return await store.remove(endpoint)

        if _with_store(data, drop) is None:
            fail(f"no security information for {endpoint!r}")
    click.echo(f"removed {endpoint}")
