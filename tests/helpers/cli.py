"""CLI test helpers: reading a process's output, starting a server process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path


async def line_with(stream: asyncio.StreamReader, text: str, seen: list[str]) -> str:
    async with asyncio.timeout(10):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the client's output ended before {text!r}: {seen}")
            seen.append(line)
            if text in line:
                return line


def start(coap: int, http: int, data: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap), "--http-port", str(http)]
    proc = subprocess.Popen(
        [*command, "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"coap://127.0.0.1:{coap}" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc
