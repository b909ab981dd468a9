"""``lwm2m simulate`` as a user runs it: a subprocess fleet against our server in the test's process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from click.testing import CliRunner

from lwm2m.cli import main
from lwm2m.coap.numbers import Code
from lwm2m.server.server import LwM2MServer


async def _line_with(stream: asyncio.StreamReader, text: str, seen: list[str]) -> str:
    async with asyncio.timeout(15):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the output ended before {text!r}: {seen}")
            seen.append(line)
            if text in line:
                return line


async def test_simulate_registers_the_fleet_reports_and_deregisters_on_sigint() -> None:
    async with LwM2MServer("127.0.0.1", 0) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lwm2m",
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
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            await _line_with(proc.stdout, "lwm2m simulate: 20 devices (ucifi-streetlight)", seen)
            await _line_with(proc.stdout, "registered 20/20 in", seen)
            names = sorted(r.endpoint for r in await server.registrations())
            assert names == [f"lamp-{i:05d}" for i in range(20)]

            answer = await server.read("lamp-00007", "/3418/0/4", timeout=5)
            assert answer.code == Code.CONTENT
            line = await _line_with(proc.stdout, "requests served 1 ", seen)
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
    async with LwM2MServer("127.0.0.1", 0) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lwm2m",
            "simulate",
            "--server",
            server.uri,
            "--count",
            "5",
            "--profile",
            "ipso-weather",
            "--duration",
            "0.5",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
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
    ],
)
def test_bad_option_values_get_a_one_line_error(args: list[str], named: str) -> None:
    result = CliRunner().invoke(main, ["simulate", *args], prog_name="lwm2m")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("lwm2m simulate: error: ") and named in result.stderr, result.stderr
