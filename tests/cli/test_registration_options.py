"""``lwm2m server``'s registration limits and ``--nosec-endpoints``, and ``lwm2m security add --nosec``:
bad values get a line naming them (exit 2); a running server applies the values given."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.server import register

from lwm2m.cli import main
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.udp import open_udp_endpoint


def lwm2m(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-lifetime", "0"], "'--max-lifetime': 0 is not in the range x>=1"),
        (["--max-lifetime", "week"], "'--max-lifetime': 'week' is not a valid integer"),
        (["--max-registrations", "-1"], "'--max-registrations': -1"),
        (["--max-endpoint-length", "256"], "'--max-endpoint-length': 256 is not in the range 1<=x<=255"),
        (["--max-links", "0"], "'--max-links': 0"),
        (["--max-registration-payload", "1k"], "'--max-registration-payload': '1k'"),
        (["--registration-rate", "-2"], "'--registration-rate': -2.0"),
        (["--registration-burst", "0"], "'--registration-burst': 0"),
        (["--nosec-endpoints", "maybe"], "'--nosec-endpoints': 'maybe' is not one of 'allow', 'deny'"),
    ],
)
def test_bad_values_are_named(args: list[str], named: str) -> None:
    result = lwm2m("server", "--store", "memory", *args)
    assert result.exit_code == 2
    assert named in result.output


def test_an_infinite_rate_is_refused_in_one_line() -> None:
    result = lwm2m("server", "--store", "memory", "--registration-rate", "inf")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert (
        "registration limits: rate must be a positive number of registrations per second, got inf"
        in result.output
    )


def test_security_add_nosec(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    added = lwm2m("security", "add", "meter-1", "--nosec", "--data", data)
    assert added.exit_code == 0, added.output
    assert added.output == "set meter-1: NoSec (plain CoAP, no authentication)\n"
    assert (
        lwm2m("security", "list", "--data", data).output == "meter-1: NoSec (plain CoAP, no authentication)\n"
    )
    for args in (["--x509"], ["--psk-identity", "x", "--psk-key", "0011"], ["--generate"]):
        refused = lwm2m("security", "add", "meter-1", "--nosec", *args, "--data", data)
        assert refused.exit_code == 2, args
        assert refused.output.count("\n") == 1 and "--nosec" in refused.output


def test_a_running_server_applies_the_limits_and_the_nosec_policy(tmp_path: Path) -> None:
    coap, http = free_udp_port(), free_tcp_port()
    command = [sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap), "--http-port", str(http)]
    command += ["--data", str(tmp_path / "data"), "--nosec-endpoints", "deny", "--max-lifetime", "100"]
    command += ["--max-registration-payload", "200"]
    command += ["--registration-rate", "0.001", "--registration-burst", "3"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    api = f"http://127.0.0.1:{http}"
    try:
        assert proc.stdout is not None
        assert f"coap://127.0.0.1:{coap}" in proc.stdout.readline()

        async def ask(*messages: Message) -> list[Message]:
            async with open_udp_endpoint() as device:
                return [await device.request(m, ("127.0.0.1", coap), timeout=5) for m in messages]

        (stranger,) = asyncio.run(ask(register("meter-1", lt=3600)))
        assert stranger.code == Code.FORBIDDEN and b"mode nosec" in stranger.payload
        assert lwm2m("security", "add", "meter-1", "--nosec", "--api", api).exit_code == 0
        big = Message.build(
            Type.CON,
            Code.POST,
            uri_path="/rd",
            uri_query=["ep=meter-1"],
            content_format=40,
            payload=b",".join(b"</3303/%d>" for _ in range(30)),
        )
        too_big, created, limited = asyncio.run(ask(big, register("meter-1", lt=3600), register("meter-1")))
        assert too_big.code == Code.REQUEST_ENTITY_TOO_LARGE and too_big.size1 == 200
        assert created.code == Code.CREATED
        assert limited.code == Code.TOO_MANY_REQUESTS  # the fourth Register from this address
        one = httpx.get(f"{api}/api/clients/meter-1", timeout=5).json()
        assert one["lifetime"] == 100
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
