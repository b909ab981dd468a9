"""``lwm2m bootstrap``, ``lwm2m bootstrap config``, ``lwm2m server --bootstrap-port`` and
``lwm2m client --bootstrap`` as a user runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from tests.helpers.cli import interrupt
from tests.helpers.events import next_event
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.cli import main
from lwm2m.client import Client
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.sqlite import SqliteStore


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_config_add_list_remove_in_the_database_with_the_psk_provisioned(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    added = invoke(
        "bootstrap", "config", "add", "sensor-1", "--server", "coaps://lwm2m.example:5684", "--psk-generate",
        "--data", data,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    key_line = next(line for line in added.output.splitlines() if line.startswith("PSK identity"))
    key = key_line.split("key ")[1].split(" ")[0]
    assert len(bytes.fromhex(key)) == 16 and "shown only now" in key_line
    assert "security store now knows 'sensor-1'" in added.output

    plain = invoke("bootstrap", "config", "add", "*", "--server", "coap://127.0.0.1:5683", "--data", data)
    assert plain.exit_code == 0 and "* (default): coap://127.0.0.1:5683" in plain.output

    listed = invoke("bootstrap", "config", "list", "--data", data)
    assert listed.exit_code == 0
    assert (
        "sensor-1: coaps://lwm2m.example:5684 (ssid 101, lifetime 300 s, psk identity 'sensor-1')"
        in listed.output
    )
    assert "[delete /0 /1]" in listed.output and key not in listed.output

    with SqliteStore(Path(data) / "lwm2m.db") as db:
        config = asyncio.run(db.bootstrap_configs.get("sensor-1"))
        assert config is not None and config.servers[0].security.key == bytes.fromhex(key)
        info = asyncio.run(db.security.get("sensor-1"))
        assert info is not None and info.psk_identity == "sensor-1" and info.psk_key == bytes.fromhex(key)

    assert invoke("bootstrap", "config", "remove", "sensor-1", "--data", data).exit_code == 0
    again = invoke("bootstrap", "config", "remove", "sensor-1", "--data", data)
    assert again.exit_code != 0 and "no bootstrap configuration for 'sensor-1'" in again.output
    assert "sensor-1" not in invoke("bootstrap", "config", "list", "--data", data).output


def test_bad_configurations_are_refused_with_one_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for args, words in [
        (["--server", "coaps://h:5684"], "give security mode psk"),
        (["--server", "http://h"], "expected coap:// or coaps://"),
        (["--server", "coap://h", "--psk-key", "0011"], "needs coaps://"),
        (["--server", "coaps://h", "--psk-key", "zz"], "not hexadecimal"),
        (["--server", "coaps://h", "--psk-key", "00", "--psk-generate"], "not both"),
        (["--server", "coap://h", "--delete", "/1/2/3"], "deletePaths"),
        (["--server", "coap://h", "--binding", "X"], "binding"),
    ]:
        done = invoke("bootstrap", "config", "add", "dev", *args, "--data", data)
        assert done.exit_code != 0 and words in done.output, (args, done.output)
    assert "no bootstrap configurations" in invoke("bootstrap", "config", "list", "--data", data).output


async def _line(stream: asyncio.StreamReader, text: str) -> str:
    async with asyncio.timeout(10):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"output ended before {text!r}"
            if text in line:
                return line


async def test_bootstrap_command_and_client_command_set_a_device_up(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    bs_port, http = free_udp_port(), free_tcp_port()
    env = {**os.environ, "NO_COLOR": "1"}
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        add = ("bootstrap", "config", "add", "cli-dev", "--server", server.uri, "--discover", "--data", data)
        added = await asyncio.to_thread(invoke, *add)  # the command runs an event loop of its own
        assert added.exit_code == 0, added.output
        bs = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lwm2m", "bootstrap", "--coap-port", str(bs_port), "--http-port", str(http),
            "--data", data, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        client = None
        try:
            assert bs.stdout is not None
            line = await _line(bs.stdout, "lwm2m bootstrap:")
            assert f"coap://127.0.0.1:{bs_port}" in line and f"http://127.0.0.1:{http}/api/bootstrap" in line
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lwm2m", "client", "--bootstrap", f"coap://127.0.0.1:{bs_port}",
                "--endpoint", "cli-dev",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            assert client.stdout is not None
            registration = (await next_event(events, ClientRegistered, timeout=15)).registration
            assert registration.endpoint == "cli-dev"
            assert "bootstrapping with coap://127.0.0.1" in await _line(client.stdout, "bootstrapping")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=5) as api:
                listing = (await api.get("/api/bootstrap")).json()
            assert [s["status"] for s in listing["sessions"]] == ["finished"]
        finally:
            await interrupt(client, bs)
        assert bs.returncode == 0


def test_server_with_a_bootstrap_port_serves_both_with_one_api() -> None:
    coap, bs_port, http = free_udp_port(), free_udp_port(), free_tcp_port()
    command = [sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap), "--http-port", str(http)]
    proc = subprocess.Popen(
        [*command, "--bootstrap-port", str(bs_port), "--store", "memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert any(f"bootstrap server on coap://127.0.0.1:{bs_port}" in line for line in lines), lines
        config = {"servers": [{"uri": f"coap://127.0.0.1:{coap}", "shortServerId": 3, "lifetime": 60}]}
        base = f"http://127.0.0.1:{http}"
        assert httpx.put(f"{base}/api/bootstrap/both", json=config, timeout=5).status_code == 201
        assert httpx.put(f"{base}/api/bootstrap/bad", json={"servers": []}, timeout=5).status_code == 400

        async def device() -> None:
            async with Client("both", bootstrap=f"coap://127.0.0.1:{bs_port}") as client:
                await client.wait_registered(10)

        asyncio.run(device())
        sessions = httpx.get(f"{base}/api/bootstrap", timeout=5).json()["sessions"]
        assert sessions[0]["endpoint"] == "both" and sessions[0]["status"] == "finished"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_client_needs_a_server_or_a_bootstrap_server() -> None:
    done = invoke("client", "--endpoint", "x")
    assert done.exit_code != 0 and "--bootstrap URI" in done.output
    bad = invoke("client", "--endpoint", "x", "--bootstrap", "http://nowhere")
    assert bad.exit_code != 0 and "--bootstrap http://nowhere" in bad.output


async def test_one_command_sets_a_device_up_over_dtls_psk(tmp_path: Path) -> None:
    """``config add --psk-generate`` gives the LwM2M server's store the key the device will be handed;
    the device bootstraps over DTLS with its own bootstrap PSK and registers over DTLS."""
    data = tmp_path / "data"
    coaps, bs_port, bs_coaps, http = free_udp_port(), free_udp_port(), free_udp_port(), free_tcp_port()
    env = {**os.environ, "NO_COLOR": "1"}
    bootstrap_key = "a1" * 16
    add = (
        "bootstrap", "config", "add", "dtls-dev", "--server", f"coaps://127.0.0.1:{coaps}", "--psk-generate",
        "--data", str(data),
    )  # fmt: skip
    added = await asyncio.to_thread(invoke, *add)  # the commands run event loops of their own
    assert added.exit_code == 0 and "security store now knows 'dtls-dev'" in added.output, added.output
    own = ("security", "add", "dtls-dev", "--psk-identity", "dtls-dev-bs", "--psk-key", bootstrap_key)
    assert (await asyncio.to_thread(invoke, *own, "--data", str(data / "bootstrap"))).exit_code == 0
    with SqliteStore(data / "lwm2m.db") as db:
        async with Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=coaps), db) as server:
            events = server.events()
            bs = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lwm2m", "bootstrap", "--coap-port", str(bs_port),
                "--coaps-port", str(bs_coaps), "--http-port", str(http), "--data", str(data),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
            client = None
            try:
                assert bs.stdout is not None
                await _line(bs.stdout, f"CoAP over DTLS on coaps://127.0.0.1:{bs_coaps}")
                client = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "lwm2m", "client", "--bootstrap", f"coaps://127.0.0.1:{bs_coaps}",
                    "--endpoint", "dtls-dev", "--psk-identity", "dtls-dev-bs", "--psk-key", bootstrap_key,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                )  # fmt: skip
                registration = (await next_event(events, ClientRegistered, timeout=20)).registration
                assert registration.endpoint == "dtls-dev"
                assert (await server.read("dtls-dev", "/1/0/0")).records[0].value == 101
            finally:
                await interrupt(client, bs)
