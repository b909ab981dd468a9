"""Raw public keys from the command line (RFC 7250): ``lwm2m server --dtls-rpk-key`` and
``lwm2m client --rpk-key --server-rpk``, a registration between the two processes, and options
that cannot work refused in one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from tests.helpers.certificates import p256
from tests.helpers.cli import lwm2m_popen, start
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls.credentials import load_public_key

PEM = serialization.Encoding.PEM
LWM2M = [sys.executable, "-m", "lwm2m"]


def _write_keys(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """The server's key pair (PEM), the device's (DER), the server's public key (PEM); the
    device's SPKI hex for the store."""
    server, device = p256(), p256()
    server_key = tmp_path / "server.pem"
    server_key.write_bytes(
        server.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    device_key = tmp_path / "device.der"
    device_key.write_bytes(
        device.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    server_public = tmp_path / "server.pub"
    server_public.write_bytes(
        server.public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return server_key, device_key, server_public, spki_der(device.public_key()).hex()


def test_an_rpk_client_process_registers_with_an_rpk_server_process(tmp_path: Path) -> None:
    server_key, device_key, server_public, device_hex = _write_keys(tmp_path)
    coap, coaps, http = free_udp_port(), free_udp_port(), free_tcp_port()
    rpk_key = ["--coaps-port", str(coaps), "--dtls-rpk-key", str(server_key)]
    server = start(coap, http, None, "--store", "memory", *rpk_key)
    client: subprocess.Popen[str] | None = None
    try:
        api = f"http://127.0.0.1:{http}/api"
        put = httpx.put(f"{api}/security/clients/rpk-cli-1", json={"rpk": device_hex}, timeout=5)
        assert put.status_code in (200, 201, 204), put.text
        client = lwm2m_popen(
            "client", "--server", f"coaps://127.0.0.1:{coaps}", "--endpoint", "rpk-cli-1",
            "--rpk-key", str(device_key), "--server-rpk", str(server_public),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        clients: list[str] = []
        while time.monotonic() < deadline:
            answer = httpx.get(f"{api}/clients", timeout=5).json()
            clients = [c["endpoint"] for c in answer["clients"]]
            if clients:
                break
            time.sleep(0.2)
        assert clients == ["rpk-cli-1"], client.poll()
        read = httpx.get(f"{api}/clients/rpk-cli-1/3/0/0", timeout=10)
        assert read.status_code == 200, read.text
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_rpk_options_that_cannot_work_are_one_line(tmp_path: Path) -> None:
    server_key, device_key, server_public, _ = _write_keys(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    device = ["--endpoint", "e", "--rpk-key", str(device_key)]
    cases = [
        (["server", "--http-port", "1", "--dtls-rpk-key", str(server_key)], "--coaps-port"),
        (["server", "--http-port", "1", "--coaps-port", "0", "--dtls-rpk-key", str(junk)], "--dtls-rpk-key"),
        (["server", "--http-port", "1", "--coaps-port", "0", "--dtls-rpk-key", str(tmp_path / "no")], "read"),
        (
            ["client", "--server", "coaps://127.0.0.1:1", "--endpoint", "e", "--rpk-key", str(device_key)],
            "together",
        ),
        (
            ["client", "--server", "coap://127.0.0.1:1", *device, "--server-rpk", str(server_public)],
            "coaps://",
        ),
        (
            [
                "client",
                "--server",
                "coaps://127.0.0.1:1",
                "--endpoint",
                "e",
                "--rpk-key",
                str(junk),
                "--server-rpk",
                str(server_public),
            ],
            "--rpk-key",
        ),
        (
            ["client", "--server", "coaps://127.0.0.1:1", *device, "--server-rpk", str(junk)],
            "--server-rpk",
        ),
        (
            [
                "client",
                "--server",
                "coaps://127.0.0.1:1",
                *device,
                "--server-rpk",
                str(server_public),
                "--psk-identity",
                "e",
                "--psk-key",
                "00",
            ],
            "--rpk-key with --server-rpk",
        ),
    ]
    for args, named in cases:
        done = subprocess.run([*LWM2M, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and named in done.stderr, (args, done.stderr)


def test_bootstrap_config_add_hands_out_a_raw_public_key_and_provisions_the_server(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lwm2m.cli import main
    from lwm2m.storage.sqlite import SqliteStore

    _, device_key, server_public, device_hex = _write_keys(tmp_path)
    data = str(tmp_path / "data")
    server = "coaps://lwm2m.example:5684"
    args = ["bootstrap", "config", "add", "tracker-9", "--server", server, "--data", data]
    rpk = ["--rpk-key", str(device_key), "--server-rpk", str(server_public)]
    added = CliRunner().invoke(main, [*args, *rpk])
    assert added.exit_code == 0, added.output
    assert "rpk" in added.output and "knows 'tracker-9' by that raw public key" in added.output
    with SqliteStore(Path(data) / "lwm2m.db") as db:
        config = asyncio.run(db.bootstrap_configs.get("tracker-9"))
        assert config is not None
        security = config.servers[0].security
        assert security.mode == "rpk" and security.public_key.hex() == device_hex
        # The private key goes out as PKCS#8 DER, the server's public key as its DER SPKI.
        loaded = serialization.load_der_private_key(security.key, password=None)
        assert spki_der(loaded.public_key()).hex() == device_hex  # type: ignore[arg-type]
        assert security.server_public_key == load_public_key(server_public.read_bytes())
        info = asyncio.run(db.security.get("tracker-9"))
        assert info is not None and info.rpk is not None and info.rpk.hex() == device_hex
    both = CliRunner().invoke(main, [*args, "--rpk-key", str(device_key), "--psk-generate"])
    assert both.exit_code != 0 and ("together" in both.output or "not both" in both.output), both.output
