"""``lwm2m security add|list|remove`` on the database and through a running server's API, and
``lwm2m server --coaps-port`` taking a DTLS registration with the key given that way."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.server import register

from lwm2m.cli import main
from lwm2m.coap.numbers import Code
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials, open_dtls_endpoint

KEY_HEX = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def lwm2m(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_add_list_remove_on_the_database(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    psk = ["--psk-identity", "dev-1-id", "--psk-key", KEY_HEX]
    added = lwm2m("security", "add", "dev-1", *psk, "--data", data)
    assert added.exit_code == 0, added.output
    assert "dev-1: PSK identity 'dev-1-id', key a1… (16 bytes)" in added.output
    assert KEY_HEX[2:] not in added.output
    assert lwm2m("security", "add", "cam-1", "--x509", "--data", data).exit_code == 0
    listed = lwm2m("security", "list", "--data", data)
    assert listed.output.splitlines() == [
        "cam-1: X.509 (certificate CN=cam-1)",
        "dev-1: PSK identity 'dev-1-id', key a1… (16 bytes)",
    ]
    # The identity belongs to dev-1: another endpoint cannot take it.
    taken = lwm2m("security", "add", "dev-2", "--psk-identity", "dev-1-id", "--psk-key", "00", "--data", data)
    assert taken.exit_code == 2 and "in use" in taken.output
    assert lwm2m("security", "remove", "dev-1", "--data", data).output == "removed dev-1\n"
    gone = lwm2m("security", "remove", "dev-1", "--data", data)
    assert gone.exit_code == 2 and "no security information" in gone.output


def test_raw_public_keys_from_pem_and_der_files(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = str(tmp_path / "data")
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem_file, der_file = tmp_path / "tracker.pub.pem", tmp_path / "tracker.pub.der"
    pem_file.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    der_file.write_bytes(der)
    added = lwm2m("security", "add", "tracker-1", "--rpk-public-key", str(pem_file), "--data", data)
    assert added.exit_code == 0, added.output
    assert re.fullmatch(r"set tracker-1: raw public key \(SHA-256 [0-9a-f]{16}…\)\n", added.output)
    taken = lwm2m("security", "add", "tracker-2", "--rpk-public-key", str(der_file), "--data", data)
    assert taken.exit_code == 2 and "in use" in taken.output  # the same key, from DER
    with SqliteStore(Path(data) / "lwm2m.db") as store:
        info = asyncio.run(store.security.get("tracker-1"))
    assert info is not None and info.rpk == der
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    for args in (
        ["--rpk-public-key", str(bad)],
        ["--rpk-public-key", str(tmp_path / "missing.pem")],
        ["--rpk-public-key", str(der_file), "--x509"],
        ["--rpk-public-key", str(der_file), "--psk-identity", "x", "--psk-key", "0011"],
    ):
        result = lwm2m("security", "add", "tracker-3", *args, "--data", data)
        assert result.exit_code == 2 and result.output.count("\n") == 1, (args, result.output)


def test_generated_keys_are_printed_once_and_stored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = lwm2m("security", "add", "dev-1", "--psk-identity", "dev-1-id", "--generate", "--data", str(data))
    assert added.exit_code == 0, added.output
    (key,) = re.findall(r"generated key .*: ([0-9a-f]{32})$", added.output, re.MULTILINE)
    with SqliteStore(data / "lwm2m.db") as store:
        info = asyncio.run(store.security.get("dev-1"))
    assert info is not None and info.psk_key == bytes.fromhex(key)
    assert key not in lwm2m("security", "list", "--data", str(data)).output


def test_bad_input_exits_with_one_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for args in (
        ["--psk-identity", "x", "--psk-key", "nothex"],
        ["--psk-identity", "x", "--psk-key", "00" * 65],
        ["--psk-identity", "x"],
        ["--psk-key", "0011"],
        ["--x509", "--psk-identity", "x", "--psk-key", "0011"],
    ):
        result = lwm2m("security", "add", "dev-1", *args, "--data", data)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("\n") == 1 and "nothex" not in result.output


def test_server_with_coaps_port_takes_keys_from_the_api(tmp_path: Path) -> None:
    coap, coaps, http = free_udp_port(), free_udp_port(), free_tcp_port()
    command = [sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap), "--http-port", str(http)]
    command += ["--coaps-port", str(coaps), "--data", str(tmp_path / "data")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        assert f"coaps://127.0.0.1:{coaps}" in proc.stdout.readline()
        api = f"http://127.0.0.1:{http}"
        psk = ["--psk-identity", "dev-1-id", "--psk-key", KEY_HEX]
        added = lwm2m("security", "add", "dev-1", *psk, "--api", api)
        assert added.exit_code == 0, added.output
        assert "dev-1-id" in lwm2m("security", "list", "--api", api).output

        async def registers() -> int:
            config = DtlsClientConfig(psk=PskCredentials.from_hex("dev-1-id", KEY_HEX))
            async with open_dtls_endpoint(client=config) as device:
                answer = await device.request(register("dev-1"), ("127.0.0.1", coaps), timeout=5)
                return answer.code

        assert asyncio.run(registers()) == Code.CREATED
        assert lwm2m("security", "remove", "dev-1", "--api", api).exit_code == 0
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert KEY_HEX[2:] not in out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_oscore_entries_on_the_database(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    oscore = ["--oscore-master-secret", KEY_HEX, "--oscore-sender-id", "01", "--oscore-recipient-id", ""]
    added = lwm2m("security", "add", "valve-9", *oscore, "--oscore-master-salt", "9e7c", "--data", data)
    assert added.exit_code == 0, added.output
    assert added.output == "set valve-9: OSCORE, device sender ID 01, recipient ID ''\n"
    assert KEY_HEX[2:] not in lwm2m("security", "list", "--data", data).output
    store = SqliteStore(Path(data) / "lwm2m.db")
    try:
        entry = asyncio.run(store.security.get("valve-9"))
        assert entry is not None and entry.oscore is not None and entry.oscore.master_salt == b"\x9e\x7c"
        # A server's stored sequence limit stays when the same parameters are set again.
        asyncio.run(
            store.security.put(
                type(entry)("valve-9", oscore=dataclasses.replace(entry.oscore, sequence=4096))
            )
        )
    finally:
        store.close()
    again = lwm2m("security", "add", "valve-9", *oscore, "--oscore-master-salt", "9e7c", "--data", data)
    assert again.exit_code == 0, again.output
    store = SqliteStore(Path(data) / "lwm2m.db")
    try:
        assert asyncio.run(store.security.get("valve-9")).oscore.sequence == 4096  # type: ignore[union-attr]
    finally:
        store.close()
    for args, named in (
        (
            ["--oscore-master-secret", "zz", "--oscore-sender-id", "01", "--oscore-recipient-id", "02"],
            "--oscore-master-secret:",
        ),
        (
            ["--oscore-master-secret", KEY_HEX, "--oscore-sender-id", "0x1", "--oscore-recipient-id", "02"],
            "--oscore-sender-id '0x1'",
        ),
        (["--oscore-master-secret", KEY_HEX, "--oscore-sender-id", "01"], "--oscore-recipient-id"),
        ([*oscore[:2], "--oscore-sender-id", "01", "--oscore-recipient-id", "01"], "differ"),
        ([*oscore, "--x509"], "not several"),
    ):
        result = lwm2m("security", "add", "valve-9", *args, "--data", data)
        assert result.exit_code == 2 and named in result.output, (args, result.output)
        assert result.output.count("\n") == 1 and KEY_HEX not in result.output
