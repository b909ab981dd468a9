"""``lwm2m simulate`` as a user runs it: a subprocess fleet against our server in the test's process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.helpers.cli import line_with, lwm2m_process
from tests.helpers.simulator import served

from lwm2m.bootstrap import BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.cli import main
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.web.app import create_app


async def test_simulate_registers_the_fleet_reports_and_deregisters_on_sigint() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        proc = await lwm2m_process(
            "simulate",
            "--server",
            server.uri,
            "--count",
            "20",
            "--profile",
            "ucifi-streetlight",
            "--prefix",
            "lamp",
            "--rate",
            "200",
            "--seed",
            "1",
            "--local-host",
            "127.0.0.1",
            "--report-every",
            "0.3",
            env={"NO_COLOR": "1"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            await line_with(proc.stdout, "lwm2m simulate: 20 devices (ucifi-streetlight)", seen, timeout=15)
            await line_with(proc.stdout, "registered 20/20 in", seen, timeout=15)
            names = sorted(r.endpoint for r in await server.registrations())
            assert names == [f"lamp-{i:05d}" for i in range(20)]

            answer = await server.read("lamp-00007", "/3418/0/4", timeout=5)
            assert answer.code == Code.CONTENT
            line = await line_with(proc.stdout, "requests served 1 ", seen, timeout=15)
            assert line.startswith("registered 20/20, ") and "errors 0" in line, line

            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(15):
                rest, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            out = "".join(seen) + rest.decode()
            assert "de-registering 20 devices" in out and "stopped 20 devices" in out, out
            assert await server.registrations() == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_simulate_stops_by_itself_after_its_duration() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        proc = await lwm2m_process(
            "simulate",
            "--server",
            server.uri,
            "--count",
            "5",
            "--profile",
            "ipso-weather",
            "--duration",
            "0.5",
        )
        try:
            async with asyncio.timeout(15):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "registered 5/5" in out.decode() and "stopped 5 devices" in out.decode(), out.decode()
            assert await server.registrations() == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_simulate_on_a_shared_network_puts_each_device_at_an_address_of_its_own() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        proc = await lwm2m_process(
            "simulate", "--server", server.uri, "--count", "4", "--shared-network", "127.81.0.0/16",
            "--duration", "3",
        )  # fmt: skip
        try:
            async with asyncio.timeout(15):
                while len(registrations := await server.registrations()) < 4:
                    await asyncio.sleep(0.05)
                addresses = sorted(r.address for r in registrations)
                assert [a[0] for a in addresses] == [f"127.81.0.{i}" for i in range(1, 5)]
                assert len({a[1] for a in addresses}) == 1  # one socket, one port
                out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "stopped 4 devices" in out.decode(), out.decode()
            assert await server.registrations() == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _simulate(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await lwm2m_process(
        "simulate",
        "--local-host",
        "127.0.0.1",
        "--rate",
        "500",
        *args,
        env={"NO_COLOR": "1", **(env or {})},
    )


async def _interrupt(proc: asyncio.subprocess.Process, seen: list[str]) -> str:
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(15):
        rest, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return "".join(seen) + rest.decode()


async def test_simulate_over_dtls_gives_the_server_a_key_per_device_through_its_api() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server,
        served(create_app(server, api_token="sim-token")) as base,
    ):
        assert server.coaps_uri is not None
        proc = await _simulate(
            "--server",
            server.coaps_uri,
            "--security",
            "psk",
            "--api",
            base,
            "--count",
            "8",
            "--prefix",
            "dtls",
            env={"LWM2M_API_TOKEN": "sim-token"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            line = await line_with(proc.stdout, f"gave {base}/api/security/clients", seen, timeout=15)
            assert "8 LwM2M server PSKs" in line, line
            await line_with(proc.stdout, "registered 8/8 in", seen, timeout=15)
            assert "DTLS with a PSK each" in seen[0], seen
            stored = await server.security.all()
            assert sorted((s.endpoint, s.psk_identity) for s in stored) == [
                (f"dtls-{i:05d}", f"dtls-{i:05d}") for i in range(8)
            ]
            assert len(await server.registrations()) == 8
            answer = await server.read("dtls-00005", "/3/0/0", timeout=5)
            assert answer.code == Code.CONTENT
            out = await _interrupt(proc, seen)
            assert "stopped 8 devices" in out and await server.registrations() == []
            for info in stored:  # keys never shown
                assert info.psk_key is not None and info.psk_key.hex() not in out
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_simulate_over_oscore_gives_the_server_a_context_per_device_through_its_api() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        served(create_app(server, api_token="sim-token")) as base,
    ):
        proc = await _simulate(
            "--server",
            server.uri,
            "--oscore",
            "--api",
            base,
            "--count",
            "4",
            "--prefix",
            "osc",
            env={"LWM2M_API_TOKEN": "sim-token"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            line = await line_with(proc.stdout, f"gave {base}/api/security/clients", seen, timeout=15)
            assert "4 OSCORE contexts" in line, line
            await line_with(proc.stdout, "registered 4/4 in", seen, timeout=15)
            assert "OSCORE with a context each" in seen[0], seen
            stored = await server.security.all()
            assert [(s.endpoint, s.mode) for s in stored] == [(f"osc-{i:05d}", "oscore") for i in range(4)]
            answer = await server.read("osc-00001", "/3/0/0", timeout=5)
            assert answer.code == Code.CONTENT
            out = await _interrupt(proc, seen)
            assert "stopped 4 devices" in out and await server.registrations() == []
            for info in stored:  # secrets never shown
                assert info.oscore is not None and info.oscore.master_secret.hex() not in out
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_simulate_bootstraps_with_configurations_and_keys_written_into_data(tmp_path: Path) -> None:
    """Plain-CoAP bootstrap, DTLS to the LwM2M server: the command writes each device's
    configuration and server PSK into the database the servers read (``--data``)."""
    store = SqliteStore(tmp_path / "lwm2m.db")
    try:
        async with (
            Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0), store) as server,
            BootstrapServer(BootstrapServerConfig(port=0), store) as bs,
        ):
            assert server.coaps_uri is not None
            proc = await _simulate(
                "--bootstrap",
                bs.uri,
                "--server",
                server.coaps_uri,
                "--security",
                "psk",
                "--data",
                str(tmp_path),
                "--count",
                "4",
                "--lifetime",
                "60",
            )
            assert proc.stdout is not None
            seen: list[str] = []
            try:
                line = await line_with(proc.stdout, f"wrote into {tmp_path}", seen, timeout=15)
                assert "4 bootstrap configurations, 4 LwM2M server PSKs" in line, line
                await line_with(proc.stdout, "registered 4/4 in", seen, timeout=15)
                assert f"bootstrapping from {bs.uri}, then registering with {server.coaps_uri}" in seen[0]
                registrations = await server.registrations()
                assert sorted(r.endpoint for r in registrations) == [f"sim-{i:05d}" for i in range(4)]
                assert {r.lifetime for r in registrations} == {60}
                assert len([s for s in bs.sessions() if s.status == "finished"]) == 4
                out = await _interrupt(proc, seen)
                assert "4 bootstraps," in out, out
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--count", "0"], "--count 0"),
        (["--count", "many"], "--count many"),
        (["--count", "-3"], "--count -3"),
        (["--count", "100000"], "--count 100000"),
        (["--profile", "toaster"], "--profile toaster"),
        (["--profile", ""], "--profile : no such profile"),
        (["--rate", "0"], "--rate 0"),
        (["--rate", "fast"], "--rate fast"),
        (["--server", "http://127.0.0.1:5"], "--server http://127.0.0.1:5"),
        (["--lifetime", "0"], "--lifetime 0"),
        (["--lwm2m-version", "2.0"], "--lwm2m-version 2.0"),
        (["--prefix", "a b"], "--prefix 'a b'"),
        (["--speed", "nan"], "--speed nan"),
        (["--seed", "x"], "--seed x"),
        (["--end-devices", "0"], "--end-devices 0"),
        (["--uplink-period", "-1"], "--uplink-period -1"),
        (["--security", "psk"], "--security psk: the server coap://127.0.0.1:5683 is plain CoAP"),
        (["--security", "psk", "--server", "coap://127.0.0.1:5"], "the server coap://127.0.0.1:5 is plain"),
        (["--server", "coaps://127.0.0.1:5"], "--server coaps://127.0.0.1:5: coaps:// needs --security psk"),
        (
            ["--bootstrap", "coaps://127.0.0.1:5"],
            "--bootstrap coaps://127.0.0.1:5: coaps:// needs --security",
        ),
        (["--security", "psk", "--bootstrap", "coap://127.0.0.1:5"], "--security psk with --bootstrap"),
        (["--security", "tls"], "--security tls: expected one of nosec, psk"),
        (
            ["--server", "coaps+tcp://127.0.0.1:5"],
            "coaps+tcp://127.0.0.1:5: coaps+tcp:// needs --security psk",
        ),
        (["--security", "psk", "--server", "coap+tcp://127.0.0.1:5"], "coap+tcp://127.0.0.1:5 is plain CoAP"),
        (
            ["--security", "psk", "--bootstrap", "coaps+tcp://127.0.0.1:5"],
            "a fleet that bootstraps over coaps+tcp:// is not simulated",
        ),
        (["--oscore", "--security", "psk"], "--oscore: give it or --security psk, not both"),
        (["--shared-network", "127.0.0.0/33"], "--shared-network 127.0.0.0/33: expected an IPv4 network"),
        (
            ["--shared-network", "127.64.0.0/10", "--server", "coap+tcp://127.0.0.1:5"],
            "--shared-network 127.64.0.0/10: plain coap:// only",
        ),
        (
            ["--oscore", "--server", "coaps://127.0.0.1:5"],
            "--server coaps://127.0.0.1:5: --oscore needs a coap://",
        ),
        (["--oscore", "--bootstrap", "coap://127.0.0.1:5"], "--oscore with --bootstrap coap://127.0.0.1:5"),
        (["--bootstrap", "udp://127.0.0.1:5"], "--bootstrap udp://127.0.0.1:5"),
        (["--api", "http://127.0.0.1:9"], "--api http://127.0.0.1:9: nothing to give it"),
        (
            ["--security", "psk", "--server", "coaps://127.0.0.1:5", "--api", "ftp://x"],
            "--api ftp://x: API URL 'ftp://x': expected http://HOST[:PORT]",
        ),
    ],
)
def test_bad_option_values_get_a_one_line_error(args: list[str], named: str) -> None:
    result = CliRunner().invoke(main, ["simulate", *args], prog_name="lwm2m")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("lwm2m simulate: error: ") and named in result.stderr, result.stderr
