"""``lwm2m server --awake-time``: how long a queue-mode client is taken to be reachable after it
sent something (LwM2M-TS-Core 1.2 §6.5; 93 s, MAX_TRANSMIT_WAIT, by default)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.cli import main
from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.server.presence import MAX_TRANSMIT_WAIT, Presence


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_awake_time_is_one_line_naming_the_option(value: str) -> None:
    result = CliRunner().invoke(main, ["server", "--store", "memory", "--awake-time", value])
    assert result.exit_code == 2
    assert "--awake-time" in result.output and value in result.output
    assert "Traceback" not in result.output


def test_the_default_is_93_seconds_and_presence_takes_only_positive_times() -> None:
    help_text = CliRunner().invoke(main, ["server", "--help"]).output
    assert "--awake-time" in help_text and "93" in help_text
    assert MAX_TRANSMIT_WAIT == 93.0
    for bad in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="awake_time"):
            Presence(lambda event: None, bad)


async def test_a_queue_mode_client_is_shown_asleep_after_the_awake_time_given() -> None:
    coap, http = free_udp_port(), free_tcp_port()
    command = [sys.executable, "-m", "lwm2m", "server", "--store", "memory", "--awake-time", "0.5"]
    proc = subprocess.Popen(
        [*command, "--coap-port", str(coap), "--http-port", str(http)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert f"coap://127.0.0.1:{coap}" in line, line
        async with (
            Client("queued", f"coap://127.0.0.1:{coap}", config=ClientConfig(queue_mode=True)) as client,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}") as api,
        ):
            await client.wait_registered(10)
            # With the default 93 s this would not come within the test's bound.
            async with asyncio.timeout(15):
                while not (await api.get("/api/clients/queued")).json()["sleeping"]:
                    await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
