"""``lwm2m bootstrap`` with the DTLS credentials ``lwm2m server`` has: ``--dtls-cert/--dtls-key/
--dtls-ca`` for X.509 clients and ``--dtls-rpk-key`` for raw public key clients (RFC 7250). A
file that cannot serve is one line naming it, before anything is opened; a device with an X.509
certificate bootstraps from the process over DTLS and registers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from tests.helpers.certificates import CertificateAuthority, p256
from tests.helpers.cli import interrupt, line_with, lwm2m_process
from tests.helpers.events import next_event
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.cli import main
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.sqlite import SqliteStore

pytest.importorskip("cryptography")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _write_pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, the bootstrap server's certificate and key, a device's, a second key pair, junk."""
    ca = CertificateAuthority("Bootstrap test CA")
    server, device = ca.issue("lwm2m-bootstrap", usage="server"), ca.issue("x509-dev", usage="client")
    other = p256().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files = {
        "ca": ca.certificate.public_bytes(serialization.Encoding.PEM),
        "cert": server.cert_pem(),
        "key": server.key_pem(),
        "device-cert": device.cert_pem(),
        "device-key": device.key_pem(),
        "other-key": other,
        "junk": b"not a certificate nor a key",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths


def test_bad_dtls_credentials_are_one_line_naming_the_file(tmp_path: Path) -> None:
    p = {name: str(path) for name, path in _write_pki(tmp_path).items()}
    missing = str(tmp_path / "missing.pem")
    base = ["bootstrap", "--http-port", "1", "--data", str(tmp_path / "data")]
    dtls = ["--coaps-port", "0"]

    def x509(cert: str = p["cert"], key: str = p["key"], ca: str = p["ca"]) -> list[str]:
        return ["--coaps-port", "0", "--dtls-cert", cert, "--dtls-key", key, "--dtls-ca", ca]

    cases = [
        (x509()[2:], "--coaps-port"),
        (["--dtls-rpk-key", p["key"]], "--coaps-port"),
        ([*dtls, "--dtls-cert", p["cert"]], "together"),
        (x509(cert=missing), f"--dtls-cert {missing}"),
        (x509(cert=p["junk"]), f"--dtls-cert {p['junk']}"),
        (x509(key=p["junk"]), f"--dtls-key {p['junk']}"),
        (x509(ca=p["junk"]), f"--dtls-ca {p['junk']}"),
        ([*dtls, "--dtls-rpk-key", p["junk"]], f"--dtls-rpk-key {p['junk']}"),
        ([*dtls, "--dtls-rpk-key", missing], "--dtls-rpk-key"),
        ([*x509(), "--dtls-rpk-key", p["other-key"]], f"--dtls-rpk-key {p['other-key']}"),
    ]
    for args, words in cases:
        done = invoke(*base, *args)
        lines = done.output.strip().splitlines()
        assert done.exit_code == 2 and len(lines) == 1 and words in lines[0], (args, done.output)
    assert not (tmp_path / "data").exists()  # refused before the data folder was opened


async def test_an_x509_device_bootstraps_from_the_process_and_registers(tmp_path: Path) -> None:
    """The bootstrap process serves its certificate (and the same key as a raw public key); the
    device proves its certificate, whose CN is its endpoint name, and is given the server."""
    p = _write_pki(tmp_path)
    data = tmp_path / "data"
    coap, bs_port, bs_coaps, http = free_udp_port(), free_udp_port(), free_udp_port(), free_tcp_port()
    env = {"NO_COLOR": "1"}
    add = (
        "bootstrap",
        "config",
        "add",
        "x509-dev",
        "--server",
        f"coap://127.0.0.1:{coap}",
        "--data",
        str(data),
    )
    added = await asyncio.to_thread(invoke, *add)  # the command runs an event loop of its own
    assert added.exit_code == 0, added.output
    with SqliteStore(data / "lwm2m.db") as db:
        async with Server(ServerConfig(host="127.0.0.1", port=coap), db) as server:
            events = server.events()
            bs = await lwm2m_process(
                "bootstrap", "--coap-port", str(bs_port), "--coaps-port", str(bs_coaps),
                "--http-port", str(http), "--data", str(data),
                "--dtls-cert", str(p["cert"]), "--dtls-key", str(p["key"]), "--dtls-ca", str(p["ca"]),
                "--dtls-rpk-key", str(p["key"]), env=env,
            )  # fmt: skip
            client = None
            try:
                assert bs.stdout is not None
                await line_with(bs.stdout, f"CoAP over DTLS on coaps://127.0.0.1:{bs_coaps}", [])
                client = await lwm2m_process(
                    "client", "--bootstrap", f"coaps://127.0.0.1:{bs_coaps}", "--endpoint", "x509-dev",
                    "--cert", str(p["device-cert"]), "--key", str(p["device-key"]), "--ca", str(p["ca"]),
                    env=env,
                )  # fmt: skip
                registration = (await next_event(events, ClientRegistered, timeout=20)).registration
                assert registration.endpoint == "x509-dev"
            finally:
                await interrupt(client, bs)
